// Microsoft Graph v1.0 for what the product needs, as strict as the service: permissions, Outlook's
// per-mailbox throttling (each $batch sub-request on its own), error bodies, paging, delta and $batch.
import { randomUUID } from 'node:crypto';
import { ApplicationKeys } from './applications';
import { AppRegistrations } from './app-registrations';
import { graphResource, type IdentityProvider } from './identity';
import {
  evaluateFilter,
  filterUses,
  parseExpand,
  parseFilter,
  resolvePath,
  ODataSyntaxError,
  type FilterNode,
} from './odata';
import {
  graphError,
  GraphFault,
  badRequest,
  notFoundItem,
  type SimRequest,
  type SimResponse,
} from './protocol';
import {
  contactProperties,
  contactView,
  defaultUserProperties,
  folderView,
  groupProperties,
  groupView,
  orgContactProperties,
  orgContactView,
  parseContactBody,
  select,
  selectNames,
  userProperties,
  userView,
} from './graph-resources';
import type { FaultInjector } from './faults';
import type { Random } from './random';
import type { RequestLog } from './request-log';
import type { MailboxThrottle } from './throttle';
import type { FolderChange, Mailbox, SimContact, SimUser, Tenant, DirectoryKind } from './tenant';

export interface LatencyOptions {
  meanMs: number;
  jitterMs: number;
}

export interface GraphOptions {
  latency: LatencyOptions;
  /** Directory delta tokens older than this answer 400 syncStateNotFound (Graph: 7 days). */
  directoryDeltaTokenMaxAgeMs: number;
  /** Outlook delta tokens older than this answer 410 SyncStateNotFound. */
  outlookDeltaTokenMaxAgeMs: number;
}

const P = {
  userRead: ['User.Read.All', 'User.ReadWrite.All', 'Directory.Read.All', 'Directory.ReadWrite.All'],
  groupRead: ['GroupMember.Read.All', 'Group.Read.All', 'Group.ReadWrite.All', 'Directory.Read.All'],
  orgContactRead: ['OrgContact.Read.All', 'Directory.Read.All'],
  contactsRead: ['Contacts.Read', 'Contacts.ReadWrite'],
  contactsWrite: ['Contacts.ReadWrite'],
  mailSend: ['Mail.Send'],
  photoRead: ['ProfilePhoto.Read.All', 'User.Read.All', 'User.ReadWrite.All'],
  mailboxSettingsRead: ['MailboxSettings.Read', 'MailboxSettings.ReadWrite'],
} as const;

interface Caller {
  appId: string;
  roles: string[];
  /** A user's token (an admin through a public client): delegated scopes and role template ids. */
  scopes?: string[];
  user?: { id: string; wids: string[] };
}

interface RouteContext {
  req: SimRequest;
  params: Record<string, string>;
  caller: Caller;
  immutable: boolean;
  mailbox?: Mailbox;
  user?: SimUser;
}

/**
 * Outlook items honour If-Match with their ETag (W/"<changeKey>"): a write planned against another
 * changeKey is refused, 412 ErrorIrresolvableConflict (see README: conditional writes).
 */
function checkIfMatch(ctx: RouteContext, c: SimContact): void {
  const header = ctx.req.headers['if-match'];
  if (header === undefined || header.trim() === '*') return;
  const tags = header.split(',').map((t) => t.trim().replace(/^W\//, '').replace(/^"|"$/g, ''));
  if (!tags.includes(c.changeKey))
    throw new GraphFault(
      412,
      'ErrorIrresolvableConflict',
      'The send or update operation could not be performed because the change key passed in the request does not match the current change key for the item.',
    );
}

interface Route {
  method: string;
  pattern: RegExp;
  names: string[];
  operation: string;
  permissions: readonly string[];
  /** Outlook-backed: resolves the mailbox, applies RBAC scope and per-mailbox throttling. */
  mailbox: boolean;
  handler: (ctx: RouteContext) => SimResponse | Promise<SimResponse>;
}

/** Outcome of one operation: the response, and whether the connection should fail instead. */
export interface OperationResult {
  response: SimResponse;
  connection: 'ok' | 'reset' | 'lostReply';
}

const directoryError = (status: number, code: string, message: string): GraphFault =>
  new GraphFault(status, code, message);

export class GraphService {
  private readonly routes: Route[] = [];
  /** Set once the server listens. */
  graphUrl = '';
  /** Applications, service principals and app role assignments (what `setup` works with). */
  readonly registrations: AppRegistrations;

  constructor(
    readonly tenant: Tenant,
    private readonly identity: IdentityProvider,
    private readonly throttle: MailboxThrottle,
    private readonly faults: FaultInjector,
    private readonly log: RequestLog,
    private readonly random: Random,
    public options: GraphOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.registrations = new AppRegistrations(identity, () => this.graphUrl);
    this.defineRoutes();
  }

  // ---------- entry points ----------

  async handleHttp(req: SimRequest): Promise<OperationResult> {
    const auth = await this.identity.verifyAccessToken(req.headers.authorization, graphResource);
    if ('error' in auth) {
      const response = graphError(401, 'InvalidAuthenticationToken', auth.error, req.requestId, {
        'www-authenticate':
          'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"',
      });
      this.record(req, null, 'unauthenticated', null, response, false);
      return { response, connection: 'ok' };
    }
    const caller: Caller = {
      appId: auth.appId,
      roles: auth.roles,
      ...(auth.scopes ? { scopes: auth.scopes } : {}),
      ...(auth.user ? { user: auth.user } : {}),
    };
    if (req.path === '/$batch' && req.method === 'POST') return this.batch(req, caller);
    return this.operation(req, caller);
  }

  private async batch(req: SimRequest, caller: Caller): Promise<OperationResult> {
    const envelopeFault = this.faults.pick({
      service: 'graph',
      method: 'POST',
      operation: 'batch',
      path: req.path,
      inBatch: false,
    });
    if (envelopeFault?.kind === 'reset') {
      this.record(req, caller.appId, 'batch', null, { status: 0 }, false, true);
      return { response: { status: 0 }, connection: 'reset' };
    }
    if (req.rawBody.length > maxRequestBytes) {
      // Graph refuses any REST request over 4 MB, a $batch included.
      const response = graphError(
        413,
        'RequestEntityTooLarge',
        'The request body exceeds the maximum size of 4 MB.',
        req.requestId,
      );
      this.record(req, caller.appId, 'batch', null, response, false);
      return { response, connection: 'ok' };
    }
    let requests: BatchItem[];
    try {
      requests = parseBatch(req.body);
    } catch (e) {
      const response = graphError(
        400,
        'BadRequest',
        e instanceof Error ? e.message : String(e),
        req.requestId,
      );
      this.record(req, caller.appId, 'batch', null, response, false);
      return { response, connection: 'ok' };
    }
    const done = new Map<string, Promise<{ status: number }>>();
    const responses: unknown[] = [];
    let connection: OperationResult['connection'] = 'ok';
    const run = async (item: BatchItem): Promise<{ status: number }> => {
      const deps = await Promise.all((item.dependsOn ?? []).map((d) => done.get(d)!));
      let result: OperationResult;
      if (deps.some((d) => d.status < 200 || d.status >= 300)) {
        result = {
          response: graphError(424, 'FailedDependency', 'The request failed due to a failed dependency.'),
          connection: 'ok',
        };
      } else {
        const url = new URL(item.url.startsWith('/') ? item.url : `/${item.url}`, 'https://graph.invalid');
        const headers = Object.fromEntries(
          Object.entries(item.headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]),
        );
        if (!headers.prefer && req.headers.prefer) headers.prefer = req.headers.prefer;
        const sub: SimRequest = {
          method: item.method.toUpperCase(),
          path: url.pathname,
          query: url.searchParams,
          headers: { ...headers, authorization: req.headers.authorization ?? '' },
          body: item.body,
          // A non-JSON body (a photo) travels base64-encoded inside the batch.
          rawBody:
            typeof item.body === 'string' && !/json/i.test(headers['content-type'] ?? '')
              ? Buffer.from(item.body, 'base64')
              : Buffer.from(item.body === undefined ? '' : JSON.stringify(item.body)),
          requestId: randomUUID(),
          inBatch: true,
        };
        result = await this.operation(sub, caller);
      }
      if (result.connection !== 'ok') connection = result.connection;
      const { body, headers, status } = result.response;
      responses.push({
        id: item.id,
        status,
        headers: {
          'Cache-Control': 'no-cache',
          ...(body !== undefined && !Buffer.isBuffer(body) ? { 'Content-Type': 'application/json' } : {}),
          ...(headers ?? {}),
        },
        ...(body === undefined ? {} : { body: Buffer.isBuffer(body) ? body.toString('base64') : body }),
      });
      return { status };
    };
    for (const item of requests)
      done.set(
        item.id,
        Promise.resolve().then(() => run(item)),
      );
    await Promise.all(done.values());
    const response: SimResponse = { status: 200, body: { responses } };
    if (connection === 'ok' && envelopeFault?.kind === 'lostReply') connection = 'lostReply';
    if (connection === 'ok' && envelopeFault?.kind === 'status') {
      const failed = graphError(
        envelopeFault.status,
        'ServiceUnavailable',
        'Service unavailable.',
        req.requestId,
        envelopeFault.retryAfterSeconds ? { 'retry-after': String(envelopeFault.retryAfterSeconds) } : {},
      );
      this.record(req, caller.appId, 'batch', null, failed, false);
      return { response: failed, connection: 'ok' };
    }
    this.record(req, caller.appId, 'batch', null, response, false, connection !== 'ok');
    return { response, connection };
  }

  /** One Graph request (top level or inside $batch): route, permission, throttle, latency, faults, handler. */
  async operation(req: SimRequest, caller: Caller): Promise<OperationResult> {
    let path: string;
    try {
      path = normalisePath(req.path);
    } catch {
      return this.finish(
        req,
        caller,
        'unknown',
        null,
        graphError(400, 'BadRequest', 'Invalid request URL.', req.requestId),
      );
    }
    const match = this.match(req.method, path);
    if (!match) {
      const anyMethod = this.routes.some((r) => r.pattern.test(path));
      const response = anyMethod
        ? graphError(
            405,
            'Request_BadRequest',
            `The HTTP method '${req.method}' is not allowed for the resource.`,
            req.requestId,
          )
        : graphError(
            400,
            'BadRequest',
            `Resource not found for the segment '${path.split('/').filter(Boolean).at(-1) ?? ''}'.`,
            req.requestId,
          );
      return this.finish(req, caller, 'unknown', null, response);
    }
    const { route, params } = match;
    const ctx: RouteContext = {
      req,
      params,
      caller,
      immutable: /IdType="ImmutableId"/i.test(req.headers.prefer ?? ''),
    };
    let mailboxLabel: string | null = null;
    let release: (() => void) | undefined;
    try {
      // A route with no permissions listed checks its caller itself (an app rolling its own keys).
      const app = this.identity.apps.get(caller.appId);
      const inToken = route.permissions.some((p) => caller.roles.includes(p));
      // RBAC for Applications adds to the token's grants, for mailbox data only, and is judged per
      // mailbox once Exchange has found it (learn.microsoft.com/exchange/permissions-exo/application-rbac).
      const assigned = route.mailbox
        ? route.permissions.flatMap((p) => {
            const scope = app?.applicationRoles.get(p);
            return scope === undefined ? [] : [scope];
          })
        : [];
      if (route.permissions.length > 0 && !inToken && assigned.length === 0) {
        throw route.mailbox
          ? new GraphFault(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.')
          : directoryError(
              403,
              'Authorization_RequestDenied',
              'Insufficient privileges to complete the operation.',
            );
      }
      if (route.mailbox) {
        const userKey = params.user ?? '';
        const user = this.tenant.user(userKey);
        if (!user)
          throw new GraphFault(404, 'ErrorInvalidUser', `The requested user '${userKey}' is invalid.`);
        mailboxLabel = user.userPrincipalName.toLowerCase();
        const mailbox = this.tenant.mailbox(user.id);
        if (!mailbox)
          throw new GraphFault(
            404,
            'MailboxNotEnabledForRESTAPI',
            'The mailbox is either inactive, soft-deleted, or is hosted on-premise.',
          );
        if (app?.mailboxScope && !app.mailboxScope.has(user.id))
          throw new GraphFault(403, 'ErrorAccessDenied', 'Access to OData is disabled.');
        if (
          route.permissions.length > 0 &&
          !inToken &&
          !assigned.some((scope) => scope === null || scope.has(user.id))
        )
          throw new GraphFault(
            403,
            'ErrorAccessDenied',
            'Access is denied. Check credentials and try again.',
          );
        ctx.user = user;
        ctx.mailbox = mailbox;
        const decision = this.throttle.admit(caller.appId, user.id);
        if (!decision.ok) {
          throw new GraphFault(
            429,
            'ApplicationThrottled',
            decision.reason === 'MailboxConcurrency'
              ? 'Application is over its MailboxConcurrency limit.'
              : 'Application is over its MailboxLimit. Please retry after some time.',
            { 'retry-after': String(decision.retryAfterSeconds) },
          );
        }
        release = decision.release;
      }
      await this.delay();
      const fault = this.faults.pick({
        service: 'graph',
        method: req.method,
        operation: route.operation,
        path,
        mailbox: ctx.user ? { id: ctx.user.id, upn: ctx.user.userPrincipalName } : undefined,
        inBatch: req.inBatch,
      });
      if (fault?.kind === 'status') {
        if (fault.executed) await route.handler(ctx);
        const retry: Record<string, string> =
          fault.retryAfterSeconds !== undefined ? { 'retry-after': String(fault.retryAfterSeconds) } : {};
        const code =
          fault.status === 429
            ? 'TooManyRequests'
            : fault.status === 503
              ? 'ServiceUnavailable'
              : fault.status === 504
                ? 'GatewayTimeout'
                : 'InternalServerError';
        const msg =
          fault.status === 429
            ? 'Too many requests.'
            : fault.status === 503
              ? 'Service unavailable.'
              : fault.status === 504
                ? 'The gateway timed out.'
                : 'An internal server error occurred.';
        throw new GraphFault(fault.status, code, msg, retry);
      }
      if (fault?.kind === 'refuse') {
        const refused = fault.status === 400 ? 'ErrorInvalidRequest' : 'ErrorAccessDenied';
        const msg =
          fault.status === 400
            ? 'The OData request is not supported.'
            : 'Access is denied. Check credentials and try again.';
        throw new GraphFault(fault.status, fault.code ?? refused, fault.message ?? msg, {});
      }
      if (fault?.kind === 'reset') {
        return this.finish(req, caller, route.operation, mailboxLabel, { status: 0 }, 'reset');
      }
      const response = await route.handler(ctx);
      if (ctx.immutable && route.mailbox)
        response.headers = { ...(response.headers ?? {}), 'preference-applied': 'IdType="ImmutableId"' };
      return this.finish(
        req,
        caller,
        route.operation,
        mailboxLabel,
        response,
        fault?.kind === 'lostReply' ? 'lostReply' : 'ok',
      );
    } catch (e) {
      if (e instanceof GraphFault)
        return this.finish(
          req,
          caller,
          route.operation,
          mailboxLabel,
          graphError(e.status, e.code, e.message, req.requestId, e.headers),
        );
      if (e instanceof ODataSyntaxError)
        return this.finish(
          req,
          caller,
          route.operation,
          mailboxLabel,
          graphError(400, 'BadRequest', `Invalid filter clause: ${e.message}`, req.requestId),
        );
      throw e;
    } finally {
      release?.();
    }
  }

  /** Tests may watch every answered operation, e.g. to check bodies against Microsoft's OpenAPI. */
  observer: ((operation: string, req: SimRequest, response: SimResponse) => void) | undefined;

  private finish(
    req: SimRequest,
    caller: Caller,
    operation: string,
    mailbox: string | null,
    response: SimResponse,
    connection: OperationResult['connection'] = 'ok',
  ): OperationResult {
    response.headers = {
      'request-id': req.requestId,
      'client-request-id': req.headers['client-request-id'] ?? req.requestId,
      ...(response.headers ?? {}),
    };
    this.observer?.(operation, req, response);
    this.record(req, caller.appId, operation, mailbox, response, req.inBatch, connection !== 'ok');
    return { response, connection };
  }

  private record(
    req: SimRequest,
    appId: string | null,
    operation: string,
    mailbox: string | null,
    response: SimResponse,
    inBatch: boolean,
    replyLost = false,
  ): void {
    const code = (response.body as { error?: { code?: string } } | undefined)?.error?.code ?? null;
    this.log.add({
      service: 'graph',
      appId,
      method: req.method,
      path: req.path,
      operation,
      mailbox,
      status: response.status,
      errorCode: code,
      inBatch,
      requestId: req.requestId,
      replyLost,
    });
  }

  private async delay(): Promise<void> {
    const { meanMs, jitterMs } = this.options.latency;
    const ms = Math.max(0, meanMs + (this.random.next() * 2 - 1) * jitterMs);
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  private match(method: string, path: string): { route: Route; params: Record<string, string> } | undefined {
    for (const route of this.routes) {
      if (route.method !== method) continue;
      const m = route.pattern.exec(path);
      if (m) return { route, params: Object.fromEntries(route.names.map((n, i) => [n, m[i + 1] ?? ''])) };
    }
    return undefined;
  }

  private add(
    method: string,
    template: string,
    operation: string,
    permissions: readonly string[],
    handler: Route['handler'],
    mailbox = false,
  ): void {
    const names: string[] = [];
    const pattern = new RegExp(
      '^' +
        template
          .split('/')
          .map((seg) => {
            if (seg.startsWith(':')) {
              names.push(seg.slice(1));
              return '([^/]+)';
            }
            return seg.replace(/[.$]/g, (c) => `\\${c}`);
          })
          .join('/') +
        '$',
      'i',
    );
    this.routes.push({ method, pattern, names, operation, permissions, handler, mailbox });
  }

  // ---------- routes ----------

  /** addKey / removeKey on the caller's own application (applications.ts), by object id or appId. */
  private defineApplicationKeyRoutes(): void {
    const keys = new ApplicationKeys(this.identity, this.now);
    for (const action of ['addKey', 'removeKey'] as const) {
      for (const template of [`/applications/:app/${action}`, `/:app/${action}`]) {
        for (const spelling of [template, template.replace(action, `microsoft.graph.${action}`)]) {
          this.add('POST', spelling, `applications.${action}`, [], async (c) => {
            const app = keys.resolve(c.params.app ?? '');
            keys.authorize(app, c.caller);
            if (action === 'removeKey') {
              await keys.removeKey(app, c.req.body);
              return { status: 204 };
            }
            const added = await keys.addKey(app, c.req.body);
            return {
              status: 200,
              body: {
                '@odata.context': `${this.graphUrl}/v1.0/$metadata#microsoft.graph.keyCredential`,
                ...added,
              },
            };
          });
        }
      }
    }
  }

  /** App registrations for an admin (app-registrations.ts); each handler checks its caller itself. */
  private defineAppRegistrationRoutes(): void {
    const r = this.registrations;
    const ok = (status: number, body?: unknown): SimResponse => ({
      status,
      ...(body === undefined ? {} : { body }),
    });
    this.add('GET', '/applications', 'applications.list', [], (c) =>
      ok(200, r.listApplications(c.caller, c.req.query)),
    );
    this.add('POST', '/applications', 'applications.create', [], (c) =>
      ok(201, r.createApplication(c.caller, c.req.body)),
    );
    this.add('GET', '/applications/:app', 'applications.get', [], (c) =>
      ok(200, r.getApplication(c.caller, c.params.app!, c.req.query)),
    );
    this.add('PATCH', '/applications/:app', 'applications.update', [], (c) => {
      r.updateApplication(c.caller, c.params.app!, c.req.body);
      return ok(204);
    });
    this.add('GET', '/servicePrincipals', 'servicePrincipals.list', [], (c) =>
      ok(200, r.listServicePrincipals(c.caller, c.req.query)),
    );
    this.add('POST', '/servicePrincipals', 'servicePrincipals.create', [], (c) =>
      ok(201, r.createServicePrincipal(c.caller, c.req.body)),
    );
    this.add(
      'GET',
      '/servicePrincipals/:sp/appRoleAssignments',
      'servicePrincipals.appRoleAssignments.list',
      [],
      (c) => ok(200, r.listAssignments(c.caller, c.params.sp!)),
    );
    this.add(
      'POST',
      '/servicePrincipals/:sp/appRoleAssignments',
      'servicePrincipals.appRoleAssignments.create',
      [],
      (c) => ok(201, r.grant(c.caller, c.params.sp!, 'client', c.req.body)),
    );
    this.add(
      'POST',
      '/servicePrincipals/:sp/appRoleAssignedTo',
      'servicePrincipals.appRoleAssignedTo.create',
      [],
      (c) => ok(201, r.grant(c.caller, c.params.sp!, 'resource', c.req.body)),
    );
  }

  private defineRoutes(): void {
    this.defineApplicationKeyRoutes();
    this.defineAppRegistrationRoutes();
    // Directory
    this.add('GET', '/users', 'users.list', P.userRead, (c) => this.listUsers(c));
    this.add('GET', '/users/delta', 'users.delta', P.userRead, (c) => this.directoryDelta(c, 'user'));
    this.add('GET', '/users/:user', 'users.get', P.userRead, (c) => this.getUser(c));
    this.add('GET', '/users/:user/manager', 'users.manager', P.userRead, (c) => this.getManager(c));
    this.add('GET', '/users/:user/photo', 'users.photo.get', P.photoRead, (c) => this.userPhoto(c, false));
    this.add('GET', '/users/:user/photo/$value', 'users.photo.value', P.photoRead, (c) =>
      this.userPhoto(c, true),
    );
    this.add('GET', '/groups', 'groups.list', P.groupRead, (c) => this.listDirectory(c, 'group'));
    this.add('GET', '/groups/delta', 'groups.delta', P.groupRead, (c) => this.directoryDelta(c, 'group'));
    this.add('GET', '/groups/:group', 'groups.get', P.groupRead, (c) => this.getGroup(c));
    for (const kind of ['members', 'transitiveMembers'] as const) {
      this.add('GET', `/groups/:group/${kind}`, `groups.${kind}`, P.groupRead, (c) =>
        this.groupMembers(c, kind, undefined),
      );
      for (const cast of ['user', 'group', 'orgContact'] as const) {
        this.add(
          'GET',
          `/groups/:group/${kind}/microsoft.graph.${cast}`,
          `groups.${kind}`,
          P.groupRead,
          (c) => this.groupMembers(c, kind, cast),
        );
      }
    }
    this.add('GET', '/contacts', 'orgContacts.list', P.orgContactRead, (c) =>
      this.listDirectory(c, 'orgContact'),
    );
    this.add('GET', '/contacts/delta', 'orgContacts.delta', P.orgContactRead, (c) =>
      this.directoryDelta(c, 'orgContact'),
    );
    this.add('GET', '/contacts/:id', 'orgContacts.get', P.orgContactRead, (c) => {
      const oc = this.tenant.orgContacts.get(c.params.id ?? '');
      if (!oc)
        throw directoryError(
          404,
          'Request_ResourceNotFound',
          `Resource '${c.params.id}' does not exist or one of its queried reference-property objects are not present.`,
        );
      return {
        status: 200,
        body: {
          '@odata.context': `${this.graphUrl}/v1.0/$metadata#contacts/$entity`,
          ...select(
            orgContactView(oc),
            c.req.query.get('$select'),
            orgContactProperties,
            orgContactProperties,
            'orgContact',
          ),
        },
      };
    });

    // Outlook: contact folders
    const F = '/users/:user/contactFolders';
    this.add(
      'GET',
      F,
      'contactFolders.list',
      P.contactsRead,
      (c) => this.listFolders(c, c.mailbox!.contactsFolderId),
      true,
    );
    this.add(
      'POST',
      F,
      'contactFolders.create',
      P.contactsWrite,
      (c) => this.createFolder(c, c.mailbox!.contactsFolderId),
      true,
    );
    this.add(
      'GET',
      `${F}/:folder`,
      'contactFolders.get',
      P.contactsRead,
      (c) => ({ status: 200, body: folderView(this.folder(c), c.immutable, c.mailbox!) }),
      true,
    );
    this.add(
      'PATCH',
      `${F}/:folder`,
      'contactFolders.update',
      P.contactsWrite,
      (c) => this.updateFolder(c),
      true,
    );
    this.add(
      'DELETE',
      `${F}/:folder`,
      'contactFolders.delete',
      P.contactsWrite,
      (c) => {
        const f = this.folder(c);
        if (f.wellKnownName)
          throw new GraphFault(
            400,
            'ErrorDeleteDistinguishedFolder',
            'Distinguished folders cannot be deleted.',
          );
        c.mailbox!.deleteFolder(f.id);
        return { status: 204 };
      },
      true,
    );
    this.add(
      'GET',
      `${F}/:folder/childFolders`,
      'contactFolders.list',
      P.contactsRead,
      (c) => this.listFolders(c, this.folder(c).id),
      true,
    );
    this.add(
      'POST',
      `${F}/:folder/childFolders`,
      'contactFolders.create',
      P.contactsWrite,
      (c) => this.createFolder(c, this.folder(c).id),
      true,
    );

    // Outlook: contacts, in a folder or the default folder
    for (const base of [`${F}/:folder/contacts`, '/users/:user/contacts']) {
      const inFolder = base.includes(':folder');
      const folderOf = (c: RouteContext): string =>
        inFolder ? this.folder(c).id : c.mailbox!.contactsFolderId;
      this.add('GET', base, 'contacts.list', P.contactsRead, (c) => this.listContacts(c, folderOf(c)), true);
      this.add(
        'POST',
        base,
        'contacts.create',
        P.contactsWrite,
        (c) => this.createContact(c, folderOf(c)),
        true,
      );
      this.add(
        'GET',
        `${base}/delta`,
        'contacts.delta',
        P.contactsRead,
        (c) => this.contactsDelta(c, folderOf(c)),
        true,
      );
      this.add(
        'GET',
        `${base}/:contact`,
        'contacts.get',
        P.contactsRead,
        (c) => this.getContact(c, inFolder ? folderOf(c) : undefined),
        true,
      );
      this.add(
        'PATCH',
        `${base}/:contact`,
        'contacts.update',
        P.contactsWrite,
        (c) => this.updateContact(c, inFolder ? folderOf(c) : undefined),
        true,
      );
      this.add(
        'DELETE',
        `${base}/:contact`,
        'contacts.delete',
        P.contactsWrite,
        (c) => {
          const contact = this.contact(c, inFolder ? folderOf(c) : undefined);
          checkIfMatch(c, contact);
          c.mailbox!.deleteContact(contact);
          return { status: 204 };
        },
        true,
      );
      this.add(
        'GET',
        `${base}/:contact/photo`,
        'contacts.photo.get',
        P.contactsRead,
        (c) => this.contactPhoto(c, false),
        true,
      );
      this.add(
        'GET',
        `${base}/:contact/photo/$value`,
        'contacts.photo.value',
        P.contactsRead,
        (c) => this.contactPhoto(c, true),
        true,
      );
      this.add(
        'PUT',
        `${base}/:contact/photo/$value`,
        'contacts.photo.put',
        P.contactsWrite,
        (c) => this.putContactPhoto(c),
        true,
      );
      this.add(
        'PATCH',
        `${base}/:contact/photo/$value`,
        'contacts.photo.put',
        P.contactsWrite,
        (c) => this.putContactPhoto(c),
        true,
      );
      this.add(
        'DELETE',
        `${base}/:contact/photo/$value`,
        'contacts.photo.delete',
        P.contactsWrite,
        (c) => this.deleteContactPhoto(c),
        true,
      );
      this.add(
        'DELETE',
        `${base}/:contact/photo`,
        'contacts.photo.delete',
        P.contactsWrite,
        (c) => this.deleteContactPhoto(c),
        true,
      );
    }

    this.add(
      'GET',
      '/users/:user/mailboxSettings',
      'users.mailboxSettings',
      P.mailboxSettingsRead,
      (c) => ({
        status: 200,
        body: {
          userPurpose: c.user!.mailbox === 'none' ? null : c.user!.mailbox,
          timeZone: 'UTC',
          language: { locale: 'en-US', displayName: 'English (United States)' },
        },
      }),
      true,
    );
    this.add('POST', '/users/:user/sendMail', 'mail.send', P.mailSend, (c) => this.sendMail(c), true);
  }

  // ---------- directory ----------

  private pageSize(req: SimRequest, fallback: number, max: number): number {
    const top = req.query.get('$top');
    const prefer = /odata\.maxpagesize=(\d+)/i.exec(req.headers.prefer ?? '')?.[1];
    if (top !== null) {
      const n = Number(top);
      if (!Number.isInteger(n) || n < 1)
        throw badRequest(
          `Invalid page size specified: '${top}'. Must be between 1 and ${max} inclusive.`,
          'Request_UnsupportedQuery',
        );
      if (n > max)
        throw badRequest(
          `Invalid page size specified: '${top}'. Must be between 1 and ${max} inclusive.`,
          'Request_UnsupportedQuery',
        );
      return n;
    }
    if (prefer) return Math.min(max, Math.max(1, Number(prefer)));
    return fallback;
  }

  private nextLink(req: SimRequest, token: string, param = '$skiptoken'): string {
    const q = new URLSearchParams(req.query);
    q.delete('$skiptoken');
    q.delete('$skip');
    q.delete('$deltatoken');
    q.delete('$deltaToken');
    q.set(param, token);
    return `${this.graphUrl}/v1.0${req.path}?${decodeURIComponent(q.toString()).replace(/ /g, '%20')}`.replace(
      /\+/g,
      '%20',
    );
  }

  private page<T>(
    ctx: RouteContext,
    items: T[],
    size: number,
    view: (t: T) => unknown,
    context: string,
  ): SimResponse {
    const token = ctx.req.query.get('$skiptoken');
    const offset = token ? decodeToken<{ o: number }>(token).o : 0;
    const slice = items.slice(offset, offset + size);
    const body: Record<string, unknown> = { '@odata.context': `${this.graphUrl}/v1.0/$metadata#${context}` };
    if (ctx.req.query.get('$count') === 'true') body['@odata.count'] = items.length;
    body.value = slice.map(view);
    if (offset + size < items.length)
      body['@odata.nextLink'] = this.nextLink(ctx.req, encodeToken({ o: offset + size }));
    return { status: 200, body };
  }

  private advanced(req: SimRequest): boolean {
    return (req.headers.consistencylevel ?? '').toLowerCase() === 'eventual';
  }

  private userFilter(ctx: RouteContext): FilterNode | undefined {
    const raw = ctx.req.query.get('$filter');
    if (!raw) return undefined;
    const node = parseFilter(raw);
    const advanced = this.advanced(ctx.req);
    if (ctx.req.query.get('$count') === 'true' && !advanced)
      throw badRequest('$count is not currently supported.', 'Request_BadRequest');
    for (const use of filterUses(node)) {
      const prop = use.path.split('/')[0] ?? '';
      const known = (userProperties as readonly string[]).includes(prop);
      if (!known && use.op !== 'not')
        throw badRequest(
          `Could not find a property named '${prop}' on type 'microsoft.graph.user'.`,
          'Request_BadRequest',
        );
      const needsAdvanced =
        ['ne', 'not', 'endswith'].includes(use.op) ||
        prop === 'onPremisesExtensionAttributes' ||
        (use.op === 'any' && prop !== 'proxyAddresses');
      // Graph runs these only as advanced queries: ConsistencyLevel: eventual and $count=true both
      // (learn.microsoft.com/graph/aad-advanced-queries, "Query scenarios that require advanced query
      // capabilities"); either alone is refused.
      if (needsAdvanced && (!advanced || ctx.req.query.get('$count') !== 'true')) {
        throw badRequest(
          `Unsupported or invalid query filter clause specified for property '${prop || use.path}' of resource 'User'.`,
          'Request_UnsupportedQuery',
        );
      }
    }
    return node;
  }

  private listUsers(ctx: RouteContext): SimResponse {
    const filter = this.userFilter(ctx);
    const size = this.pageSize(ctx.req, 100, 999);
    const selected = ctx.req.query.get('$select');
    select(
      userView([...this.tenant.users.values()][0] ?? this.placeholderUser()),
      selected,
      userProperties,
      defaultUserProperties,
      'user',
    );
    let users = [...this.tenant.users.values()];
    if (filter) users = users.filter((u) => evaluateFilter(filter, (p) => resolvePath(userView(u), p)));
    const expandManager = (ctx.req.query.get('$expand') ?? '').toLowerCase().startsWith('manager');
    return this.page(ctx, users, size, (u) => this.userWithExpand(u, selected, expandManager), 'users');
  }

  private placeholderUser(): SimUser {
    return { id: '', userPrincipalName: '' } as SimUser;
  }

  private userWithExpand(
    u: SimUser,
    selected: string | null,
    expandManager: boolean,
  ): Record<string, unknown> {
    const view = select(userView(u), selected, userProperties, defaultUserProperties, 'user');
    if (expandManager) {
      const m = u.managerId ? this.tenant.users.get(u.managerId) : undefined;
      view.manager = m
        ? { '@odata.type': '#microsoft.graph.user', id: m.id, displayName: m.displayName }
        : null;
    }
    return view;
  }

  private findUser(key: string): SimUser {
    const u = this.tenant.user(key);
    if (!u)
      throw directoryError(
        404,
        'Request_ResourceNotFound',
        `Resource '${key}' does not exist or one of its queried reference-property objects are not present.`,
      );
    return u;
  }

  private getUser(ctx: RouteContext): SimResponse {
    const u = this.findUser(ctx.params.user ?? '');
    const expandManager = (ctx.req.query.get('$expand') ?? '').toLowerCase().startsWith('manager');
    return {
      status: 200,
      body: {
        '@odata.context': `${this.graphUrl}/v1.0/$metadata#users/$entity`,
        ...this.userWithExpand(u, ctx.req.query.get('$select'), expandManager),
      },
    };
  }

  private getManager(ctx: RouteContext): SimResponse {
    const u = this.findUser(ctx.params.user ?? '');
    const m = u.managerId ? this.tenant.users.get(u.managerId) : undefined;
    if (!m)
      throw directoryError(
        404,
        'Request_ResourceNotFound',
        `Resource 'manager' does not exist or one of its queried reference-property objects are not present.`,
      );
    return {
      status: 200,
      body: {
        '@odata.type': '#microsoft.graph.user',
        ...select(userView(m), ctx.req.query.get('$select'), userProperties, defaultUserProperties, 'user'),
      },
    };
  }

  private userPhoto(ctx: RouteContext, value: boolean): SimResponse {
    const u = this.findUser(ctx.params.user ?? '');
    if (!u.photo)
      throw new GraphFault(
        404,
        'ImageNotFound',
        "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown.",
      );
    if (value) return { status: 200, headers: { 'content-type': u.photo.contentType }, body: u.photo.bytes };
    return {
      status: 200,
      body: {
        '@odata.mediaContentType': u.photo.contentType,
        '@odata.mediaEtag': `W/"${hashBytes(u.photo.bytes)}"`,
        id: '240X240',
        height: 240,
        width: 240,
      },
    };
  }

  private getGroup(ctx: RouteContext): SimResponse {
    const g = this.tenant.groups.get(ctx.params.group ?? '');
    if (!g)
      throw directoryError(
        404,
        'Request_ResourceNotFound',
        `Resource '${ctx.params.group}' does not exist or one of its queried reference-property objects are not present.`,
      );
    return {
      status: 200,
      // hideFromAddressLists only here (GET /groups/{id} with $select), never on list or delta, as
      // Graph documents: https://learn.microsoft.com/en-us/answers/a/1286570
      body: select(
        { ...groupView(g), hideFromAddressLists: g.hideFromAddressLists },
        ctx.req.query.get('$select'),
        [...groupProperties, 'hideFromAddressLists'],
        groupProperties,
        'group',
      ),
    };
  }

  private directoryObjectView(id: string, selected: string | null): Record<string, unknown> | undefined {
    const u = this.tenant.users.get(id);
    if (u)
      return {
        '@odata.type': '#microsoft.graph.user',
        ...select(userView(u), selected, userProperties, defaultUserProperties, 'user'),
      };
    const g = this.tenant.groups.get(id);
    if (g)
      return {
        '@odata.type': '#microsoft.graph.group',
        ...select(
          groupView(g),
          selected && filterKnown(selected, groupProperties),
          groupProperties,
          groupProperties,
          'group',
        ),
      };
    const c = this.tenant.orgContacts.get(id);
    if (c)
      return {
        '@odata.type': '#microsoft.graph.orgContact',
        ...select(
          orgContactView(c),
          selected && filterKnown(selected, orgContactProperties),
          orgContactProperties,
          orgContactProperties,
          'orgContact',
        ),
      };
    return undefined;
  }

  private groupMembers(
    ctx: RouteContext,
    kind: 'members' | 'transitiveMembers',
    cast: 'user' | 'group' | 'orgContact' | undefined,
  ): SimResponse {
    const g = this.tenant.groups.get(ctx.params.group ?? '');
    if (!g)
      throw directoryError(
        404,
        'Request_ResourceNotFound',
        `Resource '${ctx.params.group}' does not exist or one of its queried reference-property objects are not present.`,
      );
    let ids = kind === 'members' ? [...g.members] : this.tenant.transitiveMembers(g.id);
    if (cast === 'user') ids = ids.filter((id) => this.tenant.users.has(id));
    if (cast === 'group') ids = ids.filter((id) => this.tenant.groups.has(id));
    if (cast === 'orgContact') ids = ids.filter((id) => this.tenant.orgContacts.has(id));
    const selected = ctx.req.query.get('$select');
    const size = this.pageSize(ctx.req, 100, 999);
    return this.page(
      ctx,
      ids,
      size,
      (id) => this.directoryObjectView(id, selected) ?? { id },
      'directoryObjects',
    );
  }

  private listDirectory(ctx: RouteContext, kind: 'group' | 'orgContact'): SimResponse {
    const raw = ctx.req.query.get('$filter');
    const known = kind === 'group' ? groupProperties : orgContactProperties;
    const filter = raw ? parseFilter(raw) : undefined;
    const size = this.pageSize(ctx.req, 100, 999);
    const items =
      kind === 'group'
        ? [...this.tenant.groups.values()].map(groupView)
        : [...this.tenant.orgContacts.values()].map(orgContactView);
    const matching = filter ? items.filter((v) => evaluateFilter(filter, (p) => resolvePath(v, p))) : items;
    const selected = ctx.req.query.get('$select');
    return this.page(
      ctx,
      matching,
      size,
      (v) => select(v, selected, known, known, kind),
      kind === 'group' ? 'groups' : 'contacts',
    );
  }

  /**
   * /users/delta, /groups/delta, /contacts/delta. The first round pages through every object; its last
   * page carries a deltaLink. Later rounds return objects changed since: new ones with every selected
   * property, changed ones with the id and only the changed selected properties, removed ones with
   * @removed. Tokens older than the configured age answer 400 syncStateNotFound.
   */
  private directoryDelta(ctx: RouteContext, kind: DirectoryKind): SimResponse {
    const q = ctx.req.query;
    const known =
      kind === 'user' ? userProperties : kind === 'group' ? groupProperties : orgContactProperties;
    const typeName = kind;
    const size = this.pageSize(ctx.req, 100, 999);
    const deltaToken = q.get('$deltatoken') ?? q.get('$deltaToken');
    const skipToken = q.get('$skiptoken');
    const collection = kind === 'user' ? 'users' : kind === 'group' ? 'groups' : 'contacts';
    if (q.get('$expand') || q.get('$orderby') || q.get('$search') || q.get('$count')) {
      throw badRequest(
        `The following query options are not supported with delta on '${collection}': $expand, $orderby, $search, $count.`,
        'Request_UnsupportedQuery',
      );
    }
    let state: DirectoryDeltaState;
    if (skipToken) {
      state = decodeToken<DirectoryDeltaState>(skipToken);
    } else if (deltaToken) {
      if (deltaToken === 'latest') {
        const s = this.newDirectoryState(ctx, kind, known, typeName);
        const tokenState: DirectoryDeltaState = { ...s, since: this.tenant.directorySeq, issued: this.now() };
        return {
          status: 200,
          body: {
            '@odata.context': `${this.graphUrl}/v1.0/$metadata#${collection}`,
            value: [],
            '@odata.deltaLink': this.nextLink(ctx.req, encodeToken(tokenState), '$deltatoken'),
          },
        };
      }
      const previous = decodeToken<DirectoryDeltaState>(deltaToken);
      if (previous.kind !== kind) throw badRequest('Invalid delta token.', 'Request_BadRequest');
      if (
        this.now() - previous.issued > this.options.directoryDeltaTokenMaxAgeMs ||
        previous.issued < this.invalidBefore
      ) {
        throw new GraphFault(
          400,
          'syncStateNotFound',
          'The specified sync state could not be found. Please perform a full sync. (Token expired.)',
        );
      }
      state = { ...previous, offset: 0, upTo: this.tenant.directorySeq };
    } else {
      state = {
        ...this.newDirectoryState(ctx, kind, known, typeName),
        since: -1,
        offset: 0,
        upTo: this.tenant.directorySeq,
        issued: this.now(),
      };
    }
    const selected = state.select;
    const ids = state.ids ? new Set(state.ids) : undefined;
    let items: (() => Record<string, unknown>)[];
    if (state.since < 0) {
      const all =
        kind === 'user'
          ? [...this.tenant.users.keys()]
          : kind === 'group'
            ? [...this.tenant.groups.keys()]
            : [...this.tenant.orgContacts.keys()];
      items = all
        .filter((id) => !ids || ids.has(id))
        .map((id) => () => this.deltaView(kind, id, selected, undefined, undefined));
    } else {
      const changes = this.tenant.directoryChanges.filter(
        (c) => c.kind === kind && c.seq > state.since && c.seq <= state.upTo && (!ids || ids.has(c.id)),
      );
      const byId = new Map<
        string,
        { created: boolean; deleted: boolean; props: Set<string>; added: Set<string>; removed: Set<string> }
      >();
      for (const c of changes) {
        const e = byId.get(c.id) ?? {
          created: false,
          deleted: false,
          props: new Set<string>(),
          added: new Set<string>(),
          removed: new Set<string>(),
        };
        if (c.op === 'delete') e.deleted = true;
        else if (!c.properties) {
          e.created = true;
          e.deleted = false;
        } else c.properties.forEach((p) => e.props.add(p));
        c.membersAdded?.forEach((m) => (e.removed.delete(m), e.added.add(m)));
        c.membersRemoved?.forEach((m) => (e.added.delete(m), e.removed.add(m)));
        byId.set(c.id, e);
      }
      items = [];
      for (const [id, e] of byId) {
        const exists =
          kind === 'user'
            ? this.tenant.users.has(id)
            : kind === 'group'
              ? this.tenant.groups.has(id)
              : this.tenant.orgContacts.has(id);
        if (e.deleted && !exists) {
          items.push(() => ({
            '@odata.type': `#microsoft.graph.${kind}`,
            id,
            '@removed': { reason: 'changed' },
          }));
          continue;
        }
        if (!exists) continue;
        if (e.created) {
          items.push(() => this.deltaView(kind, id, selected, undefined, undefined));
          continue;
        }
        const changedSelected = selected.filter((p) => e.props.has(p));
        const membersChanged = selected.includes('members') && (e.added.size > 0 || e.removed.size > 0);
        if (changedSelected.length === 0 && !membersChanged) continue;
        items.push(() =>
          this.deltaView(
            kind,
            id,
            membersChanged ? [...changedSelected, 'members'] : changedSelected,
            membersChanged ? e : undefined,
            true,
          ),
        );
      }
    }
    // Only the page's objects are built: a first round over 50,000 users stays linear.
    const slice = items.slice(state.offset, state.offset + size).map((build) => build());
    const body: Record<string, unknown> = {
      '@odata.context': `${this.graphUrl}/v1.0/$metadata#${collection}`,
      value: slice,
    };
    if (state.offset + size < items.length) {
      body['@odata.nextLink'] = this.nextLink(
        ctx.req,
        encodeToken({ ...state, offset: state.offset + size }),
      );
    } else {
      const next: DirectoryDeltaState = { ...state, since: state.upTo, offset: 0, issued: this.now() };
      body['@odata.deltaLink'] = this.nextLink(ctx.req, encodeToken(next), '$deltatoken');
    }
    return { status: 200, body };
  }

  /** Delta tokens issued before this instant are rejected (tests use it to expire tokens). */
  invalidBefore = 0;

  private newDirectoryState(
    ctx: RouteContext,
    kind: DirectoryKind,
    known: readonly string[],
    typeName: string,
  ): DirectoryDeltaState {
    const rawSelect = ctx.req.query.get('$select');
    const selected = rawSelect
      ? selectNames(rawSelect, known, typeName)
      : kind === 'user'
        ? defaultUserProperties
        : [...known];
    let ids: string[] | undefined;
    const rawFilter = ctx.req.query.get('$filter');
    if (rawFilter) {
      const node = parseFilter(rawFilter);
      const uses = filterUses(node);
      if (uses.some((u) => u.path !== 'id' || u.op !== 'eq')) {
        throw badRequest(
          `Unsupported or invalid query filter clause specified for property '${uses.find((u) => u.path !== 'id')?.path ?? 'id'}' of resource '${typeName}'. Only 'id eq' is supported with delta.`,
          'Request_UnsupportedQuery',
        );
      }
      ids = collectIds(node);
      if (ids.length > 50)
        throw badRequest(
          'Too many ids in the filter: at most 50 are supported with delta.',
          'Request_UnsupportedQuery',
        );
    }
    return { kind, select: selected, ...(ids ? { ids } : {}), since: -1, offset: 0, upTo: 0, issued: 0 };
  }

  private deltaView(
    kind: DirectoryKind,
    id: string,
    selected: string[],
    members: { added: Set<string>; removed: Set<string> } | undefined,
    partial: boolean | undefined,
  ): Record<string, unknown> {
    const plain = selected.filter((p) => p !== 'manager' && p !== 'members');
    let view: Record<string, unknown>;
    if (kind === 'user') {
      const u = this.tenant.users.get(id)!;
      view = select(userView(u), plain.join(','), userProperties, defaultUserProperties, 'user');
      if (selected.includes('manager')) {
        view['manager@delta'] = u.managerId
          ? [{ '@odata.type': '#microsoft.graph.user', id: u.managerId }]
          : partial
            ? [
                {
                  '@odata.type': '#microsoft.graph.user',
                  id: '00000000-0000-0000-0000-000000000000',
                  '@removed': { reason: 'deleted' },
                },
              ]
            : [];
      }
    } else if (kind === 'group') {
      const g = this.tenant.groups.get(id)!;
      view = select(groupView(g), plain.join(','), groupProperties, groupProperties, 'group');
      if (selected.includes('members')) {
        const typeOf = (m: string): string =>
          this.tenant.users.has(m) ? 'user' : this.tenant.groups.has(m) ? 'group' : 'orgContact';
        view['members@delta'] = members
          ? [
              ...[...members.added].map((m) => ({ '@odata.type': `#microsoft.graph.${typeOf(m)}`, id: m })),
              ...[...members.removed].map((m) => ({
                '@odata.type': `#microsoft.graph.${typeOf(m)}`,
                id: m,
                '@removed': { reason: 'deleted' },
              })),
            ]
          : [...g.members].map((m) => ({ '@odata.type': `#microsoft.graph.${typeOf(m)}`, id: m }));
      }
    } else {
      view = select(
        orgContactView(this.tenant.orgContacts.get(id)!),
        plain.join(','),
        orgContactProperties,
        orgContactProperties,
        'orgContact',
      );
    }
    return { '@odata.type': `#microsoft.graph.${kind}`, ...view };
  }

  // ---------- Outlook ----------

  private folder(ctx: RouteContext): NonNullable<ReturnType<Mailbox['folder']>> {
    const key = ctx.params.folder ?? '';
    const mailbox = ctx.mailbox!;
    const f =
      key.toLowerCase() === 'contacts' ? mailbox.folders.get(mailbox.contactsFolderId) : mailbox.folder(key);
    if (!f) throw notFoundItem();
    return f;
  }

  private listFolders(ctx: RouteContext, parentId: string): SimResponse {
    const mailbox = ctx.mailbox!;
    const raw = ctx.req.query.get('$filter');
    let folders = [...mailbox.folders.values()].filter((f) => f.parentFolderId === parentId);
    if (raw) {
      const node = parseFilter(raw);
      for (const use of filterUses(node)) {
        if (use.path !== 'displayName' || !['eq', 'startswith', 'ne'].includes(use.op)) {
          throw badRequest(
            `The property '${use.path}' does not support filtering.`,
            'ErrorInvalidUrlQueryFilter',
          );
        }
      }
      folders = folders.filter((f) => evaluateFilter(node, (p) => resolvePath(f, p)));
    }
    return this.outlookPage(
      ctx,
      folders,
      (f) => folderView(f, ctx.immutable, mailbox),
      `users('${ctx.user!.id}')/contactFolders`,
    );
  }

  private outlookPage<T>(
    ctx: RouteContext,
    items: T[],
    view: (t: T) => unknown,
    context: string,
  ): SimResponse {
    const top = ctx.req.query.get('$top');
    let size = 10;
    if (top !== null) {
      const n = Number(top);
      if (!Number.isInteger(n) || n < 0)
        throw badRequest(`The value '${top}' of $top is not valid.`, 'ErrorInvalidUrlQuery');
      size = Math.min(n, 1000);
    } else {
      const prefer = /odata\.maxpagesize=(\d+)/i.exec(ctx.req.headers.prefer ?? '')?.[1];
      if (prefer) size = Math.min(1000, Math.max(1, Number(prefer)));
    }
    const skip = Number(ctx.req.query.get('$skip') ?? '0');
    const slice = items.slice(skip, skip + size);
    const body: Record<string, unknown> = {
      '@odata.context': `${this.graphUrl}/v1.0/$metadata#${context}`,
      value: slice.map(view),
    };
    if (skip + size < items.length && size > 0) {
      const q = new URLSearchParams(ctx.req.query);
      q.set('$top', String(size));
      q.set('$skip', String(skip + size));
      body['@odata.nextLink'] = `${this.graphUrl}/v1.0${ctx.req.path}?${q.toString().replace(/\+/g, '%20')}`;
    }
    return { status: 200, body };
  }

  private createFolder(ctx: RouteContext, parentId: string): SimResponse {
    const body = ctx.req.body as { displayName?: unknown; parentFolderId?: unknown } | undefined;
    if (!body || typeof body !== 'object') throw badRequest('Empty Payload. JSON content expected.');
    for (const k of Object.keys(body)) {
      if (!['displayName', 'parentFolderId'].includes(k) && !k.includes('@')) {
        throw badRequest(
          `The property '${k}' does not exist on type 'microsoft.graph.contactFolder'. Make sure to only use property names that are defined by the type or mark the type as open type.`,
          'RequestBodyRead',
        );
      }
    }
    if (typeof body.displayName !== 'string' || body.displayName.trim() === '')
      throw badRequest('The folder name cannot be empty.', 'ErrorInvalidFolderName');
    const mailbox = ctx.mailbox!;
    if (mailbox.folderByName(body.displayName, parentId))
      throw new GraphFault(409, 'ErrorFolderExists', 'A folder with the specified name already exists.');
    const folder = mailbox.createFolder(body.displayName, parentId);
    return { status: 201, body: folderView(folder, ctx.immutable, mailbox) };
  }

  private updateFolder(ctx: RouteContext): SimResponse {
    const f = this.folder(ctx);
    const body = ctx.req.body as { displayName?: unknown } | undefined;
    if (typeof body?.displayName === 'string') {
      // Exchange keeps folder names unique under one parent (as on create): 409 ErrorFolderExists.
      const other = ctx.mailbox!.folderByName(body.displayName, f.parentFolderId);
      if (other && other.id !== f.id)
        throw new GraphFault(409, 'ErrorFolderExists', 'A folder with the specified name already exists.');
      f.displayName = body.displayName;
    }
    return { status: 200, body: folderView(f, ctx.immutable, ctx.mailbox!) };
  }

  private contact(ctx: RouteContext, folderId: string | undefined): SimContact {
    const c = ctx.mailbox!.contact(ctx.params.contact ?? '');
    if (!c || (folderId !== undefined && c.folderId !== folderId)) throw notFoundItem();
    return c;
  }

  private contactJson(
    ctx: RouteContext,
    c: SimContact,
    expandFilter: FilterNode | null | undefined,
  ): Record<string, unknown> {
    const full = contactView(c, ctx.mailbox!, ctx.immutable);
    const sel = ctx.req.query.get('$select');
    const out: Record<string, unknown> = sel
      ? {
          '@odata.etag': full['@odata.etag'],
          ...select(full, sel, contactProperties, contactProperties, 'contact'),
        }
      : full;
    if (expandFilter !== undefined) {
      const props = [...c.extendedProperties.values()].filter(
        (p) => expandFilter === null || evaluateFilter(expandFilter, (path) => resolvePath(p, path)),
      );
      out.singleValueExtendedProperties = props.map((p) => ({ id: p.id, value: p.value }));
    }
    return out;
  }

  /** $expand=singleValueExtendedProperties($filter=id eq '...'): undefined when not expanded, null for all. */
  private expandFilter(req: SimRequest): FilterNode | null | undefined {
    const raw = req.query.get('$expand');
    if (!raw) return undefined;
    let result: FilterNode | null | undefined;
    for (const e of parseExpand(raw)) {
      if (e.name.toLowerCase() !== 'singlevalueextendedproperties') {
        throw badRequest(
          `Could not find a property named '${e.name}' on type 'microsoft.graph.contact'.`,
          'ErrorInvalidUrlQuery',
        );
      }
      result = e.filter ? parseFilter(e.filter) : null;
    }
    return result;
  }

  private listContacts(ctx: RouteContext, folderId: string): SimResponse {
    const raw = ctx.req.query.get('$filter');
    let contacts = ctx.mailbox!.contactsIn(folderId);
    if (raw) {
      const node = parseFilter(raw);
      const allowed = new Set([
        'displayName',
        'givenName',
        'surname',
        'companyName',
        'emailAddresses',
        'categories',
        'singleValueExtendedProperties',
        'lastModifiedDateTime',
        'createdDateTime',
      ]);
      for (const use of filterUses(node)) {
        const prop = use.path.split('/')[0] ?? '';
        if (!allowed.has(prop))
          throw badRequest(
            `The property '${prop}' does not support filtering.`,
            'ErrorInvalidUrlQueryFilter',
          );
      }
      contacts = contacts.filter((c) =>
        evaluateFilter(node, (p) => {
          if (p[0] === 'singleValueExtendedProperties') return [...c.extendedProperties.values()];
          return resolvePath(contactView(c, ctx.mailbox!, ctx.immutable), p);
        }),
      );
    }
    const expand = this.expandFilter(ctx.req);
    return this.outlookPage(
      ctx,
      contacts,
      (c) => this.contactJson(ctx, c, expand),
      `users('${ctx.user!.id}')/contacts`,
    );
  }

  private getContact(ctx: RouteContext, folderId: string | undefined): SimResponse {
    const c = this.contact(ctx, folderId);
    return { status: 200, body: this.contactJson(ctx, c, this.expandFilter(ctx.req)) };
  }

  private createContact(ctx: RouteContext, folderId: string): SimResponse {
    const write = parseContactBody(ctx.req.body);
    const c = ctx.mailbox!.createContact(folderId, write.data, write.extended, new Date(this.now()));
    // Graph does not echo extended properties in the create response.
    return { status: 201, body: contactView(c, ctx.mailbox!, ctx.immutable) };
  }

  private updateContact(ctx: RouteContext, folderId: string | undefined): SimResponse {
    const c = this.contact(ctx, folderId);
    checkIfMatch(ctx, c);
    const write = parseContactBody(ctx.req.body);
    ctx.mailbox!.updateContact(c, write.data, write.extended, new Date(this.now()));
    return { status: 200, body: contactView(c, ctx.mailbox!, ctx.immutable) };
  }

  private contactPhoto(ctx: RouteContext, value: boolean): SimResponse {
    const c = this.contact(ctx, undefined);
    if (!c.photo) throw new GraphFault(404, 'ErrorItemNotFound', "The photo wasn't found.");
    if (value) return { status: 200, headers: { 'content-type': c.photo.contentType }, body: c.photo.bytes };
    return {
      status: 200,
      body: {
        '@odata.mediaContentType': c.photo.contentType,
        '@odata.mediaEtag': `W/"${hashBytes(c.photo.bytes)}"`,
        id: '96X96',
        height: 96,
        width: 96,
      },
    };
  }

  private putContactPhoto(ctx: RouteContext): SimResponse {
    const c = this.contact(ctx, undefined);
    const bytes = ctx.req.rawBody;
    const type = ctx.req.headers['content-type'] ?? '';
    if (!/^image\//i.test(type))
      throw badRequest('The photo content type must be an image type.', 'ErrorInvalidImageContentType');
    if (bytes.length === 0) throw badRequest('The photo cannot be empty.', 'ErrorInvalidRequest');
    if (bytes.length >= maxRequestBytes)
      throw new GraphFault(413, 'ErrorRequestEntityTooLarge', 'The photo exceeds the maximum size of 4 MB.');
    c.photo = { contentType: type, bytes: Buffer.from(bytes) };
    ctx.mailbox!.updateContact(c, {}, [], new Date(this.now()));
    return { status: 200 };
  }

  private deleteContactPhoto(ctx: RouteContext): SimResponse {
    const c = this.contact(ctx, undefined);
    c.photo = null;
    ctx.mailbox!.updateContact(c, {}, [], new Date(this.now()));
    return { status: 204 };
  }

  /**
   * A folder's contacts delta: first round pages through the folder, later rounds return contacts
   * created or changed since (full objects) and deleted ones with @removed, but only those the
   * previous rounds had handed out (Exchange's incremental sync). Only $select is allowed.
   */
  private contactsDelta(ctx: RouteContext, folderId: string): SimResponse {
    const q = ctx.req.query;
    const unsupported = ['$filter', '$expand', '$orderby', '$search', '$top'].filter((k) => q.has(k));
    if (unsupported.length > 0) {
      throw badRequest(
        `The following parameters are not supported with change tracking over the 'Contacts' resource: '${unsupported.join(', ')}'.`,
        'ErrorInvalidUrlQuery',
      );
    }
    const mailbox = ctx.mailbox!;
    const prefer = /odata\.maxpagesize=(\d+)/i.exec(ctx.req.headers.prefer ?? '')?.[1];
    const size = prefer ? Math.min(1000, Math.max(1, Number(prefer))) : 10;
    const deltaToken = q.get('$deltatoken') ?? q.get('$deltaToken');
    const skipToken = q.get('$skiptoken');
    let state: FolderDeltaState;
    if (skipToken) {
      state = decodeToken<FolderDeltaState>(skipToken);
      if (state.f !== folderId)
        throw badRequest('The sync state does not belong to this folder.', 'ErrorInvalidSyncStateData');
    } else if (deltaToken) {
      const prev = decodeToken<FolderDeltaState>(deltaToken);
      if (prev.f !== folderId || prev.m !== mailbox.userId)
        throw badRequest('The sync state does not belong to this folder.', 'ErrorInvalidSyncStateData');
      if (this.now() - prev.t > this.options.outlookDeltaTokenMaxAgeMs || prev.t < this.invalidBefore) {
        throw new GraphFault(
          410,
          'SyncStateNotFound',
          'The sync state was not found or has expired. Please start a new sync.',
        );
      }
      state = { ...prev, o: 0, u: mailbox.seq };
    } else {
      state = { f: folderId, m: mailbox.userId, s: -1, o: 0, u: mailbox.seq, t: this.now() };
    }
    const sel = q.get('$select');
    const view = (c: SimContact): Record<string, unknown> => {
      const full = contactView(c, mailbox, ctx.immutable);
      return {
        '@odata.type': '#microsoft.graph.contact',
        ...(sel
          ? {
              '@odata.etag': full['@odata.etag'],
              ...select(full, sel, contactProperties, contactProperties, 'contact'),
            }
          : full),
      };
    };
    // Views are built for the page only, so paging through a large folder stays linear.
    let items: (() => Record<string, unknown>)[];
    if (state.s < 0) {
      items = mailbox.contactsIn(folderId).map((c) => () => view(c));
    } else {
      const latest = new Map<string, FolderChange>();
      // Exchange's sync state knows only the items it handed out: those in the folder at the last
      // round. One created after it and deleted before this round is not reported at all.
      const handedOut = new Set<string>();
      for (const ch of mailbox.changes) {
        if (ch.folderId !== folderId || ch.seq > state.u) continue;
        if (ch.seq <= state.s) handedOut.add(ch.contactId);
        else latest.set(ch.contactId, ch);
      }
      items = [];
      for (const [id, ch] of latest) {
        const c = mailbox.contacts.get(id);
        if (c && c.folderId === folderId) items.push(() => view(c));
        else if (handedOut.has(id))
          items.push(() => ({
            '@odata.type': '#microsoft.graph.contact',
            id: ctx.immutable ? ch.immutableId : id,
            '@removed': { reason: 'deleted' },
          }));
      }
    }
    const slice = items.slice(state.o, state.o + size).map((build) => build());
    const body: Record<string, unknown> = {
      '@odata.context': `${this.graphUrl}/v1.0/$metadata#Collection(contact)`,
      value: slice,
    };
    if (state.o + size < items.length)
      body['@odata.nextLink'] = this.nextLink(ctx.req, encodeToken({ ...state, o: state.o + size }));
    else
      body['@odata.deltaLink'] = this.nextLink(
        ctx.req,
        encodeToken({ ...state, s: state.u, o: 0, t: this.now() }),
        '$deltatoken',
      );
    return {
      status: 200,
      body,
      headers: prefer ? { 'preference-applied': `odata.maxpagesize=${size}` } : {},
    };
  }

  private sendMail(ctx: RouteContext): SimResponse {
    if (/^text\/plain/i.test(ctx.req.headers['content-type'] ?? '')) {
      // MIME, base64-encoded, as Graph's sendMail accepts it.
      const mime = Buffer.from(ctx.req.rawBody.toString('utf8'), 'base64').toString('utf8');
      if (!/^To:/im.test(mime))
        throw badRequest(
          "At least one recipient is not valid., A message can't be sent because it contains no recipients.",
          'ErrorInvalidRecipients',
        );
      if (!/^(Subject|From):/im.test(mime))
        throw badRequest('Invalid base64 string for MIME content.', 'ErrorMimeContentInvalidBase64String');
      ctx.mailbox!.sentMail.push({
        from: ctx.user!.userPrincipalName,
        at: new Date(this.now()).toISOString(),
        message: { mime },
        saveToSentItems: true,
      });
      return { status: 202 };
    }
    const body = ctx.req.body as { message?: Record<string, unknown>; saveToSentItems?: unknown } | undefined;
    if (!body?.message || typeof body.message !== 'object')
      throw badRequest('Empty Payload. JSON content expected.', 'ErrorInvalidRequest');
    const to = body.message.toRecipients;
    const valid =
      Array.isArray(to) &&
      to.length > 0 &&
      to.every(
        (r) =>
          typeof (r as { emailAddress?: { address?: unknown } })?.emailAddress?.address === 'string' &&
          /@/.test((r as { emailAddress: { address: string } }).emailAddress.address),
      );
    if (!valid)
      throw badRequest(
        "At least one recipient is not valid., A message can't be sent because it contains no recipients.",
        'ErrorInvalidRecipients',
      );
    ctx.mailbox!.sentMail.push({
      from: ctx.user!.userPrincipalName,
      at: new Date(this.now()).toISOString(),
      message: body.message,
      saveToSentItems: body.saveToSentItems !== false,
    });
    return { status: 202 };
  }
}

interface DirectoryDeltaState {
  kind: DirectoryKind;
  select: string[];
  ids?: string[];
  /** Changes after this sequence number are reported; -1 for the initial round. */
  since: number;
  /** Upper bound of this round (fixed while paging). */
  upTo: number;
  offset: number;
  issued: number;
}

interface FolderDeltaState {
  f: string;
  m: string;
  s: number;
  u: number;
  o: number;
  t: number;
}

interface BatchItem {
  id: string;
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: unknown;
  dependsOn?: string[];
}

const maxRequestBytes = 4 * 1024 * 1024;

function parseBatch(body: unknown): BatchItem[] {
  const requests = (body as { requests?: unknown } | undefined)?.requests;
  if (!Array.isArray(requests)) throw new Error('Invalid batch payload format.');
  if (requests.length === 0)
    throw new Error('Invalid batch payload format. The batch must contain at least one request.');
  if (requests.length > 20) throw new Error('Limit of 20 requests per batch exceeded.');
  const ids = new Set<string>();
  const items = requests.map((r: unknown, i) => {
    const item = r as Partial<BatchItem>;
    if (typeof item?.id !== 'string' || item.id === '')
      throw new Error(`Invalid batch payload format. Request at index ${i} has no id.`);
    // Batch ids are case-insensitive.
    if ([...ids].some((x) => x.toLowerCase() === item.id!.toLowerCase()))
      throw new Error(`Request id '${item.id}' is duplicated in the batch.`);
    ids.add(item.id);
    if (typeof item.method !== 'string' || !/^(GET|POST|PATCH|PUT|DELETE)$/i.test(item.method))
      throw new Error(`Invalid method for request '${item.id}'.`);
    if (typeof item.url !== 'string' || /^https?:/i.test(item.url))
      throw new Error(`Invalid URL for request '${item.id}': it must be relative.`);
    if (
      item.body !== undefined &&
      !Object.keys(item.headers ?? {}).some((h) => h.toLowerCase() === 'content-type')
    ) {
      throw new Error(`Request '${item.id}' has a body but no Content-Type header.`);
    }
    return item as BatchItem;
  });
  for (const item of items) {
    for (const d of item.dependsOn ?? []) {
      if (!ids.has(d) || d === item.id)
        throw new Error(`Request '${item.id}' depends on an unknown request '${d}'.`);
    }
  }
  // Graph runs a batch either fully in parallel or fully in sequence; a mix is refused.
  const dependent = items.filter((it) => (it.dependsOn ?? []).length > 0).length;
  if (dependent > 0 && dependent < items.length - 1)
    throw new Error('Batch should be either fully sequential or fully parallel.');
  // Dependencies must point backwards, so the graph has no cycle.
  const order = new Map(items.map((it, i) => [it.id, i]));
  for (const item of items) {
    for (const d of item.dependsOn ?? [])
      if ((order.get(d) ?? 0) >= (order.get(item.id) ?? 0))
        throw new Error(`Request '${item.id}' depends on a request that comes after it.`);
  }
  return items;
}

function normalisePath(path: string): string {
  const segments = path
    .replace(/^\/v1\.0/i, '')
    .split('/')
    .filter(Boolean)
    .map((s) => decodeURIComponent(s))
    .map((s) => (/^(microsoft\.graph\.)?delta(\(\))?$/i.test(s) ? 'delta' : s))
    .map((s) => s.replace(/^graph\./i, 'microsoft.graph.'));
  return '/' + segments.join('/');
}

function collectIds(node: FilterNode): string[] {
  switch (node.type) {
    case 'or':
    case 'and':
      return [...collectIds(node.left), ...collectIds(node.right)];
    case 'compare':
      return [String(node.value)];
    case 'in':
      return node.values.map(String);
    default:
      return [];
  }
}

function filterKnown(selected: string, known: readonly string[]): string {
  return (
    selected
      .split(',')
      .filter((s) => known.some((k) => k.toLowerCase() === s.trim().toLowerCase()))
      .join(',') || 'id'
  );
}

export function encodeToken(state: unknown): string {
  return Buffer.from(JSON.stringify(state)).toString('base64url');
}

export function decodeToken<T>(token: string): T {
  try {
    return JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as T;
  } catch {
    throw badRequest('The token is invalid.', 'Request_BadRequest');
  }
}

function hashBytes(bytes: Buffer): string {
  let h = 0;
  for (const b of bytes) h = (Math.imul(h, 31) + b) | 0;
  return (h >>> 0).toString(16);
}

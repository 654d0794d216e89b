// Entra ID app registrations as Microsoft Graph serves them to an admin: /applications,
// /servicePrincipals (Microsoft Graph's own included, with its appRoles) and app role assignments
// (admin consent to application permissions). Shapes follow Microsoft's OpenAPI (Applications.yml);
// who may do what follows the Graph reference pages cited in README.md ("App registrations").
import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import type { IdentityProvider, SimApp } from './identity';
import { keyCredentialView } from './applications';
import { evaluateFilter, parseFilter, resolvePath } from './odata';
import { GraphFault } from './protocol';

/** Microsoft Graph's application id: the same in every tenant. */
export const graphAppId = '00000003-0000-0000-c000-000000000000';

/** Built-in Entra roles by name: their template ids (the `wids` claim of a user's token). */
export const directoryRoles = {
  'Global Administrator': '62e90394-69f5-4237-9190-012177145e10',
  'Privileged Role Administrator': 'e8611ab8-c189-46e8-94e1-60213ab1f814',
  'Cloud Application Administrator': '158c047a-c907-4556-b7ef-446551a6b5f7',
  'Application Administrator': '9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3',
} as const;
export type DirectoryRoleName = keyof typeof directoryRoles;

/** Application permissions Microsoft Graph's service principal offers here (a subset of the real list). */
const graphAppRoleValues = [
  'User.Read.All',
  'GroupMember.Read.All',
  'Group.Read.All',
  'OrgContact.Read.All',
  'Contacts.Read',
  'Contacts.ReadWrite',
  'Mail.Send',
  'MailboxSettings.Read',
  'ProfilePhoto.Read.All',
  'Directory.Read.All',
  'Application.Read.All',
  'Application.ReadWrite.All',
  'AppRoleAssignment.ReadWrite.All',
];

/** The caller as a Graph route sees it: an app (roles) or a user through a public client (scopes). */
export interface DirectoryCaller {
  appId: string;
  roles: string[];
  scopes?: string[];
  user?: { id: string; wids: string[] };
}

interface AppRole {
  id: string;
  value: string;
  displayName: string;
  description: string;
  allowedMemberTypes: string[];
  isEnabled: boolean;
  origin: string;
}

interface ServicePrincipal {
  id: string;
  appId: string;
  displayName: string;
  appRoles: AppRole[];
  createdDateTime: string;
}

const denied = (): GraphFault =>
  new GraphFault(403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
const badRequest = (message: string): GraphFault => new GraphFault(400, 'Request_BadRequest', message);
const notFound = (id: string): GraphFault =>
  new GraphFault(
    404,
    'Request_ResourceNotFound',
    `Resource '${id}' does not exist or one of its queried reference-property objects are not present.`,
  );

const readScopes = [
  'Application.Read.All',
  'Application.ReadWrite.All',
  'Directory.Read.All',
  'Directory.ReadWrite.All',
];
const writeScopes = ['Application.ReadWrite.All', 'Directory.ReadWrite.All'];
/** Roles that may update any application (an owner may update its own). */
const appAdminRoles: string[] = [
  directoryRoles['Global Administrator'],
  directoryRoles['Application Administrator'],
  directoryRoles['Cloud Application Administrator'],
];
/** Granting Microsoft Graph's app roles: Privileged Role Administrator is the least privileged role. */
const graphConsentRoles: string[] = [
  directoryRoles['Global Administrator'],
  directoryRoles['Privileged Role Administrator'],
];

export class AppRegistrations {
  readonly graph: ServicePrincipal;
  private readonly grantedAt = new Map<string, string>();

  constructor(
    private readonly identity: IdentityProvider,
    private readonly graphUrl: () => string,
  ) {
    // Role ids are random per simulated tenant: a client must look them up by value, never hard-code them.
    this.graph = {
      id: randomUUID(),
      appId: graphAppId,
      displayName: 'Microsoft Graph',
      createdDateTime: new Date().toISOString(),
      appRoles: graphAppRoleValues.map((value) => ({
        id: randomUUID(),
        value,
        displayName: value,
        description: `Allows the app to use ${value} without a signed-in user.`,
        allowedMemberTypes: ['Application'],
        isEnabled: true,
        origin: 'Application',
      })),
    };
  }

  /** Apps other than Graph have a service principal once servicePrincipalId is set. */
  private principals(): ServicePrincipal[] {
    return [...this.identity.apps.values()]
      .filter((a) => a.servicePrincipalId)
      .map((a) => ({
        id: a.servicePrincipalId!,
        appId: a.clientId,
        displayName: a.displayName,
        appRoles: [],
        createdDateTime: a.createdDateTime,
      }));
  }

  private appOf(sp: ServicePrincipal): SimApp | undefined {
    return [...this.identity.apps.values()].find((a) => a.servicePrincipalId === sp.id);
  }

  private can(caller: DirectoryCaller, scopes: string[], roles: string[] = scopes): boolean {
    return caller.user
      ? (caller.scopes ?? []).some((s) => scopes.includes(s))
      : caller.roles.some((r) => roles.includes(r));
  }

  // ---------- applications ----------

  listApplications(caller: DirectoryCaller, query: URLSearchParams): unknown {
    if (!this.can(caller, readScopes)) throw denied();
    const apps = [...this.identity.apps.values()].filter((a) => a.listed);
    return this.collection(
      'applications',
      this.filtered(
        apps.map((a) => this.applicationView(a)),
        query,
      ),
    );
  }

  getApplication(caller: DirectoryCaller, id: string, query?: URLSearchParams): unknown {
    if (!this.can(caller, readScopes)) throw denied();
    const selected = (query?.get('$select') ?? '').split(',').map((s) => s.trim());
    const app = this.app(id);
    return {
      '@odata.context': `${this.graphUrl()}/v1.0/$metadata#applications/$entity`,
      ...this.applicationView(app),
      ...(selected.includes('keyCredentials')
        ? { keyCredentials: app.certificates.map((c) => keyCredentialView(c, true)) }
        : {}),
    };
  }

  createApplication(caller: DirectoryCaller, body: unknown): unknown {
    if (!this.can(caller, writeScopes)) throw denied();
    const b = asObject(body);
    if (typeof b.displayName !== 'string' || b.displayName.trim() === '')
      throw badRequest("Property 'displayName' is required.");
    const audience = text(b.signInAudience) ?? 'AzureADandPersonalMicrosoftAccount';
    if (
      ![
        'AzureADMyOrg',
        'AzureADMultipleOrgs',
        'AzureADandPersonalMicrosoftAccount',
        'PersonalMicrosoftAccount',
      ].includes(audience)
    )
      throw badRequest(`Invalid value specified for property 'signInAudience' of resource 'Application'.`);
    const app = this.identity.registerApp({
      clientId: randomUUID(),
      displayName: b.displayName,
      servicePrincipalId: null,
      listed: true,
      signInAudience: audience,
      owners: caller.user ? [caller.user.id] : [],
    });
    if (b.requiredResourceAccess !== undefined)
      app.requiredResourceAccess = this.resourceAccess(b.requiredResourceAccess);
    if (b.keyCredentials !== undefined) this.replaceKeys(app, b.keyCredentials);
    return {
      '@odata.context': `${this.graphUrl()}/v1.0/$metadata#applications/$entity`,
      ...this.applicationView(app),
    };
  }

  updateApplication(caller: DirectoryCaller, id: string, body: unknown): void {
    const app = this.app(id);
    if (!this.can(caller, writeScopes)) throw denied();
    if (
      caller.user &&
      !app.owners.includes(caller.user.id) &&
      !caller.user.wids.some((w) => appAdminRoles.includes(w))
    )
      throw denied();
    const b = asObject(body);
    const known = ['displayName', 'requiredResourceAccess', 'keyCredentials', 'signInAudience'];
    const unknown = Object.keys(b).find((k) => !known.includes(k) && !k.startsWith('@'));
    if (unknown)
      throw badRequest(`Property '${unknown}' is not supported by this simulator's application update.`);
    if (typeof b.displayName === 'string') app.displayName = b.displayName;
    if (b.requiredResourceAccess !== undefined)
      app.requiredResourceAccess = this.resourceAccess(b.requiredResourceAccess);
    if (b.keyCredentials !== undefined) this.replaceKeys(app, b.keyCredentials);
  }

  private app(id: string): SimApp {
    const byAppId = /^applications\(appId='([^']*)'\)$/i.exec(id)?.[1];
    const app = [...this.identity.apps.values()].find((a) =>
      byAppId !== undefined ? a.clientId === byAppId : a.objectId === id,
    );
    if (!app) throw notFound(byAppId ?? id);
    return app;
  }

  private resourceAccess(value: unknown): SimApp['requiredResourceAccess'] {
    if (!Array.isArray(value)) throw badRequest("Property 'requiredResourceAccess' must be a collection.");
    return value.map((entry) => {
      const e = asObject(entry);
      if (typeof e.resourceAppId !== 'string' || !Array.isArray(e.resourceAccess))
        throw badRequest('requiredResourceAccess: resourceAppId and resourceAccess are required.');
      return {
        resourceAppId: e.resourceAppId,
        resourceAccess: e.resourceAccess.map((a) => {
          const r = asObject(a);
          if (typeof r.id !== 'string' || (r.type !== 'Role' && r.type !== 'Scope'))
            throw badRequest('resourceAccess: id (GUID) and type (Role or Scope) are required.');
          if (
            e.resourceAppId === graphAppId &&
            r.type === 'Role' &&
            !this.graph.appRoles.some((x) => x.id === r.id)
          )
            throw badRequest(`The app role ${r.id} is not defined on Microsoft Graph.`);
          return { id: r.id, type: r.type };
        }),
      };
    });
  }

  /** keyCredentials replaces the whole collection; every entry carries its public key (key is write-only). */
  private replaceKeys(app: SimApp, value: unknown): void {
    if (!Array.isArray(value)) throw badRequest("Property 'keyCredentials' must be a collection.");
    const certificates = value.map((entry) => {
      const k = asObject(entry);
      if (k.type !== 'AsymmetricX509Cert' || k.usage !== 'Verify')
        throw badRequest('keyCredentials: type AsymmetricX509Cert with usage Verify is required here.');
      if (typeof k.key !== 'string' || k.key === '') throw badRequest('keyCredentials: key is required.');
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(Buffer.from(k.key, 'base64'));
      } catch {
        throw badRequest('keyCredentials: key is not a base64 X.509 certificate.');
      }
      const thumbprint = createHash('sha1').update(cert.raw).digest('hex').toUpperCase();
      const kept = app.certificates.find((c) => c.thumbprint === thumbprint);
      return (
        kept ??
        this.identity.certificateOf(cert, typeof k.displayName === 'string' ? k.displayName : undefined)
      );
    });
    app.certificates = certificates;
  }

  private applicationView(app: SimApp): Record<string, unknown> {
    return {
      id: app.objectId,
      appId: app.clientId,
      displayName: app.displayName,
      signInAudience: app.signInAudience,
      createdDateTime: app.createdDateTime,
      deletedDateTime: null,
      identifierUris: [],
      tags: [],
      requiredResourceAccess: app.requiredResourceAccess,
      keyCredentials: app.certificates.map((c) => keyCredentialView(c)),
      passwordCredentials: [],
    };
  }

  // ---------- service principals ----------

  listServicePrincipals(caller: DirectoryCaller, query: URLSearchParams): unknown {
    if (!this.can(caller, readScopes)) throw denied();
    const all = [this.graph, ...this.principals()].map((p) => this.principalView(p));
    return this.collection('servicePrincipals', this.filtered(all, query));
  }

  createServicePrincipal(caller: DirectoryCaller, body: unknown): unknown {
    if (!this.can(caller, writeScopes)) throw denied();
    const b = asObject(body);
    const app = [...this.identity.apps.values()].find((a) => a.clientId === b.appId);
    if (typeof b.appId !== 'string' || !app)
      throw badRequest(
        `The appId '${String(b.appId)}' of the service principal does not reference a valid application object.`,
      );
    if (app.servicePrincipalId)
      throw new GraphFault(
        409,
        'Request_MultipleObjectsWithSameKeyValue',
        'The service principal cannot be created, updated, or restored because the service principal name is already in use.',
      );
    app.servicePrincipalId = randomUUID();
    const sp = this.principal(app.servicePrincipalId);
    return {
      '@odata.context': `${this.graphUrl()}/v1.0/$metadata#servicePrincipals/$entity`,
      ...this.principalView(sp),
    };
  }

  private principalView(p: ServicePrincipal): Record<string, unknown> {
    return {
      id: p.id,
      appId: p.appId,
      displayName: p.displayName,
      servicePrincipalType: 'Application',
      accountEnabled: true,
      appRoleAssignmentRequired: false,
      appRoles: p.appRoles,
      // No createdDateTime: v1.0's servicePrincipal has none (Applications.yml; openapi/README.md).
      deletedDateTime: null,
    };
  }

  private principal(id: string): ServicePrincipal {
    const p = id === this.graph.id ? this.graph : this.principals().find((x) => x.id === id);
    if (!p) throw notFound(id);
    return p;
  }

  // ---------- app role assignments (application permissions) ----------

  /** What a client service principal holds: its app's Graph roles, as assignments. */
  listAssignments(caller: DirectoryCaller, principalId: string): unknown {
    if (!this.can(caller, readScopes)) throw denied();
    const sp = this.principal(principalId);
    const app = this.appOf(sp);
    const items = app ? [...app.roles].flatMap((value) => this.assignmentView(sp, value)) : [];
    return this.collection(`servicePrincipals('${sp.id}')/appRoleAssignments`, items);
  }

  /** POST …/{resource}/appRoleAssignedTo or …/{client}/appRoleAssignments: admin consent to one permission. */
  grant(caller: DirectoryCaller, pathPrincipal: string, side: 'resource' | 'client', body: unknown): unknown {
    const b = asObject(body);
    const write = ['AppRoleAssignment.ReadWrite.All'];
    const ok = caller.user
      ? (caller.scopes ?? []).some((s) => write.includes(s)) &&
        (caller.scopes ?? []).some((s) => readScopes.includes(s))
      : caller.roles.some((r) => write.includes(r));
    if (!ok) throw denied();
    if (caller.user && !caller.user.wids.some((w) => graphConsentRoles.includes(w))) throw denied();
    const resourceId = side === 'resource' ? pathPrincipal : (text(b.resourceId) ?? '');
    const principalId = side === 'client' ? pathPrincipal : (text(b.principalId) ?? '');
    if (b.resourceId !== undefined && b.resourceId !== resourceId)
      throw badRequest('resourceId does not match the path.');
    if (b.principalId !== undefined && b.principalId !== principalId)
      throw badRequest('principalId does not match the path.');
    const resource = this.principal(resourceId);
    if (resource !== this.graph)
      throw badRequest('Only Microsoft Graph app roles are modelled by this simulator.');
    const role = this.graph.appRoles.find((r) => r.id === b.appRoleId);
    if (!role)
      throw badRequest(
        `Permission entry not found: appRoleId '${String(b.appRoleId)}' is not defined on the resource.`,
      );
    const client = this.principals().find((p) => p.id === principalId);
    const app = client && this.appOf(client);
    if (!client || !app) throw notFound(principalId);
    if (app.roles.has(role.value)) throw badRequest('Permission being assigned already exists on the object');
    app.roles.add(role.value);
    this.grantedAt.set(`${client.id}/${role.value}`, new Date().toISOString());
    return {
      '@odata.context': `${this.graphUrl()}/v1.0/$metadata#servicePrincipals('${pathPrincipal}')/${side === 'resource' ? 'appRoleAssignedTo' : 'appRoleAssignments'}/$entity`,
      ...this.assignmentView(client, role.value)[0],
    };
  }

  private assignmentView(client: ServicePrincipal, value: string): Record<string, unknown>[] {
    const role = this.graph.appRoles.find((r) => r.value === value);
    if (!role) return [];
    return [
      {
        id: createHash('sha256').update(`${client.id}/${role.id}`).digest('base64url').slice(0, 43),
        appRoleId: role.id,
        createdDateTime: this.grantedAt.get(`${client.id}/${value}`) ?? client.createdDateTime,
        deletedDateTime: null,
        principalDisplayName: client.displayName,
        principalId: client.id,
        principalType: 'ServicePrincipal',
        resourceDisplayName: this.graph.displayName,
        resourceId: this.graph.id,
      },
    ];
  }

  // ---------- OData ----------

  /** $filter on the properties a client looks these objects up by (eq on displayName, appId, id). */
  private filtered<T extends Record<string, unknown>>(items: T[], query: URLSearchParams): T[] {
    const filter = query.get('$filter');
    if (!filter) return items;
    const node = parseFilter(filter);
    return items.filter((item) => evaluateFilter(node, (path) => resolvePath(item, path)));
  }

  private collection(set: string, value: unknown[]): unknown {
    return { '@odata.context': `${this.graphUrl()}/v1.0/$metadata#${set}`, value };
  }
}

const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function asObject(value: unknown): Record<string, unknown> {
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw badRequest('A JSON object body is required.');
  return value as Record<string, unknown>;
}

// The Graph tenant simulator: a TEST DOUBLE of Microsoft's cloud edge (Entra ID token endpoint, Key
// Vault, Microsoft Graph) serving HTTPS on 127.0.0.1 with a CA it generates. Used in-process by tests
// and as a process (cli.ts) by the demo and benchmarks. See README.md for what it models.
import { randomUUID, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import {
  createCertificateAuthority,
  createSelfSignedCertificate,
  issueServerCertificate,
  type IssuedCertificate,
} from './certificates';
import { FaultInjector, type SimService } from './faults';
import { GraphService, type GraphOptions, type LatencyOptions } from './graph';
import { IdentityProvider, type SimApp } from './identity';
import { directoryRoles, type DirectoryRoleName } from './app-registrations';
import { KeyVaultFake } from './key-vault';
import { ExchangeAdminFake } from './exchange-admin';
import type { SimRequest, SimResponse } from './protocol';
import { seededRandom } from './random';
import { RequestLog } from './request-log';
import { buildTenant, type SeedFile } from './seed';
import type { Tenant } from './tenant';
import { MailboxThrottle, defaultThrottleOptions, type ThrottleOptions } from './throttle';

/** Application permissions the product needs (least privilege), granted by default. */
export const productPermissions = [
  'User.Read.All',
  'GroupMember.Read.All',
  'OrgContact.Read.All',
  'Contacts.ReadWrite',
  'Mail.Send',
];

export interface SimulatorOptions {
  seed?: SeedFile;
  port?: number;
  latency?: Partial<LatencyOptions>;
  throttle?: Partial<ThrottleOptions>;
  /** Seed for latency jitter and probabilistic faults. */
  randomSeed?: number;
  directoryDeltaTokenMaxAgeMs?: number;
  outlookDeltaTokenMaxAgeMs?: number;
  /** Granted application permissions of the sync app. */
  permissions?: string[];
  /** Name of the app's certificate in the Key Vault fake. */
  certificateName?: string;
  /** Where the CA and the app's PEM file are written; a new temp folder by default. */
  workDir?: string;
  /**
   * false: a tenant with no sync app registration and no certificate in Key Vault (what `setup`
   * starts from); the host identity and Microsoft Graph's service principal are still there.
   */
  registerApp?: boolean;
  /** Seconds a device code client waits between polls (Entra says 5). */
  deviceCodeIntervalSeconds?: number;
}

export interface SimulatorEndpoints {
  graphUrl: string;
  authorityHost: string;
  keyVaultUrl: string;
  tenantId: string;
  clientId: string;
  certificateName: string;
  certificatePath: string;
  caCertPath: string;
  /** A stand-in for the Function App's managed identity: may read the vault, has no Graph permissions. */
  hostIdentity: { clientId: string; clientSecret: string };
  /** The app registration's object id (the proof-of-possession issuer for addKey/removeKey). */
  applicationObjectId: string;
  /** The keyId ("Certificate ID") of the certificate uploaded at start. */
  initialKeyId: string;
}

export class GraphTenantSimulator implements SimulatorEndpoints {
  graphUrl = '';
  authorityHost = '';
  keyVaultUrl = '';
  readonly tenantId: string;
  readonly clientId = randomUUID();
  readonly certificateName: string;
  certificatePath = '';
  caCertPath = '';
  caPem = '';
  applicationObjectId = '';
  initialKeyId = '';
  readonly hostIdentity = { clientId: randomUUID(), clientSecret: randomBytes(24).toString('base64url') };
  readonly identity: IdentityProvider;
  readonly vault: KeyVaultFake;
  /** Exchange Online's admin endpoint (/adminapi/beta/{tenant}/InvokeCommand, Get-Recipient). */
  readonly exchange: ExchangeAdminFake;
  readonly graph: GraphService;
  readonly log = new RequestLog();
  readonly faults: FaultInjector;
  readonly throttle: MailboxThrottle;
  private server: Server | undefined;
  private readonly workDir: string;

  private constructor(
    readonly tenant: Tenant,
    private readonly options: SimulatorOptions,
  ) {
    this.tenantId = tenant.tenantId;
    this.certificateName = options.certificateName ?? 'contact-sync';
    this.workDir = options.workDir ?? mkdtempSync(join(tmpdir(), 'graph-sim-'));
    const random = seededRandom(options.randomSeed ?? 7);
    this.identity = new IdentityProvider(this.tenantId);
    this.vault = new KeyVaultFake(this.identity);
    this.exchange = new ExchangeAdminFake(this.identity, this.tenant);
    this.identity.deviceCodes.intervalSeconds = options.deviceCodeIntervalSeconds ?? 5;
    this.identity.findUser = (key) => {
      const u = this.tenant.user(key);
      return u
        ? {
            id: u.id,
            userPrincipalName: u.userPrincipalName,
            displayName: u.displayName ?? u.userPrincipalName,
          }
        : undefined;
    };
    this.faults = new FaultInjector(random);
    this.throttle = new MailboxThrottle({ ...defaultThrottleOptions, ...options.throttle });
    const graphOptions: GraphOptions = {
      latency: { meanMs: 20, jitterMs: 10, ...options.latency },
      directoryDeltaTokenMaxAgeMs: options.directoryDeltaTokenMaxAgeMs ?? 7 * 86_400_000,
      outlookDeltaTokenMaxAgeMs: options.outlookDeltaTokenMaxAgeMs ?? 30 * 86_400_000,
    };
    this.graph = new GraphService(
      tenant,
      this.identity,
      this.throttle,
      this.faults,
      this.log,
      random,
      graphOptions,
      () => this.identity.now(),
    );
  }

  static async start(options: SimulatorOptions = {}): Promise<GraphTenantSimulator> {
    const sim = new GraphTenantSimulator(buildTenant(options.seed), options);
    await sim.listen(options.port ?? 0);
    return sim;
  }

  private async listen(port: number): Promise<void> {
    const ca = await createCertificateAuthority();
    const serverCert = await issueServerCertificate(ca);
    this.caPem = ca.cert.certificatePem;
    this.caCertPath = join(this.workDir, 'simulator-ca.pem');
    writeFileSync(this.caCertPath, this.caPem);

    this.identity.registerApp({
      clientId: this.hostIdentity.clientId,
      displayName: 'function-app-identity',
      secrets: [this.hostIdentity.clientSecret],
      vaultRoles: new Set(['secrets-read', 'certificates-write']),
      listed: false,
    });
    if (this.options.registerApp !== false) {
      const appCert = await createSelfSignedCertificate(`CN=${this.certificateName}`);
      this.identity.registerApp({
        clientId: this.clientId,
        displayName: 'm365-contact-sync',
        roles: new Set(this.options.permissions ?? productPermissions),
      });
      this.initialKeyId = this.identity.addCertificate(this.clientId, appCert.certificatePem).keyId;
      this.applicationObjectId = this.identity.requireApp(this.clientId).objectId;
      this.vault.addCertificateVersion(this.certificateName, appCert);
      this.certificatePath = join(this.workDir, `${this.certificateName}.pem`);
      writeFileSync(this.certificatePath, appCert.privateKeyPem + appCert.certificatePem, { mode: 0o600 });
    }

    this.server = createServer(
      { key: serverCert.privateKeyPem, cert: serverCert.certificatePem + ca.cert.certificatePem },
      (req, res) => {
        this.dispatch(req, res).catch((e: unknown) => {
          if (!res.headersSent) {
            res.writeHead(500, { 'content-type': 'application/json' });
            res.end(
              JSON.stringify({
                error: {
                  code: 'InternalServerError',
                  message: `simulator: ${e instanceof Error ? e.message : String(e)}`,
                },
              }),
            );
          }
        });
      },
    );
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    const address = this.server.address() as AddressInfo;
    const origin = `https://127.0.0.1:${address.port}`;
    this.graphUrl = origin;
    this.authorityHost = origin;
    this.keyVaultUrl = origin;
    this.identity.authorityHost = origin;
    this.identity.graphUrl = origin;
    this.vault.vaultUrl = origin;
    this.graph.graphUrl = origin;
  }

  /** The connection details, as `npm run sim` prints them. */
  endpoints(): SimulatorEndpoints {
    return {
      graphUrl: this.graphUrl,
      authorityHost: this.authorityHost,
      keyVaultUrl: this.keyVaultUrl,
      tenantId: this.tenantId,
      clientId: this.clientId,
      certificateName: this.certificateName,
      certificatePath: this.certificatePath,
      caCertPath: this.caCertPath,
      hostIdentity: this.hostIdentity,
      applicationObjectId: this.applicationObjectId,
      initialKeyId: this.initialKeyId,
    };
  }

  /** Makes this process trust the simulator's CA, as NODE_EXTRA_CA_CERTS would at start-up. */
  trustInProcess(): void {
    const current = tls.getCACertificates('default');
    if (!current.includes(this.caPem)) tls.setDefaultCACertificates([...current, this.caPem]);
  }

  /**
   * Renews the app's certificate in Key Vault (a new version) and uploads it to the app registration.
   * With revokePrevious the old certificates are removed from the app, as an admin does after rollover.
   */
  async rotateCertificate(options: { revokePrevious?: boolean } = {}): Promise<IssuedCertificate> {
    const app = this.identity.requireApp(this.clientId);
    const previous = [...app.certificates];
    const cert = await this.vault.renewCertificate(this.certificateName);
    this.identity.addCertificate(this.clientId, cert.certificatePem);
    if (options.revokePrevious)
      for (const c of previous) this.identity.removeCertificate(this.clientId, c.certificatePem);
    return cert;
  }

  /** Key Vault's auto-renewal alone: a new certificate version that nobody uploaded to the app. */
  renewInKeyVault(): Promise<IssuedCertificate> {
    return this.vault.renewCertificate(this.certificateName);
  }

  /** The keyIds on the sync app's registration (what the portal lists as Certificate IDs). */
  applicationKeyIds(): string[] {
    return this.identity.requireApp(this.clientId).certificates.map((c) => c.keyId);
  }

  /** Gives a tenant user a built-in Entra role (its template id goes into their tokens' wids). */
  assignDirectoryRole(user: string, role: DirectoryRoleName): void {
    const id = this.tenant.user(user)?.id;
    if (!id) throw new Error(`no user ${user}`);
    const held = this.identity.directoryRoles.get(id) ?? new Set<string>();
    held.add(directoryRoles[role]);
    this.identity.directoryRoles.set(id, held);
  }

  /** Azure RBAC on the Key Vault for a user: Key Vault Secrets User and/or Certificates Officer. */
  grantUserVaultRoles(user: string, roles: Iterable<'secrets-read' | 'certificates-write'>): void {
    const id = this.tenant.user(user)?.id;
    if (!id) throw new Error(`no user ${user}`);
    this.identity.userVaultRoles.set(id, new Set(roles));
  }

  /** The test hook for the device code flow: `user` signs in with the code a client shows. */
  approveDeviceCode(userCode: string, user: string): void {
    const signedIn = this.identity.findUser(user);
    if (!signedIn) throw new Error(`no user ${user}`);
    this.identity.deviceCodes.approve(userCode, signedIn);
  }

  /** App registrations other than the host identity (setup creates them), with their grants and keys. */
  appRegistrations(): SimApp[] {
    return [...this.identity.apps.values()].filter((a) => a.listed);
  }

  /** Grants or withdraws Graph application permissions of the sync app. */
  setPermissions(permissions: string[]): void {
    this.identity.requireApp(this.clientId).roles = new Set(permissions);
  }

  /**
   * Exchange Online admin access for the sync app: the Exchange.ManageAsApp application permission and
   * an Exchange role for its service principal (by default neither, as for a least-privilege app).
   */
  grantExchange(grant: { permission: boolean; role: string | null }): void {
    const app = this.identity.requireApp(this.clientId);
    app.exchangeRoles = new Set(grant.permission ? ['Exchange.ManageAsApp'] : []);
    app.exchangeRbacRoles = new Set(grant.role ? [grant.role] : []);
  }

  /** Exchange RBAC for Applications: limit the sync app to these mailboxes (UPNs or ids); null lifts it. */
  scopeMailboxes(users: string[] | null): void {
    const app = this.identity.requireApp(this.clientId);
    app.mailboxScope = users ? new Set(users.map((u) => this.tenant.user(u)?.id ?? u)) : null;
  }

  /**
   * Exchange RBAC for Applications: assign the sync app's service principal the role "Application
   * <permission>" over a management scope of these mailboxes (UPNs or ids; null: the whole
   * organization), or remove the assignment (`undefined`). The token never shows it.
   */
  assignApplicationRole(permission: string, users: string[] | null | undefined): void {
    const roles = this.identity.requireApp(this.clientId).applicationRoles;
    if (users === undefined) roles.delete(permission);
    else roles.set(permission, users ? new Set(users.map((u) => this.tenant.user(u)?.id ?? u)) : null);
  }

  /**
   * The control API for a simulator run as a process (benchmarks, demos): read traffic, change the
   * directory, tune throttling and latency. Test-double only; Graph has nothing like it.
   */
  private control(method: string, url: URL, rawBody: Buffer, res: ServerResponse): void {
    const body = rawBody.length ? (JSON.parse(rawBody.toString('utf8')) as Record<string, unknown>) : {};
    const reply = (status: number, value?: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(value === undefined ? undefined : JSON.stringify(value));
    };
    const since = Number(url.searchParams.get('since') ?? '0');
    const route = `${method} ${url.pathname}`;
    try {
      if (route === 'GET /_sim/log/summary')
        return reply(200, { seq: this.log.lastSeq, ...this.log.summary(since) });
      if (route === 'GET /_sim/log') return reply(200, this.log.since(since));
      if (route === 'POST /_sim/vault/renew') {
        void this.renewInKeyVault().then(
          (c) => reply(200, { thumbprint: c.thumbprint, notAfter: c.notAfter.toISOString() }),
          (e: unknown) => reply(500, { error: String(e) }),
        );
        return;
      }
      if (route === 'GET /_sim/application/keys') return reply(200, this.applicationKeyIds());
      if (route === 'POST /_sim/devicecode') {
        this.approveDeviceCode(String(body.userCode), String(body.user));
        return reply(204);
      }
      if (route === 'POST /_sim/directory-roles') {
        this.assignDirectoryRole(String(body.user), body.role as DirectoryRoleName);
        return reply(204);
      }
      if (route === 'GET /_sim/users')
        return reply(
          200,
          [...this.tenant.users.values()].map((u) => ({
            id: u.id,
            userPrincipalName: u.userPrincipalName,
            mail: u.mail,
            mailbox: u.mailbox,
            accountEnabled: u.accountEnabled,
          })),
        );
      if (route === 'POST /_sim/users') return reply(201, this.tenant.addUser(body as never));
      const user = /^\/_sim\/users\/([^/]+)$/.exec(url.pathname)?.[1];
      if (user && method === 'PATCH')
        return reply(200, this.tenant.updateUser(decodeURIComponent(user), body));
      if (user && method === 'DELETE') {
        this.tenant.deleteUser(decodeURIComponent(user));
        return reply(204);
      }
      const folder = /^\/_sim\/mailboxes\/([^/]+)\/contacts$/.exec(url.pathname)?.[1];
      if (folder && method === 'GET') {
        const mailbox = this.tenant.mailbox(decodeURIComponent(folder));
        if (!mailbox) return reply(404, { error: 'no mailbox' });
        return reply(
          200,
          [...mailbox.contacts.values()].map((c) => ({
            id: c.id,
            folder: mailbox.folders.get(c.folderId)?.displayName ?? null,
            displayName: c.data.displayName ?? null,
            tags: [...c.extendedProperties.values()].map((p) => p.value),
          })),
        );
      }
      if (route === 'PUT /_sim/throttle') {
        this.throttle.options = { ...this.throttle.options, ...(body as object) };
        return reply(200, this.throttle.options);
      }
      if (route === 'PUT /_sim/latency') {
        this.graph.options.latency = { ...this.graph.options.latency, ...(body as object) };
        return reply(200, this.graph.options.latency);
      }
      return reply(404, { error: `no control route ${route}` });
    } catch (e) {
      return reply(400, { error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Every delta token issued so far (directory and Outlook) stops working. */
  expireDeltaTokens(): void {
    this.graph.invalidBefore = Date.now() + 1;
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const rawBody = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', this.graphUrl);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (v !== undefined) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
    if (url.pathname.startsWith('/_sim/')) {
      this.control(req.method ?? 'GET', url, rawBody, res);
      return;
    }
    const service: SimService = /^\/v1\.0(\/|$)/i.test(url.pathname)
      ? 'graph'
      : /^\/(secrets|certificates|keys)(\/|$)/i.test(url.pathname)
        ? 'vault'
        : /^\/adminapi\//i.test(url.pathname)
          ? 'exchange'
          : 'login';
    const path = url.pathname;
    let body: unknown;
    if (rawBody.length > 0 && /json/i.test(headers['content-type'] ?? '')) {
      try {
        body = JSON.parse(rawBody.toString('utf8'));
      } catch {
        if (service === 'graph') {
          this.write(
            res,
            {
              status: 400,
              body: {
                error: {
                  code: 'BadRequest',
                  message:
                    'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.',
                },
              },
            },
            service,
          );
          return;
        }
      }
    }
    const simReq: SimRequest = {
      method: (req.method ?? 'GET').toUpperCase(),
      path: service === 'graph' ? path.replace(/^\/v1\.0/i, '') || '/' : path,
      query: url.searchParams,
      headers,
      body,
      rawBody,
      requestId: randomUUID(),
      inBatch: false,
    };

    if (service === 'graph') {
      const result = await this.graph.handleHttp(simReq);
      if (result.connection !== 'ok') {
        req.socket.destroy();
        return;
      }
      this.write(res, result.response, service);
      return;
    }
    const fault = this.faults.pick({
      service,
      method: simReq.method,
      operation: service === 'login' ? 'token' : service === 'exchange' ? 'exchange.invokeCommand' : 'vault',
      path,
      inBatch: false,
    });
    let response: SimResponse;
    if (fault?.kind === 'reset') {
      this.log.add({
        service,
        appId: null,
        method: simReq.method,
        path,
        operation: service,
        mailbox: null,
        status: 0,
        errorCode: null,
        inBatch: false,
        requestId: simReq.requestId,
        replyLost: true,
      });
      req.socket.destroy();
      return;
    } else if (fault?.kind === 'status') {
      response = {
        status: fault.status,
        headers: fault.retryAfterSeconds ? { 'retry-after': String(fault.retryAfterSeconds) } : {},
        body:
          service === 'login'
            ? {
                error: 'temporarily_unavailable',
                error_description: 'AADSTS50196: The server is temporarily unavailable.',
                error_codes: [50196],
              }
            : { error: { code: 'ServiceUnavailable', message: 'The service is temporarily unavailable.' } },
      };
    } else {
      response =
        service === 'vault'
          ? await this.vault.handle(simReq)
          : service === 'exchange'
            ? await this.exchange.handle(simReq, this.graphUrl)
            : await this.identity.handle(simReq);
    }
    this.log.add({
      service,
      appId: null,
      method: simReq.method,
      path,
      operation: service === 'exchange' ? 'exchange.invokeCommand' : service,
      mailbox: null,
      status: response.status,
      errorCode: null,
      inBatch: false,
      requestId: simReq.requestId,
      replyLost: fault?.kind === 'lostReply',
    });
    if (fault?.kind === 'lostReply') {
      req.socket.destroy();
      return;
    }
    this.write(res, response, service);
  }

  private write(res: ServerResponse, response: SimResponse, service: SimService): void {
    const headers: Record<string, string> = { ...(response.headers ?? {}) };
    let payload: Buffer | undefined;
    if (Buffer.isBuffer(response.body)) payload = response.body;
    else if (response.body !== undefined) {
      payload = Buffer.from(JSON.stringify(response.body));
      headers['content-type'] ??=
        service === 'graph'
          ? 'application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8'
          : 'application/json; charset=utf-8';
    }
    if (service === 'vault') headers['x-ms-keyvault-service-version'] = '1.9.0.0';
    res.writeHead(response.status, headers);
    res.end(payload);
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

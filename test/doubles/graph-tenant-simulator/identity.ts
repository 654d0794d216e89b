// Entra ID's token endpoint for the client credentials flow: OpenID configuration and
// /{tenant}/oauth2/v2.0/token with a certificate assertion (PS256 or RS256, x5t#S256 or x5t) or a secret.
// Access tokens are JWTs signed by the simulator and carry the app's granted application permissions.
import {
  createHash,
  generateKeyPairSync,
  randomUUID,
  timingSafeEqual,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, SignJWT, errors as joseErrors } from 'jose';
import type { SimRequest, SimResponse } from './protocol';
import {
  DeviceCodeFlow,
  preauthorizedScopes,
  publicClients,
  resourceScopes,
  type SignedInUser,
  type TokenGrant,
} from './device-code';

export const graphResource = 'https://graph.microsoft.com';
export const vaultResource = 'https://vault.azure.net';
/** Azure Resource Manager: Entra issues its tokens to any service principal (ARM authorizes by Azure RBAC). */
export const armResource = 'https://management.azure.com';
/** Azure Storage: Entra issues its tokens to any principal; the storage service authorizes by Azure RBAC. */
export const storageResource = 'https://storage.azure.com';
/** Office 365 Exchange Online: the audience of tokens for its admin endpoint, whatever host serves it. */
export const exchangeResource = 'https://outlook.office365.com';

export interface RegisteredCertificate {
  certificatePem: string;
  x5t: string;
  x5tS256: string;
  /** The keyCredential's id (the portal's "Certificate ID"); removeKey names a key by it. */
  keyId: string;
  /** Hex SHA-1 thumbprint (the keyCredential's customKeyIdentifier). */
  thumbprint: string;
  displayName: string;
  startDateTime: Date;
  endDateTime: Date;
}

export interface SimApp {
  clientId: string;
  /** The application object's id (the portal's "Object ID"), not the client id. */
  objectId: string;
  displayName: string;
  certificates: RegisteredCertificate[];
  secrets: string[];
  /** Granted, admin-consented application permissions (Graph app roles). */
  roles: Set<string>;
  /** Key Vault data-plane access (Key Vault Secrets User and Certificates Officer via RBAC). */
  vaultRoles: Set<'secrets-read' | 'certificates-write'>;
  /** Exchange RBAC for Applications: when set, the only mailboxes (user ids) the app may touch. */
  mailboxScope: Set<string> | null;
  /**
   * Exchange RBAC for Applications role assignments ("Application Contacts.ReadWrite", ...): permission
   * name to the mailboxes (user ids) its management scope covers, null for the whole organization.
   * Never in the token; Exchange adds them to what the token grants.
   */
  applicationRoles: Map<string, Set<string> | null>;
  /** Granted application permissions of Office 365 Exchange Online (Exchange.ManageAsApp). */
  exchangeRoles: Set<string>;
  /** Exchange roles assigned to the app's service principal (View-Only Recipients, ...). */
  exchangeRbacRoles: Set<string>;
  /** Its service principal's object id; null until one is created (tokens need it: AADSTS7000229). */
  servicePrincipalId: string | null;
  /** Has an application object on Graph (a managed identity has only a service principal). */
  listed: boolean;
  signInAudience: string;
  /** User ids of its owners (who may update it without an admin role). */
  owners: string[];
  requiredResourceAccess: { resourceAppId: string; resourceAccess: { id: string; type: string }[] }[];
  createdDateTime: string;
}

export interface AccessTokenClaims {
  appId: string;
  audience: string;
  roles: string[];
  /** Delegated tokens only: the scopes granted (scp) and the signed-in user with role template ids (wids). */
  scopes?: string[];
  user?: { id: string; wids: string[] };
}

export class IdentityProvider {
  readonly apps = new Map<string, SimApp>();
  private readonly signingKey: KeyObject;
  private readonly verifyKey: KeyObject;
  /** Set once the server listens. */
  authorityHost = '';
  tokenLifetimeSeconds = 3599;
  /** The simulator's clock (Graph's too): whether a key on an application has expired or started. */
  now: () => number = Date.now;
  /** Per app: tokens issued before this instant are rejected (revoked sessions). */
  readonly revokedBefore = new Map<string, number>();
  private readonly issuedTokens = { count: 0 };
  /** The device code flow for an admin signing in through a public client (setup). */
  readonly deviceCodes = new DeviceCodeFlow();
  /** Directory role template ids per user id (the `wids` of their tokens). */
  readonly directoryRoles = new Map<string, Set<string>>();
  /** Key Vault data-plane roles (Azure RBAC) of signed-in users, by object id (a user token's oid). */
  readonly userVaultRoles = new Map<string, Set<'secrets-read' | 'certificates-write'>>();
  /** Set by the simulator: a tenant user by UPN or id. */
  findUser: (key: string) => SignedInUser | undefined = () => undefined;

  constructor(readonly tenantId: string) {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.signingKey = privateKey;
    this.verifyKey = publicKey;
  }

  get tokensIssued(): number {
    return this.issuedTokens.count;
  }

  registerApp(app: Partial<SimApp> & { clientId: string }): SimApp {
    const full: SimApp = {
      objectId: randomUUID(),
      displayName: app.displayName ?? 'app',
      certificates: [],
      secrets: [],
      roles: new Set(),
      vaultRoles: new Set(),
      mailboxScope: null,
      applicationRoles: new Map(),
      exchangeRoles: new Set(),
      exchangeRbacRoles: new Set(),
      servicePrincipalId: randomUUID(),
      listed: true,
      signInAudience: 'AzureADMyOrg',
      owners: [],
      requiredResourceAccess: [],
      createdDateTime: new Date().toISOString(),
      ...app,
    };
    this.apps.set(full.clientId, full);
    return full;
  }

  /** Uploads a certificate's public part to the app registration (as the portal does). */
  addCertificate(clientId: string, certificatePem: string): RegisteredCertificate {
    const app = this.requireApp(clientId);
    const registered = this.certificateOf(new X509Certificate(certificatePem));
    app.certificates.push(registered);
    return registered;
  }

  /** A key credential for this certificate, with a new key id (not yet on any app). */
  certificateOf(cert: X509Certificate, displayName?: string): RegisteredCertificate {
    return {
      certificatePem: cert.toString(),
      x5t: createHash('sha1').update(cert.raw).digest('base64url'),
      x5tS256: createHash('sha256').update(cert.raw).digest('base64url'),
      keyId: randomUUID(),
      thumbprint: createHash('sha1').update(cert.raw).digest('hex').toUpperCase(),
      displayName: displayName ?? cert.subject.replace(/\n/g, ', '),
      startDateTime: new Date(cert.validFrom),
      endDateTime: new Date(cert.validTo),
    };
  }

  removeCertificate(clientId: string, certificatePem: string): void {
    const app = this.requireApp(clientId);
    app.certificates = app.certificates.filter((c) => c.certificatePem !== certificatePem);
  }

  requireApp(clientId: string): SimApp {
    const app = this.apps.get(clientId);
    if (!app) throw new Error(`no app ${clientId}`);
    return app;
  }

  tokenUrl(): string {
    return `${this.authorityHost}/${this.tenantId}/oauth2/v2.0/token`;
  }

  async handle(req: SimRequest): Promise<SimResponse> {
    const m = /^\/([^/]+)(\/.*)$/.exec(req.path);
    const tenant = m?.[1];
    const rest = m?.[2];
    if (tenant && tenant !== this.tenantId && tenant !== 'organizations' && tenant !== 'common') {
      return aadError(
        400,
        'invalid_request',
        90002,
        `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`,
      );
    }
    if (
      req.method === 'GET' &&
      (rest === '/v2.0/.well-known/openid-configuration' || rest === '/.well-known/openid-configuration')
    ) {
      const base = `${this.authorityHost}/${this.tenantId}`;
      return {
        status: 200,
        body: {
          token_endpoint: `${base}/oauth2/v2.0/token`,
          token_endpoint_auth_methods_supported: [
            'client_secret_post',
            'private_key_jwt',
            'client_secret_basic',
          ],
          jwks_uri: `${this.authorityHost}/${this.tenantId}/discovery/v2.0/keys`,
          response_modes_supported: ['query', 'fragment', 'form_post'],
          subject_types_supported: ['pairwise'],
          id_token_signing_alg_values_supported: ['RS256'],
          response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
          scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
          issuer: `${base}/v2.0`,
          request_uri_parameter_supported: false,
          authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
          device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
          end_session_endpoint: `${base}/oauth2/v2.0/logout`,
          tenant_region_scope: 'EU',
          cloud_instance_name: 'microsoftonline.com',
        },
      };
    }
    if (req.method === 'GET' && rest === '/discovery/v2.0/keys') {
      return {
        status: 200,
        body: {
          keys: [{ ...this.verifyKey.export({ format: 'jwk' }), kid: 'sim', use: 'sig', alg: 'RS256' }],
        },
      };
    }
    if (req.method === 'POST' && rest === '/oauth2/v2.0/token') return this.token(req);
    if (req.method === 'POST' && rest === '/oauth2/v2.0/devicecode') {
      const started = this.deviceCodes.start(new URLSearchParams(req.rawBody.toString('utf8')));
      return 'body' in started ? { status: 200, body: started.body } : grantError(started);
    }
    return aadError(
      404,
      'invalid_request',
      900561,
      `The endpoint only accepts POST requests. Received a ${req.method} request.`,
    );
  }

  private async token(req: SimRequest): Promise<SimResponse> {
    const form = new URLSearchParams(req.rawBody.toString('utf8'));
    const grantType = form.get('grant_type');
    // The docs spell the URN; MSAL sends the short form, which Entra ID accepts too.
    if (grantType === 'urn:ietf:params:oauth:grant-type:device_code' || grantType === 'device_code')
      return this.userTokens(this.deviceCodes.redeem(form));
    if (grantType === 'refresh_token') return this.userTokens(this.deviceCodes.refresh(form));
    if (grantType !== 'client_credentials') {
      return aadError(
        400,
        'unsupported_grant_type',
        70003,
        `The app requested an unsupported grant type '${form.get('grant_type') ?? ''}'.`,
      );
    }
    const clientId = form.get('client_id') ?? '';
    const app = this.apps.get(clientId);
    if (!app) {
      return aadError(
        400,
        'unauthorized_client',
        700016,
        `Application with identifier '${clientId}' was not found in the directory '${this.tenantId}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`,
      );
    }
    if (app.servicePrincipalId === null)
      return aadError(
        401,
        'invalid_client',
        7000229,
        `The client application ${clientId} is missing service principal in the tenant ${this.tenantId}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119`,
      );
    const scope = form.get('scope') ?? '';
    const resource = scope
      .split(' ')
      .find((s) => s.endsWith('/.default'))
      ?.replace(/\/\.default$/, '');
    if (!resource) {
      return aadError(
        400,
        'invalid_scope',
        1002012,
        `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
      );
    }
    const audience = resource.startsWith(vaultResource)
      ? vaultResource
      : resource.replace(/\/$/, '') === armResource
        ? `${armResource}/`
        : resource.replace(/\/$/, '') === storageResource
          ? storageResource
          : resource.replace(/\/$/, '') === exchangeResource
            ? exchangeResource
            : graphAudience(resource, this.graphUrl);
    if (!audience) {
      return aadError(
        400,
        'invalid_resource',
        500011,
        `The resource principal named ${resource} was not found in the tenant named ${this.tenantId}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.`,
      );
    }

    const assertion = form.get('client_assertion');
    const secret = form.get('client_secret');
    if (assertion) {
      if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
        return aadError(400, 'invalid_request', 50027, 'Invalid client_assertion_type.');
      }
      const failure = await this.verifyAssertion(app, assertion);
      if (failure) return failure;
    } else if (secret) {
      const ok = app.secrets.some(
        (s) => s.length === secret.length && timingSafeEqual(Buffer.from(s), Buffer.from(secret)),
      );
      if (!ok)
        return aadError(
          401,
          'invalid_client',
          7000215,
          `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`,
        );
    } else {
      return aadError(
        401,
        'invalid_client',
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      );
    }

    const now = Math.floor(Date.now() / 1000);
    const roles =
      audience === graphResource
        ? [...app.roles]
        : audience === exchangeResource
          ? [...app.exchangeRoles]
          : [];
    const jwt = await new SignJWT({
      tid: this.tenantId,
      appid: clientId,
      azp: clientId,
      oid: clientId,
      roles,
      idtyp: 'app',
      ver: '1.0',
    })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: 'sim' })
      .setIssuer(`https://sts.windows.net/${this.tenantId}/`)
      .setAudience(audience)
      .setSubject(clientId)
      .setIssuedAt(now)
      .setNotBefore(now - 300)
      .setExpirationTime(now + this.tokenLifetimeSeconds)
      .setJti(randomUUID())
      .sign(this.signingKey);
    this.issuedTokens.count++;
    return {
      status: 200,
      body: {
        token_type: 'Bearer',
        expires_in: this.tokenLifetimeSeconds,
        ext_expires_in: this.tokenLifetimeSeconds,
        access_token: jwt,
      },
    };
  }

  /** Set by the server: the Graph root URL, also accepted as a resource. */
  graphUrl = '';

  /**
   * Tokens for a signed-in user (device code or refresh token): an access token for the one resource
   * the scopes name (scp = their names, wids = the user's roles), an id token, client_info and a
   * refresh token, as MSAL expects them.
   */
  private async userTokens(grant: TokenGrant): Promise<SimResponse> {
    if (!grant.ok) return grantError(grant);
    const scopes = resourceScopes(grant.scope);
    const resources = new Set(scopes.map((s) => s.resource.replace(/\/$/, '')));
    const resource = resources.size === 1 ? userResource([...resources][0]!, this.graphUrl) : undefined;
    if (!resource)
      return aadError(
        400,
        'invalid_scope',
        70011,
        `The provided value for the input parameter 'scope' is not valid. The scope ${grant.scope} is not valid: one resource (Microsoft Graph, Azure Storage, Key Vault or Resource Manager) is expected.`,
      );
    const granted = preauthorizedScopes(
      grant.clientId,
      resource.scopeRoot,
      scopes.map((s) => s.name),
    );
    if (!granted.ok)
      return aadError(
        400,
        'invalid_request',
        65002,
        `Consent between first party application '${grant.clientId}' and first party resource '${resource.appId}' must be configured via preauthorization - applications owned and operated by Microsoft must get approval from the API owner before requesting tokens for that API.`,
      );
    const audience = resource.audience;
    const now = Math.floor(Date.now() / 1000);
    const { user, clientId } = grant;
    const wids = [...(this.directoryRoles.get(user.id) ?? [])];
    const sign = (claims: Record<string, unknown>, aud: string, iss: string) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: 'sim' })
        .setIssuer(iss)
        .setAudience(aud)
        .setSubject(user.id)
        .setIssuedAt(now)
        .setNotBefore(now - 300)
        .setExpirationTime(now + this.tokenLifetimeSeconds)
        .sign(this.signingKey);
    const accessToken = await sign(
      {
        tid: this.tenantId,
        oid: user.id,
        upn: user.userPrincipalName,
        name: user.displayName,
        appid: clientId,
        azp: clientId,
        scp: granted.scopes.join(' '),
        wids,
        idtyp: 'user',
        ver: '1.0',
      },
      audience,
      `https://sts.windows.net/${this.tenantId}/`,
    );
    const idToken = await sign(
      {
        tid: this.tenantId,
        oid: user.id,
        preferred_username: user.userPrincipalName,
        name: user.displayName,
        ver: '2.0',
      },
      clientId,
      `${this.authorityHost}/${this.tenantId}/v2.0`,
    );
    this.issuedTokens.count++;
    return {
      status: 200,
      body: {
        token_type: 'Bearer',
        scope: grant.scope,
        expires_in: this.tokenLifetimeSeconds,
        ext_expires_in: this.tokenLifetimeSeconds,
        access_token: accessToken,
        refresh_token: this.deviceCodes.issueRefreshToken(clientId, user),
        id_token: idToken,
        client_info: Buffer.from(JSON.stringify({ uid: user.id, utid: this.tenantId })).toString('base64url'),
      },
    };
  }

  private async verifyAssertion(app: SimApp, assertion: string): Promise<SimResponse | undefined> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(assertion);
    } catch {
      return aadError(400, 'invalid_client', 50027, 'JWT token is invalid or malformed.');
    }
    if (header.alg !== 'PS256' && header.alg !== 'RS256') {
      return aadError(
        400,
        'invalid_client',
        5002738,
        `Invalid JWT token. '${String(header.alg)}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256, RS384, RS512, PS256, PS384, PS512'`,
      );
    }
    const s256 = header['x5t#S256'];
    const x5t = header.x5t;
    const cert = app.certificates.find(
      (c) => (typeof s256 === 'string' && c.x5tS256 === s256) || (typeof x5t === 'string' && c.x5t === x5t),
    );
    if (!cert) {
      return aadError(
        401,
        'invalid_client',
        700027,
        `The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '${typeof s256 === 'string' ? s256 : typeof x5t === 'string' ? x5t : ''}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '${app.clientId}'.]`,
      );
    }
    if (cert.endDateTime.getTime() < this.now()) {
      return aadError(
        401,
        'invalid_client',
        700027,
        `Client assertion failed signature validation. [Reason - The key used is expired., Thumbprint of key used by client: '${cert.thumbprint}']`,
      );
    }
    try {
      await jwtVerify(assertion, new X509Certificate(cert.certificatePem).publicKey, {
        algorithms: [header.alg],
        audience: [
          this.tokenUrl(),
          `${this.authorityHost}/${this.tenantId}/oauth2/token`,
          `${this.authorityHost}/${this.tenantId}/v2.0`,
        ],
        issuer: app.clientId,
        subject: app.clientId,
        requiredClaims: ['exp', 'aud', 'iss', 'sub'],
        clockTolerance: 300,
      });
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired)
        return aadError(
          400,
          'invalid_client',
          700024,
          'Client assertion is not within its valid time range.',
        );
      if (e instanceof joseErrors.JWTClaimValidationFailed) {
        if (e.claim === 'aud')
          return aadError(
            400,
            'invalid_client',
            700212,
            `No matching federated identity record found for presented assertion audience '${String(e.payload.aud)}'.`,
          );
        return aadError(
          400,
          'invalid_client',
          700023,
          `Client assertion claim '${e.claim}' is invalid: ${e.reason}.`,
        );
      }
      return aadError(401, 'invalid_client', 700027, 'Client assertion contains an invalid signature.');
    }
    return undefined;
  }

  /** Verifies a bearer token the simulator issued, for the given audience. */
  async verifyAccessToken(
    authorization: string | undefined,
    audience: string,
  ): Promise<AccessTokenClaims | { error: string }> {
    const token = /^Bearer (.+)$/i.exec(authorization ?? '')?.[1];
    if (!token) return { error: 'Access token is empty.' };
    try {
      const { payload } = await jwtVerify(token, this.verifyKey, {
        algorithms: ['RS256'],
        issuer: `https://sts.windows.net/${this.tenantId}/`,
      });
      if (payload.aud !== audience) return { error: 'Access token validation failure. Invalid audience.' };
      const appId = typeof payload.appid === 'string' ? payload.appid : '';
      if ((payload.iat ?? 0) * 1000 < (this.revokedBefore.get(appId) ?? 0))
        return { error: 'Access token has been revoked.' };
      if (payload.idtyp === 'user') {
        if (!publicClients.has(appId))
          return { error: 'Access token validation failure. Invalid application.' };
        return {
          appId,
          audience,
          roles: [],
          scopes: (typeof payload.scp === 'string' ? payload.scp : '').split(' ').filter(Boolean),
          user: {
            id: String(payload.oid),
            wids: Array.isArray(payload.wids) ? payload.wids.map(String) : [],
          },
        };
      }
      if (!this.apps.has(appId)) return { error: 'Access token validation failure. Invalid application.' };
      return { appId, audience, roles: Array.isArray(payload.roles) ? payload.roles.map(String) : [] };
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired)
        return { error: 'Lifetime validation failed, the token is expired.' };
      return { error: 'Access token validation failure.' };
    }
  }
}

function graphAudience(resource: string, graphUrl: string): string | undefined {
  const r = resource.replace(/\/$/, '');
  if (
    r === graphResource ||
    r === graphUrl.replace(/\/$/, '') ||
    r === '00000003-0000-0000-c000-000000000000'
  )
    return graphResource;
  return undefined;
}

/** A resource a signed-in user's token may name: its audience, scope root and application id. */
function userResource(
  resource: string,
  graphUrl: string,
): { audience: string; scopeRoot: string; appId: string } | undefined {
  if (graphAudience(resource, graphUrl))
    return {
      audience: graphResource,
      scopeRoot: graphResource,
      appId: '00000003-0000-0000-c000-000000000000',
    };
  if (resource === storageResource)
    return {
      audience: storageResource,
      scopeRoot: storageResource,
      appId: 'e406a681-f3d4-42a8-90b6-c2b029497af1',
    };
  if (resource === vaultResource)
    return {
      audience: vaultResource,
      scopeRoot: vaultResource,
      appId: 'cfa8b339-82a2-471a-a3c9-0fc0be7a4093',
    };
  if (resource === armResource)
    return {
      audience: `${armResource}/`,
      scopeRoot: armResource,
      appId: '797f4846-ba00-4fd7-ba43-dac1f8f63013',
    };
  return undefined;
}

function grantError(g: Extract<TokenGrant, { ok: false }>): SimResponse {
  return aadError(g.status, g.error, g.code, g.description);
}

function aadError(status: number, error: string, code: number, description: string): SimResponse {
  const traceId = randomUUID();
  const correlationId = randomUUID();
  const timestamp = new Date()
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
  return {
    status,
    body: {
      error,
      error_description: `AADSTS${code}: ${description} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
      error_codes: [code],
      timestamp,
      trace_id: traceId,
      correlation_id: correlationId,
      error_uri: `https://login.microsoftonline.com/error?code=${code}`,
    },
  };
}

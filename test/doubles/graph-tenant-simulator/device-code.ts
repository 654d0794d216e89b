// The device authorization grant on the simulated Entra ID (RFC 8628 as Microsoft implements it):
// POST /{tenant}/oauth2/v2.0/devicecode, then the client polls the token endpoint with
// grant_type=urn:ietf:params:oauth:grant-type:device_code until the user signs in (a test hook here:
// approve(userCode, user)). Delegated tokens carry scp (the scopes asked for) and wids (the user's
// directory role template ids); a refresh token gets tokens for other scopes silently.
import { randomBytes } from 'node:crypto';

/**
 * Microsoft's first-party public clients an admin signs in with, and what each is preauthorized for.
 * A first-party client gets tokens only for first-party resources it is preauthorized for; anything
 * else is AADSTS65002 ("Consent between first party application … must be configured via
 * preauthorization"; AzureAD/microsoft-authentication-library-for-dotnet#668,
 * microsoftgraph/msgraph-training-java#33). Graph Command Line Tools may ask Graph for any scope
 * (dynamic consent) and nothing else; Azure CLI gets a fixed set of Graph scopes (its tokens' scp, as
 * users report them) and user_impersonation of Azure Storage, Key Vault and Resource Manager.
 */
export const azureCliClientId = '04b07795-8ddb-461a-bbee-02f9e1bf7b46';
const graphHost = 'https://graph.microsoft.com';
export const publicClients = new Map<string, { name: string; resources: Map<string, string[] | 'any'> }>([
  [
    '14d82eec-204b-4c2f-b7e8-296a70dab67e',
    { name: 'Microsoft Graph Command Line Tools', resources: new Map([[graphHost, 'any']]) },
  ],
  [
    azureCliClientId,
    {
      name: 'Microsoft Azure CLI',
      resources: new Map<string, string[] | 'any'>([
        [
          graphHost,
          [
            'Application.ReadWrite.All',
            'AppRoleAssignment.ReadWrite.All',
            'AuditLog.Read.All',
            'DelegatedPermissionGrant.ReadWrite.All',
            'Directory.AccessAsUser.All',
            'Group.ReadWrite.All',
            'User.Read.All',
            'User.ReadWrite.All',
          ],
        ],
        ['https://storage.azure.com', ['user_impersonation']],
        ['https://vault.azure.net', ['user_impersonation']],
        ['https://management.azure.com', ['user_impersonation']],
      ]),
    },
  ],
]);

/**
 * The scopes a token for `resource` carries when `clientId` asks for `names` (`.default`: all it
 * is preauthorized for), or the first scope it may not have.
 */
export function preauthorizedScopes(
  clientId: string,
  resource: string,
  names: string[],
): { ok: true; scopes: string[] } | { ok: false; scope: string } {
  const allowed = publicClients.get(clientId)?.resources.get(resource);
  if (!allowed) return { ok: false, scope: `${resource}/${names[0] ?? '.default'}` };
  if (allowed === 'any') return { ok: true, scopes: names.filter((n) => n !== '.default') };
  // A client preauthorized for a fixed set (Azure CLI's) takes `.default` only: Entra answers
  // AADSTS65002 to a named scope, even one in that set (microsoftgraph/msgraph-sdk-python#677, #678).
  const refused = names.find((n) => n !== '.default');
  return refused ? { ok: false, scope: `${resource}/${refused}` } : { ok: true, scopes: allowed };
}

/** Scopes OpenID Connect adds; they name no resource. */
const oidcScopes = new Set(['openid', 'profile', 'offline_access', 'email']);

export interface SignedInUser {
  id: string;
  userPrincipalName: string;
  displayName: string;
}

interface PendingCode {
  userCode: string;
  clientId: string;
  scope: string;
  expiresAt: number;
  state: 'pending' | 'approved' | 'declined' | 'redeemed';
  user?: SignedInUser;
}

export type TokenGrant =
  | { ok: true; clientId: string; user: SignedInUser; scope: string }
  | { ok: false; status: number; error: string; code: number; description: string };

export class DeviceCodeFlow {
  private readonly codes = new Map<string, PendingCode>();
  private readonly refreshTokens = new Map<string, { clientId: string; user: SignedInUser }>();
  /** Entra answers 5; tests shorten it (MSAL waits this long between polls). */
  intervalSeconds = 5;
  expiresInSeconds = 900;

  /** POST /devicecode: a user code to show and a device code to poll with. */
  start(
    form: URLSearchParams,
    now = Date.now(),
  ): Extract<TokenGrant, { ok: false }> | { ok: true; body: Record<string, unknown> } {
    const clientId = form.get('client_id') ?? '';
    if (!publicClients.has(clientId))
      return fail(
        400,
        'unauthorized_client',
        700016,
        `Application with identifier '${clientId}' was not found in the directory.`,
      );
    const scope = form.get('scope') ?? '';
    if (!resourceScopes(scope).length)
      return fail(
        400,
        'invalid_scope',
        70011,
        `The provided value for the input parameter 'scope' is not valid. The scope ${scope} is not valid.`,
      );
    const deviceCode = randomBytes(32).toString('base64url');
    const userCode = randomBytes(6).toString('hex').toUpperCase().slice(0, 9);
    this.codes.set(deviceCode, {
      userCode,
      clientId,
      scope,
      expiresAt: now + this.expiresInSeconds * 1000,
      state: 'pending',
    });
    return {
      ok: true,
      body: {
        user_code: userCode,
        device_code: deviceCode,
        verification_uri: 'https://microsoft.com/devicelogin',
        expires_in: this.expiresInSeconds,
        interval: this.intervalSeconds,
        message: `To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ${userCode} to authenticate.`,
      },
    };
  }

  /** The test hook: the user signs in and consents on the device login page. */
  approve(userCode: string, user: SignedInUser): void {
    const pending = [...this.codes.values()].find((c) => c.userCode === userCode && c.state === 'pending');
    if (!pending) throw new Error(`no pending device code ${userCode}`);
    pending.state = 'approved';
    pending.user = user;
  }

  decline(userCode: string): void {
    const pending = [...this.codes.values()].find((c) => c.userCode === userCode && c.state === 'pending');
    if (pending) pending.state = 'declined';
  }

  /** grant_type=…:device_code, polled by the client. */
  redeem(form: URLSearchParams, now = Date.now()): TokenGrant {
    const code = this.codes.get(form.get('device_code') ?? '');
    if (!code || code.clientId !== form.get('client_id'))
      return fail(400, 'invalid_grant', 70000, 'The provided device code is not valid.');
    if (now > code.expiresAt)
      return fail(
        400,
        'expired_token',
        70020,
        "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
      );
    if (code.state === 'pending')
      return fail(
        400,
        'authorization_pending',
        70016,
        'OAuth 2.0 device flow error. Authorization is pending. Continue polling.',
      );
    if (code.state === 'declined')
      return fail(400, 'authorization_declined', 70018, 'The user declined the sign-in.');
    if (code.state === 'redeemed')
      return fail(400, 'invalid_grant', 54005, 'OAuth2 Authorization code was already redeemed.');
    code.state = 'redeemed';
    return { ok: true, clientId: code.clientId, user: code.user!, scope: form.get('scope') ?? code.scope };
  }

  /** grant_type=refresh_token: the same user, any scopes of the same client. */
  refresh(form: URLSearchParams): TokenGrant {
    const held = this.refreshTokens.get(form.get('refresh_token') ?? '');
    if (!held || held.clientId !== form.get('client_id'))
      return fail(400, 'invalid_grant', 9002313, 'Invalid request. Request is malformed or invalid.');
    return { ok: true, clientId: held.clientId, user: held.user, scope: form.get('scope') ?? '' };
  }

  issueRefreshToken(clientId: string, user: SignedInUser): string {
    const token = randomBytes(48).toString('base64url');
    this.refreshTokens.set(token, { clientId, user });
    return token;
  }
}

/** The scopes that name a resource (`https://host/Name`), as { resource, name }. */
export function resourceScopes(scope: string): { resource: string; name: string }[] {
  return scope
    .split(' ')
    .filter((s) => s && !oidcScopes.has(s))
    .map((s) => {
      const i = s.lastIndexOf('/');
      return i > 0 ? { resource: s.slice(0, i), name: s.slice(i + 1) } : { resource: '', name: s };
    });
}

function fail(
  status: number,
  error: string,
  code: number,
  description: string,
): Extract<TokenGrant, { ok: false }> {
  return { ok: false, status, error, code, description };
}

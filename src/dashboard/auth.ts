// Who is calling the dashboard, and what they may do. Every dashboard API request is authorised here,
// on the server: the browser only hides what the server would refuse anyway.
//
// Azure: App Service Authentication (Easy Auth) is not supported on Flex Consumption, and there
// unauthenticated callers are not blocked even when it is switched on (learn.microsoft.com
// azure-functions/flex-consumption-plan, "Considerations": "EasyAuth isn't currently supported"), so
// the app validates Entra ID access tokens itself (jose, against the tenant's published keys) and
// reads the app roles from the token's `roles` claim. The browser sends the token as a bearer header,
// never as a cookie, so a cross-site request carries no credential (no CSRF by construction).
//
// Locally: a sign-in stand-in signs tokens with a key made at start. It works only outside Azure
// with local storage (Azurite): see `localSignInRefusal`.
import { randomBytes } from 'node:crypto';
import { SignJWT, createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { storageIsLocal } from '../adapters/local-address';
import type { Settings } from '../app/settings';

export const roles = { reader: 'ContactSync.Reader', operator: 'ContactSync.Operator' } as const;
export type Permission = 'read' | 'operate';

export interface Principal {
  name: string;
  roles: string[];
}

export class AuthError extends Error {
  constructor(
    readonly status: 401 | 403 | 500,
    message: string,
  ) {
    super(message);
  }
}

/** Operators may read too; anyone else needs the Reader role to see any data. */
export function can(principal: Principal, permission: Permission): boolean {
  if (principal.roles.includes(roles.operator)) return true;
  return permission === 'read' && principal.roles.includes(roles.reader);
}

/** Variables the App Service platform sets in every Azure Functions app (any plan). */
const azurePlatformVariables = [
  'WEBSITE_SITE_NAME',
  'WEBSITE_INSTANCE_ID',
  'WEBSITE_HOSTNAME',
  'WEBSITE_SKU',
];

/**
 * Why the local sign-in stand-in may not run here, or undefined when it may: it needs
 * DASHBOARD_LOCAL_SIGN_IN=true, no Azure platform variable, and storage on a loopback address.
 */
export function localSignInRefusal(
  settings: Settings,
  env: Record<string, string | undefined>,
): string | undefined {
  if (!settings.DASHBOARD_LOCAL_SIGN_IN) return 'DASHBOARD_LOCAL_SIGN_IN is not set';
  const azure = azurePlatformVariables.filter((v) => env[v]);
  if (azure.length > 0) return `running in Azure (${azure.join(', ')} set): local sign-in is refused`;
  if (!settings.AzureWebJobsStorage || !storageIsLocal(settings.AzureWebJobsStorage))
    return 'storage is not local (Azurite): local sign-in is refused';
  return undefined;
}

export type AuthMode =
  | { mode: 'local' }
  | { mode: 'entra'; authority: string; tenantId: string; clientId: string }
  | { mode: 'off'; reason: string };

/** What the browser needs to sign in (no secret: the client id and tenant are public). */
export function authMode(settings: Settings, env: Record<string, string | undefined>): AuthMode {
  if (settings.DASHBOARD_LOCAL_SIGN_IN) {
    const refusal = localSignInRefusal(settings, env);
    // Set where it must not be: fail closed, never fall back to another mode.
    return refusal ? { mode: 'off', reason: refusal } : { mode: 'local' };
  }
  if (!settings.DASHBOARD_TENANT_ID || !settings.DASHBOARD_CLIENT_ID)
    return {
      mode: 'off',
      reason: 'set DASHBOARD_TENANT_ID and DASHBOARD_CLIENT_ID to sign in with Entra ID',
    };
  return {
    mode: 'entra',
    authority: settings.DASHBOARD_AUTHORITY_HOST.replace(/\/$/, ''),
    tenantId: settings.DASHBOARD_TENANT_ID,
    clientId: settings.DASHBOARD_CLIENT_ID,
  };
}

const localIssuer = 'urn:m365-contact-sync:local-sign-in';
const localKey = randomBytes(32);

/** A token for the local stand-in: `role` is 'operator', 'reader' or 'none' (signed in, no role). */
export async function localToken(role: 'operator' | 'reader' | 'none'): Promise<string> {
  const granted = role === 'operator' ? [roles.operator] : role === 'reader' ? [roles.reader] : [];
  return new SignJWT({ name: `Local ${role}`, roles: granted })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(localIssuer)
    .setAudience(localIssuer)
    .setIssuedAt()
    .setExpirationTime('8h')
    .sign(localKey);
}

/**
 * The issuer of v1.0 access tokens. An app registration whose `api.requestedAccessTokenVersion` is null
 * (the default) gets v1.0 tokens: issuer `https://sts.windows.net/{tid}/`, audience the Application ID
 * URI (learn.microsoft.com/entra/identity-platform/access-token-claims-reference). Sovereign clouds
 * have their own host; in tests the authority is a local server, and sts.windows.net stays the issuer.
 */
function v1Issuer(authority: string, tenantId: string): string {
  const host = /login\.chinacloudapi\.cn/i.test(authority) ? 'sts.chinacloudapi.cn' : 'sts.windows.net';
  return `https://${host}/${tenantId}/`;
}

/**
 * Claims jose does not check: a v2.0 token names the app by client id only; the token is from this
 * tenant; it is a user's delegated token (a `scp` claim; not an app-only token, `idtyp=app`, nor an ID
 * token, which carries the same audience but no scope).
 */
function refuseOtherTokens(payload: JWTPayload, clientId: string, tenantId: string, v2: string): void {
  if (payload.iss === v2 && payload.aud !== clientId)
    throw new Error(`a v2.0 token's audience must be the client id ${clientId}`);
  if (payload.tid !== undefined && payload.tid !== tenantId) throw new Error('token from another tenant');
  if (payload.idtyp === 'app') throw new Error('an app-only token may not use the dashboard');
  if (typeof payload.scp !== 'string' || !payload.scp.split(' ').includes(dashboardScope))
    throw new Error(`not a delegated access token with the ${dashboardScope} scope`);
}

/** The scope the dashboard's page asks for (docs/deploy.md §7). */
export const dashboardScope = 'access_as_user';

const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

function principalOf(payload: JWTPayload): Principal {
  const granted = Array.isArray(payload.roles) ? payload.roles.filter((r) => typeof r === 'string') : [];
  const name = [payload.preferred_username, payload.name, payload.upn, payload.sub].find(
    (v): v is string => typeof v === 'string',
  );
  return { name: name ?? 'unknown', roles: granted };
}

/** The caller from the request's bearer token; throws AuthError 401 without a valid one. */
export async function authenticate(mode: AuthMode, authorization: string | null): Promise<Principal> {
  if (mode.mode === 'off') throw new AuthError(500, `dashboard sign-in is not configured: ${mode.reason}`);
  const token = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(authorization ?? '')?.[1];
  if (!token) throw new AuthError(401, 'sign in first (no bearer token)');
  try {
    if (mode.mode === 'local') {
      const { payload } = await jwtVerify(token, localKey, { issuer: localIssuer, audience: localIssuer });
      return principalOf(payload);
    }
    const base = `${mode.authority}/${mode.tenantId}`;
    let keys = keySets.get(base);
    if (!keys) {
      keys = createRemoteJWKSet(new URL(`${base}/discovery/v2.0/keys`));
      keySets.set(base, keys);
    }
    const v2 = `${base}/v2.0`;
    const v1 = v1Issuer(mode.authority, mode.tenantId);
    const { payload } = await jwtVerify(token, keys, {
      issuer: [v2, v1],
      audience: [mode.clientId, `api://${mode.clientId}`],
      algorithms: ['RS256'],
      requiredClaims: ['exp'],
    });
    refuseOtherTokens(payload, mode.clientId, mode.tenantId, v2);
    return principalOf(payload);
  } catch (e) {
    throw new AuthError(401, `the sign-in token is not valid: ${e instanceof Error ? e.message : String(e)}`);
  }
}

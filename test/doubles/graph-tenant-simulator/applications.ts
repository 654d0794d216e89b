// Microsoft Graph's application key roll-over: POST /applications/{id}/addKey and /removeKey, also
// addressed as /applications(appId='{appId}')/…. An application needs no permission to roll its own
// keys; instead it proves possession of a key already on the application with a self-signed JWT
// (aud 00000002-0000-0000-c000-000000000000, iss = the application's OBJECT id, nbf, exp at most
// nbf + 10 minutes). Sources are listed in README.md ("Application keys").
import { createHash, X509Certificate } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, errors as joseErrors } from 'jose';
import type { IdentityProvider, RegisteredCertificate, SimApp } from './identity';
import { GraphFault } from './protocol';
import { directoryRoles, type DirectoryCaller } from './app-registrations';

/** The proof's audience: the (legacy) Azure AD Graph resource id, as the docs require. */
export const proofAudience = '00000002-0000-0000-c000-000000000000';
const maxProofLifetimeSeconds = 600;
/** Application permissions that may roll ANY application's keys; an app rolling its own needs none. */
const manageAnyApplication = ['Application.ReadWrite.All', 'Directory.ReadWrite.All'];
/**
 * A signed-in user: the scope Application.ReadWrite.All (or Directory.ReadWrite.All), and either an
 * owner of the application or one of these roles (application-addkey, "Permissions": Cloud
 * Application Administrator, Application Administrator; an owner needs no role).
 */
const delegatedScopes = ['Application.ReadWrite.All', 'Directory.ReadWrite.All'];
// A function, not a constant: app-registrations.ts imports this module too (no load-order trap).
const anyApplicationRoles = (): string[] => [
  directoryRoles['Global Administrator'],
  directoryRoles['Application Administrator'],
  directoryRoles['Cloud Application Administrator'],
];

const malformed = (): GraphFault =>
  // What Graph answers to a proof it cannot accept (microsoft-graph-docs-contrib #1076, #2862).
  new GraphFault(401, 'Authentication_MissingOrMalformed', 'Access Token missing or malformed.');
const badRequest = (message: string): GraphFault => new GraphFault(400, 'Request_BadRequest', message);

export interface KeyCredentialView {
  customKeyIdentifier: string;
  displayName: string;
  endDateTime: string;
  /** Base64 DER: only for one application read with $select=keyCredentials, else null. */
  key: string | null;
  keyId: string;
  startDateTime: string;
  type: 'AsymmetricX509Cert';
  usage: 'Verify';
}

/**
 * A key as Graph shows it. `key` is "returned only on $select for a single object, that is, GET
 * applications/{applicationId}?$select=keyCredentials …; otherwise, it's always null" (keyCredential's
 * description in Microsoft's Graph metadata, as the SDKs generated from it carry it).
 */
export function keyCredentialView(c: RegisteredCertificate, withKey = false): KeyCredentialView {
  return {
    customKeyIdentifier: c.thumbprint,
    displayName: c.displayName,
    endDateTime: c.endDateTime.toISOString(),
    key: withKey ? Buffer.from(new X509Certificate(c.certificatePem).raw).toString('base64') : null,
    keyId: c.keyId,
    startDateTime: c.startDateTime.toISOString(),
    type: 'AsymmetricX509Cert',
    usage: 'Verify',
  };
}

export class ApplicationKeys {
  constructor(
    private readonly identity: IdentityProvider,
    private readonly now: () => number = Date.now,
  ) {}

  /** `{id}` or `(appId='{appId}')` as the path gives it. */
  resolve(reference: string): SimApp {
    const byAppId = /^applications\(appId='([^']*)'\)$/i.exec(reference)?.[1];
    const app = [...this.identity.apps.values()].find((a) =>
      byAppId !== undefined ? a.clientId === byAppId : a.objectId === reference,
    );
    if (!app)
      throw new GraphFault(
        404,
        'Request_ResourceNotFound',
        `Resource '${byAppId ?? reference}' does not exist or one of its queried reference-property objects are not present.`,
      );
    return app;
  }

  /**
   * The application itself, an app allowed to manage every application, or a signed-in owner or
   * application administrator (with the delegated scope) may roll its keys.
   */
  authorize(app: SimApp, caller: DirectoryCaller): void {
    if (caller.user) {
      const scoped = caller.scopes?.some((s) => delegatedScopes.includes(s)) ?? false;
      const allowed =
        app.owners.includes(caller.user.id) ||
        caller.user.wids.some((w) => anyApplicationRoles().includes(w));
      if (scoped && allowed) return;
    } else if (caller.appId === app.clientId) return;
    else if (caller.roles.some((r) => manageAnyApplication.includes(r))) return;
    throw new GraphFault(
      403,
      'Authorization_RequestDenied',
      'Insufficient privileges to complete the operation.',
    );
  }

  private valid(app: SimApp): RegisteredCertificate[] {
    const t = this.now();
    return app.certificates.filter((c) => c.startDateTime.getTime() <= t && t <= c.endDateTime.getTime());
  }

  /** Verifies the proof exactly as documented: signed by a valid key on the application, aud, iss, nbf, exp. */
  async verifyProof(app: SimApp, proof: unknown): Promise<RegisteredCertificate> {
    if (typeof proof !== 'string' || proof.length === 0)
      throw badRequest("The 'proof' parameter is required.");
    // Base64url without padding: the docs warn that '=' gives Authentication_MissingOrMalformed.
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(proof)) throw malformed();
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(proof);
    } catch {
      throw malformed();
    }
    const candidates = this.valid(app).filter((c) => {
      if (typeof header['x5t#S256'] === 'string') return header['x5t#S256'] === c.x5tS256;
      if (typeof header.x5t === 'string') return header.x5t === c.x5t;
      if (typeof header.kid === 'string') return header.kid.toUpperCase() === c.thumbprint;
      return true;
    });
    for (const cert of candidates) {
      try {
        const { payload } = await jwtVerify(proof, new X509Certificate(cert.certificatePem).publicKey, {
          algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
          audience: proofAudience,
          issuer: app.objectId,
          requiredClaims: ['aud', 'iss', 'nbf', 'exp'],
          currentDate: new Date(this.now()),
          // Microsoft documents no leeway for the proof (only nbf and exp, at most 10 minutes apart).
          clockTolerance: 0,
        });
        if (payload.exp! - payload.nbf! > maxProofLifetimeSeconds) throw malformed();
        return cert;
      } catch (e) {
        if (e instanceof GraphFault) throw e;
        if (e instanceof joseErrors.JWSSignatureVerificationFailed) continue;
        throw malformed();
      }
    }
    throw malformed();
  }

  async addKey(app: SimApp, body: unknown): Promise<KeyCredentialView> {
    const b = (body ?? {}) as { keyCredential?: unknown; passwordCredential?: unknown; proof?: unknown };
    const kc = b.keyCredential as { type?: unknown; usage?: unknown; key?: unknown } | undefined | null;
    if (!kc || typeof kc !== 'object') throw badRequest("The 'keyCredential' parameter is required.");
    if (kc.type !== 'AsymmetricX509Cert')
      throw badRequest(
        `keyCredential.type '${String(kc.type)}' is not supported here; use AsymmetricX509Cert.`,
      );
    if (kc.usage !== 'Verify') throw badRequest('keyCredential.usage must be Verify for AsymmetricX509Cert.');
    if (b.passwordCredential !== undefined && b.passwordCredential !== null)
      throw badRequest('passwordCredential must be null for AsymmetricX509Cert.');
    if (typeof kc.key !== 'string' || kc.key.length === 0) throw badRequest('keyCredential.key is required.');
    await this.verifyProof(app, b.proof);
    let pem: string;
    try {
      const der = Buffer.from(kc.key, 'base64');
      new X509Certificate(der);
      pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE-----\n`;
    } catch {
      throw badRequest('keyCredential.key is not a valid base64 X.509 certificate (public part only).');
    }
    const thumbprint = createHash('sha1').update(new X509Certificate(pem).raw).digest('hex').toUpperCase();
    if (app.certificates.some((c) => c.thumbprint === thumbprint))
      throw badRequest(`A key credential with thumbprint ${thumbprint} is already on the application.`);
    return keyCredentialView(this.identity.addCertificate(app.clientId, pem));
  }

  async removeKey(app: SimApp, body: unknown): Promise<void> {
    const b = (body ?? {}) as { keyId?: unknown; proof?: unknown };
    if (typeof b.keyId !== 'string' || !/^[0-9a-f-]{36}$/i.test(b.keyId))
      throw badRequest("The 'keyId' parameter is required and must be a GUID.");
    await this.verifyProof(app, b.proof);
    const target = app.certificates.find((c) => c.keyId.toLowerCase() === (b.keyId as string).toLowerCase());
    if (!target)
      throw new GraphFault(404, 'Request_ResourceNotFound', `No key credential with keyId '${b.keyId}'.`);
    const validLeft = this.valid(app).filter((c) => c !== target);
    if (validLeft.length === 0)
      throw badRequest('The last valid key credential of an application cannot be removed with removeKey.');
    app.certificates = app.certificates.filter((c) => c !== target);
  }
}

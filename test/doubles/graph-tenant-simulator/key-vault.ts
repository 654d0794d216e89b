// A Key Vault data plane fake for certificates kept as PEM: the certificate's secret (PEM private key +
// certificate, as Key Vault serves a certificate created with content type application/x-pem-file),
// certificate metadata, versions (so rotation can be tested), create, behind the 401 bearer challenge.
import { randomBytes } from 'node:crypto';
import { createSelfSignedCertificate, type IssuedCertificate } from './certificates';
import { vaultResource, type IdentityProvider } from './identity';
import type { SimRequest, SimResponse } from './protocol';

interface CertificatePolicy {
  subject: string;
  validityMonths: number;
  contentType: string;
  exportable: boolean;
  keySize: number;
  lifetimeActions: unknown[];
}

interface CertificateVersion {
  version: string;
  cert: IssuedCertificate;
  created: number;
  enabled: boolean;
  policy: CertificatePolicy;
  tags: Record<string, string>;
}

interface SecretVersion {
  version: string;
  value: string;
  contentType: string | null;
  created: number;
  enabled: boolean;
  managed: boolean;
}

export class KeyVaultFake {
  readonly certificates = new Map<string, CertificateVersion[]>();
  readonly secrets = new Map<string, SecretVersion[]>();
  private readonly pending = new Map<string, Promise<void>>();
  /** Set once the server listens. */
  vaultUrl = '';
  readonly stats = { secretReads: 0, certificateReads: 0 };

  constructor(private readonly identity: IdentityProvider) {}

  /** Adds a certificate version and its PEM secret, as Key Vault's create or import does. */
  addCertificateVersion(
    name: string,
    cert: IssuedCertificate,
    policy: Partial<CertificatePolicy> = {},
  ): string {
    const version = randomBytes(16).toString('hex');
    const now = Math.floor(Date.now() / 1000);
    const fullPolicy: CertificatePolicy = {
      subject: policy.subject ?? `CN=${name}`,
      validityMonths: policy.validityMonths ?? 12,
      contentType: policy.contentType ?? 'application/x-pem-file',
      exportable: policy.exportable ?? true,
      keySize: policy.keySize ?? 2048,
      lifetimeActions: policy.lifetimeActions ?? [
        { trigger: { lifetime_percentage: 80 }, action: { action_type: 'AutoRenew' } },
      ],
    };
    const versions = this.certificates.get(name) ?? [];
    versions.push({ version, cert, created: now, enabled: true, policy: fullPolicy, tags: {} });
    this.certificates.set(name, versions);
    const secrets = this.secrets.get(name) ?? [];
    secrets.push({
      version,
      // A non-exportable key stays in the vault: its secret holds the certificate only (Key Vault docs,
      // MicrosoftDocs/azure-docs key-vault/certificates/how-to-export-certificate.md).
      value: fullPolicy.exportable ? cert.privateKeyPem + cert.certificatePem : cert.certificatePem,
      contentType: fullPolicy.contentType,
      created: now,
      enabled: true,
      managed: true,
    });
    this.secrets.set(name, secrets);
    return version;
  }

  /** Disables (or enables) one version of a certificate and its secret, as the portal's toggle does. */
  setCertificateVersionEnabled(name: string, version: string, enabled: boolean): void {
    const cert = this.certificates.get(name)?.find((v) => v.version === version);
    const secret = this.secrets.get(name)?.find((v) => v.version === version);
    if (!cert || !secret) throw new Error(`no version ${version} of ${name}`);
    cert.enabled = enabled;
    secret.enabled = enabled;
  }

  /** A new version of an existing certificate (what auto-renew or a manual renewal does). */
  async renewCertificate(name: string): Promise<IssuedCertificate> {
    const latest = this.certificates.get(name)?.at(-1);
    if (!latest) throw new Error(`no certificate ${name}`);
    const cert = await createSelfSignedCertificate(latest.policy.subject, latest.policy.validityMonths);
    this.addCertificateVersion(name, cert, latest.policy);
    return cert;
  }

  latestCertificate(name: string): IssuedCertificate | undefined {
    return this.certificates.get(name)?.at(-1)?.cert;
  }

  async handle(req: SimRequest): Promise<SimResponse> {
    const auth = await this.identity.verifyAccessToken(req.headers.authorization, vaultResource);
    if ('error' in auth) {
      return {
        status: 401,
        headers: {
          'www-authenticate': `Bearer authorization="${this.identity.authorityHost}/${this.identity.tenantId}", resource="${vaultResource}"`,
        },
        body: {
          error: {
            code: 'Unauthorized',
            message: req.headers.authorization
              ? `AKV10000: ${auth.error}`
              : 'AKV10000: Request is missing a Bearer or PoP token.',
          },
        },
      };
    }
    // Azure RBAC on the vault: an app by its service principal, a signed-in user by the token's oid.
    const roles = auth.user
      ? this.identity.userVaultRoles.get(auth.user.id)
      : this.identity.apps.get(auth.appId)?.vaultRoles;
    const caller = auth.user ? `appid=${auth.appId};oid=${auth.user.id}` : `appid=${auth.appId}`;
    const segments = req.path.split('/').filter(Boolean);
    const [collection, name, third] = segments;
    const forbidden = (action: string): SimResponse => ({
      status: 403,
      body: {
        error: {
          code: 'Forbidden',
          message: `Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: ${caller}\r\nAction: '${action}'\r\nVault: ${this.vaultUrl}`,
          innererror: { code: 'ForbiddenByRbac' },
        },
      },
    });
    if (!name) return kvError(400, 'BadParameter', 'The request URI is invalid.');
    if (collection === 'secrets') {
      if (req.method === 'GET') {
        if (!roles?.has('secrets-read'))
          return forbidden('Microsoft.KeyVault/vaults/secrets/getSecret/action');
        if (third === 'versions') return this.secretVersions(name);
        const version = this.findVersion(this.secrets.get(name), third);
        if (!version)
          return kvError(
            404,
            'SecretNotFound',
            `A secret with (name/id) ${name}${third ? `/${third}` : ''} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
          );
        if (!version.enabled)
          return kvError(
            403,
            'Forbidden',
            'Operation get is not allowed on a disabled secret.',
            'SecretDisabled',
          );
        this.stats.secretReads++;
        const isCert = this.certificates.has(name);
        return {
          status: 200,
          body: {
            value: version.value,
            contentType: version.contentType,
            id: `${this.vaultUrl}/secrets/${name}/${version.version}`,
            attributes: attributes(
              version.created,
              version.enabled,
              isCert
                ? this.certificates.get(name)?.find((c) => c.version === version.version)?.cert
                : undefined,
            ),
            ...(version.managed
              ? { kid: `${this.vaultUrl}/keys/${name}/${version.version}`, managed: true }
              : {}),
          },
        };
      }
      if (req.method === 'PUT') {
        if (!roles?.has('certificates-write'))
          return forbidden('Microsoft.KeyVault/vaults/secrets/setSecret/action');
        const body = req.body as { value?: unknown; contentType?: unknown };
        if (typeof body?.value !== 'string')
          return kvError(400, 'BadParameter', 'Property value is required.');
        const version = randomBytes(16).toString('hex');
        const created = Math.floor(Date.now() / 1000);
        const entry: SecretVersion = {
          version,
          value: body.value,
          contentType: typeof body.contentType === 'string' ? body.contentType : null,
          created,
          enabled: true,
          managed: false,
        };
        this.secrets.set(name, [...(this.secrets.get(name) ?? []), entry]);
        return {
          status: 200,
          body: {
            value: entry.value,
            contentType: entry.contentType,
            id: `${this.vaultUrl}/secrets/${name}/${version}`,
            attributes: attributes(created, true),
          },
        };
      }
    }
    if (collection === 'certificates') {
      if (req.method === 'POST' && third === 'create') {
        if (!roles?.has('certificates-write'))
          return forbidden('Microsoft.KeyVault/vaults/certificates/create/action');
        return this.create(name, req.body);
      }
      if (req.method === 'GET' && third === 'pending') {
        const p = this.pending.get(name);
        if (!p) return kvError(404, 'PendingCertificateNotFound', `Pending certificate not found: ${name}`);
        await p;
        return {
          status: 200,
          body: {
            id: `${this.vaultUrl}/certificates/${name}/pending`,
            status: 'completed',
            target: `${this.vaultUrl}/certificates/${name}`,
            request_id: name,
          },
        };
      }
      if (req.method === 'GET') {
        if (!roles?.has('secrets-read') && !roles?.has('certificates-write'))
          return forbidden('Microsoft.KeyVault/vaults/certificates/read');
        const versions = this.certificates.get(name);
        if (third === 'versions') {
          if (!versions)
            return kvError(
              404,
              'CertificateNotFound',
              `A certificate with (name/id) ${name} was not found in this key vault.`,
            );
          return {
            status: 200,
            body: {
              value: versions.map((v) => ({
                id: `${this.vaultUrl}/certificates/${name}/${v.version}`,
                x5t: v.cert.x5t,
                attributes: attributes(v.created, v.enabled, v.cert),
              })),
              nextLink: null,
            },
          };
        }
        if (third === 'policy') {
          const latest = versions?.at(-1);
          if (!latest)
            return kvError(
              404,
              'CertificateNotFound',
              `A certificate with (name/id) ${name} was not found in this key vault.`,
            );
          return { status: 200, body: this.policyJson(name, latest.policy) };
        }
        const version = this.findVersion(versions, third);
        if (!version)
          return kvError(
            404,
            'CertificateNotFound',
            `A certificate with (name/id) ${name}${third ? `/${third}` : ''} was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
          );
        this.stats.certificateReads++;
        return { status: 200, body: this.certificateJson(name, version) };
      }
    }
    return kvError(
      405,
      'MethodNotAllowed',
      `${req.method} ${req.path} is not supported by the simulator's Key Vault.`,
    );
  }

  /** GET /secrets/{name}/versions: metadata of every version, no values (Key Vault's list shape). */
  private secretVersions(name: string): SimResponse {
    const versions = this.secrets.get(name);
    if (!versions)
      return kvError(
        404,
        'SecretNotFound',
        `A secret with (name/id) ${name} was not found in this key vault.`,
      );
    const certs = this.certificates.get(name);
    return {
      status: 200,
      body: {
        value: versions.map((v) => ({
          id: `${this.vaultUrl}/secrets/${name}/${v.version}`,
          contentType: v.contentType,
          attributes: attributes(v.created, v.enabled, certs?.find((c) => c.version === v.version)?.cert),
          ...(v.managed ? { managed: true } : {}),
        })),
        nextLink: null,
      },
    };
  }

  private findVersion<T extends { version: string; enabled: boolean }>(
    versions: T[] | undefined,
    version: string | undefined,
  ): T | undefined {
    if (!versions) return undefined;
    if (!version) return [...versions].reverse().find((v) => v.enabled);
    return versions.find((v) => v.version === version);
  }

  private create(name: string, body: unknown): SimResponse {
    const policy = (body as { policy?: Record<string, unknown> } | undefined)?.policy ?? {};
    const x509 = (policy.x509_props ?? {}) as { subject?: string; validity_months?: number };
    const secret = (policy.secret_props ?? {}) as { contentType?: string };
    const key = (policy.key_props ?? {}) as { exportable?: boolean; key_size?: number };
    const subject = x509.subject ?? `CN=${name}`;
    const months = x509.validity_months ?? 12;
    const job = createSelfSignedCertificate(subject, months).then((cert) => {
      this.addCertificateVersion(name, cert, {
        subject,
        validityMonths: months,
        contentType: secret.contentType ?? 'application/x-pkcs12',
        exportable: key.exportable ?? true,
        keySize: key.key_size ?? 2048,
        lifetimeActions: (policy.lifetime_actions as unknown[] | undefined) ?? [],
      });
    });
    this.pending.set(name, job);
    return {
      status: 202,
      body: {
        id: `${this.vaultUrl}/certificates/${name}/pending`,
        status: 'inProgress',
        status_details: 'Pending certificate created. Certificate request is in progress.',
        request_id: name,
        issuer: { name: 'Self' },
        csr: '',
      },
    };
  }

  private policyJson(name: string, p: CertificatePolicy): unknown {
    return {
      id: `${this.vaultUrl}/certificates/${name}/policy`,
      key_props: { exportable: p.exportable, kty: 'RSA', key_size: p.keySize, reuse_key: false },
      secret_props: { contentType: p.contentType },
      x509_props: {
        subject: p.subject,
        ekus: ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'],
        key_usage: ['digitalSignature', 'keyEncipherment'],
        validity_months: p.validityMonths,
      },
      lifetime_actions: p.lifetimeActions,
      issuer: { name: 'Self' },
      attributes: { enabled: true },
    };
  }

  private certificateJson(name: string, v: CertificateVersion): unknown {
    return {
      id: `${this.vaultUrl}/certificates/${name}/${v.version}`,
      kid: `${this.vaultUrl}/keys/${name}/${v.version}`,
      sid: `${this.vaultUrl}/secrets/${name}/${v.version}`,
      x5t: v.cert.x5t,
      cer: v.cert.derBase64,
      attributes: attributes(v.created, v.enabled, v.cert),
      policy: this.policyJson(name, v.policy),
      tags: v.tags,
    };
  }
}

function attributes(created: number, enabled: boolean, cert?: IssuedCertificate): Record<string, unknown> {
  return {
    enabled,
    created,
    updated: created,
    recoveryLevel: 'Recoverable',
    recoverableDays: 90,
    ...(cert
      ? { nbf: Math.floor(cert.notBefore.getTime() / 1000), exp: Math.floor(cert.notAfter.getTime() / 1000) }
      : {}),
  };
}

function kvError(status: number, code: string, message: string, inner?: string): SimResponse {
  return { status, body: { error: { code, message, ...(inner ? { innererror: { code: inner } } : {}) } } };
}

// Certificates the simulator needs: its own CA and TLS server certificate, and app certificates
// (PEM with private key) like the ones Key Vault issues with content type application/x-pem-file.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, randomBytes, webcrypto, X509Certificate } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const rsa: webcrypto.RsaHashedKeyGenParams = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
};

export interface IssuedCertificate {
  /** PEM of the certificate alone. */
  certificatePem: string;
  /** PEM of the PKCS#8 private key. */
  privateKeyPem: string;
  /** Base64 of the DER certificate (Key Vault's `cer`). */
  derBase64: string;
  /** base64url SHA-1 of the DER (the JWT `x5t` header, Key Vault's `x5t`). */
  x5t: string;
  /** base64url SHA-256 of the DER (the JWT `x5t#S256` header). */
  x5tS256: string;
  /** Hex SHA-1 thumbprint, as the Entra portal shows it. */
  thumbprint: string;
  notBefore: Date;
  notAfter: Date;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN PRIVATE KEY-----\n${b64.trimEnd()}\n-----END PRIVATE KEY-----\n`;
}

function describe(cert: x509.X509Certificate, privateKeyPem: string): IssuedCertificate {
  const der = Buffer.from(cert.rawData);
  return {
    certificatePem: cert.toString('pem') + '\n',
    privateKeyPem,
    derBase64: der.toString('base64'),
    x5t: createHash('sha1').update(der).digest('base64url'),
    x5tS256: createHash('sha256').update(der).digest('base64url'),
    thumbprint: createHash('sha1').update(der).digest('hex').toUpperCase(),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

function serial(): string {
  // Positive serial: clear the top bit.
  const bytes = randomBytes(12);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

export interface CertificateAuthority {
  cert: IssuedCertificate;
  keys: CryptoKeyPair;
  name: string;
}

export async function createCertificateAuthority(
  name = 'CN=Graph Tenant Simulator Test CA',
): Promise<CertificateAuthority> {
  const keys = await webcrypto.subtle.generateKey(rsa, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * 86_400_000),
    keys,
    signingAlgorithm: rsa,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: describe(cert, await exportKeyPem(keys.privateKey)), keys, name };
}

/** A TLS server certificate for 127.0.0.1 and localhost (or the DNS names given), signed by the CA. */
export async function issueServerCertificate(
  ca: CertificateAuthority,
  dnsNames?: string[],
): Promise<IssuedCertificate> {
  const keys = await webcrypto.subtle.generateKey(rsa, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${dnsNames?.[0] ?? '127.0.0.1'}`,
    issuer: ca.name,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * 86_400_000),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: rsa,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        dnsNames
          ? dnsNames.map((value) => ({ type: 'dns' as const, value }))
          : [
              { type: 'ip', value: '127.0.0.1' },
              { type: 'dns', value: 'localhost' },
            ],
      ),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  return describe(cert, await exportKeyPem(keys.privateKey));
}

/** A self-signed client certificate, as Key Vault creates with issuer "Self". */
export async function createSelfSignedCertificate(
  subject: string,
  validityMonths = 12,
  now = new Date(),
): Promise<IssuedCertificate> {
  const keys = await webcrypto.subtle.generateKey(rsa, true, ['sign', 'verify']);
  const notAfter = new Date(now);
  notAfter.setUTCMonth(notAfter.getUTCMonth() + validityMonths);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter,
    keys,
    signingAlgorithm: rsa,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.clientAuth,
        x509.ExtendedKeyUsage.serverAuth,
      ]),
    ],
  });
  return describe(cert, await exportKeyPem(keys.privateKey));
}

/** Reads thumbprints from any PEM certificate (for checks on PEM files written by others). */
export function thumbprintsOf(certificatePem: string): { x5t: string; x5tS256: string; thumbprint: string } {
  const cert = new X509Certificate(certificatePem);
  return {
    x5t: createHash('sha1').update(cert.raw).digest('base64url'),
    x5tS256: createHash('sha256').update(cert.raw).digest('base64url'),
    thumbprint: cert.fingerprint.replace(/:/g, ''),
  };
}

// The Key Vault side of `setup`, as the admin who signed in with the device code (Azure CLI's client
// is preauthorized for Key Vault, so the one sign-in serves it too): the certificate found or
// created, and addKey's proof signed by an earlier version on the registration. A missing vault role
// becomes a stop naming the roles and a command for that user (by object id) and that vault.
import { AuthenticationError, AuthenticationRequiredError, type TokenCredential } from '@azure/identity';
import { CertificateClient, type KeyVaultCertificateWithPolicy } from '@azure/keyvault-certificates';
import { SecretClient } from '@azure/keyvault-secrets';
import { signProof } from '../adapters/graph/application-keys';
import { certificatePolicy, type Io } from './commands';
import { vaultOptions } from './credentials';
import { SetupStoppedError, type HeldKey } from './setup-entra';
import type { SetupAnswers } from './setup-answers';
import { defaultSignInClientId } from './setup-answers';

/** The vault as the signed-in admin reaches it. */
export interface VaultAccess {
  answers: SetupAnswers;
  credential: TokenCredential;
  /** The signed-in user's object id (the oid claim), named in the role commands. */
  userObjectId: string;
  user: string;
}

const roles = ['Key Vault Certificates Officer', 'Key Vault Secrets User'];
const guid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `az role assignment create` for each role, for this user on this vault; shell-safe values only. */
export function vaultRoleCommands(vaultUrl: string, userObjectId: string): string[] {
  const name = /^([a-z0-9-]{3,24})\.vault\./i.exec(new URL(vaultUrl).hostname)?.[1];
  if (!guid.test(userObjectId)) return [];
  const scope = name
    ? `"$(az keyvault show --name ${name} --query id -o tsv)"`
    : `<the resource id of ${vaultUrl}>`;
  return roles.map(
    (role) =>
      `az role assignment create --role "${role}" --assignee-object-id ${userObjectId} --assignee-principal-type User --scope ${scope}`,
  );
}

/** Key Vault's answers that need the admin to act become a stop that says what to do. */
async function vaultCall<T>(v: VaultAccess, what: string, call: () => Promise<T>): Promise<T> {
  const a = v.answers;
  try {
    return await call();
  } catch (e) {
    if (e instanceof AuthenticationError || e instanceof AuthenticationRequiredError) {
      const aadsts = /AADSTS\d+/.exec((e as Error).message)?.[0];
      throw new SetupStoppedError(
        a.signInClientId === defaultSignInClientId
          ? `your sign-in got no Key Vault token for ${a.vault}${aadsts ? ` (${aadsts})` : ''}: a Conditional Access policy for Key Vault, withdrawn consent or an expired session. Run setup again to sign in anew`
          : `the sign-in client ${a.signInClientId} (--sign-in-client-id) gets no Key Vault token${aadsts ? ` (${aadsts})` : ''}: run setup without --sign-in-client-id (Azure CLI's client reaches Graph, Storage and Key Vault)`,
      );
    }
    if ((e as { statusCode?: number }).statusCode !== 403) throw e;
    const commands = vaultRoleCommands(a.vault, v.userObjectId);
    throw new SetupStoppedError(
      `Key Vault ${a.vault} refused to ${what} (${(e as { code?: string }).code ?? 'Forbidden'}): ${v.user} needs ${roles.join(' and ')} on the vault (\`azd up\` grants both to its user). Ask an owner of the vault for them${commands.length ? `:\n${commands.map((c) => `  ${c}\n`).join('')}` : ', '}then run setup again (role assignments can take a few minutes to apply)`,
    );
  }
}

/** The certificate in Key Vault: found, a creation still running awaited, else created (PEM, auto-renew). */
export async function vaultCertificate(io: Io, v: VaultAccess): Promise<KeyVaultCertificateWithPolicy> {
  const a = v.answers;
  return vaultCall(v, `read or create the certificate ${a.certificate}`, () => findOrCreate(io, v));
}

async function findOrCreate(io: Io, v: VaultAccess): Promise<KeyVaultCertificateWithPolicy> {
  const a = v.answers;
  const client = new CertificateClient(a.vault, v.credential, vaultOptions(a.vault));
  try {
    const found = await client.getCertificate(a.certificate);
    if (found.policy?.exportable === false)
      throw new SetupStoppedError(
        `${a.certificate} in ${a.vault} has a non-exportable key: the deployed app reads its private key as a secret to sign in, so it cannot use it. Choose another name (--certificate), and setup creates an exportable one`,
      );
    if (found.cer) {
      io.out(`  found ${a.certificate} in ${a.vault} (version ${found.properties.version ?? ''})`);
      return found;
    }
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 404) throw e;
  }
  let poller;
  try {
    poller = await client.getCertificateOperation(a.certificate, { intervalInMs: 1000 });
    io.out(`  a creation of ${a.certificate} is still running; waiting for it`);
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 404) throw e;
    poller = await client.beginCreateCertificate(a.certificate, certificatePolicy(`CN=${a.appName}`, 12), {
      intervalInMs: 1000,
    });
    io.out(`  creating ${a.certificate} in ${a.vault} (PEM, exportable, auto-renews at 80 % of 12 months)`);
  }
  await poller.pollUntilDone();
  return client.getCertificate(a.certificate);
}

/**
 * addKey's proof, signed by an earlier version of our certificate in Key Vault when the app
 * registration holds one (Key Vault renewed it, or an earlier setup uploaded it); else undefined.
 * A version on the registration whose private key Key Vault will not give (disabled, not exportable,
 * no read right) stops setup, saying which and what to do.
 */
export async function proofFromVault(
  io: Io,
  v: VaultAccess,
  applicationObjectId: string,
  held: HeldKey[],
): Promise<string | undefined> {
  const a = v.answers;
  const certificates = new CertificateClient(a.vault, v.credential, vaultOptions(a.vault));
  const secrets = new SecretClient(a.vault, v.credential, vaultOptions(a.vault));
  const refused: { version: string; why: string; disabled: boolean }[] = [];
  const versions = await vaultCall(v, `list the versions of ${a.certificate}`, async () => {
    const all = [];
    for await (const version of certificates.listPropertiesOfCertificateVersions(a.certificate))
      all.push(version);
    return all;
  });
  for (const version of versions) {
    const thumbprint =
      version.x509Thumbprint && Buffer.from(version.x509Thumbprint).toString('hex').toUpperCase();
    if (!thumbprint || !version.version || !held.some((k) => k.thumbprint === thumbprint)) continue;
    const signed = await vaultCall(v, `read version ${version.version} of ${a.certificate}`, () =>
      signWith(secrets, a.certificate, version.version!, applicationObjectId),
    );
    if ('proof' in signed) {
      io.out(
        `  signing addKey's proof with version ${version.version} of ${a.certificate} (on the registration)`,
      );
      return signed.proof;
    }
    refused.push({
      version: version.version,
      why: `version ${version.version} (thumbprint ${thumbprint}) ${signed.refused}`,
      disabled: signed.disabled,
    });
  }
  if (refused.length) throw new SetupStoppedError(cannotSign(a, refused));
  return undefined;
}

/** Why no version on the registration can sign, with the exact command that enables a disabled one. */
function cannotSign(a: SetupAnswers, refused: { version: string; why: string; disabled: boolean }[]): string {
  const enable = refused
    .filter((r) => r.disabled)
    .map(
      (r) =>
        `  az keyvault certificate set-attributes --id ${a.vault.replace(/\/$/, '')}/certificates/${a.certificate}/${r.version} --enabled true\n`,
    );
  return (
    `the app registration holds earlier versions of ${a.certificate}, but Key Vault gives none of their private keys to sign addKey's proof: ${refused.map((r) => r.why).join('; ')}. ` +
    (enable.length ? `Enable that version again:\n${enable.join('')}then run setup again; ` : '') +
    `or upload the new public part under Certificates & secrets yourself`
  );
}

/** The proof signed with one version's private key, or why Key Vault will not give that key. */
async function signWith(
  secrets: SecretClient,
  name: string,
  version: string,
  applicationObjectId: string,
): Promise<{ proof: string } | { refused: string; disabled: boolean }> {
  let pem: string | undefined;
  try {
    pem = (await secrets.getSecret(name, { version })).value;
  } catch (e) {
    const { statusCode, code, message } = e as { statusCode?: number; code?: string; message?: string };
    // A disabled version answers 403 too; only that one is a refusal of this version, not of the caller.
    if (statusCode === 403 && (/disabled/i.test(message ?? '') || code === 'SecretDisabled'))
      return { refused: 'is disabled in Key Vault', disabled: true };
    throw e;
  }
  if (!pem || !/-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(pem))
    return {
      refused: pem?.includes('-----BEGIN')
        ? 'has no exportable private key (its policy says exportable: false)'
        : 'is not PEM (the certificate policy must use content type application/x-pem-file)',
      disabled: false,
    };
  return { proof: await signProof(pem, applicationObjectId) };
}

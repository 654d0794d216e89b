// `setup` puts the policy file where the deployed app reads it: the blob POLICY_BLOB_URL names, with
// the signed-in admin's own Entra token (Azure RBAC on the user; the storage account takes no keys). A blob that differs
// from the file in any way (edited in Azure since, setup's own entries included) is replaced only on
// an explicit --upload, after setup named the differences; the write is conditional on the blob read,
// so a concurrent edit is kept.
import { BlockBlobClient, RestError } from '@azure/storage-blob';
import { AuthenticationError, AuthenticationRequiredError, type TokenCredential } from '@azure/identity';
import { SetupStoppedError } from './setup-entra';
import type { Io } from './commands';
import { defaultSignInClientId } from './setup-answers';

const role = 'Storage Blob Data Contributor';

export interface PolicyUpload {
  blobUrl: string;
  /** The local file's name, for messages. */
  file: string;
  text: string;
  /** The signed-in admin's credential (device code): the blob is written as that user. */
  credential: TokenCredential;
  /** Who signed in (UPN), named in the role assignment a missing role needs. */
  user: string;
  /** The public client the admin signed in through, named when it cannot reach Azure Storage. */
  signInClientId: string;
  /** --upload given: replace a blob that differs from the file (its differences are printed first). */
  replace: boolean;
}

/** Uploads `text` unless the blob holds it already; returns what it did. */
export async function uploadPolicyFile(io: Io, u: PolicyUpload): Promise<'uploaded' | 'unchanged'> {
  const blob = new BlockBlobClient(u.blobUrl, u.credential);
  const current = await readBlob(blob, u);
  if (current?.text === u.text) {
    io.out(`  the policy blob already holds ${u.file}`);
    return 'unchanged';
  }
  if (current) {
    const changes = differences(current.text, u.text);
    // The same connections, policies and settings, only ordered or spaced otherwise: nothing to do.
    if (changes?.length === 0) {
      io.out(`  the policy blob already holds ${u.file} (formatted differently)`);
      return 'unchanged';
    }
    if (changes === undefined && !u.replace)
      throw new SetupStoppedError(
        `the policy blob ${u.blobUrl} holds something that is not a policy file; setup will not overwrite it: look at it, then run setup with --upload to replace it, or upload ${u.file} yourself`,
      );
    const listed = changes?.join(', ') ?? 'not a policy file';
    if (!u.replace)
      throw new SetupStoppedError(
        `the policy blob ${u.blobUrl} differs from ${u.file}: ${listed}. Uploading would lose what the blob holds: merge the blob into ${u.file} (or check the differences), then run setup with --upload to replace it`,
      );
    io.out(`  replacing the policy blob (--upload); it differed: ${listed}`);
  }
  await guarded(u, () =>
    blob.upload(u.text, Buffer.byteLength(u.text), {
      blobHTTPHeaders: { blobContentType: 'application/json' },
      conditions: current ? { ifMatch: current.etag } : { ifNoneMatch: '*' },
    }),
  );
  io.out(`  uploaded ${u.file} to ${u.blobUrl}`);
  return 'uploaded';
}

async function readBlob(
  blob: BlockBlobClient,
  u: PolicyUpload,
): Promise<{ text: string; etag: string } | undefined> {
  try {
    // One GET: the text and the ETag the conditional write needs (a HEAD's 404 carries no error code).
    const r = await guarded(u, () => blob.download());
    const chunks: Buffer[] = [];
    for await (const chunk of r.readableStreamBody ?? [])
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    // Storage always sends an ETag; without one there is nothing to make the write conditional on.
    if (!r.etag) throw new Error(`${u.blobUrl}: the storage service answered without an ETag`);
    return { text: Buffer.concat(chunks).toString('utf8'), etag: r.etag };
  } catch (e) {
    if (e instanceof RestError && e.statusCode === 404 && e.code === 'BlobNotFound') return undefined;
    throw e;
  }
}

/**
 * How the file `after` differs from the blob `before`: every top-level setting, connection and policy
 * (by id; an id's second listing counted apart) that is only in one, or not the same. Compared as
 * canonical JSON, so order and spacing are no difference. Undefined when `before` is no policy file.
 */
export function differences(before: string, after: string): string[] | undefined {
  const had = entries(before);
  const has = entries(after) ?? new Map<string, string>();
  if (!had) return undefined;
  const names = new Set([...had.keys(), ...has.keys()]);
  return [...names].flatMap((name) => {
    if (!has.has(name)) return [`${name} only in the blob`];
    if (!had.has(name)) return [`${name} not in the blob`];
    return had.get(name) === has.get(name) ? [] : [`${name} differs`];
  });
}

/** A policy file's entries by name, each as canonical JSON; undefined when it is no JSON object. */
function entries(text: string): Map<string, string> | undefined {
  let f: unknown;
  try {
    f = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof f !== 'object' || f === null || Array.isArray(f)) return undefined;
  const out = new Map<string, string>();
  for (const [key, value] of Object.entries(f)) {
    if ((key === 'connections' || key === 'policies') && Array.isArray(value)) {
      const kind = key === 'connections' ? 'connection' : 'policy';
      const seen = new Map<string, number>();
      value.forEach((x: unknown, i) => {
        const id = (x as { id?: unknown } | null)?.id;
        const base = typeof id === 'string' ? `${kind} "${id}"` : `${kind} #${i + 1} (no id)`;
        const n = (seen.get(base) ?? 0) + 1;
        seen.set(base, n);
        out.set(n === 1 ? base : `${base} (${ordinal(n)})`, canonicalJson(x));
      });
    } else out.set(`"${key}"`, canonicalJson(value));
  }
  return out;
}

/** JSON with every object's keys sorted: equal values give equal text. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

function ordinal(n: number): string {
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
}

/**
 * Why the admin's sign-in got no Azure Storage token, and what to do. A first-party client other than
 * Azure CLI's is refused by Entra (AADSTS65002: not preauthorized for Azure Storage); with Azure CLI's,
 * Storage wants the admin again (Conditional Access for Storage, withdrawn consent, an expired session).
 */
export function noStorageToken(signInClientId: string, blobUrl: string, e: unknown): string {
  const aadsts = /AADSTS\d+/.exec(
    [e, (e as { cause?: unknown })?.cause].map((x) => (x instanceof Error ? x.message : '')).join(' '),
  )?.[0];
  const skip = 'or leave out --policy-blob-url (or give --no-upload) and upload the file yourself';
  return signInClientId === defaultSignInClientId
    ? `your sign-in got no Azure Storage token for ${blobUrl} without signing in again${aadsts ? ` (${aadsts})` : ''}: a Conditional Access policy for Azure Storage, withdrawn consent or an expired session. Run setup again to sign in anew, ${skip}`
    : `the sign-in client ${signInClientId} (--sign-in-client-id) gets no Azure Storage token: Entra gives a Microsoft client tokens only for the resources it is preauthorized for (${aadsts ?? 'AADSTS65002'}). Run setup without --sign-in-client-id (Azure CLI's client reaches Graph and Storage), ${skip}`;
}

/** The storage account and container a blob URL names (https://{account}.blob.core.windows.net/{container}/{blob}). */
function blobScope(url: string): { account: string; container: string } {
  const { hostname, pathname } = new URL(url);
  const parts = pathname.split('/').filter(Boolean);
  // Path-style URLs (Azurite, https://127.0.0.1:port/{account}/{container}/…) carry the account first.
  const pathStyle = !hostname.includes('.') || /^[\d.]+$/.test(hostname);
  return pathStyle
    ? { account: parts[0] ?? '', container: parts[1] ?? '' }
    : { account: hostname.split('.')[0]!, container: parts[0] ?? '' };
}

/** Storage's answers that need the admin to act become a stop that says what to do. */
async function guarded<T>(u: PolicyUpload, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof AuthenticationError || e instanceof AuthenticationRequiredError)
      throw new SetupStoppedError(noStorageToken(u.signInClientId, u.blobUrl, e));
    if (!(e instanceof RestError)) throw e;
    if (e.statusCode === 403) {
      const { account, container } = blobScope(u.blobUrl);
      // Only names Azure allows go into the printed shell command (the URL is the admin's input).
      const command =
        /^[a-z0-9]{3,24}$/.test(account) &&
        /^[a-z0-9-]{3,63}$/.test(container) &&
        /^[^\s'"$`\\]+$/.test(u.user)
          ? `  az role assignment create --role "${role}" --assignee ${u.user} --scope "$(az storage account show --name ${account} --query id -o tsv)/blobServices/default/containers/${container}"\n`
          : '';
      throw new SetupStoppedError(
        `${u.user} may not write ${u.blobUrl} (${e.code ?? 'forbidden'}): that needs the ${role} role on the container "${container}" of the storage account "${account}" (or on the account). Ask an owner to grant it${command ? ':\n' + command : ', '}` +
          `then run setup again (role assignments can take a few minutes to apply), or upload ${u.file} yourself`,
      );
    }
    if (e.statusCode === 404 && e.code === 'ContainerNotFound')
      throw new SetupStoppedError(
        `${u.blobUrl}: its container does not exist; check the URL (azd env get-value POLICY_BLOB_URL)`,
      );
    if (e.statusCode === 412 || (e.statusCode === 409 && e.code === 'BlobAlreadyExists'))
      throw new SetupStoppedError(
        `${u.blobUrl} changed while setup was uploading; run setup again to compare it anew`,
      );
    throw e;
  }
}

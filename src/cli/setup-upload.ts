// `setup` puts the policy file where the deployed app reads it: the blob POLICY_BLOB_URL names, with
// the admin's own Entra token (Azure RBAC; the storage account takes no keys). The blob may hold
// connections and policies the local file does not (edited in Azure since): those are never
// overwritten silently, and the write is conditional on the blob read, so a concurrent edit is kept.
import { BlockBlobClient, RestError } from '@azure/storage-blob';
import type { TokenCredential } from '@azure/identity';
import { SetupStoppedError } from './setup-entra';
import type { Io } from './commands';

const role = 'Storage Blob Data Contributor';

export interface PolicyUpload {
  blobUrl: string;
  /** The local file's name, for messages. */
  file: string;
  text: string;
  credential: TokenCredential;
  /** Setup's own connection and policy, as `connection "main"` / `policy "company-directory"`. */
  ours: Set<string>;
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
    const lost = lostBy(current.text, u.text, u.ours);
    if (lost === undefined)
      throw new SetupStoppedError(
        `the policy blob ${u.blobUrl} holds something that is not a policy file; setup will not overwrite it: look at it, then upload ${u.file} yourself (az storage blob upload --auth-mode login --overwrite --file ${u.file} --blob-url ${u.blobUrl})`,
      );
    if (lost.length > 0)
      throw new SetupStoppedError(
        `the policy blob ${u.blobUrl} holds ${lost.join(', ')}, which ${u.file} lacks or holds otherwise: uploading would lose them. Download the blob, merge it into ${u.file}, then run setup again`,
      );
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
    return { text: Buffer.concat(chunks).toString('utf8'), etag: r.etag ?? '' };
  } catch (e) {
    if (e instanceof RestError && e.statusCode === 404 && e.code === 'BlobNotFound') return undefined;
    throw e;
  }
}

/**
 * What uploading `after` over `before` would lose: connections and policies of `before` that
 * `after` lacks, or holds otherwise (edited in the blob since), except setup's own (`ours`, which
 * setup rewrites as it does in the file). Undefined when `before` is no policy file.
 */
function lostBy(before: string, after: string, ours: Set<string>): string[] | undefined {
  const items = (text: string): Map<string, string> | undefined => {
    try {
      const f = JSON.parse(text) as { connections?: { id?: unknown }[]; policies?: { id?: unknown }[] };
      if (typeof f !== 'object' || f === null || Array.isArray(f)) return undefined;
      const entries = (kind: string, list: { id?: unknown }[] = []) =>
        list.map((x) => [`${kind} "${String(x.id)}"`, JSON.stringify(x)] as const);
      return new Map([...entries('connection', f.connections), ...entries('policy', f.policies)]);
    } catch {
      return undefined;
    }
  };
  const had = items(before);
  const has = items(after) ?? new Map<string, string>();
  if (!had) return undefined;
  return [...had]
    .filter(([id, text]) => !has.has(id) || (has.get(id) !== text && !ours.has(id)))
    .map(([id]) => (has.has(id) ? `${id} (changed there)` : id));
}

/** Storage's answers that need the admin to act become a stop that says what to do. */
async function guarded<T>(u: PolicyUpload, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (!(e instanceof RestError)) throw e;
    if (e.statusCode === 403)
      throw new SetupStoppedError(
        `reading and writing ${u.blobUrl} needs the ${role} role for your account on the storage account or its container (${e.code ?? 'forbidden'}); ask for it (az role assignment create --role "${role}" --assignee <you> --scope <the container's resource id>), then run setup again, or upload ${u.file} yourself`,
      );
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

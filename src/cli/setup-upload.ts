// `setup` puts the policy file where the deployed app reads it: the blob POLICY_BLOB_URL names, with
// the admin's own Entra token (Azure RBAC; the storage account takes no keys). A blob that differs
// from the file in any way (edited in Azure since, setup's own entries included) is replaced only on
// an explicit --upload, after setup named the differences; the write is conditional on the blob read,
// so a concurrent edit is kept.
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
      conditions: current?.etag ? { ifMatch: current.etag } : { ifNoneMatch: '*' },
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
 * How the file `after` differs from the blob `before`: every top-level setting, connection and policy
 * (by id) that is only in one, or not the same. Undefined when `before` is no policy file.
 */
function differences(before: string, after: string): string[] | undefined {
  const entries = (text: string): Map<string, string> | undefined => {
    try {
      const f = JSON.parse(text) as Record<string, unknown>;
      if (typeof f !== 'object' || f === null || Array.isArray(f)) return undefined;
      const out = new Map<string, string>();
      for (const [key, value] of Object.entries(f)) {
        if ((key === 'connections' || key === 'policies') && Array.isArray(value))
          value.forEach((x: unknown, i) => {
            const id = (x as { id?: unknown } | null)?.id;
            const kind = key === 'connections' ? 'connection' : 'policy';
            out.set(
              typeof id === 'string' ? `${kind} "${id}"` : `${kind} #${i + 1} (no id)`,
              JSON.stringify(x),
            );
          });
        else out.set(`"${key}"`, JSON.stringify(value));
      }
      return out;
    } catch {
      return undefined;
    }
  };
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

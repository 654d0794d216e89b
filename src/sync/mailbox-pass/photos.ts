// Step 6: photos, once the contacts exist: only where the source's photo differs from the one we put.
import { planPhotos, type PlannedPhoto } from '../planner';
import type { PhotoStore, StoredContact, WriteOp, WriteOptions, WriteResult } from '../ports';
import type { MailboxPass } from './pass';
import { managedContacts } from './plan';

export interface PhotosWritten {
  ops: number;
  incomplete: boolean;
}

export async function writePhotos(
  pass: MailboxPass,
  photoStore: PhotoStore | undefined,
  writeOptions: WriteOptions,
): Promise<PhotosWritten> {
  const { policy, contacts, result } = pass;
  const planned = planPhotos(pass.desired, managedContacts(pass));
  if (planned.length > 0 && !photoStore)
    throw new Error(`policy ${policy.id}: photos.enabled needs a photo store (blob storage)`);
  const byOp = new Map(planned.map((p, i) => [`p${i}`, p]));
  const photoOps = [...byOp].map(([id, p]) => photoOp(pass, id, p, photoStore!));
  let incomplete = false;
  const recordPhotos = async (results: WriteResult[]): Promise<void> => {
    const up: [string, StoredContact][] = [];
    for (const r of results) {
      const p = byOp.get(r.id);
      if (!p) continue;
      const c = contacts.get(p.sourceKey);
      if (r.outcome === 'ok' || (r.outcome === 'notFound' && p.photo === null)) {
        if (c && !c.pending) up.push([p.sourceKey, { ...c, photo: p.photo }]);
        result.photos = (result.photos ?? 0) + 1;
      } else if (r.outcome === 'failed') {
        result.failed++;
        result.errors.push({
          sourceKey: p.sourceKey,
          status: r.status,
          code: r.code,
          message: `photo: ${r.message}`,
          ...(r.requestId ? { requestId: r.requestId } : {}),
        });
      } else if (r.outcome !== 'notFound') {
        incomplete = true; // lost reply or deadline: the next pass puts it again
      }
    }
    await pass.store.apply(policy.id, pass.mbx, up, []);
    for (const [k, c] of up) contacts.set(k, c);
  };
  if (photoOps.length > 0)
    await pass.graph.write(pass.mbx, photoOps, { ...writeOptions, onResults: recordPhotos });
  return { ops: photoOps.length, incomplete };
}

function photoOp(pass: MailboxPass, id: string, p: PlannedPhoto, photoStore: PhotoStore): WriteOp {
  if (p.photo === null) return { id, kind: 'deletePhoto', contactId: p.contactId };
  const hash = p.photo;
  return {
    id,
    kind: 'setPhoto',
    contactId: p.contactId,
    size: pass.desired.get(p.sourceKey)?.photoSize ?? 0,
    photo: async () => {
      const found = await photoStore.get(hash);
      if (!found) throw new Error(`photo ${hash} of ${p.sourceKey} is not in the photo store`);
      return found;
    },
  };
}

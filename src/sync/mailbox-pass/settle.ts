// Step 7: settle the folder row: the delta token, and the contacts to look at again next pass.
import { sameValue } from '../mapping';
import type { ManagedContact } from '../planner';
import type { FolderRef, StoredContact } from '../ports';
import type { MailboxPass, MutableDrift } from './pass';

/** Writes from which advancing the delta right away beats reading them back next run (half a page). */
const catchUpThreshold = 500;

/**
 * A partial pass keeps the delta token read at its start, so the next pass reads only what changed
 * since (not every write of the whole fill again); the drift seen now but not yet settled is kept
 * as dirty ids and looked at again.
 */
export async function settlePartial(
  pass: MailboxPass,
  drift: MutableDrift,
  newDeltaLink: string | null,
): Promise<void> {
  if (!newDeltaLink) return;
  const unsettled = [...drift.changed.keys(), ...drift.deleted, ...(pass.folderState?.dirtyContactIds ?? [])];
  pass.folderState = {
    ...(pass.folderState ?? { folderId: null, folderName: null }),
    deltaLink: newDeltaLink,
    dirtyContactIds: [...new Set(unsettled)],
  };
  await pass.store.saveFolder(pass.policy.id, pass.mbx, pass.folderState);
}

/**
 * Advances the delta past our own writes when they would fill more than half a delta page next time
 * (a fill); fewer ride along in the next run's single delta read, where their changeKeys mark them
 * as ours. A contact whose managed fields are still what we wrote (a photo put changes its
 * changeKey, and Graph returns none for it) takes the new changeKey; anything else that changed
 * meanwhile is checked next time.
 */
export async function settleComplete(
  pass: MailboxPass,
  ref: FolderRef,
  newDeltaLink: string | null,
  writes: number,
): Promise<void> {
  let deltaLink = newDeltaLink;
  const dirty: string[] = [];
  if (writes >= catchUpThreshold && deltaLink) {
    // `contacts` holds what every batch recorded, so the state need not be read again.
    const ours = new Map<string, [string, ManagedContact]>();
    for (const [k, c] of pass.contacts) if (!c.pending) ours.set(c.contactId, [k, c]);
    const adopted: [string, StoredContact][] = [];
    const d = await pass.graph.readDrift(pass.mbx, ref, deltaLink, (items) => {
      for (const item of items) {
        const known = ours.get(item.contactId);
        if (known === undefined || item.removed || item.changeKey === known[1].changeKey) continue;
        const itemFields = item.fields;
        const written = known[1].written;
        if (itemFields && item.changeKey && pass.fields.every((f) => sameValue(itemFields[f], written[f])))
          adopted.push([known[0], { ...known[1], changeKey: item.changeKey }]);
        else dirty.push(item.contactId);
      }
    });
    await pass.store.apply(pass.policy.id, pass.mbx, adopted, []);
    deltaLink = d.deltaLink;
  }
  pass.folderState = {
    ...(pass.folderState ?? { folderId: null, folderName: null, dirtyContactIds: [] }),
    deltaLink,
    dirtyContactIds: dirty,
  };
  await pass.store.saveFolder(pass.policy.id, pass.mbx, pass.folderState);
}

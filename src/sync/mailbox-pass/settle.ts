// Step 7: settle the folder row: the delta token past our own writes, and the contacts to look at
// again next pass.
import { sameValue } from '../mapping';
import type { ManagedContact } from '../planner';
import type { FolderRef, StoredContact } from '../ports';
import type { MailboxPass, MutableDrift } from './pass';

export interface Settle {
  ref: FolderRef;
  /** The token read at the pass's start (before our writes). */
  newDeltaLink: string | null;
  /** Writes sent by this pass (creates, updates, deletes, photos). */
  writes: number;
  /** Contacts this pass created. */
  createdIds: ReadonlySet<string>;
  /** Drift seen but not acted on (a partial pass): looked at again next pass. */
  unsettled?: MutableDrift;
  /** Re-checks that could not be read this pass. */
  stillDirty: readonly string[];
}

/** Contacts re-checked by id at most (25 $batch reads of 4); past it the next pass lists the folder once. */
export const maxDirtyIds = 100;

/** Writes from which reading them back now beats reading them back next run (half a page). */
const catchUpThreshold = 500;

/**
 * Stores the folder row. After creates (or many writes) the delta is read once more, from the token
 * taken at the pass's start, so the stored token is past our own writes (the next run reads only
 * what users did). Updates and deletes alone need no such read: they touch contacts the token had
 * handed out, so the next round reports what users do to them, and our changeKeys mark ours. Exchange reports a deletion only for an item the token had handed out, so a contact we created
 * and a user deleted before this read is simply absent: one that does not come back is re-checked
 * next pass, as is any managed contact this read shows removed or changed by someone else.
 */
export async function settleFolder(pass: MailboxPass, s: Settle): Promise<void> {
  const dirty = new Set<string>(s.stillDirty);
  if (s.unsettled) {
    for (const id of s.unsettled.changed.keys()) dirty.add(id);
    for (const id of s.unsettled.deleted) dirty.add(id);
    for (const id of pass.folderState?.dirtyContactIds ?? []) dirty.add(id);
  }
  let deltaLink = s.newDeltaLink;
  if (deltaLink && (s.createdIds.size > 0 || s.writes >= catchUpThreshold))
    deltaLink = await catchUp(pass, s.ref, deltaLink, s.createdIds, dirty);
  if (!deltaLink && s.unsettled) return;
  // A partial pass that was to list the whole folder still has to.
  const recheckAll = dirty.size > maxDirtyIds || (s.unsettled !== undefined && pass.folderState?.recheckAll);
  pass.folderState = {
    folderId: pass.folderState?.folderId ?? null,
    folderName: pass.folderState?.folderName ?? null,
    deltaLink,
    dirtyContactIds: recheckAll ? [] : [...dirty],
    ...(recheckAll ? { recheckAll: true } : {}),
    // Marks of the folder itself (created by us, taken over) outlive each pass.
    ...(pass.folderState?.created ? { created: true } : {}),
    ...(pass.folderState?.takenOver ? { takenOver: pass.folderState.takenOver } : {}),
    ...(pass.folderState?.takeOverBefore ? { takeOverBefore: pass.folderState.takeOverBefore } : {}),
    ...(pass.folderState?.nameCheckedAt ? { nameCheckedAt: pass.folderState.nameCheckedAt } : {}),
    ...(pass.folderState?.adoptRefusals?.length ? { adoptRefusals: pass.folderState.adoptRefusals } : {}),
    ...(pass.folderState?.retired?.length ? { retired: pass.folderState.retired } : {}),
  };
  await pass.store.saveFolder(pass.policy.id, pass.mbx, pass.folderState);
}

/**
 * One delta round from `from`: our own writes come back with the changeKeys we stored. A contact
 * whose managed fields are still what we wrote (a photo put changes its changeKey, and Graph
 * returns none for it) takes the new changeKey; anything else goes to `dirty`.
 */
async function catchUp(
  pass: MailboxPass,
  ref: FolderRef,
  from: string,
  createdIds: ReadonlySet<string>,
  dirty: Set<string>,
): Promise<string> {
  // `contacts` holds what every batch recorded, so the state need not be read again.
  const ours = new Map<string, [string, ManagedContact]>();
  for (const [k, c] of pass.contacts) if (!c.pending) ours.set(c.contactId, [k, c]);
  const adopted: [string, StoredContact][] = [];
  const missing = new Set([...createdIds].filter((id) => ours.has(id)));
  const d = await pass.graph.readDrift(pass.mbx, ref, from, (items) => {
    for (const item of items) {
      const known = ours.get(item.contactId);
      if (known === undefined) continue;
      if (item.removed) {
        dirty.add(item.contactId);
        continue;
      }
      missing.delete(item.contactId);
      if (item.changeKey === known[1].changeKey) continue;
      const itemFields = item.fields;
      const written = known[1].written;
      if (itemFields && item.changeKey && pass.fields.every((f) => sameValue(itemFields[f], written[f])))
        adopted.push([known[0], { ...known[1], changeKey: item.changeKey }]);
      else dirty.add(item.contactId);
    }
  });
  for (const id of missing) dirty.add(id);
  await pass.store.apply(pass.policy.id, pass.mbx, adopted, []);
  for (const [k, c] of adopted) pass.contacts.set(k, c);
  return d.deltaLink;
}

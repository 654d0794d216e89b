// Step 3: heal by our tag. Pending creates (lost replies) are looked up one by one; a reconcile
// (adopted folder, expired token) or many pending creates list the folder once instead.
import type { ManagedContact } from '../planner';
import type { FolderRef, StoredContact, TaggedContact } from '../ports';
import { parseTag, tagValue } from '../tag';
import type { MailboxPass, MutableDrift } from './pass';

export interface Healed {
  /** State rows to store before writing (adopted or healed contacts). */
  upserts: [string, StoredContact][];
  /** State rows to drop (pending creates that never happened). */
  deletesState: string[];
  /** Contact ids of twins to delete (a second contact with the same tag). */
  removeDuplicates: string[];
}

/** Pending creates above which listing the folder once beats one tag look-up each. */
const lookUpsBeforeListing = 20;

export async function healByTag(
  pass: MailboxPass,
  ref: FolderRef,
  reconcile: boolean,
  drift: MutableDrift,
): Promise<Healed> {
  const pending = [...pass.contacts.entries()].filter(([, c]) => c.pending);
  const healed: Healed = { upserts: [], deletesState: [], removeDuplicates: [] };
  if (reconcile || pending.length > lookUpsBeforeListing) await reconcileFolder(pass, ref, drift, healed);
  else await lookUpPending(pass, ref, healed);
  return healed;
}

const managedFrom = (found: TaggedContact, hash: string): ManagedContact => ({
  contactId: found.contactId,
  hash,
  written: found.fields,
  changeKey: found.changeKey,
  keep: [],
  userDeleted: false,
  orphaned: false,
});

async function reconcileFolder(
  pass: MailboxPass,
  ref: FolderRef,
  drift: MutableDrift,
  healed: Healed,
): Promise<void> {
  const { contacts, policy } = pass;
  const listed = await pass.graph.listContacts(pass.mbx, ref);
  const byKey = new Map<string, TaggedContact[]>();
  for (const c of listed) {
    const key = c.tag ? parseTag(c.tag, policy.id) : undefined;
    if (key) byKey.set(key, [...(byKey.get(key) ?? []), c]);
  }
  const present = new Set(listed.map((c) => c.contactId));
  for (const [key, stored] of [...contacts]) {
    if (!stored.pending && !byKey.has(key) && !present.has(stored.contactId))
      drift.deleted.add(stored.contactId);
  }
  for (const [key, found] of byKey) {
    const [keepOne, ...twins] = found as [TaggedContact, ...TaggedContact[]];
    healed.removeDuplicates.push(...twins.map((t) => t.contactId));
    const stored = contacts.get(key);
    if (stored && !stored.pending && stored.contactId === keepOne.contactId) {
      if (keepOne.changeKey !== stored.changeKey)
        drift.changed.set(keepOne.contactId, { fields: keepOne.fields, changeKey: keepOne.changeKey });
      continue;
    }
    // Adopt: what is there is what we wrote (best knowledge), so only differences get written.
    const adopted = managedFrom(keepOne, '');
    contacts.set(key, adopted);
    healed.upserts.push([key, adopted]);
  }
  for (const [key, c] of [...contacts]) {
    if (c.pending) {
      contacts.delete(key);
      healed.deletesState.push(key);
    }
  }
}

async function lookUpPending(pass: MailboxPass, ref: FolderRef, healed: Healed): Promise<void> {
  const { contacts, policy } = pass;
  for (const [key, p] of [...contacts]) {
    if (!p.pending) continue;
    const found = await pass.graph.findByTag(pass.mbx, ref, tagValue(policy.id, key));
    if (found.length === 0) {
      contacts.delete(key);
      healed.deletesState.push(key);
      continue;
    }
    const [keepOne, ...twins] = found as [TaggedContact, ...TaggedContact[]];
    healed.removeDuplicates.push(...twins.map((t) => t.contactId));
    const contact = managedFrom(keepOne, p.hash);
    contacts.set(key, contact);
    healed.upserts.push([key, contact]);
  }
}

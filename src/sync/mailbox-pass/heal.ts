// Step 3: heal by our tag. Pending creates (lost replies) are looked up one by one; a reconcile
// (adopted folder, expired token) or many pending creates list the folder once instead.
import type { ContactFieldName } from '../config/schema';
import type { ManagedContact } from '../planner';
import type { FolderRef, StoredContact, TaggedContact } from '../ports';
import { parseTag, tagValue } from '../tag';
import { releaseMoved } from './moved';
import { lookUpOptions, type MailboxPass, type MutableDrift } from './pass';

export interface Healed {
  /** State rows to store before writing (adopted or healed contacts). */
  upserts: [string, StoredContact][];
  /** State rows to drop (pending creates that never happened). */
  deletesState: string[];
  /** Contact ids of twins to delete (a second contact with the same tag). */
  removeDuplicates: string[];
  /** Managed contacts missing from the folder whose look-up did not happen: re-checked next pass. */
  unresolved: string[];
  /** Look-ups by tag the time budget (or throttling) left undone: nothing may be planned this pass. */
  cut: boolean;
}

const pastDeadline = (pass: MailboxPass): boolean =>
  pass.options.deadline !== undefined && Date.now() >= pass.options.deadline;

/** Pending creates above which listing the folder once beats one tag look-up each. */
const lookUpsBeforeListing = 20;

/**
 * `unknownIds`: contacts the delta showed that the state does not know. One carrying our tag is a
 * contact the state lost (a restored backup, lost rows) or a twin (a create that ran twice): looked
 * up by its tag, so a create is never sent for a contact that exists.
 */
export async function healByTag(
  pass: MailboxPass,
  ref: FolderRef,
  reconcile: boolean,
  drift: MutableDrift,
  unknownIds: ReadonlySet<string> = new Set(),
): Promise<Healed> {
  const pending = [...pass.contacts.entries()].filter(([, c]) => c.pending);
  const healed: Healed = { upserts: [], deletesState: [], removeDuplicates: [], unresolved: [], cut: false };
  if (reconcile || pending.length + unknownIds.size > lookUpsBeforeListing)
    await reconcileFolder(pass, ref, drift, healed);
  else {
    await lookUpUnknown(pass, ref, unknownIds, healed);
    await lookUpPending(pass, ref, healed);
  }
  return healed;
}

/** Of contacts carrying the same tag, the one to keep: the oldest (the one we know on a tie). */
export function splitTwins(
  found: readonly TaggedContact[],
  knownId: string | undefined,
): { keep: TaggedContact; twins: TaggedContact[] } {
  const rank = (c: TaggedContact): [string, number, string] => [
    c.createdDateTime ?? '\uffff',
    c.contactId === knownId ? 0 : 1,
    c.contactId,
  ];
  const sorted = [...found].sort((a, b) => {
    const [ra, rb] = [rank(a), rank(b)];
    for (let i = 0; i < 3; i++) if (ra[i] !== rb[i]) return ra[i]! < rb[i]! ? -1 : 1;
    return 0;
  });
  return { keep: sorted[0]!, twins: sorted.slice(1) };
}

async function lookUpUnknown(
  pass: MailboxPass,
  ref: FolderRef,
  unknownIds: ReadonlySet<string>,
  healed: Healed,
): Promise<void> {
  const { contacts, policy } = pass;
  const keys = new Set<string>();
  if (unknownIds.size === 0) return;
  const { deadline } = pass.options;
  const read = await pass.graph.getContacts(pass.mbx, [...unknownIds], lookUpOptions(pass, deadline));
  if (read.size < unknownIds.size) healed.cut = true;
  for (const c of read.values()) {
    const key = c?.tag ? parseTag(c.tag, policy.id) : undefined;
    if (key && !contacts.get(key)?.pending) keys.add(key);
  }
  for (const key of keys) {
    if (pastDeadline(pass)) {
      healed.cut = true;
      return;
    }
    const found = await pass.graph.findByTag(pass.mbx, ref, tagValue(policy.id, key));
    if (found.length === 0) continue;
    const stored = contacts.get(key);
    const known = stored && !stored.pending ? stored.contactId : undefined;
    const { keep, twins } = splitTwins(found, known);
    healed.removeDuplicates.push(...twins.map((t) => t.contactId));
    if (keep.contactId === known) continue;
    const adopted = managedFrom(keep, '');
    contacts.set(key, adopted);
    healed.upserts.push([key, adopted]);
  }
}

/** A contact found by tag; `keep`: the fields its pending create wrote as the user's. */
const managedFrom = (found: TaggedContact, hash: string, keep: ContactFieldName[] = []): ManagedContact => ({
  contactId: found.contactId,
  hash,
  written: found.fields,
  changeKey: found.changeKey,
  keep,
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
  const missing: MutableDrift = { changed: new Map(), deleted: new Set() };
  for (const [key, stored] of [...contacts]) {
    if (stored.pending || byKey.has(key) || present.has(stored.contactId)) continue;
    if (stored.userDeleted || drift.deleted.has(stored.contactId)) drift.deleted.add(stored.contactId);
    else missing.deleted.add(stored.contactId);
  }
  // Missing, and not seen removed by a delta (more re-checks than a row lists, a lost token): each
  // is looked up, as a removal the delta shows, so one its user moved elsewhere is released.
  const { unresolved } = await releaseMoved(pass, ref, missing);
  healed.unresolved.push(...unresolved);
  for (const id of missing.deleted) drift.deleted.add(id);
  for (const [key, found] of byKey) {
    const stored = contacts.get(key);
    const { keep: keepOne, twins } = splitTwins(
      found,
      stored && !stored.pending ? stored.contactId : undefined,
    );
    healed.removeDuplicates.push(...twins.map((t) => t.contactId));
    if (stored && !stored.pending && stored.contactId === keepOne.contactId) {
      if (keepOne.changeKey !== stored.changeKey)
        drift.changed.set(keepOne.contactId, { fields: keepOne.fields, changeKey: keepOne.changeKey });
      continue;
    }
    // Adopt: what is there is what we wrote (best knowledge), so only differences get written.
    const adopted = managedFrom(keepOne, '', stored?.pending ? stored.keep : undefined);
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
    // A pending create left unlooked-up stays pending: planned again only once it is looked up.
    if (pastDeadline(pass)) {
      healed.cut = true;
      return;
    }
    const found = await pass.graph.findByTag(pass.mbx, ref, tagValue(policy.id, key));
    if (found.length === 0) {
      contacts.delete(key);
      healed.deletesState.push(key);
      continue;
    }
    const { keep: keepOne, twins } = splitTwins(found, undefined);
    healed.removeDuplicates.push(...twins.map((t) => t.contactId));
    const contact = managedFrom(keepOne, p.hash, p.keep);
    contacts.set(key, contact);
    healed.upserts.push([key, contact]);
  }
}

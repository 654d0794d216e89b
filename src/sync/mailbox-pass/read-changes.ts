// Step 2: what users changed since the last pass: the folder's contacts delta (or the round read at
// the run's start), then the contacts left to re-check. A deleted folder is recreated; an expired
// token asks for a reconcile by tag.
import type { ContactFieldName } from '../config/schema';
import { sameValue } from '../mapping';
import type { ManagedContact } from '../planner';
import {
  DeltaExpiredError,
  FolderGoneError,
  type DriftItem,
  type FolderRef,
  type FolderState,
  type TaggedContact,
} from '../ports';
import { ensureFolder, folderMissingInDryRun } from './ensure-folder';
import { releaseLeft, releaseMoved } from './moved';
import { lookUpOptions, type MailboxPass, type MutableDrift } from './pass';

export interface Changes {
  drift: MutableDrift;
  /** The token after this read (null when nothing was read: a dry run without the folder). */
  newDeltaLink: string | null;
  /** Look every contact up by tag (adopted folder, expired token). */
  reconcile: boolean;
  /** The folder, recreated if the user deleted it. */
  ref: FolderRef;
  /** Source keys whose contacts vanished with a deleted folder (they come back as restores). */
  lostWithFolder: Set<string>;
  /** Contacts in the delta the state does not know (users' own, or ours the state lost). */
  unknownIds: Set<string>;
  /** Contacts to re-check whose read failed (throttled) or did not fit the time budget: kept. */
  stillDirty: string[];
  /** A re-check or a removed contact's look-up was left for later (time budget, a failed read or
   * release): the pass is partial, so a run reports success only once each is settled. */
  recheckCut: boolean;
}

/** A delta read whose items do not matter (only its new token). */
const ignore = (): void => undefined;

/** Managed (not pending) contacts by contact id. */
export function managedByContactId(pass: MailboxPass): Map<string, [string, ManagedContact]> {
  const m = new Map<string, [string, ManagedContact]>();
  for (const [k, c] of pass.contacts) if (!c.pending) m.set(c.contactId, [k, c]);
  return m;
}

export async function readChanges(pass: MailboxPass, ref: FolderRef, adopted: boolean): Promise<Changes> {
  const { graph, mbx, options } = pass;
  const out: Changes = {
    drift: { changed: new Map(), deleted: new Set() },
    newDeltaLink: null,
    reconcile: adopted,
    ref,
    lostWithFolder: new Set(),
    unknownIds: new Set(),
    stillDirty: [],
    recheckCut: false,
  };
  // A folder row that gave up on listing ids: compare every managed contact by listing the folder.
  if (pass.folderState?.recheckAll) out.reconcile = true;
  if (folderMissingInDryRun(pass)) return out;
  try {
    const managed = managedByContactId(pass);
    const ownWrites = new Map<string, ManagedContact>();
    const take = (items: DriftItem[]): void =>
      takeDrift(out.drift, managed, items, out.unknownIds, { fields: pass.fields, ownWrites });
    const pre = options.preReadDrift;
    const preLink = pre?.nextLink ?? pre?.deltaLink;
    if (
      pre &&
      preLink &&
      pass.folderState?.deltaLink === pre.fromDeltaLink &&
      new URL(preLink).origin === new URL(pre.fromDeltaLink).origin
    ) {
      take(pre.items);
      // A round longer than the pre-read's page goes on from its next page, never from the start.
      out.newDeltaLink = pre.nextLink
        ? (await graph.readDrift(mbx, ref, pre.nextLink, take)).deltaLink
        : preLink;
    } else {
      out.newDeltaLink = (
        await graph.readDrift(mbx, ref, pass.folderState?.deltaLink ?? null, take)
      ).deltaLink;
    }
    const rechecked = await recheckDirty(pass, ref, managed, out.drift, (items) =>
      takeDrift(out.drift, managed, items, undefined, { fields: pass.fields, ownWrites }),
    );
    out.stillDirty = rechecked.left;
    out.recheckCut = rechecked.cut;
    await settleOwnWrites(pass, ownWrites);
    await settleRemoved(pass, ref, out, rechecked.read);
  } catch (e) {
    if (e instanceof FolderGoneError) {
      // The user deleted the folder: everything in it is gone; recreate it and its contacts. Those
      // the user deleted before (seen by an earlier pass) stay as the policy says: their rows stay.
      const deletedBefore = [...pass.contacts].filter(([, c]) => !c.pending && c.userDeleted);
      // Contacts moved out before the folder went still carry our tag elsewhere: released first.
      if (!options.dryRun)
        await releaseLeft(
          pass,
          ref,
          [...pass.contacts.values()].flatMap((c) => (c.pending || c.userDeleted ? [] : [c.contactId])),
        );
      for (const k of pass.contacts.keys()) out.lostWithFolder.add(k);
      for (const [k] of deletedBefore) out.lostWithFolder.delete(k);
      if (!options.dryRun) {
        await pass.store.clear(pass.policy.id, mbx);
        if (deletedBefore.length > 0) await pass.store.apply(pass.policy.id, mbx, deletedBefore, []);
      }
      pass.contacts.clear();
      for (const [k, c] of deletedBefore) pass.contacts.set(k, c);
      const retired = pass.folderState?.retired;
      pass.folderState = null;
      const again = await ensureFolder(pass);
      if (retired && pass.folderState && !options.dryRun) {
        // Folders left behind by an earlier policy change are still to be emptied.
        pass.folderState = { ...(pass.folderState as FolderState), retired };
        await pass.store.saveFolder(pass.policy.id, mbx, pass.folderState);
      }
      out.ref = again.ref;
      out.reconcile = again.adopted;
      if (!options.dryRun) out.newDeltaLink = (await graph.readDrift(mbx, out.ref, null, ignore)).deltaLink;
    } else if (e instanceof DeltaExpiredError) {
      out.newDeltaLink = await readWholeFolder(pass, ref, out);
      await settleRemoved(pass, ref, out);
    } else throw e;
  }
  return out;
}

/** Removed contacts a user moved elsewhere are released; those not settled are re-checked. */
async function settleRemoved(
  pass: MailboxPass,
  ref: FolderRef,
  out: Changes,
  alreadyRead?: ReadonlyMap<string, TaggedContact | null>,
): Promise<void> {
  const { unresolved } = await releaseMoved(pass, ref, out.drift, alreadyRead);
  if (unresolved.length === 0) return;
  out.stillDirty.push(...unresolved);
  out.recheckCut = true;
}

/**
 * An expired token: one full round is the folder as it is, read once. Managed contacts missing from
 * it are gone; contacts the state does not know are looked up by tag (or the folder listed when many).
 */
async function readWholeFolder(pass: MailboxPass, ref: FolderRef, out: Changes): Promise<string> {
  const managed = managedByContactId(pass);
  const seen = new Set<string>();
  const round = await pass.graph.readDrift(pass.mbx, ref, null, (items) => {
    for (const item of items) seen.add(item.contactId);
    takeDrift(out.drift, managed, items, out.unknownIds);
  });
  for (const id of managed.keys()) if (!seen.has(id)) out.drift.deleted.add(id);
  return round.deltaLink;
}

/** Delta items about managed contacts, as drift: a removal, or a changeKey that is not ours. */
export function takeDrift(
  drift: MutableDrift,
  managed: ReadonlyMap<string, [string, ManagedContact]>,
  items: readonly DriftItem[],
  unknownIds?: Set<string>,
  own?: { fields: readonly ContactFieldName[]; ownWrites: Map<string, ManagedContact> },
): void {
  for (const item of items) {
    const hit = managed.get(item.contactId);
    if (!hit) {
      if (item.removed) unknownIds?.delete(item.contactId);
      else unknownIds?.add(item.contactId);
      continue;
    }
    if (item.removed) drift.deleted.add(item.contactId);
    else if (item.changeKey && item.changeKey !== hit[1].changeKey && item.fields) {
      const [key, have] = hit;
      const itemFields = item.fields;
      const intent = have.intent;
      if (own && intent && own.fields.every((f) => sameValue(itemFields[f], intent.written[f]))) {
        // Our own PATCH whose reply was lost: what it wrote is what we meant to write.
        const { intent: _sent, ...rest } = have;
        own.ownWrites.set(key, {
          ...rest,
          written: intent.written,
          hash: intent.hash,
          changeKey: item.changeKey,
        });
        drift.changed.delete(item.contactId);
      } else drift.changed.set(item.contactId, { fields: itemFields, changeKey: item.changeKey });
    }
  }
}

/** PATCHes of an earlier pass found done: stored as written, so the plan sees no user edit. */
async function settleOwnWrites(
  pass: MailboxPass,
  ownWrites: ReadonlyMap<string, ManagedContact>,
): Promise<void> {
  for (const [k, c] of ownWrites) pass.contacts.set(k, c);
  // Written, though the reply was lost (or a resend met our own changeKey): counted as updates.
  pass.result.updated += ownWrites.size;
  if (ownWrites.size > 0 && !pass.options.dryRun)
    await pass.store.apply(pass.policy.id, pass.mbx, [...ownWrites], []);
}

/**
 * Contacts a caught-up delta left to look at again (changed by someone else meanwhile), read 20 to a
 * $batch within the pass's time budget (at most maxDirtyIds of them). Returns the ids not read (a
 * failed read, or none started past the deadline) and whether the deadline cut the re-checks short.
 */
async function recheckDirty(
  pass: MailboxPass,
  ref: FolderRef,
  managed: ReadonlyMap<string, [string, ManagedContact]>,
  drift: MutableDrift,
  take: (items: DriftItem[]) => void,
): Promise<{ left: string[]; cut: boolean; read: ReadonlyMap<string, TaggedContact | null> }> {
  const ids = (pass.folderState?.dirtyContactIds ?? []).filter(
    (id) => managed.has(id) && !drift.changed.has(id) && !drift.deleted.has(id),
  );
  if (ids.length === 0) return { left: [], cut: false, read: new Map() };
  const { deadline } = pass.options;
  const found = await pass.graph.getContacts(pass.mbx, ids, lookUpOptions(pass, deadline));
  const left: string[] = [];
  for (const id of ids) {
    const current = found.get(id);
    if (current === undefined) left.push(id);
    // Gone, or moved out of our folder by its user (released with the delta's removals).
    else if (current === null || (ref.kind === 'named' && current.folderId !== ref.id)) drift.deleted.add(id);
    // As a delta item: a changeKey that follows our own PATCH (its intent) is ours, not a user's.
    else take([{ contactId: id, removed: false, changeKey: current.changeKey, fields: current.fields }]);
  }
  return { left, cut: left.length > 0 && deadline !== undefined && Date.now() >= deadline, read: found };
}

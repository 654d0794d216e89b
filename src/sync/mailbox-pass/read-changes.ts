// Step 2: what users changed since the last pass: the folder's contacts delta (or the round read at
// the run's start), then the contacts left to re-check. A deleted folder is recreated; an expired
// token asks for a reconcile by tag.
import type { ManagedContact } from '../planner';
import { DeltaExpiredError, FolderGoneError, type DriftItem, type FolderRef } from '../ports';
import { ensureFolder, folderMissingInDryRun } from './ensure-folder';
import type { MailboxPass, MutableDrift } from './pass';

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
  };
  if (folderMissingInDryRun(pass)) return out;
  try {
    const managed = managedByContactId(pass);
    const take = (items: DriftItem[]): void => takeDrift(out.drift, managed, items, out.unknownIds);
    const pre = options.preReadDrift;
    if (
      pre &&
      pass.folderState?.deltaLink === pre.fromDeltaLink &&
      new URL(pre.deltaLink).origin === new URL(pre.fromDeltaLink).origin
    ) {
      take(pre.items);
      out.newDeltaLink = pre.deltaLink;
    } else {
      out.newDeltaLink = (
        await graph.readDrift(mbx, ref, pass.folderState?.deltaLink ?? null, take)
      ).deltaLink;
    }
    await recheckDirty(pass, managed, out.drift);
  } catch (e) {
    if (e instanceof FolderGoneError) {
      // The user deleted the folder: everything in it is gone; recreate it and its contacts.
      for (const k of pass.contacts.keys()) out.lostWithFolder.add(k);
      if (!options.dryRun) await pass.store.clear(pass.policy.id, mbx);
      pass.contacts.clear();
      pass.folderState = null;
      const again = await ensureFolder(pass);
      out.ref = again.ref;
      out.reconcile = again.adopted;
      if (!options.dryRun) out.newDeltaLink = (await graph.readDrift(mbx, out.ref, null, ignore)).deltaLink;
    } else if (e instanceof DeltaExpiredError) {
      out.reconcile = true;
      out.newDeltaLink = (await graph.readDrift(mbx, ref, null, ignore)).deltaLink;
    } else throw e;
  }
  return out;
}

/** Delta items about managed contacts, as drift: a removal, or a changeKey that is not ours. */
export function takeDrift(
  drift: MutableDrift,
  managed: ReadonlyMap<string, [string, ManagedContact]>,
  items: readonly DriftItem[],
  unknownIds?: Set<string>,
): void {
  for (const item of items) {
    const hit = managed.get(item.contactId);
    if (!hit) {
      if (item.removed) unknownIds?.delete(item.contactId);
      else unknownIds?.add(item.contactId);
      continue;
    }
    if (item.removed) drift.deleted.add(item.contactId);
    else if (item.changeKey && item.changeKey !== hit[1].changeKey && item.fields)
      drift.changed.set(item.contactId, { fields: item.fields, changeKey: item.changeKey });
  }
}

/** Contacts a caught-up delta left to look at again (changed by someone else meanwhile). */
async function recheckDirty(
  pass: MailboxPass,
  managed: ReadonlyMap<string, [string, ManagedContact]>,
  drift: MutableDrift,
): Promise<void> {
  for (const id of pass.folderState?.dirtyContactIds ?? []) {
    const hit = managed.get(id);
    if (!hit || drift.changed.has(id) || drift.deleted.has(id)) continue;
    const current = await pass.graph.getContact(pass.mbx, id);
    if (!current) drift.deleted.add(id);
    else if (current.changeKey !== hit[1].changeKey)
      drift.changed.set(id, { fields: current.fields, changeKey: current.changeKey });
  }
}

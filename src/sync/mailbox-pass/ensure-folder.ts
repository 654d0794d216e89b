// Step 1: the folder. Ours by id, else by name (adopt and reconcile), else create. The folder's name
// is the policy's: a folder its user renamed gets its name back, and a policy that renames its folder
// renames ours (contacts stay where they are). When the contacts must change folder (folder.name
// switched to or from null, or the name taken by another folder), the old folder is retired: our
// contacts there are removed once the new one is filled (settle step).
import {
  DeltaExpiredError,
  FolderGoneError,
  type FolderRef,
  type FolderState,
  type StoredContact,
} from '../ports';
import { folderNameCheckDue } from './folder-name-check';
import { releaseLeft } from './moved';
import type { MailboxPass } from './pass';

export interface EnsuredFolder {
  ref: FolderRef;
  /** Found by name rather than by our stored id: its contacts are reconciled by tag. */
  adopted: boolean;
}

/** Retired folders a row remembers at most (each policy edit between two full passes adds one). */
const maxRetired = 10;

export async function ensureFolder(pass: MailboxPass): Promise<EnsuredFolder> {
  const { policy, graph, mbx, options } = pass;
  const name = policy.folder.name;
  const known = pass.folderState;
  if (name === null) {
    // Adopted (reconciled by tag) the first time only: a policy that manages nothing in this mailbox
    // does not list the whole Contacts folder on every run.
    if (known === null || known.folderName !== null) {
      if (known?.folderId && !options.dryRun) await moveOut(pass, known, known.folderId);
      else {
        pass.folderState = { folderId: null, folderName: null, deltaLink: null, dirtyContactIds: [] };
        if (known?.retired) pass.folderState.retired = known.retired;
      }
      return { ref: { kind: 'default' }, adopted: true };
    }
    return { ref: { kind: 'default' }, adopted: false };
  }
  if (known?.folderId && known.folderName !== null) {
    const check = options.folderNameCheck;
    // Checked lately: a deleted folder shows in the delta read (404), a rename waits for the next check.
    if (!folderNameCheckDue(known, name, check))
      return { ref: { kind: 'named', id: known.folderId }, adopted: false };
    const ours = await ourFolderName(pass, known.folderId);
    if (ours === undefined)
      // Gone: the delta read says so, and the folder and its contacts are recreated.
      return { ref: { kind: 'named', id: known.folderId }, adopted: false };
    if (!options.dryRun) pass.folderState = { ...known, ...checkedNow(options) };
    if (ours === name && known.folderName === name)
      // Stored when the pass settles, with its delta link.
      return { ref: { kind: 'named', id: known.folderId }, adopted: false };
    if (options.dryRun) return { ref: { kind: 'named', id: known.folderId }, adopted: false };
    // Renamed by its user, or by the policy: the folder takes the policy's name, contacts stay.
    if (ours === name || (await graph.renameFolder(mbx, known.folderId, name))) {
      pass.folderState = { ...(pass.folderState ?? known), folderName: name };
      await pass.store.saveFolder(policy.id, mbx, pass.folderState);
      return { ref: { kind: 'named', id: known.folderId }, adopted: false };
    }
  }
  if (options.dryRun) {
    const found = await graph.findFolder(mbx, name);
    pass.folderState = { folderId: found ?? null, folderName: name, deltaLink: null, dirtyContactIds: [] };
    return { ref: found ? { kind: 'named', id: found } : { kind: 'default' }, adopted: Boolean(found) };
  }
  let id = await graph.findFolder(mbx, name);
  const adopted = id !== undefined;
  id ??= await graph.createFolder(mbx, name);
  // Cleanup deletes a folder we created once it is empty; one found by name is never ours to delete.
  // Its name is known now: checked again past FOLDER_NAME_CHECK_HOURS.
  const createdMark = { ...(adopted ? {} : { created: true }), ...checkedNow(options) };
  // A row for the default folder (folder.name was null) or another named folder: move out of it.
  if (known && known.folderId !== id && (known.folderId !== null || known.folderName === null))
    await moveOut(pass, known, known.folderId, { folderId: id, folderName: name, ...createdMark });
  else {
    pass.folderState = {
      folderId: id,
      folderName: name,
      deltaLink: null,
      dirtyContactIds: [],
      ...createdMark,
    };
    if (known?.retired) pass.folderState.retired = known.retired;
    await pass.store.saveFolder(policy.id, mbx, pass.folderState);
  }
  return { ref: { kind: 'named', id }, adopted: adopted || known !== null };
}

/** The name of our folder now: read with the run's pre-read drift when it came along, else asked. */
async function ourFolderName(pass: MailboxPass, folderId: string): Promise<string | undefined> {
  const pre = pass.options.preReadDrift;
  if (pre?.folderName !== undefined && pass.folderState?.deltaLink === pre.fromDeltaLink)
    return pre.folderName;
  return pass.graph.folderName(pass.mbx, folderId);
}

/**
 * Leaves `from` for another folder: the row names the new folder and remembers the old one as
 * retired (stored first, so a crash never forgets it), then the contact rows are dropped: the new
 * folder is reconciled by tag and filled from the source, and our contacts in the old one go when
 * the pass settles. Rows of contacts their users deleted are kept (onUserDelete: keep holds).
 */
async function moveOut(
  pass: MailboxPass,
  known: FolderState,
  from: string | null,
  to: Pick<FolderState, 'folderId' | 'folderName' | 'created' | 'nameCheckedAt'> = {
    folderId: null,
    folderName: null,
  },
): Promise<void> {
  // Read (moved contacts released) before the row forgets the old folder's delta link.
  const gone = await deletedSince(pass, known, from, pass.contacts.values());
  const retired = [...(known.retired ?? []).filter((r) => r !== from), from].slice(-maxRetired);
  pass.folderState = { ...to, deltaLink: null, dirtyContactIds: [], retired };
  await pass.store.saveFolder(pass.policy.id, pass.mbx, pass.folderState);
  // A contact its user deleted stays deleted (onUserDelete: keep) in the new folder too.
  const keep = pass.policy.options.onUserDelete === 'keep';
  const kept: [string, StoredContact][] = [];
  const keys: string[] = [];
  for (const [k, c] of pass.contacts) {
    if (!c.pending && c.userDeleted) continue;
    if (keep && !c.pending && gone.has(c.contactId)) kept.push([k, { ...c, userDeleted: true }]);
    else keys.push(k);
  }
  if (keys.length + kept.length > 0) await pass.store.apply(pass.policy.id, pass.mbx, kept, keys);
  for (const k of keys) pass.contacts.delete(k);
  for (const [k, c] of kept) pass.contacts.set(k, c);
}

/**
 * The managed contacts (of `contacts`) users deleted from, or moved out of, a folder the policy
 * leaves, since its last read. Moved ones are released: they are their users' now, and nothing
 * reads the old folder again. Under onUserDelete: keep, each stays deleted from the new folder.
 */
export async function deletedSince(
  pass: MailboxPass,
  known: FolderState,
  from: string | null,
  contacts: Iterable<StoredContact>,
): Promise<Set<string>> {
  const removed = new Set<string>();
  if (!known.deltaLink) return removed;
  const ref: FolderRef = from === null ? { kind: 'default' } : { kind: 'named', id: from };
  try {
    await pass.graph.readDrift(pass.mbx, ref, known.deltaLink, (items) => {
      for (const i of items) if (i.removed) removed.add(i.contactId);
    });
  } catch (e) {
    // An expired token or a deleted folder: nothing is known; the source is written in full.
    if (!(e instanceof DeltaExpiredError || e instanceof FolderGoneError)) throw e;
  }
  const ours: string[] = [];
  for (const c of contacts)
    if (!c.pending && !c.userDeleted && removed.has(c.contactId)) ours.push(c.contactId);
  return ours.length > 0 ? releaseLeft(pass, ref, ours) : new Set();
}

/** A dry run against a mailbox whose folder does not exist yet: nothing to read there. */
export const folderMissingInDryRun = (pass: MailboxPass): boolean =>
  pass.options.dryRun && pass.policy.folder.name !== null && !pass.folderState?.folderId;

/** The folder's name was read (or set) now: the time, when names are checked only now and then. */
const checkedNow = (options: MailboxPass['options']): Pick<FolderState, 'nameCheckedAt'> =>
  options.folderNameCheck ? { nameCheckedAt: new Date(options.folderNameCheck.now).toISOString() } : {};

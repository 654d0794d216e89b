// Step 1: the folder. Ours by id, else by name (adopt and reconcile), else create.
import type { FolderRef } from '../ports';
import type { MailboxPass } from './pass';

export interface EnsuredFolder {
  ref: FolderRef;
  /** Found by name rather than by our stored id: its contacts are reconciled by tag. */
  adopted: boolean;
}

export async function ensureFolder(pass: MailboxPass): Promise<EnsuredFolder> {
  const { policy, graph, store, mbx, options } = pass;
  const name = policy.folder.name;
  if (name === null) {
    // Adopted (reconciled by tag) the first time only: a policy that manages nothing in this mailbox
    // does not list the whole Contacts folder on every run.
    const first = pass.folderState === null || pass.folderState.folderName !== null;
    if (first) pass.folderState = { folderId: null, folderName: null, deltaLink: null, dirtyContactIds: [] };
    return { ref: { kind: 'default' }, adopted: first && pass.contacts.size === 0 };
  }
  const known = pass.folderState;
  if (known?.folderId && known.folderName === name)
    return { ref: { kind: 'named', id: known.folderId }, adopted: false };
  if (options.dryRun) {
    const found = await graph.findFolder(mbx, name);
    pass.folderState = { folderId: found ?? null, folderName: name, deltaLink: null, dirtyContactIds: [] };
    return { ref: found ? { kind: 'named', id: found } : { kind: 'default' }, adopted: Boolean(found) };
  }
  let id = await graph.findFolder(mbx, name);
  const adopted = id !== undefined;
  id ??= await graph.createFolder(mbx, name);
  pass.folderState = {
    folderId: id,
    folderName: name,
    deltaLink: null,
    dirtyContactIds: [],
    ...(adopted ? {} : { created: true }),
  };
  await store.saveFolder(policy.id, mbx, pass.folderState);
  return { ref: { kind: 'named', id }, adopted };
}

/** A dry run against a mailbox whose folder does not exist yet: nothing to read there. */
export const folderMissingInDryRun = (pass: MailboxPass): boolean =>
  pass.options.dryRun && pass.policy.folder.name !== null && !pass.folderState?.folderId;

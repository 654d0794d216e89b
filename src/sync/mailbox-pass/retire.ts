// Step 6b: folders the policy left (see ensure-folder). Once the new folder is filled, our tagged
// contacts in a retired folder are deleted (moves, not removals: the deletion threshold is not
// involved, each is in the new folder already), users' own contacts there are left alone, and a
// named folder left empty is deleted. A folder not emptied yet stays retired for the next pass.
import type { FolderRef, WriteOp, WriteOptions } from '../ports';
import { GraphRequestError } from '../ports';
import { parseTag } from '../tag';
import type { MailboxPass } from './pass';

export async function retireFolders(pass: MailboxPass, options: WriteOptions): Promise<void> {
  const state = pass.folderState;
  if (!state?.retired?.length) return;
  const left: (string | null)[] = [];
  for (const folderId of state.retired) {
    // The folder we are in now (the policy went back to it, or a former id wrote there): only the
    // former ids' contacts go.
    const current = folderId === state.folderId;
    if (!(await emptyFolder(pass, folderId, options, current))) left.push(folderId);
  }
  pass.folderState = { ...state, retired: left };
}

/** True when nothing of ours is left in the folder. */
export async function emptyFolder(
  pass: MailboxPass,
  folderId: string | null,
  options: WriteOptions,
  current: boolean,
): Promise<boolean> {
  const { graph, mbx, policy } = pass;
  const ids = current ? policy.previousIds : [policy.id, ...policy.previousIds];
  if (ids.length === 0) return true;
  const ref: FolderRef = folderId === null ? { kind: 'default' } : { kind: 'named', id: folderId };
  let listed;
  try {
    listed = await graph.listContacts(mbx, ref);
  } catch (e) {
    if (e instanceof GraphRequestError && e.status === 404) return true; // the folder is gone already
    throw e;
  }
  const ours = listed.filter((c) => {
    const tag = c.tag;
    return tag !== null && ids.some((id) => parseTag(tag, id) !== undefined);
  });
  const ops: WriteOp[] = ours.map((c, n) => ({ id: `r${n}`, kind: 'delete', contactId: c.contactId }));
  const results = ops.length > 0 ? await graph.write(mbx, ops, options) : [];
  const done = results.every((r) => r.outcome === 'ok' || r.outcome === 'notFound');
  if (!done) return false;
  // A named folder that holds nothing of the user's goes too; the default folder always stays.
  if (folderId !== null && !current && listed.length === ours.length) await graph.deleteFolder(mbx, folderId);
  return true;
}

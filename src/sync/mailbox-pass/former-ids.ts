// Step 1b: a renamed policy (previousIds). On the new id's first pass in a mailbox, each former id's
// folder is retired (its contacts are replaced by the new id's once they are written, see retire.ts),
// contacts their users deleted stay deleted (onUserDelete: keep), and the former id's state is
// dropped. The folder row is saved before the former state goes, so a crash forgets nothing.
import type { StoredContact } from '../ports';
import { deletedSince } from './ensure-folder';
import type { MailboxPass } from './pass';

/** Retired folders a row remembers at most (as ensure-folder). */
const maxRetired = 10;

export async function adoptFormerIds(pass: MailboxPass, firstPass: boolean): Promise<void> {
  const { policy, store, mbx } = pass;
  if (!firstPass || policy.previousIds.length === 0 || pass.options.dryRun || !pass.folderState) return;
  const retired = [...(pass.folderState.retired ?? [])];
  const deleted: [string, StoredContact][] = [];
  const former: string[] = [];
  for (const prev of policy.previousIds) {
    const old = await store.load(prev, mbx);
    if (!old.folder) continue;
    former.push(prev);
    // The former id's folder, and those it had not emptied yet (a folder template's, say).
    for (const f of [old.folder.folderId, ...(old.folder.retired ?? [])])
      if (!retired.includes(f)) retired.push(f);
    // Deletions and moves no pass has read yet are only in the former folder's delta: read it, or
    // deleted contacts return (onUserDelete: keep) and moved ones keep the former id's tag.
    const gone = await deletedSince(pass, old.folder, old.folder.folderId, old.contacts.values());
    if (policy.options.onUserDelete === 'keep')
      for (const [k, c] of old.contacts)
        if (!c.pending && (c.userDeleted || gone.has(c.contactId)) && !pass.contacts.has(k))
          deleted.push([k, { ...c, userDeleted: true }]);
  }
  if (former.length === 0) return;
  pass.folderState = { ...pass.folderState, retired: retired.slice(-maxRetired) };
  await store.saveFolder(policy.id, mbx, pass.folderState);
  if (deleted.length > 0) await store.apply(policy.id, mbx, deleted, []);
  for (const [k, c] of deleted) pass.contacts.set(k, c);
  for (const prev of former) await store.clear(prev, mbx);
}

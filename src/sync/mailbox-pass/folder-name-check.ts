// Reading our folder's name costs a Graph request per mailbox (it rides in the run's pre-read
// $batch, but Graph counts each sub-request against the mailbox's limit). A deleted folder needs no
// such read: its contacts delta answers 404 ErrorItemNotFound. Only a user's rename does, so it is
// read at most once per FOLDER_NAME_CHECK_HOURS, and whenever the policy's folder name changed.
import type { FolderState } from '../ports';
import type { FolderNameCheck } from './pass';

/** Whether this pass reads the name of the named folder `known` (the policy names it `name`). */
export function folderNameCheckDue(
  known: Pick<FolderState, 'folderName' | 'nameCheckedAt'>,
  name: string,
  check: FolderNameCheck | undefined,
): boolean {
  if (!check || known.folderName !== name || !known.nameCheckedAt) return true;
  const at = Date.parse(known.nameCheckedAt);
  // A clock set back (or a garbled time) reads it now rather than never.
  return !(at <= check.now) || check.now - at >= check.everyMs;
}

// Cleanup of one mailbox: every contact carrying the policy's tag is deleted (found by the tag in the
// folder, not by the state, so contacts the state lost go too), then the folder if we created it and
// it is empty, then the mailbox's state. Contacts without the tag (users' own) are never touched.
import {
  GraphRequestError,
  type FolderRef,
  type MailboxGraph,
  type MailboxStateStore,
  type TaggedContact,
} from '../ports';
import { parseTag } from '../tag';
import { partStateIdOf } from '../folder-template';
import { partStore } from './folder-parts';
import type { MailboxError } from './pass';

export interface CleanupResult {
  mailboxId: string;
  /** removed: done; planned: a dry run's count; failed: some deletes failed (the state is kept). */
  status: 'removed' | 'planned' | 'failed';
  /** Contacts of the policy deleted (or, in a dry run, to delete). */
  contacts: number;
  /** The folder we created was (or, in a dry run, would be) deleted, being empty. */
  folderRemoved: boolean;
  /** Contacts without the policy's tag in its folder: left where they are. */
  othersLeft: number;
  errors: MailboxError[];
}

export interface CleanupOptions {
  dryRun: boolean;
  /** The policy's folder name when the mailbox has no state (null: the default Contacts folder). */
  folderName?: string | null;
  deadline?: number;
}

const isGone = (e: unknown): boolean =>
  e instanceof GraphRequestError && (e.status === 404 || /NotFound/i.test(e.code));

export async function cleanMailbox(
  policyId: string,
  mailboxId: string,
  graph: MailboxGraph,
  store: MailboxStateStore,
  options: CleanupOptions,
): Promise<CleanupResult> {
  const result: CleanupResult = {
    mailboxId,
    status: options.dryRun ? 'planned' : 'removed',
    contacts: 0,
    folderRemoved: false,
    othersLeft: 0,
    errors: [],
  };
  const state = await store.loadFolder(policyId, mailboxId);
  // A folder template: each per-value folder is cleaned as a folder of its own, under its state.
  for (const hash of state?.parts ?? []) {
    // Found by the folder's own row: no name to look for.
    const byState: CleanupOptions = {
      dryRun: options.dryRun,
      ...(options.deadline !== undefined ? { deadline: options.deadline } : {}),
    };
    const part = await cleanMailbox(
      policyId,
      mailboxId,
      graph,
      partStore(store, policyId, partStateIdOf(policyId, hash)),
      byState,
    );
    result.contacts += part.contacts;
    result.othersLeft += part.othersLeft;
    result.folderRemoved ||= part.folderRemoved;
    result.errors.push(...part.errors);
  }
  if (result.errors.length > 0) {
    result.status = 'failed';
    return result;
  }
  const ref = state?.parts ? undefined : await folderOf(graph, mailboxId, state, options.folderName);
  const own = await emptyOf(policyId, mailboxId, graph, ref, state?.created === true, options, result);
  // Folders the policy left and had not emptied yet (a folder changed, a template switched on or off):
  // ours there go too, and a named one left with nothing of the user's, as the sync would do.
  for (const id of new Set(state?.retired ?? []))
    if (id !== (state?.folderId ?? undefined) && !(id === null && ref?.kind === 'default'))
      await emptyOf(
        policyId,
        mailboxId,
        graph,
        id === null ? { kind: 'default' } : { kind: 'named', id },
        true,
        options,
        result,
      );
  if (options.dryRun) {
    result.folderRemoved ||= own;
    return result;
  }
  if (result.errors.length > 0) {
    result.status = 'failed'; // the state stays, so running the removal again finds the rest
    return result;
  }
  result.folderRemoved ||= own;
  await store.clear(policyId, mailboxId);
  return result;
}

/**
 * Deletes the policy's contacts in one folder (counted in `result`), then the folder when it is
 * `ours` to delete and nothing else is in it. True when the folder went (in a dry run: would go).
 */
async function emptyOf(
  policyId: string,
  mailboxId: string,
  graph: MailboxGraph,
  ref: FolderRef | undefined,
  ours: boolean,
  options: CleanupOptions,
  result: CleanupResult,
): Promise<boolean> {
  let listed: TaggedContact[];
  try {
    listed = ref ? await graph.listContacts(mailboxId, ref) : [];
  } catch (e) {
    if (!isGone(e)) throw e;
    return false; // the folder (or the mailbox) is gone: nothing of ours is left there
  }
  const tagged = listed.filter((c) => c.tag !== null && parseTag(c.tag, policyId) !== undefined);
  const othersLeft = listed.length - tagged.length;
  result.othersLeft += othersLeft;
  const removable = ref?.kind === 'named' && ours && othersLeft === 0;
  if (options.dryRun) {
    result.contacts += tagged.length;
    return removable;
  }
  const results = await graph.write(
    mailboxId,
    tagged.map((c, i) => ({ id: String(i), kind: 'delete', contactId: c.contactId })),
    options.deadline !== undefined ? { deadline: options.deadline } : {},
  );
  let failed = false;
  for (const r of results) {
    if (r.outcome === 'ok' || r.outcome === 'notFound') result.contacts++;
    else {
      failed = true;
      result.errors.push({
        status: r.outcome === 'failed' ? r.status : 0,
        code: r.outcome === 'failed' ? r.code : r.outcome,
        message:
          r.outcome === 'failed' || r.outcome === 'unknown' ? r.message : 'not sent before the deadline',
      });
    }
  }
  if (failed || !removable || ref.kind !== 'named') return false;
  // Looked at again just before: a contact a user put there meanwhile keeps the folder.
  if ((await graph.listContacts(mailboxId, ref)).length > 0) return false;
  return graph.deleteFolder(mailboxId, ref.id);
}

async function folderOf(
  graph: MailboxGraph,
  mailboxId: string,
  state: Awaited<ReturnType<MailboxStateStore['loadFolder']>>,
  folderName: string | null | undefined,
): Promise<FolderRef | undefined> {
  if (state?.folderId) return { kind: 'named', id: state.folderId };
  if (state && state.folderName === null) return { kind: 'default' };
  if (folderName === null) return { kind: 'default' };
  if (folderName === undefined) return undefined;
  try {
    const id = await graph.findFolder(mailboxId, folderName);
    return id ? { kind: 'named', id } : undefined;
  } catch (e) {
    if (isGone(e)) return undefined;
    throw e;
  }
}

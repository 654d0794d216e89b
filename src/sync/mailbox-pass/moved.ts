// Part of step 2: a managed contact the folder's delta shows removed may have been moved by its user
// to another folder (Outlook gives it a new id there; its immutable id, which we use, stays). Such a
// contact is the user's now: our tag on it is overwritten (Graph cannot delete an extended property),
// and for the policy's folder it counts as removed by its user (onUserDelete decides). One the user
// deleted in Outlook sits in Deleted Items (not a contact folder): a deletion, and never written to.
import { GraphRequestError, type FolderRef, type TaggedContact, type WriteOp } from '../ports';
import { tagPropertyId } from '../tag';
import { lookUpOptions, type MailboxPass, type MutableDrift } from './pass';

/** A released contact's tag value: no policy id starts with "~", so no policy takes it for its own. */
export const releasedTag = (tag: string): string => `~released|${tag}`;

/**
 * Look-ups stop at half of what is left of the pass's budget: the writes they lead to (restores, a
 * user's deletion kept) get the other half, so each pass settles some for good and none starts over.
 */
export function lookUpDeadline(pass: MailboxPass): number | undefined {
  const { deadline } = pass.options;
  if (deadline === undefined) return undefined;
  const now = Date.now();
  return deadline <= now ? deadline : now + Math.floor((deadline - now) / 2);
}

export interface Moved {
  /** Removed ids whose look-up did not happen (throttled, time budget) or whose release failed. */
  unresolved: string[];
}

/**
 * Looks up (in $batch reads, within the time budget) each managed contact the delta showed removed.
 * Gone: a deletion. Still in our folder: not removed after all. Elsewhere: moved; released, it stays
 * a removal. An id not settled this pass leaves `drift.deleted` and is returned to be re-checked.
 */
export async function releaseMoved(
  pass: MailboxPass,
  ref: FolderRef,
  drift: MutableDrift,
  alreadyRead: ReadonlyMap<string, TaggedContact | null> = new Map(),
  budget: 'half' | 'none' = 'half',
): Promise<Moved> {
  const ids = [...drift.deleted];
  if (ids.length === 0) return { unresolved: [] };
  const deadline = budget === 'none' ? undefined : lookUpDeadline(pass);
  const toRead = ids.filter((id) => !alreadyRead.has(id));
  const found = new Map(alreadyRead);
  if (toRead.length > 0)
    for (const [id, c] of await pass.graph.getContacts(pass.mbx, toRead, lookUpOptions(pass, deadline)))
      found.set(id, c);
  const unresolved: string[] = [];
  const releases: WriteOp[] = [];
  const stillHere: string[] = [];
  const contactFolder = await contactFolderCheck(pass, ids, found, ref);
  for (const id of ids) {
    const c = found.get(id);
    if (c === null) continue;
    if (c === undefined) unresolved.push(id);
    else if (ref.kind === 'named' && c.folderId === ref.id) stillHere.push(id);
    else if (c.tag === null || c.tag.startsWith('~')) continue;
    else if (c.folderId !== undefined && !contactFolder.has(c.folderId)) unresolved.push(id);
    else if (c.folderId !== undefined && contactFolder.get(c.folderId) === false) continue;
    else
      releases.push({
        id: `release-${releases.length}`,
        kind: 'update',
        contactId: id,
        ifMatch: c.changeKey,
        body: () => ({ singleValueExtendedProperties: [{ id: tagPropertyId, value: releasedTag(c.tag!) }] }),
      });
  }
  if (releases.length > 0 && !pass.options.dryRun) {
    const until = budget === 'none' ? undefined : pass.options.deadline;
    const results = await pass.graph.write(
      pass.mbx,
      releases,
      until !== undefined ? { deadline: until } : {},
    );
    const ok = new Set(results.filter((r) => r.outcome === 'ok').map((r) => r.id));
    for (const op of releases) if (!ok.has(op.id)) unresolved.push((op as { contactId: string }).contactId);
  }
  for (const id of [...unresolved, ...stillHere]) drift.deleted.delete(id);
  return { unresolved };
}

/**
 * Whether each folder the looked-up contacts now sit in is a contact folder, one read per folder. A
 * contact its user deleted in Outlook sits in Deleted Items, a mail folder `contactFolders/{id}` does
 * not find: that is the user's deletion (onUserDelete decides), not a move that makes it theirs, and
 * it is not written to. A folder whose read failed (throttled) is left out: its contacts are re-checked.
 */
async function contactFolderCheck(
  pass: MailboxPass,
  ids: readonly string[],
  found: ReadonlyMap<string, TaggedContact | null>,
  ref: FolderRef,
): Promise<Map<string, boolean>> {
  const folders = new Set<string>();
  for (const id of ids) {
    const c = found.get(id);
    if (!c || c.folderId === undefined || c.tag === null || c.tag.startsWith('~')) continue;
    if (ref.kind === 'named' && c.folderId === ref.id) continue;
    folders.add(c.folderId);
  }
  const out = new Map<string, boolean>();
  for (const folderId of folders) {
    try {
      out.set(folderId, await pass.graph.isContactFolder(pass.mbx, folderId));
    } catch (e) {
      if (!(e instanceof GraphRequestError) || (e.status !== 429 && e.status < 500)) throw e;
    }
  }
  return out;
}

/**
 * Managed contacts missing from a folder the pass is leaving (the user deleted it, the policy moved
 * to another folder): each is looked up, and one its user moved elsewhere is released, whatever the
 * time budget (a rare event, and nothing would look at them again). Returns the ids gone from the
 * folder; throws (503, so the pass is tried again) before anything is forgotten when a look-up or a
 * release did not complete.
 */
export async function releaseLeft(
  pass: MailboxPass,
  ref: FolderRef,
  ids: Iterable<string>,
): Promise<Set<string>> {
  const drift: MutableDrift = { changed: new Map(), deleted: new Set(ids) };
  const { unresolved } = await releaseMoved(pass, ref, drift, new Map(), 'none');
  if (unresolved.length > 0)
    throw new GraphRequestError(
      `${unresolved.length} contact(s) missing from a folder the policy leaves could not be looked up or released (throttled); the next pass tries again.`,
      503,
      'MovedContactsUnsettled',
      undefined,
    );
  return drift.deleted;
}

// A folder per value (folder-template.ts): one mailbox pass per folder, each with its own state rows
// (its own delta, threshold and folder row) under a state id of its own; the policy's row names the
// folders (`parts`). Contacts keep the policy's tag whichever folder they are in. A contact whose
// value changed is written in its new folder first and removed from the old one only once it is
// there (a move: not counted against the threshold); a folder that lost every contact goes when
// nothing of the user's is left in it, and so does the folder of the plain name the template
// replaced.
import type { Policy } from '../config/schema';
import type { TargetMailbox } from '../directory';
import {
  assignFolders,
  partHash,
  partStateId,
  partStateIdOf,
  type FolderAssignment,
} from '../folder-template';
import type { ContactFields } from '../mapping';
import { managedFields } from '../mapping';
import { absorbUserChange, type DesiredContact, type ManagedContact } from '../planner';
import {
  DeltaExpiredError,
  FolderGoneError,
  type FolderRef,
  type FolderState,
  type MailboxGraph,
  type MailboxStateStore,
  type StoredContact,
  type WriteOptions,
} from '../ports';
import {
  freshCounts,
  type CarriedEdit,
  type MailboxResult,
  type MutableDrift,
  type SyncMailboxOptions,
} from './pass';
import { MapWithout } from './map-without';
import { releaseLeft } from './moved';
import { takeDrift } from './read-changes';
import { deletedSince } from './ensure-folder';
import { emptyFolder } from './retire';
import type { MailboxPass } from './pass';

/**
 * Folders a row remembers to empty at most: a template's per-value folders, old and new (2 ×
 * maxFolders), a few plain ones and former ids' (the Table store keeps them in pieces). Past it the
 * oldest are forgotten (their contacts stay, with the policy's tag, for a removal to find).
 */
export const maxRetiredFolders = 500;
const bounded = (ids: (string | null)[]): (string | null)[] => [...new Set(ids)].slice(-maxRetiredFolders);

/** The store seen by one folder's pass: the policy's own id stands for the folder's state id. */
export function partStore(store: MailboxStateStore, policyId: string, stateId: string): MailboxStateStore {
  const to = (id: string): string => (id === policyId ? stateId : id);
  return {
    load: (p, m) => store.load(to(p), m),
    loadFolder: (p, m) => store.loadFolder(to(p), m),
    saveFolder: (p, m, f) => store.saveFolder(to(p), m, f),
    apply: (p, m, u, d) => store.apply(to(p), m, u, d),
    clear: (p, m) => store.clear(to(p), m),
    listMailboxes: (p) => store.listMailboxes(to(p)),
  };
}

/** Contacts a folder's pass leaves alone: their value moved them to another folder. */
export type Held = { has(key: string): boolean };

export type RunPass = (
  policy: Policy,
  desired: ReadonlyMap<string, DesiredContact>,
  store: MailboxStateStore,
  result: MailboxResult,
  extra: {
    held: Held;
    sourceSize: number;
    holdDeletes: boolean;
    carried?: ReadonlyMap<string, CarriedEdit> | undefined;
  },
) => Promise<MailboxResult>;

interface Part {
  name: string;
  stateId: string;
  store: MailboxStateStore;
  desired: ReadonlyMap<string, DesiredContact>;
}

/** The folders of this run's values, and those of earlier values named by their own folder row. */
async function partsOf(
  policy: Policy,
  mbx: string,
  store: MailboxStateStore,
  a: FolderAssignment,
  old: string[],
  dryRun: boolean,
): Promise<Part[]> {
  const parts = new Map<string, Part>();
  const part = (name: string, desired: ReadonlyMap<string, DesiredContact>): Part => {
    const stateId = partStateId(policy.id, name);
    return { name, stateId, store: partStore(store, policy.id, stateId), desired };
  };
  for (const g of a.groups.values()) parts.set(partHash(g.name), part(g.name, g.desired));
  for (const hash of old) {
    if (parts.has(hash)) continue;
    const stateId = partStateIdOf(policy.id, hash);
    const name = (await store.loadFolder(stateId, mbx))?.folderName;
    // A folder row never written (a crash before its first pass): nothing of it to empty.
    if (name) parts.set(hash, part(name, new Map()));
    else if (!dryRun) await store.clear(stateId, mbx);
  }
  return [...parts.values()];
}

/** Adds one folder's counts to the mailbox's. */
function addResult(to: MailboxResult, r: MailboxResult): void {
  for (const k of ['created', 'updated', 'deleted', 'unchanged', 'restored', 'failed'] as const)
    to[k] += r[k];
  to.duplicatesRemoved += r.duplicatesRemoved;
  to.errors.push(...r.errors);
  if (r.photos !== undefined) to.photos = (to.photos ?? 0) + r.photos;
  if (r.deletionsBlocked) {
    const b = to.deletionsBlocked ?? { wanted: 0, managed: 0, limit: 0 };
    to.deletionsBlocked = {
      wanted: b.wanted + r.deletionsBlocked.wanted,
      managed: b.managed + r.deletionsBlocked.managed,
      limit: b.limit + r.deletionsBlocked.limit,
    };
  }
  if (r.takeOver) to.takeOver = r.takeOver;
  if (r.status === 'partial') to.status = 'partial';
  else if (r.status === 'planned' && to.status !== 'partial') to.status = 'planned';
}

/** Read through a function: TypeScript would narrow the status to what was last assigned. */
const unfinished = (r: MailboxResult): boolean => r.status === 'partial';

const freshResult = (m: MailboxResult): MailboxResult => ({ ...m, ...freshCounts() });

export async function syncFolderParts(
  policy: Policy,
  mailbox: TargetMailbox,
  desiredAll: ReadonlyMap<string, DesiredContact>,
  graph: MailboxGraph,
  store: MailboxStateStore,
  options: SyncMailboxOptions,
  result: MailboxResult,
  runPass: RunPass,
): Promise<MailboxResult> {
  const mbx = mailbox.userId;
  if (!options.dryRun) await adoptFormerRoots(policy, mbx, graph, store);
  const root = await store.load(policy.id, mbx);
  const assignment = assignFolders(policy.folder, desiredAll);
  const parts = await partsOf(policy, mbx, store, assignment, root.folder?.parts ?? [], options.dryRun);
  // The plain folder the template replaced: emptied once every per-value folder is filled.
  const plain = root.folder && !root.folder.parts ? root.folder : null;
  // What users did in the plain folder since its last read goes with its contacts (a deletion kept,
  // an edit they own; one they moved elsewhere is released): read before the row forgets the folder's delta link.
  if (plain && !options.dryRun) await rememberPlainChanges(policy, mbx, graph, store, root.contacts, plain);
  const index: FolderState = {
    folderId: null,
    folderName: null,
    deltaLink: null,
    dirtyContactIds: [],
    parts: parts.map((p) => partHash(p.name)),
    retired: plain ? bounded([...(plain.retired ?? []), plain.folderId]) : (root.folder?.retired ?? []),
  };
  // Saved before any folder is written, so a crash forgets neither a folder nor the plain one.
  if (!options.dryRun) await store.saveFolder(policy.id, mbx, index);

  const states = new Map<string, Map<string, StoredContact>>();
  for (const p of parts) states.set(p.stateId, (await store.load(p.stateId, mbx)).contacts);
  const where = (key: string): string | undefined => {
    const k = assignment.keyOf.get(key);
    return k === undefined ? undefined : partStateId(policy.id, assignment.groups.get(k)!.name);
  };
  const mailboxLimit = mailboxThreshold(policy, desiredAll, states.values());
  const holdDeletes = !options.force && mailboxLimit.wanted > mailboxLimit.limit;
  result.status = options.dryRun ? 'planned' : 'succeeded';
  const moves = movesOf(parts, states, root.contacts, where);
  const pass = async (p: Part, desired: ReadonlyMap<string, DesiredContact>): Promise<MailboxResult> => {
    // Also those adopted by tag in a folder found by name (the pass reconciles it).
    const held: Held = { has: (k) => where(k) !== undefined && where(k) !== p.stateId };
    const others = [...states.values(), root.contacts];
    const mine = states.get(p.stateId)!;
    if (!options.dryRun) await carryUserDeletions(policy, mbx, p, mine, others);
    return runPass(
      { ...policy, folder: { ...policy.folder, name: p.name } },
      desired,
      p.store,
      freshResult(result),
      {
        held,
        sourceSize: desiredAll.size,
        holdDeletes,
        carried: carriedEdits(moves.carry.get(p.stateId), mine, others),
      },
    );
  };
  // Folders contacts leave are read first (without the contacts moving in), so what users did to a
  // leaving contact since the last read is in its row when its new folder writes it.
  const first = options.dryRun ? [] : parts.filter((p) => moves.out.has(p.stateId));
  for (const p of first) {
    const ins = moves.ins.get(p.stateId);
    const r = await pass(p, ins ? new MapWithout(p.desired, ins) : p.desired);
    if (ins) r.unchanged = 0; // counted by its second pass
    addResult(result, r);
    states.set(p.stateId, (await p.store.load(policy.id, mbx)).contacts);
  }
  for (const p of parts)
    if (!first.includes(p) || moves.ins.has(p.stateId)) addResult(result, await pass(p, p.desired));
  // The mailbox's threshold holds over all its folders, as for one folder; each folder's too.
  if (holdDeletes) result.deletionsBlocked = mailboxLimit;
  if (options.dryRun || unfinished(result)) return result;

  const writeOptions: WriteOptions = options.deadline !== undefined ? { deadline: options.deadline } : {};
  const left = await finishMoves(policy, mbx, graph, parts, where, writeOptions);
  // Folders of parts that kept nothing are forgotten; the others stay named in the row.
  const kept = parts.filter((p) => !left.gone.has(p.stateId)).map((p) => partHash(p.name));
  let retired = index.retired ?? [];
  if (left.complete) {
    const current = new Set(left.folderIds);
    const still: (string | null)[] = [];
    for (const id of retired)
      if (
        !(await emptyFolder(rootPass(policy, mbx, graph), id, writeOptions, id !== null && current.has(id)))
      )
        still.push(id);
    retired = still;
    if (root.contacts.size > 0) await store.apply(policy.id, mbx, [], [...root.contacts.keys()]);
  }
  await store.saveFolder(policy.id, mbx, { ...index, parts: kept, retired });
  if (!left.complete) result.status = 'partial';
  else if (result.failed > 0) result.status = 'failed';
  return result;
}

/**
 * Contacts a value change moves: by state id, the source keys moving into a folder (their row is
 * in another folder's state, or the plain folder's the template replaced), those whose user's edits
 * go with them (also when an earlier create left only a pending row), and the folders they leave.
 */
function movesOf(
  parts: Part[],
  states: ReadonlyMap<string, ReadonlyMap<string, StoredContact>>,
  rootContacts: ReadonlyMap<string, StoredContact>,
  where: (key: string) => string | undefined,
): { ins: Map<string, Set<string>>; carry: Map<string, Set<string>>; out: Set<string> } {
  const rowAt = new Set<string>();
  const out = new Set<string>();
  for (const [stateId, contacts] of states)
    for (const [k, c] of contacts) {
      if (c.pending) continue;
      rowAt.add(k);
      const to = where(k);
      if (to !== undefined && to !== stateId) out.add(stateId);
    }
  for (const [k, c] of rootContacts) if (!c.pending) rowAt.add(k);
  const ins = new Map<string, Set<string>>();
  const carry = new Map<string, Set<string>>();
  const add = (to: Map<string, Set<string>>, stateId: string, k: string): void => {
    let set = to.get(stateId);
    if (!set) to.set(stateId, (set = new Set()));
    set.add(k);
  };
  for (const p of parts) {
    const mine = states.get(p.stateId)!;
    for (const k of p.desired.keys()) {
      if (!rowAt.has(k)) continue;
      const here = mine.get(k);
      if (!here) add(ins, p.stateId, k);
      // A create that failed (or whose reply was lost) left a pending row: the next one carries too.
      if (!here || here.pending) add(carry, p.stateId, k);
    }
  }
  return { ins, carry, out };
}

/** The fields users own in contacts moving into a folder, with their values, from the rows they leave. */
function carriedEdits(
  ins: ReadonlySet<string> | undefined,
  mine: ReadonlyMap<string, StoredContact>,
  others: ReadonlyMap<string, StoredContact>[],
): Map<string, CarriedEdit> | undefined {
  if (!ins) return undefined;
  const carried = new Map<string, CarriedEdit>();
  for (const k of ins) {
    const here = mine.get(k);
    if (here && !here.pending) continue;
    for (const other of others) {
      const c = other.get(k);
      if (!c || c.pending || c.userDeleted || c.keep.length === 0) continue;
      const written = c.written;
      const values: ContactFields = {};
      for (const f of c.keep)
        if (written[f] !== undefined) (values as Record<string, unknown>)[f] = written[f];
      carried.set(k, { keep: [...c.keep], values });
      break;
    }
  }
  return carried.size > 0 ? carried : undefined;
}

/**
 * The plain folder a template replaced: what users did there since its last read (a deletion kept,
 * fields they own now) is remembered in its rows, which the per-value folders carry on.
 */
async function rememberPlainChanges(
  policy: Policy,
  mbx: string,
  graph: MailboxGraph,
  store: MailboxStateStore,
  contacts: Map<string, StoredContact>,
  plain: FolderState,
): Promise<void> {
  if (!plain.deltaLink) return;
  const byId = new Map<string, [string, ManagedContact]>();
  for (const [k, c] of contacts) if (!c.pending) byId.set(c.contactId, [k, c]);
  const drift: MutableDrift = { changed: new Map(), deleted: new Set() };
  const ref: FolderRef =
    plain.folderId === null ? { kind: 'default' } : { kind: 'named', id: plain.folderId };
  try {
    await graph.readDrift(mbx, ref, plain.deltaLink, (items) => takeDrift(drift, byId, items));
  } catch (e) {
    // An expired token or a deleted folder: nothing is known; the source is written in full.
    if (!(e instanceof DeltaExpiredError || e instanceof FolderGoneError)) throw e;
  }
  // Missing ones are looked up: those moved elsewhere are released, the rest were deleted.
  if (drift.deleted.size > 0)
    drift.deleted = await releaseLeft(rootPass(policy, mbx, graph), ref, drift.deleted);
  const o = { ...policy.options, fields: managedFields(policy.mapping), rules: policy.mapping.rules };
  const remembered: [string, StoredContact][] = [];
  for (const [k, c] of contacts) {
    const now = c.pending ? undefined : absorbUserChange(c, drift, o);
    if (now) remembered.push([k, now]);
  }
  if (remembered.length > 0) await store.apply(policy.id, mbx, remembered, []);
  for (const [k, c] of remembered) contacts.set(k, c);
}

/** A contact its user deleted (onUserDelete: keep) stays deleted when its value moves it. */
async function carryUserDeletions(
  policy: Policy,
  mbx: string,
  p: Part,
  mine: Map<string, StoredContact>,
  all: Map<string, StoredContact>[],
): Promise<void> {
  if (policy.options.onUserDelete !== 'keep') return;
  const carried: [string, StoredContact][] = [];
  for (const key of p.desired.keys()) {
    if (mine.has(key)) continue;
    for (const other of all) {
      const c = other.get(key);
      if (c && !c.pending && c.userDeleted) {
        carried.push([key, c]);
        break;
      }
    }
  }
  if (carried.length === 0) return;
  await p.store.apply(policy.id, mbx, carried, []);
  for (const [k, c] of carried) mine.set(k, c);
}

/**
 * Removes each moved contact from its old folder once its new folder holds it, and drops the state
 * of folders left with nothing (deleting a folder we created once nothing of the user's is in it).
 */
async function finishMoves(
  policy: Policy,
  mbx: string,
  graph: MailboxGraph,
  parts: Part[],
  where: (key: string) => string | undefined,
  options: WriteOptions,
): Promise<{ complete: boolean; gone: Set<string>; folderIds: string[] }> {
  const now = new Map<string, { folder: FolderState | null; contacts: Map<string, StoredContact> }>();
  for (const p of parts) now.set(p.stateId, await p.store.load(policy.id, mbx));
  let complete = true;
  const gone = new Set<string>();
  const folderIds: string[] = [];
  for (const p of parts) {
    const state = now.get(p.stateId)!;
    const moved: [string, StoredContact][] = [];
    for (const [k, c] of state.contacts) {
      const to = where(k);
      if (to === undefined || to === p.stateId) continue;
      const there = now.get(to)?.contacts.get(k);
      if (there && !there.pending) moved.push([k, c]);
    }
    const ops = moved.flatMap(([, c], n) =>
      c.pending || c.userDeleted ? [] : [{ id: `m${n}`, kind: 'delete' as const, contactId: c.contactId }],
    );
    const results = ops.length > 0 ? await graph.write(mbx, ops, options) : [];
    const ok = new Set(
      results.filter((r) => r.outcome === 'ok' || r.outcome === 'notFound').map((r) => r.id),
    );
    const dropped = moved.filter(([, c], n) => c.pending || c.userDeleted || ok.has(`m${n}`)).map(([k]) => k);
    if (dropped.length < moved.length) complete = false;
    if (dropped.length > 0) await p.store.apply(policy.id, mbx, [], dropped);
    for (const k of dropped) state.contacts.delete(k);
    const folderId = state.folder?.folderId ?? null;
    if (p.desired.size > 0 || state.contacts.size > 0) {
      if (folderId) folderIds.push(folderId);
      continue;
    }
    // Nothing of this value is left: the folder goes once nothing of the user's is in it.
    if (folderId && state.folder?.created) {
      const listed = await graph.listContacts(mbx, { kind: 'named', id: folderId }).catch(() => null);
      if (listed && listed.length === 0) await graph.deleteFolder(mbx, folderId);
    }
    await p.store.clear(policy.id, mbx);
    gone.add(p.stateId);
  }
  return { complete, gone, folderIds };
}

/** Enough of a pass for emptying the folders the policy's own row retired. */
const rootPass = (policy: Policy, mbx: string, graph: MailboxGraph): MailboxPass =>
  ({ policy, mbx, graph, options: { dryRun: false, force: false } }) as MailboxPass;

/**
 * The template was replaced by a plain name: the per-value folders become the policy's retired
 * folders (emptied once the plain folder is filled, as for any folder change), deletions users made
 * stay (onUserDelete: keep), and the folders' own state goes. Each folder's delta is read first (one
 * read per folder), so a contact its user moved out since the last read is released and one deleted
 * there counts as deleted. The row is saved first.
 */
export async function leaveFolderParts(
  policy: Policy,
  mbx: string,
  graph: MailboxGraph,
  store: MailboxStateStore,
  dryRun: boolean,
): Promise<void> {
  const root = await store.loadFolder(policy.id, mbx);
  if (!root?.parts || dryRun) return;
  const retired = [...(root.retired ?? [])];
  const carried = new Map<string, StoredContact>();
  const ids = root.parts.map((hash) => partStateIdOf(policy.id, hash));
  for (const id of ids) {
    const s = await store.load(id, mbx);
    const folderId = s.folder?.folderId;
    if (folderId && !retired.includes(folderId)) retired.push(folderId);
    // Throws (the pass is retried) before anything is forgotten when a moved one is not released.
    const gone =
      s.folder && folderId
        ? await deletedSince(rootPass(policy, mbx, graph), s.folder, folderId, s.contacts.values())
        : new Set<string>();
    if (policy.options.onUserDelete === 'keep')
      for (const [k, c] of s.contacts)
        if (!c.pending && (c.userDeleted || gone.has(c.contactId)))
          carried.set(k, { ...c, userDeleted: true });
  }
  // In this order, so a worker killed at any step leaves rows that still say what is left to do: the
  // deletions first, then the row keeps the per-value folders as retired (still listing them), their
  // state goes, and only then does the row forget them.
  if (carried.size > 0) await store.apply(policy.id, mbx, [...carried], []);
  await store.saveFolder(policy.id, mbx, { ...root, retired: bounded(retired) });
  for (const id of ids) await store.clear(id, mbx);
  await store.saveFolder(policy.id, mbx, {
    folderId: null,
    folderName: policy.folder.name,
    deltaLink: null,
    dirtyContactIds: [],
    retired: bounded(retired),
  });
}

/**
 * A renamed policy (previousIds) under a folder template: each former id's folders (its per-value
 * folders too) become the policy's retired folders, emptied once every per-value folder is filled,
 * and deletions its users made are kept (onUserDelete: keep) in the policy's own rows until then.
 */
async function adoptFormerRoots(
  policy: Policy,
  mbx: string,
  graph: MailboxGraph,
  store: MailboxStateStore,
): Promise<void> {
  for (const prev of policy.previousIds) {
    await leaveFolderParts({ ...policy, id: prev }, mbx, graph, store, false);
    const old = await store.load(prev, mbx);
    if (!old.folder) continue;
    const root = await store.loadFolder(policy.id, mbx);
    const retired = [...(root?.retired ?? [])];
    for (const f of [old.folder.folderId, ...(old.folder.retired ?? [])])
      if (!retired.includes(f)) retired.push(f);
    // A new row lists no folder yet; a plain one stays plain (its own folder is retired next).
    await store.saveFolder(
      policy.id,
      mbx,
      root
        ? { ...root, retired: bounded(retired) }
        : {
            folderId: null,
            folderName: null,
            deltaLink: null,
            dirtyContactIds: [],
            parts: [],
            retired: bounded(retired),
          },
    );
    const deleted = [...old.contacts].filter(([, c]) => !c.pending && c.userDeleted);
    if (policy.options.onUserDelete === 'keep' && deleted.length > 0)
      await store.apply(policy.id, mbx, deleted, []);
    await store.clear(prev, mbx);
  }
}

/** Deletions the source wants in the whole mailbox, against the threshold over all its folders. */
function mailboxThreshold(
  policy: Policy,
  desired: ReadonlyMap<string, DesiredContact>,
  states: Iterable<Map<string, StoredContact>>,
): { wanted: number; managed: number; limit: number } {
  let managed = 0;
  let wanted = 0;
  for (const contacts of states)
    for (const [k, c] of contacts) {
      if (c.pending || c.userDeleted) continue;
      managed++;
      if (!c.orphaned && policy.options.onSourceRemoval === 'delete' && !desired.has(k)) wanted++;
    }
  const { percent, minimum } = policy.options.deletionThreshold;
  return { wanted, managed, limit: Math.max(minimum, Math.floor((managed * percent) / 100)) };
}

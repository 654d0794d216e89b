// Syncs one mailbox: ensure the folder, read what users changed (the folder's contacts delta), plan,
// write through $batch with an intent log (pending rows) so a lost reply never makes a twin, record
// state after each batch, then advance the delta past our own writes.
import type { Policy } from './config/schema';
import type { TargetMailbox } from './directory';
import { managedFields, sameValue, toGraphBody, type ContactFields } from './mapping';
import {
  planMailbox,
  planPhotos,
  type DesiredContact,
  type MailboxPlan,
  type ManagedContact,
} from './planner';
import {
  DeltaExpiredError,
  FolderGoneError,
  GraphRequestError,
  type FolderRef,
  type FolderState,
  type MailboxGraph,
  type MailboxStateStore,
  type DriftItem,
  type PhotoStore,
  type StoredContact,
  type TaggedContact,
  type WriteOp,
  type WriteResult,
} from './ports';
import { parseTag, tagPropertyId, tagValue } from './tag';

export interface MailboxError {
  sourceKey?: string;
  status: number;
  code: string;
  message: string;
  requestId?: string;
}

export interface MailboxResult {
  mailbox: string;
  userId: string;
  /** partial: the time budget ran out; run it again to continue. planned: a dry run. */
  status: 'succeeded' | 'failed' | 'skipped' | 'partial' | 'planned';
  skipReason?: 'noMailbox';
  created: number;
  updated: number;
  deleted: number;
  unchanged: number;
  restored: number;
  failed: number;
  errors: MailboxError[];
  deletionsBlocked?: MailboxPlan['deletionsBlocked'];
  /** Duplicates of a managed contact found and removed (healed). */
  duplicatesRemoved: number;
  /** Contact photos put or removed (planned, in a dry run). */
  photos?: number;
}

export interface SyncMailboxOptions {
  dryRun: boolean;
  force: boolean;
  deadline?: number;
  /** The folder's next delta round, read at the run's start with other mailboxes' in one $batch. */
  preReadDrift?: { fromDeltaLink: string; deltaLink: string; items: DriftItem[] };
}

/** A read-only view of a map without one key: no copy of a 50,000-entry snapshot per mailbox. */
class MapWithout<V> implements ReadonlyMap<string, V> {
  constructor(
    private readonly all: ReadonlyMap<string, V>,
    private readonly left: string,
  ) {}
  get size(): number {
    return this.all.size - (this.all.has(this.left) ? 1 : 0);
  }
  get(key: string): V | undefined {
    return key === this.left ? undefined : this.all.get(key);
  }
  has(key: string): boolean {
    return key !== this.left && this.all.has(key);
  }
  *entries(): MapIterator<[string, V]> {
    for (const e of this.all) if (e[0] !== this.left) yield e;
  }
  *keys(): MapIterator<string> {
    for (const [k] of this.entries()) yield k;
  }
  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }
  forEach(f: (value: V, key: string, map: ReadonlyMap<string, V>) => void): void {
    for (const [k, v] of this.entries()) f(v, k, this);
  }
}

const createdFrom = Symbol('createdFrom');
/** One getter for every created contact's `written` (no closure per contact). */
const writtenOfCreated: PropertyDescriptor = {
  enumerable: true,
  configurable: true,
  get(this: { [createdFrom]: DesiredContact }): ContactFields {
    return this[createdFrom].fields;
  },
};

/**
 * A contact just created from `desired`: what we wrote is `desired.fields`, read from the snapshot
 * when needed rather than kept parsed, so a fill does not hold every contact's fields twice. An own
 * enumerable property, so copies made with spread keep it.
 */
function writtenFrom(desired: DesiredContact, contact: Omit<ManagedContact, 'written'>): ManagedContact {
  Object.defineProperty(contact, createdFrom, { value: desired });
  return Object.defineProperty(contact, 'written', writtenOfCreated) as ManagedContact;
}

/** A delta read whose items do not matter (only its new token). */
const ignore = (): void => undefined;

/** Pending (intent) rows stored per Table transaction: the service's limit. */
const pendingRowsPerWrite = 100;

/** Writes from which advancing the delta right away beats reading them back next run (half a page). */
const catchUpThreshold = 500;

const emptyResult = (m: TargetMailbox): MailboxResult => ({
  mailbox: m.userPrincipalName,
  userId: m.userId,
  status: 'succeeded',
  created: 0,
  updated: 0,
  deleted: 0,
  unchanged: 0,
  restored: 0,
  failed: 0,
  errors: [],
  duplicatesRemoved: 0,
});

export async function syncMailbox(
  policy: Policy,
  mailbox: TargetMailbox,
  desiredAll: ReadonlyMap<string, DesiredContact>,
  graph: MailboxGraph,
  store: MailboxStateStore,
  options: SyncMailboxOptions,
  photoStore?: PhotoStore,
): Promise<MailboxResult> {
  const result = emptyResult(mailbox);
  try {
    return await syncMailboxInner(policy, mailbox, desiredAll, graph, store, options, result, photoStore);
  } catch (e) {
    if (e instanceof GraphRequestError) {
      if (e.code === 'MailboxNotEnabledForRESTAPI')
        return { ...result, status: 'skipped', skipReason: 'noMailbox' };
      if (e.code === 'ErrorInvalidUser' || (e.status === 404 && /ResourceNotFound/.test(e.code))) {
        return {
          ...result,
          status: 'failed',
          errors: [
            ...result.errors,
            {
              status: e.status,
              code: e.code,
              message: `${e.message} The user no longer exists; the next run leaves them out.`,
              ...(e.requestId ? { requestId: e.requestId } : {}),
            },
          ],
        };
      }
      if (e.code === 'ErrorAccessDenied' || e.status === 403) {
        return {
          ...result,
          status: 'failed',
          errors: [
            ...result.errors,
            {
              status: e.status,
              code: e.code,
              message: `${e.message} The app may not touch this mailbox: check Exchange RBAC for Applications (the management scope) and the Contacts.ReadWrite permission.`,
              ...(e.requestId ? { requestId: e.requestId } : {}),
            },
          ],
        };
      }
    }
    throw e;
  }
}

async function syncMailboxInner(
  policy: Policy,
  mailbox: TargetMailbox,
  desiredAll: ReadonlyMap<string, DesiredContact>,
  graph: MailboxGraph,
  store: MailboxStateStore,
  options: SyncMailboxOptions,
  result: MailboxResult,
  photoStore: PhotoStore | undefined,
): Promise<MailboxResult> {
  const mbx = mailbox.userId;
  const fields = managedFields(policy.mapping);
  const desired = policy.targets.excludeSelf
    ? new MapWithout(desiredAll, `user:${mailbox.userId}`)
    : desiredAll;

  const state = await store.load(policy.id, mbx);
  let folderState: FolderState | null = state.folder;
  const contacts = state.contacts;
  const lostWithFolder = new Set<string>();

  // 1. The folder: ours by id, else by name (adopt and reconcile), else create.
  const ensureFolder = async (): Promise<{ ref: FolderRef; adopted: boolean }> => {
    if (policy.folder.name === null) {
      if (!folderState)
        folderState = { folderId: null, folderName: null, deltaLink: null, dirtyContactIds: [] };
      return { ref: { kind: 'default' }, adopted: contacts.size === 0 };
    }
    if (folderState?.folderId && folderState.folderName === policy.folder.name)
      return { ref: { kind: 'named', id: folderState.folderId }, adopted: false };
    if (options.dryRun) {
      const found = await graph.findFolder(mbx, policy.folder.name);
      folderState = {
        folderId: found ?? null,
        folderName: policy.folder.name,
        deltaLink: null,
        dirtyContactIds: [],
      };
      return { ref: found ? { kind: 'named', id: found } : { kind: 'default' }, adopted: Boolean(found) };
    }
    let id = await graph.findFolder(mbx, policy.folder.name);
    const adopted = id !== undefined;
    id ??= await graph.createFolder(mbx, policy.folder.name);
    folderState = { folderId: id, folderName: policy.folder.name, deltaLink: null, dirtyContactIds: [] };
    await store.saveFolder(policy.id, mbx, folderState);
    return { ref: { kind: 'named', id }, adopted };
  };

  let { ref, adopted } = await ensureFolder();
  const folderMissingInDryRun = options.dryRun && policy.folder.name !== null && !folderState?.folderId;

  // 2. What users changed since last time.
  const drift: { changed: Map<string, { fields: ContactFields; changeKey: string }>; deleted: Set<string> } =
    { changed: new Map(), deleted: new Set() };
  let newDeltaLink: string | null = null;
  const byContactId = (): Map<string, [string, ManagedContact]> => {
    const m = new Map<string, [string, ManagedContact]>();
    for (const [k, c] of contacts) if (!c.pending) m.set(c.contactId, [k, c]);
    return m;
  };
  let reconcile = adopted;
  if (!folderMissingInDryRun) {
    try {
      const managed = byContactId();
      const take = (items: DriftItem[]): void => {
        for (const item of items) {
          const hit = managed.get(item.contactId);
          if (!hit) continue;
          if (item.removed) drift.deleted.add(item.contactId);
          else if (item.changeKey && item.changeKey !== hit[1].changeKey && item.fields)
            drift.changed.set(item.contactId, { fields: item.fields, changeKey: item.changeKey });
        }
      };
      const pre = options.preReadDrift;
      if (
        pre &&
        folderState?.deltaLink === pre.fromDeltaLink &&
        new URL(pre.deltaLink).origin === new URL(pre.fromDeltaLink).origin
      ) {
        take(pre.items);
        newDeltaLink = pre.deltaLink;
      } else {
        newDeltaLink = (await graph.readDrift(mbx, ref, folderState?.deltaLink ?? null, take)).deltaLink;
      }
      for (const id of folderState?.dirtyContactIds ?? []) {
        const hit = managed.get(id);
        if (!hit || drift.changed.has(id) || drift.deleted.has(id)) continue;
        const current = await graph.getContact(mbx, id);
        if (!current) drift.deleted.add(id);
        else if (current.changeKey !== hit[1].changeKey)
          drift.changed.set(id, { fields: current.fields, changeKey: current.changeKey });
      }
    } catch (e) {
      if (e instanceof FolderGoneError) {
        // The user deleted the folder: everything in it is gone; recreate it and its contacts.
        for (const k of contacts.keys()) lostWithFolder.add(k);
        if (!options.dryRun) await store.clear(policy.id, mbx);
        contacts.clear();
        folderState = null;
        ({ ref, adopted } = await ensureFolder());
        reconcile = adopted;
        if (!options.dryRun) newDeltaLink = (await graph.readDrift(mbx, ref, null, ignore)).deltaLink;
      } else if (e instanceof DeltaExpiredError) {
        reconcile = true;
        newDeltaLink = (await graph.readDrift(mbx, ref, null, ignore)).deltaLink;
      } else throw e;
    }
  }

  // 3. Heal: pending creates (lost replies), lost state, expired delta: look contacts up by our tag.
  const pending = [...contacts.entries()].filter(([, c]) => c.pending);
  const upserts: [string, StoredContact][] = [];
  const deletesState: string[] = [];
  const removeDuplicates: string[] = [];
  if (reconcile || pending.length > 20) {
    const listed = await graph.listContacts(mbx, ref);
    const byKey = new Map<string, TaggedContact[]>();
    for (const c of listed) {
      const key = c.tag ? parseTag(c.tag, policy.id) : undefined;
      if (key) byKey.set(key, [...(byKey.get(key) ?? []), c]);
    }
    const present = new Set(listed.map((c) => c.contactId));
    for (const [key, stored] of [...contacts]) {
      if (!stored.pending && !byKey.has(key) && !present.has(stored.contactId))
        drift.deleted.add(stored.contactId);
    }
    for (const [key, found] of byKey) {
      const [keepOne, ...twins] = found;
      removeDuplicates.push(...twins.map((t) => t.contactId));
      const stored = contacts.get(key);
      if (stored && !stored.pending && stored.contactId === keepOne!.contactId) {
        if (keepOne!.changeKey !== stored.changeKey)
          drift.changed.set(keepOne!.contactId, { fields: keepOne!.fields, changeKey: keepOne!.changeKey });
        continue;
      }
      // Adopt: what is there is what we wrote (best knowledge), so only differences get written.
      const adoptedContact: ManagedContact = {
        contactId: keepOne!.contactId,
        hash: '',
        written: keepOne!.fields,
        changeKey: keepOne!.changeKey,
        keep: [],
        userDeleted: false,
        orphaned: false,
      };
      contacts.set(key, adoptedContact);
      upserts.push([key, adoptedContact]);
    }
    for (const [key, c] of [...contacts]) {
      if (c.pending) {
        contacts.delete(key);
        deletesState.push(key);
      }
    }
  } else {
    for (const [key, p] of pending) {
      if (!p.pending) continue;
      const found = await graph.findByTag(mbx, ref, tagValue(policy.id, key));
      if (found.length === 0) {
        contacts.delete(key);
        deletesState.push(key);
        continue;
      }
      const [keepOne, ...twins] = found;
      removeDuplicates.push(...twins.map((t) => t.contactId));
      const healed: ManagedContact = {
        contactId: keepOne!.contactId,
        hash: p.hash,
        written: keepOne!.fields,
        changeKey: keepOne!.changeKey,
        keep: [],
        userDeleted: false,
        orphaned: false,
      };
      contacts.set(key, healed);
      upserts.push([key, healed]);
    }
  }

  // 4. Plan (pure).
  const managed = new Map<string, ManagedContact>();
  for (const [k, c] of contacts) if (!c.pending) managed.set(k, c);
  const plan = planMailbox(desired, managed, drift, {
    fields,
    rules: policy.mapping.rules,
    onUserEdit: policy.options.onUserEdit,
    onUserDelete: policy.options.onUserDelete,
    onSourceRemoval: policy.options.onSourceRemoval,
    removalCategory: policy.options.removalCategory,
    deletionThreshold: policy.options.deletionThreshold,
    force: options.force,
  });
  // Contacts that vanished with a deleted folder come back as restores.
  for (const c of plan.creates) if (lostWithFolder.has(c.sourceKey)) c.restore = true;
  if (plan.deletionsBlocked) result.deletionsBlocked = plan.deletionsBlocked;
  result.unchanged = plan.unchanged;

  if (options.dryRun) {
    result.status = 'planned';
    result.created = plan.creates.filter((c) => !c.restore).length;
    result.restored =
      plan.creates.filter((c) => c.restore).length + plan.updates.filter((u) => u.restore).length;
    result.updated = plan.updates.filter((u) => !u.restore).length;
    result.deleted = plan.deletes.length;
    result.duplicatesRemoved = removeDuplicates.length;
    if (policy.photos.enabled) result.photos = planPhotos(desired, managed).length;
    return result;
  }

  // 5. State-only changes, then writes.
  for (const s of plan.stateChanges) {
    if (s.change.kind === 'forget') deletesState.push(s.sourceKey);
    else upserts.push([s.sourceKey, s.change.contact]);
  }
  await store.apply(policy.id, mbx, upserts, deletesState);

  const tag = (key: string): Record<string, unknown> => ({
    singleValueExtendedProperties: [{ id: tagPropertyId, value: tagValue(policy.id, key) }],
  });
  const ops: WriteOp[] = [];
  const meaning = new Map<
    string,
    | { kind: 'create'; c: MailboxPlan['creates'][number] }
    | { kind: 'update'; u: MailboxPlan['updates'][number] }
    | { kind: 'delete'; d: MailboxPlan['deletes'][number] }
    | { kind: 'twin'; contactId: string }
  >();
  let n = 0;
  // Intent log: a create is sent only once its pending row is stored. Rows are written a transaction
  // (100) at a time, for the batch about to go and the creates queued after it, so a fill costs one
  // Table transaction per 5 batches and never holds every row body in memory. Each key maps to the
  // write that stored it, which a lane sending that create waits for.
  const pendingWritten = new Map<string, Promise<void>>();
  const createsInOrder: WriteOp[] = [];
  let nextToPend = 0;
  const writePending = async (batch: WriteOp[]): Promise<void> => {
    const rows: [string, StoredContact][] = [];
    const keys: string[] = [];
    const add = (op: WriteOp): void => {
      const m = meaning.get(op.id);
      if (m?.kind !== 'create' || pendingWritten.has(m.c.sourceKey) || keys.includes(m.c.sourceKey)) return;
      keys.push(m.c.sourceKey);
      rows.push([m.c.sourceKey, { pending: true, hash: m.c.desired.hash, fields: m.c.desired.fields }]);
    };
    batch.forEach(add);
    if (rows.length > 0)
      while (rows.length < pendingRowsPerWrite && nextToPend < createsInOrder.length)
        add(createsInOrder[nextToPend++]!);
    if (rows.length > 0) {
      const stored = store.apply(policy.id, mbx, rows, []);
      for (const k of keys) pendingWritten.set(k, stored);
    }
    const waits: Promise<void>[] = [];
    for (const op of batch) {
      const m = meaning.get(op.id);
      const stored = m?.kind === 'create' ? pendingWritten.get(m.c.sourceKey) : undefined;
      if (stored) waits.push(stored);
    }
    await Promise.all(waits);
  };
  /** Drops the pending row of a create that was not made (if one was written). */
  const unpend = (key: string, del: string[]): void => {
    if (pendingWritten.delete(key)) del.push(key);
  };
  const queueCreates = (creates: MailboxPlan['creates']): WriteOp[] => {
    const queued = creates.map((c): WriteOp => {
      const id = `c${n++}`;
      meaning.set(id, { kind: 'create', c });
      return {
        id,
        kind: 'create',
        folder: ref,
        body: () => {
          const want = c.desired.fields;
          return {
            ...toGraphBody(
              want,
              fields.filter((f) => want[f] !== undefined),
            ),
            ...tag(c.sourceKey),
          };
        },
      };
    });
    createsInOrder.push(...queued);
    return queued;
  };
  ops.push(...queueCreates(plan.creates));
  for (const u of plan.updates) {
    const id = `u${n++}`;
    ops.push({ id, kind: 'update', contactId: u.contactId, body: () => toGraphBody(u.patch, u.patchFields) });
    meaning.set(id, { kind: 'update', u });
  }
  for (const d of plan.deletes) {
    const id = `d${n++}`;
    ops.push({ id, kind: 'delete', contactId: d.contactId });
    meaning.set(id, { kind: 'delete', d });
  }
  for (const contactId of removeDuplicates) {
    const id = `t${n++}`;
    ops.push({ id, kind: 'delete', contactId });
    meaning.set(id, { kind: 'twin', contactId });
  }

  const photoOf = (key: string): { photo?: string | null } => {
    const c = contacts.get(key);
    return c && !c.pending && c.photo !== undefined ? { photo: c.photo } : {};
  };
  const followUps: MailboxPlan['creates'] = [];
  let incomplete = false;
  const record = async (results: WriteResult[]): Promise<void> => {
    const up: [string, StoredContact][] = [];
    const del: string[] = [];
    for (const r of results) {
      const m = meaning.get(r.id);
      if (!m) continue;
      if (r.outcome === 'notAttempted') {
        incomplete = true;
        if (m.kind === 'create') unpend(m.c.sourceKey, del);
        continue;
      }
      if (r.outcome === 'unknown') {
        // Left pending (creates) or as before (updates, deletes): healed on the next pass.
        incomplete = true;
        continue;
      }
      if (r.outcome === 'failed') {
        result.failed++;
        result.errors.push({
          ...(m.kind === 'create'
            ? { sourceKey: m.c.sourceKey }
            : m.kind === 'update'
              ? { sourceKey: m.u.sourceKey }
              : m.kind === 'delete'
                ? { sourceKey: m.d.sourceKey }
                : {}),
          status: r.status,
          code: r.code,
          message: r.message,
          ...(r.requestId ? { requestId: r.requestId } : {}),
        });
        if (m.kind === 'create') unpend(m.c.sourceKey, del);
        continue;
      }
      switch (m.kind) {
        case 'create':
          if (r.outcome === 'ok' && r.contactId) {
            pendingWritten.delete(m.c.sourceKey); // the row becomes the contact's
            up.push([
              m.c.sourceKey,
              writtenFrom(m.c.desired, {
                contactId: r.contactId,
                hash: m.c.desired.hash,
                changeKey: r.changeKey ?? '',
                keep: [],
                userDeleted: false,
                orphaned: false,
              }),
            ]);
            if (m.c.restore) result.restored++;
            else result.created++;
          }
          break;
        case 'update':
          if (r.outcome === 'notFound') {
            // Gone behind our back: recreate it (the tag prevents a twin).
            del.push(m.u.sourceKey);
            const want = desired.get(m.u.sourceKey);
            if (want) followUps.push({ sourceKey: m.u.sourceKey, desired: want, restore: true });
          } else {
            up.push([
              m.u.sourceKey,
              {
                contactId: m.u.contactId,
                hash: m.u.hash,
                written: m.u.written,
                changeKey: r.outcome === 'ok' ? (r.changeKey ?? '') : '',
                keep: m.u.keep,
                userDeleted: false,
                orphaned: m.u.orphaned,
                ...photoOf(m.u.sourceKey),
              },
            ]);
            if (m.u.restore) result.restored++;
            else result.updated++;
          }
          break;
        case 'delete':
          del.push(m.d.sourceKey);
          result.deleted++;
          break;
        case 'twin':
          result.duplicatesRemoved++;
          break;
      }
    }
    await store.apply(policy.id, mbx, up, del);
    for (const [k, c] of up) contacts.set(k, c);
    for (const k of del) contacts.delete(k);
  };

  const writeOptions = {
    ...(options.deadline !== undefined ? { deadline: options.deadline } : {}),
    onResults: record,
    beforeBatch: writePending,
  };
  if (ops.length > 0) await graph.write(mbx, ops, writeOptions);
  if (followUps.length > 0 && !incomplete) {
    await graph.write(mbx, queueCreates(followUps), writeOptions);
  }

  // 6. Photos, once the contacts exist: only where the source's photo differs from the one we put.
  let photoWrites = 0;
  if (policy.photos.enabled && !incomplete) {
    const current = new Map<string, ManagedContact>();
    for (const [k, c] of contacts) if (!c.pending) current.set(k, c);
    const planned = planPhotos(desired, current);
    if (planned.length > 0 && !photoStore)
      throw new Error(`policy ${policy.id}: photos.enabled needs a photo store (blob storage)`);
    const byOp = new Map(planned.map((p, i) => [`p${i}`, p]));
    const photoOps: WriteOp[] = [];
    for (const [id, p] of byOp) {
      if (p.photo === null) {
        photoOps.push({ id, kind: 'deletePhoto', contactId: p.contactId });
        continue;
      }
      const hash = p.photo;
      photoOps.push({
        id,
        kind: 'setPhoto',
        contactId: p.contactId,
        size: desired.get(p.sourceKey)?.photoSize ?? 0,
        photo: async () => {
          const found = await photoStore!.get(hash);
          if (!found) throw new Error(`photo ${hash} of ${p.sourceKey} is not in the photo store`);
          return found;
        },
      });
    }
    const recordPhotos = async (results: WriteResult[]): Promise<void> => {
      const up: [string, StoredContact][] = [];
      for (const r of results) {
        const p = byOp.get(r.id);
        if (!p) continue;
        const c = contacts.get(p.sourceKey);
        if (r.outcome === 'ok' || (r.outcome === 'notFound' && p.photo === null)) {
          if (c && !c.pending) up.push([p.sourceKey, { ...c, photo: p.photo }]);
          result.photos = (result.photos ?? 0) + 1;
        } else if (r.outcome === 'failed') {
          result.failed++;
          result.errors.push({
            sourceKey: p.sourceKey,
            status: r.status,
            code: r.code,
            message: `photo: ${r.message}`,
            ...(r.requestId ? { requestId: r.requestId } : {}),
          });
        } else if (r.outcome !== 'notFound') {
          incomplete = true; // lost reply or deadline: the next pass puts it again
        }
      }
      await store.apply(policy.id, mbx, up, []);
      for (const [k, c] of up) contacts.set(k, c);
    };
    if (photoOps.length > 0) {
      await graph.write(mbx, photoOps, { ...writeOptions, onResults: recordPhotos });
      photoWrites = photoOps.length;
    }
  }

  if (incomplete) {
    // Keep the delta token read at the start of this pass, so the next pass reads only what changed
    // since (not every write of the whole fill again); the drift seen now but not yet settled is kept
    // as dirty ids and looked at again.
    if (newDeltaLink) {
      const unsettled = [...drift.changed.keys(), ...drift.deleted, ...(folderState?.dirtyContactIds ?? [])];
      folderState = {
        ...(folderState ?? { folderId: null, folderName: null }),
        deltaLink: newDeltaLink,
        dirtyContactIds: [...new Set(unsettled)],
      };
      await store.saveFolder(policy.id, mbx, folderState);
    }
    result.status = 'partial';
    return result;
  }

  // 7. Advance the delta past our own writes when they would fill more than half a delta page next
  // time (a fill); fewer ride along in the next run's single delta read, where their changeKeys mark
  // them as ours. A contact whose managed fields are still what we wrote (a photo put changes its
  // changeKey, and Graph returns none for it) takes the new changeKey; anything else that changed
  // meanwhile is checked next time.
  let deltaLink = newDeltaLink;
  const dirty: string[] = [];
  if (ops.length + photoWrites >= catchUpThreshold && deltaLink) {
    // `contacts` holds what every batch recorded, so the state need not be read again.
    const ours = new Map<string, [string, ManagedContact]>();
    for (const [k, c] of contacts) if (!c.pending) ours.set(c.contactId, [k, c]);
    const adopted: [string, StoredContact][] = [];
    const d = await graph.readDrift(mbx, ref, deltaLink, (items) => {
      for (const item of items) {
        const known = ours.get(item.contactId);
        if (known === undefined || item.removed || item.changeKey === known[1].changeKey) continue;
        const itemFields = item.fields;
        const written = known[1].written;
        if (itemFields && item.changeKey && fields.every((f) => sameValue(itemFields[f], written[f])))
          adopted.push([known[0], { ...known[1], changeKey: item.changeKey }]);
        else dirty.push(item.contactId);
      }
    });
    await store.apply(policy.id, mbx, adopted, []);
    deltaLink = d.deltaLink;
  }
  folderState = {
    ...(folderState ?? { folderId: null, folderName: null, dirtyContactIds: [] }),
    deltaLink,
    dirtyContactIds: dirty,
  };
  await store.saveFolder(policy.id, mbx, folderState);
  result.status = result.failed > 0 ? 'failed' : 'succeeded';
  return result;
}

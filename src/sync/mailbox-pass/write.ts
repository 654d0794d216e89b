// Step 5: write the plan through $batch. Intent log: a create is sent only once its pending row is
// stored, so a lost reply is healed by tag, never made twice. Each batch's outcome is stored as soon
// as it comes back.
import type { ContactFields } from '../mapping';
import { toGraphBody, withExtendedProperty } from '../mapping';
import type { DesiredContact, MailboxPlan, ManagedContact } from '../planner';
import type { FolderRef, StoredContact, WriteOp, WriteOptions, WriteResult } from '../ports';
import { tagPropertyId, tagValue } from '../tag';
import { withCurrentCategories } from './marks';
import type { MailboxError, MailboxPass, MutableDrift } from './pass';

type Meaning =
  | { kind: 'create'; c: MailboxPlan['creates'][number] }
  | { kind: 'update'; u: MailboxPlan['updates'][number] }
  | { kind: 'delete'; d: MailboxPlan['deletes'][number] }
  | { kind: 'twin'; contactId: string };

/** Pending (intent) rows stored per Table transaction: the service's limit. */
const pendingRowsPerWrite = 100;

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

export interface Written {
  /** Writes sent (or planned to be): how far the delta moved because of us. */
  ops: number;
  /** Some write's outcome is unknown or it was not sent: the pass is partial. */
  incomplete: boolean;
  /** Options for further writes of this pass (deadline). */
  writeOptions: WriteOptions;
  /** Ids of the contacts this pass created: each must come back in the next delta round. */
  createdIds: Set<string>;
  /** Contacts changed by someone else after they were planned (412): re-checked and re-planned. */
  conflicts: Set<string>;
}

export async function writePlan(
  pass: MailboxPass,
  ref: FolderRef,
  plan: MailboxPlan,
  removeDuplicates: readonly string[],
  drift: MutableDrift,
): Promise<Written> {
  const writer = new PlanWriter(pass, ref, drift);
  const marked = await withCurrentCategories(pass, plan.updates);
  if (marked.unread) writer.incomplete = true;
  const ops = [
    ...writer.queueCreates(plan.creates),
    ...marked.updates.map((u) => writer.queueUpdate(u)),
    ...plan.deletes.map((d) => writer.queueDelete(d)),
    ...removeDuplicates.map((id) => writer.queueTwinDelete(id)),
  ];
  const writeOptions: WriteOptions = {
    ...(pass.options.deadline !== undefined ? { deadline: pass.options.deadline } : {}),
  };
  const batchOptions: WriteOptions = {
    ...writeOptions,
    onResults: (r) => writer.record(r),
    beforeBatch: (b) => writer.writePending(b),
  };
  if (ops.length > 0) await pass.graph.write(pass.mbx, ops, batchOptions);
  if (writer.followUps.length > 0 && !writer.incomplete)
    await pass.graph.write(pass.mbx, writer.queueCreates(writer.followUps), batchOptions);
  return {
    ops: ops.length,
    incomplete: writer.incomplete,
    writeOptions,
    createdIds: writer.createdIds,
    conflicts: writer.conflicts,
  };
}

class PlanWriter {
  private readonly meaning = new Map<string, Meaning>();
  private n = 0;
  /** Each created key → the Table write that stored its pending row (a lane sending it waits). */
  private readonly pendingWritten = new Map<string, Promise<void>>();
  private readonly createsInOrder: WriteOp[] = [];
  private nextToPend = 0;
  readonly followUps: MailboxPlan['creates'] = [];
  readonly createdIds = new Set<string>();
  readonly conflicts = new Set<string>();
  incomplete = false;

  constructor(
    private readonly pass: MailboxPass,
    private readonly ref: FolderRef,
    private readonly drift: MutableDrift,
  ) {}

  /**
   * The changeKey a write was planned against (a user's edit read at the pass's start, else ours):
   * sent as If-Match, so an edit made after that read is never overwritten unseen.
   */
  private plannedAgainst(
    sourceKey: string,
    contactId: string,
  ): Pick<WriteOp & { kind: 'delete' }, 'ifMatch'> {
    const have = this.pass.contacts.get(sourceKey);
    const changeKey =
      this.drift.changed.get(contactId)?.changeKey ?? (have && !have.pending ? have.changeKey : undefined);
    return changeKey ? { ifMatch: changeKey } : {};
  }

  queueCreates(creates: MailboxPlan['creates']): WriteOp[] {
    const { fields, policy } = this.pass;
    const queued = creates.map((c): WriteOp => {
      const id = `c${this.n++}`;
      this.meaning.set(id, { kind: 'create', c });
      return {
        id,
        kind: 'create',
        folder: this.ref,
        body: () => {
          const want = c.desired.fields;
          return withExtendedProperty(
            toGraphBody(
              want,
              fields.filter((f) => want[f] !== undefined),
            ),
            tagPropertyId,
            tagValue(policy.id, c.sourceKey),
          );
        },
      };
    });
    this.createsInOrder.push(...queued);
    return queued;
  }

  queueUpdate(u: MailboxPlan['updates'][number]): WriteOp {
    const id = `u${this.n++}`;
    this.meaning.set(id, { kind: 'update', u });
    return {
      id,
      kind: 'update',
      contactId: u.contactId,
      body: () => toGraphBody(u.patch, u.patchFields),
      ...this.plannedAgainst(u.sourceKey, u.contactId),
    };
  }

  queueDelete(d: MailboxPlan['deletes'][number]): WriteOp {
    const id = `d${this.n++}`;
    this.meaning.set(id, { kind: 'delete', d });
    return { id, kind: 'delete', contactId: d.contactId, ...this.plannedAgainst(d.sourceKey, d.contactId) };
  }

  queueTwinDelete(contactId: string): WriteOp {
    const id = `t${this.n++}`;
    this.meaning.set(id, { kind: 'twin', contactId });
    return { id, kind: 'delete', contactId };
  }

  /**
   * Pending rows are written a transaction (100) at a time, for the batch about to go and the
   * creates queued after it, so a fill costs one Table transaction per 5 batches and never holds
   * every row body in memory.
   */
  async writePending(batch: WriteOp[]): Promise<void> {
    const rows: [string, StoredContact][] = [];
    const keys: string[] = [];
    const add = (op: WriteOp): void => {
      const m = this.meaning.get(op.id);
      if (m?.kind !== 'create' || this.pendingWritten.has(m.c.sourceKey) || keys.includes(m.c.sourceKey))
        return;
      keys.push(m.c.sourceKey);
      rows.push([
        m.c.sourceKey,
        {
          pending: true,
          hash: m.c.desired.hash,
          fields: m.c.desired.fields,
          ...(m.c.keep ? { keep: m.c.keep } : {}),
        },
      ]);
    };
    batch.forEach(add);
    // Updates: the row carries what the PATCH will have written, so a lost reply is known as ours.
    for (const op of batch) {
      const m = this.meaning.get(op.id);
      const have = m?.kind === 'update' ? this.pass.contacts.get(m.u.sourceKey) : undefined;
      if (m?.kind === 'update' && have && !have.pending)
        rows.push([m.u.sourceKey, { ...have, intent: { written: m.u.written, hash: m.u.hash } }]);
    }
    if (keys.length > 0)
      while (rows.length < pendingRowsPerWrite && this.nextToPend < this.createsInOrder.length)
        add(this.createsInOrder[this.nextToPend++]!);
    const waits: Promise<void>[] = [];
    if (rows.length > 0) {
      const stored = this.pass.store.apply(this.pass.policy.id, this.pass.mbx, rows, []);
      for (const k of keys) this.pendingWritten.set(k, stored);
      waits.push(stored);
    }
    for (const op of batch) {
      const m = this.meaning.get(op.id);
      const stored = m?.kind === 'create' ? this.pendingWritten.get(m.c.sourceKey) : undefined;
      if (stored) waits.push(stored);
    }
    await Promise.all(waits);
  }

  /** Drops the pending row of a create that was not made (if one was written). */
  private unpend(key: string, del: string[]): void {
    if (this.pendingWritten.delete(key)) del.push(key);
  }

  /** An update not made: its row as before (the in-memory row never carried the intent). */
  private dropIntent(m: Meaning, up: [string, StoredContact][]): void {
    const have = m.kind === 'update' ? this.pass.contacts.get(m.u.sourceKey) : undefined;
    if (m.kind === 'update' && have) up.push([m.u.sourceKey, have]);
  }

  private photoOf(key: string): { photo?: string | null } {
    const c = this.pass.contacts.get(key);
    return c && !c.pending && c.photo !== undefined ? { photo: c.photo } : {};
  }

  async record(results: WriteResult[]): Promise<void> {
    const { pass } = this;
    const up: [string, StoredContact][] = [];
    const del: string[] = [];
    for (const r of results) {
      const m = this.meaning.get(r.id);
      if (!m) continue;
      if (r.outcome === 'notAttempted') {
        this.incomplete = true;
        if (m.kind === 'create') this.unpend(m.c.sourceKey, del);
        this.dropIntent(m, up);
        continue;
      }
      if (r.outcome === 'conflict') {
        // Changed since it was planned: looked at again (the row keeps an update's intent, so our
        // own PATCH whose reply was lost and that was sent again is still known as ours).
        this.incomplete = true;
        if (m.kind === 'update') this.conflicts.add(m.u.contactId);
        if (m.kind === 'delete') this.conflicts.add(m.d.contactId);
        continue;
      }
      if (r.outcome === 'unknown') {
        // Left pending (creates) or as before (updates, deletes): healed on the next pass.
        this.incomplete = true;
        continue;
      }
      if (r.outcome === 'failed') {
        pass.result.failed++;
        pass.result.errors.push({
          ...sourceKeyOf(m),
          status: r.status,
          code: r.code,
          message: r.message,
          ...(r.requestId ? { requestId: r.requestId } : {}),
        });
        if (m.kind === 'create') this.unpend(m.c.sourceKey, del);
        this.dropIntent(m, up);
        continue;
      }
      this.recordDone(m, r, up, del);
    }
    await pass.store.apply(pass.policy.id, pass.mbx, up, del);
    for (const [k, c] of up) pass.contacts.set(k, c);
    for (const k of del) pass.contacts.delete(k);
  }

  private recordDone(
    m: Meaning,
    r: Extract<WriteResult, { outcome: 'ok' | 'notFound' }>,
    up: [string, StoredContact][],
    del: string[],
  ): void {
    const { result, desired } = this.pass;
    switch (m.kind) {
      case 'create':
        if (r.outcome === 'ok' && r.contactId) {
          this.pendingWritten.delete(m.c.sourceKey); // the row becomes the contact's
          this.createdIds.add(r.contactId);
          up.push([
            m.c.sourceKey,
            writtenFrom(m.c.desired, {
              contactId: r.contactId,
              hash: m.c.desired.hash,
              changeKey: r.changeKey ?? '',
              keep: m.c.keep ?? [],
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
          if (want) this.followUps.push({ sourceKey: m.u.sourceKey, desired: want, restore: true });
        } else {
          up.push([
            m.u.sourceKey,
            {
              contactId: m.u.contactId,
              hash: m.u.hash,
              written: m.u.written,
              changeKey: r.changeKey ?? '',
              keep: m.u.keep,
              userDeleted: false,
              orphaned: m.u.orphaned,
              ...this.photoOf(m.u.sourceKey),
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
}

function sourceKeyOf(m: Meaning): Pick<MailboxError, 'sourceKey'> {
  switch (m.kind) {
    case 'create':
      return { sourceKey: m.c.sourceKey };
    case 'update':
      return { sourceKey: m.u.sourceKey };
    case 'delete':
      return { sourceKey: m.d.sourceKey };
    case 'twin':
      return {};
  }
}

// Sync state in Azure Table Storage. Rows are partitioned by policy (sources) and by policy and
// mailbox (mailboxes), so a mailbox's rows are written in entity-group transactions of up to 100.
import { randomUUID } from 'node:crypto';
import { odata, TableClient, type TableEntity, type TransactionAction } from '@azure/data-tables';
import { fromTableKey, mailboxPartition, tableKey } from './table-key';
import { z } from 'zod';
import type { DirectoryEntry } from '../../sync/directory';
import type { ContactFields } from '../../sync/mapping';
import type { DesiredContact, ManagedContact } from '../../sync/planner';
import { addressesOfRows, maxAdoptRefusals } from '../../sync/mailbox-pass/take-over';
import type {
  FolderState,
  MailboxState,
  MailboxStateStore,
  SourceAddresses,
  SourceMeta,
  SourceRow,
  SourceStore,
  StoredContact,
} from '../../sync/ports';

export const tableNames = {
  sources: 'syncsources',
  mailboxes: 'syncmailboxes',
  runs: 'syncruns',
  policies: 'syncpolicies',
} as const;

const metaKey = '~meta';
/** The desiredPhoto column of a user known to have no photo ('' means not looked at). */
const noPhoto = '-';
const folderKey = '~folder';

/** Creates a table unless it exists (409 is success). */
export async function ensureTable(client: TableClient): Promise<void> {
  try {
    await client.createTable();
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 409) throw e;
  }
}

/** Rows per entity-group transaction (the service's limit). */
const transactionSize = 100;

/**
 * Builds and submits actions a transaction at a time, so a large write (a fill's 50,000 rows) never
 * holds every entity body at once. Rows must be unique across `items`.
 */
async function submitBuilt<T>(
  client: TableClient,
  items: readonly T[],
  build: (item: T) => TransactionAction,
): Promise<void> {
  for (let i = 0; i < items.length; i += transactionSize)
    await submitInChunks(client, items.slice(i, i + transactionSize).map(build));
}

async function submitInChunks(client: TableClient, all: TransactionAction[]): Promise<void> {
  // One action per row: a transaction may not touch a row twice; the last action wins.
  const actions = [...new Map(all.map((a) => [a[1].rowKey, a])).values()];
  for (let i = 0; i < actions.length; i += 100) {
    const chunk = actions.slice(i, i + 100);
    if (chunk.length === 1) {
      const [kind, entity] = chunk[0]!;
      if (kind === 'delete') {
        try {
          await client.deleteEntity(entity.partitionKey, entity.rowKey);
        } catch (e) {
          if ((e as { statusCode?: number }).statusCode !== 404) throw e;
        }
      } else await client.upsertEntity(entity, 'Replace');
      continue;
    }
    try {
      await client.submitTransaction(chunk);
    } catch (e) {
      // A delete of a row that is already gone fails the whole transaction: retry without it.
      if ((e as { statusCode?: number }).statusCode === 404 && chunk.some(([k]) => k === 'delete')) {
        for (const action of chunk) await submitInChunks(client, [action]);
      } else throw e;
    }
  }
}

/** Table entities are untrusted input too: parse what we rely on. */
const json = <T>(schema: z.ZodType<T>, text: unknown, what: string): T => {
  if (typeof text !== 'string') throw new Error(`state row: ${what} is missing`);
  const parsed = schema.safeParse(JSON.parse(text));
  if (!parsed.success)
    throw new Error(`state row: ${what} is malformed: ${parsed.error.issues[0]?.message ?? ''}`);
  return parsed.data;
};
const anyObject = z.record(z.string(), z.unknown());
const adoptRefusalsSchema = z.array(
  z.object({ contactId: z.string(), refusals: z.number().int().positive() }),
);
const intentSchema = z.object({ written: anyObject, hash: z.string() });

/** Where a lazily parsed row keeps its column text (not enumerable: spreads copy the value instead). */
const columnText = Symbol('columnText');
type LazyRow = { [columnText]?: unknown; written?: unknown };

/**
 * The `written` property of a state row, parsed from its JSON column on first use. Most rows of a
 * large mailbox are never looked at in a run (their hash says unchanged): as text they take a third
 * of the memory of the parsed objects. One getter and setter serve every row (no closures per row);
 * an own enumerable accessor, so spreads copy the parsed value. A malformed column fails where it is
 * used, naming the column.
 */
const lazyWritten: PropertyDescriptor = {
  enumerable: true,
  configurable: true,
  get(this: LazyRow): unknown {
    const parsed = json(anyObject, this[columnText], 'fields');
    Object.defineProperty(this, 'written', {
      value: parsed,
      writable: true,
      enumerable: true,
      configurable: true,
    });
    delete this[columnText];
    return parsed;
  },
  set(this: LazyRow, v: unknown): void {
    Object.defineProperty(this, 'written', {
      value: v,
      writable: true,
      enumerable: true,
      configurable: true,
    });
    delete this[columnText];
  },
};

function withLazyWritten<T extends object>(target: T, column: unknown): T {
  Object.defineProperty(target, columnText, { value: column, writable: true, configurable: true });
  Object.defineProperty(target, 'written', lazyWritten);
  return target;
}
const text = (v: unknown): string => (typeof v === 'string' ? v : '');

function folderOf(e: Record<string, unknown>): FolderState {
  return {
    folderId: (e.folderId as string) || null,
    folderName: (e.folderName as string) || null,
    deltaLink: (e.deltaLink as string) || null,
    dirtyContactIds: e.dirty ? json(z.array(z.string()), e.dirty, 'dirty') : [],
    ...(e.recheckAll === true ? { recheckAll: true } : {}),
    ...(e.created === true ? { created: true } : {}),
    ...(e.takenOver === 'adopt' || e.takenOver === 'remove' ? { takenOver: e.takenOver } : {}),
    ...(typeof e.takeOverBefore === 'string' && e.takeOverBefore ? { takeOverBefore: e.takeOverBefore } : {}),
    ...(typeof e.nameCheckedAt === 'string' && e.nameCheckedAt ? { nameCheckedAt: e.nameCheckedAt } : {}),
    ...(e.adoptRefusals
      ? {
          adoptRefusals: json(adoptRefusalsSchema, e.adoptRefusals, 'adoptRefusals').slice(-maxAdoptRefusals),
        }
      : {}),
    ...(e.retired ? { retired: json(z.array(z.string().nullable()), joined(e, 'retired'), 'retired') } : {}),
    ...(e.parts ? { parts: json(z.array(z.string()), e.parts, 'parts') } : {}),
  };
}

/** Characters one string property takes here: Table Storage's limit is 32K UTF-16 units (64 KiB). */
const pieceChars = 30_000;

/**
 * A long text as properties of at most pieceChars each: `name`, `name2`, `name3`… (a folder row's
 * retired folder ids: a template's hundreds of ~150-character ids). The row is written whole
 * (Replace), so no piece of a longer text is left behind.
 */
function inPieces(name: string, text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i * pieceChars < text.length; i++)
    out[i === 0 ? name : `${name}${i + 1}`] = text.slice(i * pieceChars, (i + 1) * pieceChars);
  return out;
}

function joined(e: Record<string, unknown>, name: string): string {
  let text = typeof e[name] === 'string' ? e[name] : '';
  for (let i = 2; typeof e[`${name}${i}`] === 'string'; i++) text += e[`${name}${i}`] as string;
  return text;
}

/** Characters of dirty ids a folder row holds: a string property takes at most 32K UTF-16 units. */
const maxDirtyChars = 30_000;

export class TableSourceStore implements SourceStore {
  constructor(private readonly table: TableClient) {}

  async load(policyId: string): Promise<{ meta: SourceMeta | null; rows: Map<string, SourceRow> }> {
    const rows = new Map<string, SourceRow>();
    let meta: SourceMeta | null = null;
    for await (const e of this.table.listEntities<TableEntity<Record<string, unknown>>>({
      queryOptions: { filter: odata`PartitionKey eq ${policyId}` },
    })) {
      if (e.rowKey === metaKey) {
        meta = {
          userDeltaLink: text(e.userDeltaLink) || null,
          orgContactDeltaLink: text(e.orgContactDeltaLink) || null,
          groupDeltaLink: text(e.groupDeltaLink) || null,
          mailboxDeltaLink: text(e.mailboxDeltaLink) || null,
          mailboxSource: text(e.mailboxSource) || null,
          refreshedAt: text(e.refreshedAt),
        };
        continue;
      }
      const key = fromTableKey(e.rowKey);
      rows.set(key, {
        key,
        entry: json(anyObject, e.entry, 'entry') as unknown as DirectoryEntry,
        desired: e.desired ? (json(anyObject, e.desired, 'desired') as unknown as DesiredContact) : null,
        exclusion: (e.exclusion as string) || null,
      });
    }
    return { meta, rows };
  }

  async save(policyId: string, upserts: SourceRow[], deletes: string[], meta: SourceMeta): Promise<void> {
    await submitBuilt(this.table, upserts, (r): TransactionAction => [
      'upsert',
      {
        partitionKey: policyId,
        rowKey: tableKey(r.key),
        entry: JSON.stringify(r.entry),
        desired: r.desired ? JSON.stringify(r.desired) : '',
        desiredHash: r.desired?.hash ?? '',
        desiredPhoto:
          r.desired?.photo === undefined ? '' : r.desired.photo === null ? noPhoto : r.desired.photo,
        ...(r.desired?.photoSize !== undefined ? { photoSize: r.desired.photoSize } : {}),
        ...(r.desired?.folder !== undefined ? { desiredFolder: r.desired.folder } : {}),
        exclusion: r.exclusion ?? '',
      },
      'Replace',
    ]);
    await submitBuilt(this.table, deletes, (k): TransactionAction => [
      'delete',
      { partitionKey: policyId, rowKey: tableKey(k) },
    ]);
    await this.table.upsertEntity(
      {
        partitionKey: policyId,
        rowKey: metaKey,
        userDeltaLink: meta.userDeltaLink ?? '',
        orgContactDeltaLink: meta.orgContactDeltaLink ?? '',
        groupDeltaLink: meta.groupDeltaLink ?? '',
        mailboxDeltaLink: meta.mailboxDeltaLink ?? '',
        mailboxSource: meta.mailboxSource ?? '',
        refreshedAt: meta.refreshedAt,
        // Changes with every save: what mailbox workers compare before reusing a snapshot they hold.
        snapshotId: randomUUID(),
      },
      'Replace',
    );
  }

  /**
   * The desired contacts, shared by the mailbox workers of one process while the snapshot is the
   * same (its id, one point read, says so): 16 concurrent workers on a 50,000-user
   * source hold one copy, and read its rows once instead of once each.
   */
  async loadDesired(policyId: string): Promise<ReadonlyMap<string, DesiredContact>> {
    return this.shared(this.snapshots, policyId, () => this.readDesired(policyId));
  }

  /** The take-over's address index, shared per snapshot as the desired contacts are. */
  async loadAddresses(policyId: string): Promise<SourceAddresses> {
    return this.shared(this.addressIndexes, policyId, () => this.readAddresses(policyId));
  }

  private readonly snapshots = new Map<string, Shared<ReadonlyMap<string, DesiredContact>>>();
  private readonly addressIndexes = new Map<string, Shared<SourceAddresses>>();

  /** One read per snapshot id (one point read says which) for the workers of this process. */
  private async shared<T>(
    cache: Map<string, Shared<T>>,
    policyId: string,
    read: () => Promise<T>,
  ): Promise<T> {
    const version = await this.snapshotVersion(policyId);
    if (version === null) return read(); // written before snapshot ids: no reuse
    const now = Date.now();
    for (const [k, c] of cache) if (now - c.usedAt > snapshotIdleMs) cache.delete(k);
    const hit = cache.get(policyId);
    if (hit && hit.version === version) {
      hit.usedAt = now;
      return hit.value;
    }
    const value = read();
    cache.set(policyId, { version, value, usedAt: now });
    value.catch(() => {
      if (cache.get(policyId)?.value === value) cache.delete(policyId);
    });
    return value;
  }

  /** Only the selected rows' entries (their addresses), not the desired contacts' fields. */
  private async readAddresses(policyId: string): Promise<SourceAddresses> {
    const rows: SourceRow[] = [];
    const filter = odata`PartitionKey eq ${policyId} and desiredHash ne ${''}`;
    for await (const e of this.table.listEntities<TableEntity<{ entry?: string }>>({
      queryOptions: { filter, select: ['RowKey', 'entry'] },
    })) {
      if (e.rowKey === metaKey || !e.entry) continue;
      const entry = json(anyObject, e.entry, 'entry') as unknown as DirectoryEntry;
      // Only `desired` being set matters to the index; the entry carries the addresses.
      rows.push({ key: fromTableKey(e.rowKey), entry, desired: selected, exclusion: null });
    }
    return addressesOfRows(rows);
  }

  private async snapshotVersion(policyId: string): Promise<string | null> {
    try {
      const e = await this.table.getEntity<{ snapshotId?: string }>(policyId, metaKey, {
        queryOptions: { select: ['snapshotId'] },
      });
      return text(e.snapshotId) || null;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return null;
      throw err;
    }
  }

  private async readDesired(policyId: string): Promise<ReadonlyMap<string, DesiredContact>> {
    const out = new Map<string, DesiredContact>();
    const filter = odata`PartitionKey eq ${policyId} and desiredHash ne ${''}`;
    for await (const e of this.table.listEntities<
      TableEntity<{
        desired?: string;
        desiredHash?: string;
        desiredPhoto?: string;
        photoSize?: number;
        desiredFolder?: string;
      }>
    >({
      queryOptions: {
        filter,
        select: ['RowKey', 'desired', 'desiredHash', 'desiredPhoto', 'photoSize', 'desiredFolder'],
      },
    })) {
      if (e.rowKey === metaKey || !e.desired) continue;
      const want = new StoredDesired(e.desiredHash ?? '', e.desired);
      if (typeof e.desiredPhoto === 'string' && e.desiredPhoto !== '')
        want.photo = e.desiredPhoto === noPhoto ? null : e.desiredPhoto;
      if (typeof e.photoSize === 'number') want.photoSize = e.photoSize;
      if (typeof e.desiredFolder === 'string' && e.desiredFolder !== '') want.folder = e.desiredFolder;
      out.set(fromTableKey(e.rowKey), want);
    }
    return out;
  }
}

/** A snapshot no worker asked for in this long is dropped (the next run reads it again). */
const snapshotIdleMs = 10 * 60_000;

interface Shared<T> {
  version: string;
  value: Promise<T>;
  usedAt: number;
}

/** Marks a row as selected for addressesOfRows (it reads `desired` only as a flag). */
const selected = { hash: '', fields: {} } as DesiredContact;

/**
 * A desired contact as stored. The hash and photo columns are all a mailbox worker needs for an
 * unchanged contact; the fields are parsed from the stored text each time they are read and never
 * kept, so a shared snapshot stays as small as its text and no worker can change another's copy.
 */
class StoredDesired implements DesiredContact {
  photo?: string | null;
  photoSize?: number;
  folder?: string;
  constructor(
    readonly hash: string,
    private readonly text: string,
  ) {}
  get fields(): ContactFields {
    const f = json(anyObject, this.text, 'desired').fields;
    if (!f || typeof f !== 'object') throw new Error('state row: desired.fields is malformed');
    return f;
  }
}

export class TableMailboxStore implements MailboxStateStore {
  constructor(private readonly table: TableClient) {}

  private pk(policyId: string, mailboxId: string): string {
    return mailboxPartition(policyId, mailboxId);
  }

  async load(policyId: string, mailboxId: string): Promise<MailboxState> {
    const pk = this.pk(policyId, mailboxId);
    let folder: FolderState | null = null;
    const contacts = new Map<string, StoredContact>();
    for await (const e of this.table.listEntities<TableEntity<Record<string, unknown>>>({
      queryOptions: { filter: odata`PartitionKey eq ${pk}` },
    })) {
      if (e.rowKey === '~lock') continue;
      if (e.rowKey === folderKey) {
        folder = folderOf(e);
        continue;
      }
      if (e.pending === true) {
        const fields = json(anyObject, e.fields, 'fields') as ContactFields;
        const keep = e.keep ? (json(z.array(z.string()), e.keep, 'keep') as never) : undefined;
        contacts.set(fromTableKey(e.rowKey), {
          pending: true,
          hash: text(e.hash),
          fields,
          ...(keep ? { keep } : {}),
        });
      } else {
        if (typeof e.fields !== 'string') throw new Error('state row: fields is missing');
        const base = {
          contactId: text(e.contactId),
          hash: text(e.hash),
          changeKey: text(e.changeKey),
          keep: e.keep ? (json(z.array(z.string()), e.keep, 'keep') as never) : [],
          userDeleted: e.userDeleted === true,
          orphaned: e.orphaned === true,
          ...(typeof e.photo === 'string' && e.photo !== '' ? { photo: e.photo } : {}),
          ...(typeof e.intent === 'string' && e.intent !== ''
            ? { intent: json(intentSchema, e.intent, 'intent') as ManagedContact['intent'] }
            : {}),
        };
        contacts.set(fromTableKey(e.rowKey), withLazyWritten(base, e.fields) as unknown as StoredContact);
      }
    }
    return { folder, contacts };
  }

  async loadFolder(policyId: string, mailboxId: string): Promise<FolderState | null> {
    try {
      const e = await this.table.getEntity<Record<string, unknown>>(this.pk(policyId, mailboxId), folderKey);
      return folderOf(e);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return null;
      throw err;
    }
  }

  async saveFolder(policyId: string, mailboxId: string, folder: FolderState): Promise<void> {
    // More ids than a property holds: none are stored, and the next pass compares the whole folder.
    let dirty = JSON.stringify(folder.dirtyContactIds);
    const recheckAll = folder.recheckAll === true || dirty.length > maxDirtyChars;
    if (recheckAll) dirty = '[]';
    // Indexed first: an index row without state is harmless, state missing from the index is never cleaned.
    await this.table.upsertEntity(
      { partitionKey: mailboxIndex(policyId), rowKey: tableKey(mailboxId) },
      'Replace',
    );
    await this.table.upsertEntity(
      {
        partitionKey: this.pk(policyId, mailboxId),
        rowKey: folderKey,
        folderId: folder.folderId ?? '',
        folderName: folder.folderName ?? '',
        deltaLink: folder.deltaLink ?? '',
        dirty,
        recheckAll,
        created: folder.created === true,
        takenOver: folder.takenOver ?? '',
        takeOverBefore: folder.takeOverBefore ?? '',
        nameCheckedAt: folder.nameCheckedAt ?? '',
        // At most maxAdoptRefusals entries of ~180 characters: well inside one 32K property.
        adoptRefusals: folder.adoptRefusals?.length ? JSON.stringify(folder.adoptRefusals) : '',
        // Up to maxRetiredFolders ids of ~150 characters: in pieces, as one property holds 32K.
        ...(folder.retired?.length ? inPieces('retired', JSON.stringify(folder.retired)) : {}),
        // At most 200 hashes of 16 characters (maxFolders old and new).
        ...(folder.parts ? { parts: JSON.stringify(folder.parts) } : {}),
      },
      'Replace',
    );
  }

  async apply(
    policyId: string,
    mailboxId: string,
    upserts: [string, StoredContact][],
    deletes: string[],
  ): Promise<void> {
    const pk = this.pk(policyId, mailboxId);
    // One action per row, the last one wins (a healed row may also be in the plan's state changes).
    const last = new Map<string, [string, StoredContact] | string>();
    for (const u of upserts) last.set(u[0], u);
    for (const k of deletes) last.set(k, k);
    await submitBuilt(this.table, [...last.values()], (item): TransactionAction => {
      if (typeof item === 'string') return ['delete', { partitionKey: pk, rowKey: tableKey(item) }];
      const [sourceKey, c] = item;
      const key = tableKey(sourceKey);
      return [
        'upsert',
        c.pending
          ? {
              partitionKey: pk,
              rowKey: key,
              pending: true,
              hash: c.hash,
              fields: JSON.stringify(c.fields),
              ...(c.keep ? { keep: JSON.stringify(c.keep) } : {}),
            }
          : {
              partitionKey: pk,
              rowKey: key,
              pending: false,
              contactId: c.contactId,
              hash: c.hash,
              fields: JSON.stringify(c.written),
              changeKey: c.changeKey,
              keep: JSON.stringify(c.keep),
              userDeleted: c.userDeleted,
              orphaned: c.orphaned,
              // The hash of the photo we put; empty for none.
              photo: c.photo ?? '',
              // A PATCH sent without a reply yet (JSON); empty for none.
              intent: c.intent ? JSON.stringify(c.intent) : '',
            },
        'Replace',
      ];
    });
  }

  async clear(policyId: string, mailboxId: string): Promise<void> {
    const pk = this.pk(policyId, mailboxId);
    const keys: string[] = [];
    for await (const e of this.table.listEntities({
      queryOptions: { filter: odata`PartitionKey eq ${pk}`, select: ['RowKey'] },
    })) {
      if (e.rowKey !== '~lock') keys.push(e.rowKey!); // the worker's lease stays
    }
    await submitInChunks(
      this.table,
      keys.map((k): TransactionAction => ['delete', { partitionKey: pk, rowKey: k }]),
    );
    try {
      await this.table.deleteEntity(mailboxIndex(policyId), tableKey(mailboxId));
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw err;
    }
  }

  /**
   * Mailboxes holding the policy's state: one partition of index rows (a row each, written with the
   * folder row), read a page of 1,000 at a time, instead of a scan past every contact row of every
   * mailbox. State written before the index existed is indexed once, then marked complete.
   */
  async listMailboxes(policyId: string): Promise<string[]> {
    const index = mailboxIndex(policyId);
    const ids: string[] = [];
    let complete = false;
    for await (const e of this.table.listEntities({
      queryOptions: { filter: odata`PartitionKey eq ${index}`, select: ['RowKey'] },
    })) {
      if (e.rowKey === indexComplete) complete = true;
      else ids.push(fromTableKey(e.rowKey!));
    }
    if (complete) return ids;
    const found = await this.scanFolderRows(policyId);
    await submitInChunks(this.table, [
      ...found.map((id): TransactionAction => [
        'upsert',
        { partitionKey: index, rowKey: tableKey(id) },
        'Replace',
      ]),
      ['upsert', { partitionKey: index, rowKey: indexComplete }, 'Replace'],
    ]);
    return [...new Set([...ids, ...found])];
  }

  /** The scan the index replaces: folder rows across the policy's partitions (once, to upgrade). */
  private async scanFolderRows(policyId: string): Promise<string[]> {
    const from = `${tableKey(policyId)}|`;
    const ids: string[] = [];
    for await (const e of this.table.listEntities({
      queryOptions: {
        // '}' sorts right after '|': the range is exactly this policy's partitions.
        filter: odata`PartitionKey ge ${from} and PartitionKey lt ${`${tableKey(policyId)}}`} and RowKey eq ${folderKey}`,
        select: ['PartitionKey'],
      },
    }))
      ids.push(fromTableKey(e.partitionKey!.slice(from.length)));
    return ids;
  }
}

/** The partition listing a policy's mailboxes ('~' sorts after '}': outside its mailbox partitions). */
const mailboxIndex = (policyId: string): string => `${tableKey(policyId)}~mailboxes`;
/** The index row saying every mailbox is indexed (mailbox keys never start with '~'). */
const indexComplete = '~complete';

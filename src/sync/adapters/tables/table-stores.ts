// Sync state in Azure Table Storage. Rows are partitioned by policy (sources) and by policy and
// mailbox (mailboxes), so a mailbox's rows are written in entity-group transactions of up to 100.
import { odata, TableClient, type TableEntity, type TransactionAction } from '@azure/data-tables';
import { z } from 'zod';
import type { DirectoryEntry } from '../../directory';
import type { ContactFields } from '../../mapping';
import type { DesiredContact } from '../../planner';
import type {
  FolderState,
  MailboxState,
  MailboxStateStore,
  SourceMeta,
  SourceRow,
  SourceStore,
  StoredContact,
} from '../../ports';

export const tableNames = {
  sources: 'syncsources',
  mailboxes: 'syncmailboxes',
  runs: 'syncruns',
  policies: 'syncpolicies',
} as const;

const metaKey = '~meta';
const folderKey = '~folder';

/** Creates a table unless it exists (409 is success). */
export async function ensureTable(client: TableClient): Promise<void> {
  try {
    await client.createTable();
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 409) throw e;
  }
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
const text = (v: unknown): string => (typeof v === 'string' ? v : '');

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
          refreshedAt: text(e.refreshedAt),
        };
        continue;
      }
      rows.set(e.rowKey, {
        key: e.rowKey,
        entry: json(anyObject, e.entry, 'entry') as unknown as DirectoryEntry,
        desired: e.desired ? (json(anyObject, e.desired, 'desired') as unknown as DesiredContact) : null,
        exclusion: (e.exclusion as string) || null,
      });
    }
    return { meta, rows };
  }

  async save(policyId: string, upserts: SourceRow[], deletes: string[], meta: SourceMeta): Promise<void> {
    const actions: TransactionAction[] = [
      ...upserts.map((r): TransactionAction => [
        'upsert',
        {
          partitionKey: policyId,
          rowKey: r.key,
          entry: JSON.stringify(r.entry),
          desired: r.desired ? JSON.stringify(r.desired) : '',
          desiredHash: r.desired?.hash ?? '',
          exclusion: r.exclusion ?? '',
        },
        'Replace',
      ]),
      ...deletes.map((k): TransactionAction => ['delete', { partitionKey: policyId, rowKey: k }]),
    ];
    await submitInChunks(this.table, actions);
    await this.table.upsertEntity(
      {
        partitionKey: policyId,
        rowKey: metaKey,
        userDeltaLink: meta.userDeltaLink ?? '',
        orgContactDeltaLink: meta.orgContactDeltaLink ?? '',
        groupDeltaLink: meta.groupDeltaLink ?? '',
        mailboxDeltaLink: meta.mailboxDeltaLink ?? '',
        refreshedAt: meta.refreshedAt,
      },
      'Replace',
    );
  }

  async loadDesired(policyId: string): Promise<Map<string, DesiredContact>> {
    const out = new Map<string, DesiredContact>();
    const filter = odata`PartitionKey eq ${policyId} and desiredHash ne ${''}`;
    for await (const e of this.table.listEntities<TableEntity<{ desired?: string }>>({
      queryOptions: { filter, select: ['RowKey', 'desired'] },
    })) {
      if (e.rowKey !== metaKey && e.desired)
        out.set(e.rowKey, json(anyObject, e.desired, 'desired') as unknown as DesiredContact);
    }
    return out;
  }
}

export class TableMailboxStore implements MailboxStateStore {
  constructor(private readonly table: TableClient) {}

  private pk(policyId: string, mailboxId: string): string {
    return `${policyId}|${mailboxId}`;
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
        folder = {
          folderId: (e.folderId as string) || null,
          folderName: (e.folderName as string) || null,
          deltaLink: (e.deltaLink as string) || null,
          dirtyContactIds: e.dirty ? json(z.array(z.string()), e.dirty, 'dirty') : [],
        };
        continue;
      }
      const fields = json(anyObject, e.fields, 'fields') as ContactFields;
      if (e.pending === true) {
        contacts.set(e.rowKey, { pending: true, hash: text(e.hash), fields });
      } else {
        contacts.set(e.rowKey, {
          contactId: text(e.contactId),
          hash: text(e.hash),
          written: fields,
          changeKey: text(e.changeKey),
          keep: e.keep ? (json(z.array(z.string()), e.keep, 'keep') as never) : [],
          userDeleted: e.userDeleted === true,
          orphaned: e.orphaned === true,
          ...(typeof e.photo === 'string' && e.photo !== '' ? { photo: e.photo } : {}),
        });
      }
    }
    return { folder, contacts };
  }

  async saveFolder(policyId: string, mailboxId: string, folder: FolderState): Promise<void> {
    await this.table.upsertEntity(
      {
        partitionKey: this.pk(policyId, mailboxId),
        rowKey: folderKey,
        folderId: folder.folderId ?? '',
        folderName: folder.folderName ?? '',
        deltaLink: folder.deltaLink ?? '',
        dirty: JSON.stringify(folder.dirtyContactIds),
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
    const actions: TransactionAction[] = [
      ...upserts.map(([key, c]): TransactionAction => [
        'upsert',
        c.pending
          ? { partitionKey: pk, rowKey: key, pending: true, hash: c.hash, fields: JSON.stringify(c.fields) }
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
            },
        'Replace',
      ]),
      ...deletes.map((k): TransactionAction => ['delete', { partitionKey: pk, rowKey: k }]),
    ];
    await submitInChunks(this.table, actions);
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
  }
}

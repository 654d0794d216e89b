// The policies the app has run, so one deleted from the policy file is noticed and, after a grace
// period, its contacts removed: each row keeps what cleanup needs once the policy text is gone (its
// connection and folder name) and since when the file no longer holds it.
import { odata, type TableClient } from '@azure/data-tables';
import { tableKey } from './table-key';

export interface KnownPolicy {
  policyId: string;
  connectionId: string;
  /** The policy's folder name; null for the default Contacts folder. */
  folderName: string | null;
  /** When the policy was first found missing from the file (ISO 8601); null while it is there. */
  missingSince: string | null;
}

const rowKey = '~known';

export class PolicyRegistry {
  constructor(private readonly table: TableClient) {}

  /** Records a policy as present (at each run's start): a missing mark is lifted. */
  async seen(p: Omit<KnownPolicy, 'missingSince'>): Promise<void> {
    await this.table.upsertEntity(
      {
        partitionKey: tableKey(p.policyId),
        rowKey,
        policyId: p.policyId,
        connectionId: p.connectionId,
        // '' cannot be a folder name (the schema refuses it): it stands for the default folder.
        folderName: p.folderName ?? '',
        missingSince: '',
      },
      'Replace',
    );
  }

  async get(policyId: string): Promise<KnownPolicy | undefined> {
    try {
      return known(await this.table.getEntity<Record<string, unknown>>(tableKey(policyId), rowKey));
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  }

  async list(): Promise<KnownPolicy[]> {
    const out: KnownPolicy[] = [];
    for await (const e of this.table.listEntities<Record<string, unknown>>({
      queryOptions: { filter: odata`RowKey eq ${rowKey}` },
    }))
      out.push(known(e));
    return out;
  }

  async markMissing(policyId: string, since: Date): Promise<void> {
    await this.table.updateEntity(
      { partitionKey: tableKey(policyId), rowKey, missingSince: since.toISOString() },
      'Merge',
    );
  }

  /** Lifts the missing mark of a policy the file holds again: a later deletion starts a new grace period. */
  async markPresent(policyId: string): Promise<void> {
    await this.table.updateEntity({ partitionKey: tableKey(policyId), rowKey, missingSince: '' }, 'Merge');
  }

  async forget(policyId: string): Promise<void> {
    try {
      await this.table.deleteEntity(tableKey(policyId), rowKey);
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw e;
    }
  }
}

function known(e: Record<string, unknown>): KnownPolicy {
  const text = (v: unknown): string => (typeof v === 'string' ? v : '');
  return {
    policyId: text(e.policyId),
    connectionId: text(e.connectionId),
    folderName: text(e.folderName) || null,
    missingSince: text(e.missingSince) || null,
  };
}

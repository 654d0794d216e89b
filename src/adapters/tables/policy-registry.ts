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
  /** The removals started for it since it went missing (the sweep backs off between them). */
  removal?: RemovalAttempts;
}

export interface RemovalAttempts {
  attempts: number;
  /** The last removal run and when it was started (ISO 8601). */
  runId: string;
  startedAt: string;
  /** What went wrong in the last looked-at removal run, and that run's id. */
  failure?: { runId: string; text: string };
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
      { partitionKey: tableKey(policyId), rowKey, missingSince: since.toISOString(), ...noRemoval },
      'Merge',
    );
  }

  /** Lifts the missing mark of a policy the file holds again: a later deletion starts a new grace period. */
  async markPresent(policyId: string): Promise<void> {
    await this.table.updateEntity(
      { partitionKey: tableKey(policyId), rowKey, missingSince: '', ...noRemoval },
      'Merge',
    );
  }

  /** Notes a removal run started for a missing policy (counted, so the next one can wait longer). */
  async removalStarted(policyId: string, runId: string, at: Date, attempts: number): Promise<void> {
    await this.mergeIfKnown({
      partitionKey: tableKey(policyId),
      rowKey,
      removalAttempts: attempts,
      removalRunId: runId,
      removalStartedAt: at.toISOString(),
    });
  }

  /** Notes why a removal run left something behind (clipped: one Table property). */
  async removalFailed(policyId: string, runId: string, text: string): Promise<void> {
    await this.mergeIfKnown({
      partitionKey: tableKey(policyId),
      rowKey,
      removalFailureRunId: runId,
      removalFailure: text.length > 2000 ? `${text.slice(0, 2000)}…` : text,
    });
  }

  /** A merge into a row that a finished removal may have deleted meanwhile (then nothing is left to note). */
  private async mergeIfKnown(entity: {
    partitionKey: string;
    rowKey: string;
    [k: string]: unknown;
  }): Promise<void> {
    try {
      await this.table.updateEntity(entity, 'Merge');
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw e;
    }
  }

  async forget(policyId: string): Promise<void> {
    try {
      await this.table.deleteEntity(tableKey(policyId), rowKey);
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw e;
    }
  }
}

const noRemoval = {
  removalAttempts: 0,
  removalRunId: '',
  removalStartedAt: '',
  removalFailureRunId: '',
  removalFailure: '',
};

function known(e: Record<string, unknown>): KnownPolicy {
  const text = (v: unknown): string => (typeof v === 'string' ? v : '');
  const attempts = typeof e.removalAttempts === 'number' ? e.removalAttempts : 0;
  const failure = text(e.removalFailureRunId)
    ? { failure: { runId: text(e.removalFailureRunId), text: text(e.removalFailure) } }
    : {};
  return {
    policyId: text(e.policyId),
    connectionId: text(e.connectionId),
    folderName: text(e.folderName) || null,
    missingSince: text(e.missingSince) || null,
    ...(attempts > 0 && text(e.removalRunId)
      ? {
          removal: {
            attempts,
            runId: text(e.removalRunId),
            startedAt: text(e.removalStartedAt),
            ...failure,
          },
        }
      : {}),
  };
}

// History reads through the index (src/adapters/tables/run-index.ts): one partition read newest first
// with `$top` (finished runs' summaries ride on their rows), then the few rows it points to read by
// key. Shared by the dashboard and the CLI.
import { odata, type TableClient, type TableEntity } from '@azure/data-tables';
import type { MailboxOutcome, RunSummary } from '../../sync/runs';
import { unpackData } from './pack';
import {
  allRunsPartition,
  finishedRunOf,
  indexComplete,
  mailboxPointerOf,
  policyPartition,
  readNewest,
  userRowsFilter,
  type MailboxPointer,
  type UserQuery,
} from './run-index';
import { tableKey } from './table-key';

type Row = TableEntity<Record<string, unknown>>;

const status = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;

export class IndexedRunHistory {
  constructor(private readonly runs: TableClient) {}

  /** False while runs recorded before the index wait for their back-fill (readers scan instead). */
  ready(): Promise<boolean> {
    return indexComplete(this.runs);
  }

  /** The newest `limit` runs of a policy, or of all policies, newest first. */
  newestRuns(policyId: string | undefined, limit: number): Promise<RunSummary[]> {
    const partition = odata`PartitionKey eq ${policyId === undefined ? allRunsPartition : policyPartition(policyId)}`;
    // A finished run's row carries its summary; the others (running, or a copy a crash left out) are
    // read by key, and a pointer whose run is gone (a start that died, a sweep under way) is passed over.
    return this.collect(partition, limit, (row) =>
      Promise.resolve(finishedRunOf(row) ?? this.summary(String(row.runId))),
    );
  }

  /**
   * A user's index rows (by UPN, any case, or by mailbox id), newest first, each resolved by `resolve`
   * (undefined: passed over). `pageSize` rows are read at a time, at most `maxRows` in all.
   */
  userRows<T>(
    query: UserQuery,
    limit: number,
    resolve: (p: MailboxPointer) => Promise<T | undefined>,
    maxRows = 1000,
  ): Promise<T[]> {
    let filter: string;
    try {
      filter = userRowsFilter(query);
    } catch {
      return Promise.resolve([]); // longer than any key: no user has it
    }
    return this.collect(filter, limit, (row) => resolve(mailboxPointerOf(row)), maxRows);
  }

  private async collect<T>(
    filter: string,
    limit: number,
    resolve: (row: Row) => Promise<T | undefined>,
    maxRows = 1000,
  ): Promise<T[]> {
    const out: T[] = [];
    const pageSize = Math.max(1, Math.min(limit, 1000));
    await readNewest(
      this.runs,
      filter,
      pageSize,
      async (rows) => {
        const resolved = await Promise.all(rows.map(resolve));
        for (const r of resolved) if (r !== undefined && out.length < limit) out.push(r);
        return out.length >= limit;
      },
      Math.ceil(maxRows / pageSize),
    );
    return out;
  }

  summary(runId: string): Promise<RunSummary | undefined> {
    return this.row(runId, '~run');
  }

  outcome(runId: string, mailboxId: string): Promise<MailboxOutcome | undefined> {
    return this.row(runId, tableKey(mailboxId));
  }

  private async row<T>(partitionKey: string, rowKey: string): Promise<T | undefined> {
    try {
      return unpackData<T>(await this.runs.getEntity<Row>(partitionKey, rowKey));
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }
}

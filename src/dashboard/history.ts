// Read-only queries over the run records for the dashboard: a policy's recent runs, a run's outcomes
// with the time each was written, and one mailbox's history across runs. It reads the rows the run
// store writes (src/adapters/tables/run-store.ts) and never writes.
//
// A policy's runs and a user's are read from the history index (src/adapters/tables/run-index.ts), one
// partition each, whatever else the table holds. Until runs recorded before the index are back-filled
// (the scheduler does it, a page at a time), the summaries are found by a scan as they were before.
import type { TableClient } from '@azure/data-tables';
import { unpackData } from '../adapters/tables/run-store';
import { IndexedRunHistory } from '../adapters/tables/run-history';
import type { MailboxPointer } from '../adapters/tables/run-index';
import type { MailboxOutcome, RunSummary } from '../sync/runs';

// The run store's row layout: a run's summary row, its targets, and outcome rows keyed by mailbox id.
const summaryKey = '~run';
const targetPrefix = '~target~';
const odata = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const guid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Row = Record<string, unknown> & { partitionKey?: string; rowKey?: string; timestamp?: string };

export interface TimedOutcome extends MailboxOutcome {
  /** When the outcome row was last written (the table's own timestamp). */
  recordedAt: string | null;
}

export interface MailboxHistoryEntry {
  runId: string;
  policyId: string;
  startedAt: string;
  dryRun: boolean;
  mailboxId: string | null;
  userPrincipalName: string;
  /** An outcome's status, or 'left out' when the run skipped the user before any mailbox work. */
  status: string;
  reason: string | null;
  result: MailboxOutcome['result'];
}

export class RunHistory {
  private readonly index: IndexedRunHistory;

  constructor(private readonly runs: TableClient) {
    this.index = new IndexedRunHistory(runs);
  }

  private async summaries(filter: string, limit: number): Promise<RunSummary[]> {
    const out: RunSummary[] = [];
    for await (const e of this.runs.listEntities<Row>({ queryOptions: { filter } }))
      out.push(unpackData<RunSummary>(e));
    return out.sort((a, b) => b.startedAt.localeCompare(a.startedAt)).slice(0, limit);
  }

  /** A policy's newest runs first. */
  async recentRuns(policyId: string, limit = 30): Promise<RunSummary[]> {
    if (await this.index.ready()) return this.index.newestRuns(policyId, limit);
    return this.summaries(`RowKey eq '${summaryKey}' and policyId eq ${odata(policyId)}`, limit);
  }

  /** A run's mailbox outcomes, each with the time its row was written. */
  async outcomes(runId: string): Promise<TimedOutcome[]> {
    const out: TimedOutcome[] = [];
    for await (const e of this.runs.listEntities<Row>({
      queryOptions: { filter: `PartitionKey eq ${odata(runId)} and RowKey lt '~'` },
    }))
      out.push({ ...unpackData<MailboxOutcome>(e), recordedAt: e.timestamp ?? null });
    return out;
  }

  /** When the run stored its targets (the source was read and the fan-out began). */
  async fannedOutAt(runId: string): Promise<string | null> {
    const filter = `PartitionKey eq ${odata(runId)} and RowKey ge '${targetPrefix}' and RowKey lt '${targetPrefix}~'`;
    for await (const e of this.runs.listEntities<Row>({ queryOptions: { filter, select: ['Timestamp'] } }))
      return e.timestamp ?? null;
    return null;
  }

  /**
   * One user's history across runs and policies, newest first: by mailbox id (GUID) or user principal
   * name. Runs that left the user out (no mailbox sync, out of scope, ...) come from the run summaries.
   */
  async mailbox(query: string, limit = 50): Promise<MailboxHistoryEntry[]> {
    const q = query.trim();
    const byId = guid.test(q);
    if (await this.index.ready())
      return this.index.userRows(byId ? { mailboxId: q } : { upn: q }, limit, (p) => this.entry(p));
    return this.scanMailbox(q, byId, limit);
  }

  /** An index row as a history entry, with the mailbox's outcome in that run. */
  private async entry(p: MailboxPointer): Promise<MailboxHistoryEntry> {
    const fields = { runId: p.runId, policyId: p.policyId, startedAt: p.startedAt, dryRun: p.dryRun };
    if (p.kind === 'left out' || !p.mailboxId)
      return {
        ...fields,
        mailboxId: null,
        userPrincipalName: p.upn,
        status: 'left out',
        reason: p.reason,
        result: null,
      };
    const outcome = await this.index.outcome(p.runId, p.mailboxId);
    return {
      ...fields,
      mailboxId: p.mailboxId,
      userPrincipalName: outcome?.userPrincipalName ?? p.upn,
      status: outcome?.status ?? 'pending',
      reason: outcome?.lastError ?? (outcome?.result?.skipReason ? outcome.result.skipReason : null),
      result: outcome?.result ?? null,
    };
  }

  /** The same, for a table not yet back-filled: the target rows and summaries across the table. */
  private async scanMailbox(q: string, byId: boolean, limit: number): Promise<MailboxHistoryEntry[]> {
    const targets: { runId: string; mailboxId: string; upn: string }[] = [];
    const filter = byId
      ? `RowKey eq ${odata(`${targetPrefix}${q.toLowerCase()}`)} or RowKey eq ${odata(`${targetPrefix}${q}`)}`
      : `upn eq ${odata(q)}`;
    for await (const e of this.runs.listEntities<Row & { upn?: string }>({ queryOptions: { filter } }))
      if (e.rowKey?.startsWith(targetPrefix))
        targets.push({
          runId: e.partitionKey!,
          mailboxId: e.rowKey.slice(targetPrefix.length),
          upn: e.upn ?? '',
        });
    const entries: MailboxHistoryEntry[] = [];
    // The table returns targets in run id (GUID) order, not by time: the newest runs are chosen by
    // their start time before the limit applies.
    for (const { t, run } of (await this.withRuns(targets))
      .sort((a, b) => b.run.startedAt.localeCompare(a.run.startedAt))
      .slice(0, limit)) {
      const outcome = await this.outcome(t.runId, t.mailboxId);
      entries.push({
        ...runFields(run),
        mailboxId: t.mailboxId,
        userPrincipalName: outcome?.userPrincipalName ?? t.upn,
        status: outcome?.status ?? 'pending',
        reason: outcome?.lastError ?? (outcome?.result?.skipReason ? outcome.result.skipReason : null),
        result: outcome?.result ?? null,
      });
    }
    if (!byId) {
      const lower = q.toLowerCase();
      for (const run of await this.summaries(`RowKey eq '${summaryKey}'`, 500))
        for (const s of run.skippedTargets)
          if (s.user.toLowerCase() === lower)
            entries.push({
              ...runFields(run),
              mailboxId: null,
              userPrincipalName: s.user,
              status: 'left out',
              reason: s.reason,
              result: null,
            });
    }
    return entries.sort((a, b) => b.startedAt.localeCompare(a.startedAt)).slice(0, limit);
  }

  /** Each target with its run's summary (read a few at a time); targets of deleted runs are dropped. */
  private async withRuns<T extends { runId: string }>(targets: T[]): Promise<{ t: T; run: RunSummary }[]> {
    const out: { t: T; run: RunSummary }[] = [];
    for (let i = 0; i < targets.length; i += 20) {
      const chunk = targets.slice(i, i + 20);
      const runs = await Promise.all(chunk.map((t) => this.summary(t.runId)));
      chunk.forEach((t, j) => runs[j] && out.push({ t, run: runs[j] }));
    }
    return out;
  }

  private async summary(runId: string): Promise<RunSummary | undefined> {
    return this.row(runId, summaryKey);
  }

  private async outcome(runId: string, mailboxId: string): Promise<MailboxOutcome | undefined> {
    return this.row(runId, mailboxId);
  }

  private async row<T>(partitionKey: string, rowKey: string): Promise<T | undefined> {
    try {
      return unpackData<T>(await this.runs.getEntity<Row>(partitionKey, rowKey));
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw err;
    }
  }
}

const runFields = (
  run: RunSummary,
): Pick<MailboxHistoryEntry, 'runId' | 'policyId' | 'startedAt' | 'dryRun'> => ({
  runId: run.runId,
  policyId: run.policyId,
  startedAt: run.startedAt,
  dryRun: run.options.dryRun,
});

// Runs and policy leases in Table Storage. A run's summary and its mailbox outcomes share a partition,
// so recording an outcome and counting it is one entity-group transaction guarded by the summary's ETag.
import { TableClient, type TableEntity, type TransactionAction } from '@azure/data-tables';
import {
  addOutcome,
  isFinal,
  type MailboxOutcome,
  type PolicyState,
  type RunStore,
  type RunSummary,
} from '../../runs';
import type { TargetResolution } from '../../directory';

const summaryKey = '~run';
const stateKey = 'state';
const status = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;

type DataEntity = TableEntity<{ data: string }>;

export class TableRunStore implements RunStore {
  constructor(
    private readonly runs: TableClient,
    private readonly policies: TableClient,
  ) {}

  private async readSummary(runId: string): Promise<{ run: RunSummary; etag: string } | undefined> {
    try {
      const e = await this.runs.getEntity<DataEntity>(runId, summaryKey);
      return { run: JSON.parse(e.data) as RunSummary, etag: e.etag };
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }

  /** Read-modify-write with ETag, retried on conflicts. */
  private async updateSummary(
    runId: string,
    change: (run: RunSummary) => RunSummary | undefined,
  ): Promise<RunSummary | undefined> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = await this.readSummary(runId);
      if (!current) return undefined;
      const next = change(current.run);
      if (!next) return current.run;
      try {
        await this.runs.updateEntity(
          { partitionKey: runId, rowKey: summaryKey, data: JSON.stringify(next) },
          'Replace',
          { etag: current.etag },
        );
        return next;
      } catch (err) {
        if (status(err) !== 412) throw err;
      }
    }
    throw new Error(`run ${runId}: too many concurrent updates`);
  }

  async createRun(summary: RunSummary): Promise<void> {
    try {
      await this.runs.createEntity({
        partitionKey: summary.runId,
        rowKey: summaryKey,
        policyId: summary.policyId,
        data: JSON.stringify(summary),
      });
    } catch (err) {
      if (status(err) !== 409) throw err; // a redelivered message: the run exists already
    }
  }

  async getRun(runId: string): Promise<RunSummary | undefined> {
    return (await this.readSummary(runId))?.run;
  }

  async startRun(
    runId: string,
    expected: number,
    skippedTargets: TargetResolution['skipped'],
    notes: string[] = [],
  ): Promise<RunSummary> {
    const run = await this.updateSummary(runId, (r) =>
      r.status === 'starting'
        ? { ...r, status: 'running', expected, skippedTargets, ...(notes.length ? { notes } : {}) }
        : undefined,
    );
    if (!run) throw new Error(`run ${runId} does not exist`);
    return run;
  }

  failRun(runId: string, error: string): Promise<RunSummary | undefined> {
    return this.updateSummary(runId, (r) =>
      r.status === 'completed' || r.status === 'failed'
        ? undefined
        : { ...r, status: 'failed', error, finishedAt: new Date().toISOString() },
    );
  }

  async getOutcome(runId: string, mailboxId: string): Promise<MailboxOutcome | undefined> {
    try {
      const e = await this.runs.getEntity<DataEntity>(runId, mailboxId);
      return JSON.parse(e.data) as MailboxOutcome;
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }

  async listOutcomes(runId: string): Promise<MailboxOutcome[]> {
    const out: MailboxOutcome[] = [];
    for await (const e of this.runs.listEntities<DataEntity>({
      queryOptions: { filter: `PartitionKey eq '${runId.replace(/'/g, "''")}'` },
    })) {
      if (e.rowKey !== summaryKey) out.push(JSON.parse(e.data) as MailboxOutcome);
    }
    return out;
  }

  async noteAttempt(
    runId: string,
    mailboxId: string,
    userPrincipalName: string,
    error: string,
  ): Promise<void> {
    const existing = await this.getOutcome(runId, mailboxId);
    if (existing && isFinal(existing.status)) return;
    const outcome: MailboxOutcome = {
      mailboxId,
      userPrincipalName,
      status: 'retrying',
      result: null,
      lastError: error,
      attempts: (existing?.attempts ?? 0) + 1,
    };
    await this.runs.upsertEntity(
      { partitionKey: runId, rowKey: mailboxId, data: JSON.stringify(outcome) },
      'Replace',
    );
  }

  async recordOutcome(
    runId: string,
    outcome: MailboxOutcome,
  ): Promise<{ run: RunSummary; recorded: boolean }> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = await this.readSummary(runId);
      if (!current) throw new Error(`run ${runId} does not exist`);
      const existing = await this.getOutcome(runId, outcome.mailboxId);
      if (existing && isFinal(existing.status)) return { run: current.run, recorded: false };
      const next = addOutcome(current.run, { ...outcome, attempts: (existing?.attempts ?? 0) + 1 });
      const actions: TransactionAction[] = [
        [
          'upsert',
          {
            partitionKey: runId,
            rowKey: outcome.mailboxId,
            data: JSON.stringify({ ...outcome, attempts: (existing?.attempts ?? 0) + 1 }),
          },
          'Replace',
        ],
        [
          'update',
          { partitionKey: runId, rowKey: summaryKey, data: JSON.stringify(next) },
          'Replace',
          { etag: current.etag },
        ],
      ];
      try {
        await this.runs.submitTransaction(actions);
        return { run: next, recorded: true };
      } catch (err) {
        if (status(err) !== 412) throw err;
      }
    }
    throw new Error(`run ${runId}: too many concurrent updates`);
  }

  async completeRun(runId: string, finishedAt: string): Promise<boolean> {
    let won = false;
    await this.updateSummary(runId, (r) => {
      if (r.status === 'completed' || r.done < r.expected) return undefined;
      won = true;
      return { ...r, status: 'completed', finishedAt };
    });
    return won;
  }

  async markReportSent(runId: string): Promise<void> {
    await this.updateSummary(runId, (r) => ({ ...r, reportSent: true }));
  }

  private async readState(policyId: string): Promise<{ state: PolicyState; etag: string | null }> {
    try {
      const e = await this.policies.getEntity<DataEntity>(policyId, stateKey);
      return { state: JSON.parse(e.data) as PolicyState, etag: e.etag };
    } catch (err) {
      if (status(err) === 404)
        return {
          state: { policyId, leaseRunId: null, leaseExpiresAt: null, lastScheduledAt: null, lastRunId: null },
          etag: null,
        };
      throw err;
    }
  }

  private async writeState(
    policyId: string,
    change: (s: PolicyState) => PolicyState | undefined,
  ): Promise<PolicyState | undefined> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const { state, etag } = await this.readState(policyId);
      const next = change(state);
      if (!next) return undefined;
      const entity = { partitionKey: policyId, rowKey: stateKey, data: JSON.stringify(next) };
      try {
        if (etag === null) await this.policies.createEntity(entity);
        else await this.policies.updateEntity(entity, 'Replace', { etag });
        return next;
      } catch (err) {
        if (status(err) !== 412 && status(err) !== 409) throw err;
      }
    }
    throw new Error(`policy ${policyId}: too many concurrent updates`);
  }

  async getPolicyState(policyId: string): Promise<PolicyState> {
    return (await this.readState(policyId)).state;
  }

  async acquireLease(
    policyId: string,
    runId: string,
    expiresAt: Date,
    now: Date,
    scheduledAt?: Date,
  ): Promise<{ acquired: true } | { acquired: false; heldBy: string }> {
    let heldBy: string | null = null;
    const result = await this.writeState(policyId, (s) => {
      const live =
        s.leaseRunId !== null &&
        s.leaseRunId !== runId &&
        s.leaseExpiresAt !== null &&
        new Date(s.leaseExpiresAt).getTime() > now.getTime();
      if (live) {
        heldBy = s.leaseRunId;
        return undefined;
      }
      heldBy = null;
      return {
        ...s,
        leaseRunId: runId,
        leaseExpiresAt: expiresAt.toISOString(),
        lastRunId: runId,
        ...(scheduledAt ? { lastScheduledAt: scheduledAt.toISOString() } : {}),
      };
    });
    if (result) return { acquired: true };
    return { acquired: false, heldBy: heldBy ?? 'unknown' };
  }

  async releaseLease(policyId: string, runId: string): Promise<void> {
    await this.writeState(policyId, (s) =>
      s.leaseRunId === runId ? { ...s, leaseRunId: null, leaseExpiresAt: null } : undefined,
    );
  }

  async markScheduled(policyId: string, at: Date): Promise<void> {
    await this.writeState(policyId, (s) => ({ ...s, lastScheduledAt: at.toISOString() }));
  }
}

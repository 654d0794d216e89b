// Runs and policy leases in Table Storage. A run's summary, its targets (a row each) and its mailbox
// outcomes share a partition, so recording an outcome and counting it is one entity-group transaction
// guarded by the summary's ETag. Lists that can grow are rows or capped (Azure: a string property holds
// 32K characters, an entity 1 MiB, a transaction 100 entities).
import { randomUUID } from 'node:crypto';
import { TableClient, type TableEntity, type TransactionAction } from '@azure/data-tables';
import {
  addOutcome,
  addRunStartTraffic,
  sumTraffic,
  type GraphTraffic,
  emptyDeparted,
  boundOutcome,
  isFinal,
  RunGoneError,
  maxListedSkipped,
  type DepartedHeldBack,
  type MailboxOutcome,
  type MailboxProgress,
  type PolicyState,
  type PreReadDrift,
  type RunStore,
  type RunSummary,
  type RunTarget,
} from '../../sync/runs';
import type { TargetResolution } from '../../sync/directory';
import { packData, unpackData } from './pack';
import { fromTableKey, tableKey } from './table-key';
import { deleteRows, mailboxIndexRows, pointerOfRun, runIndexRows, upsertRows } from './run-index';

// Outcome rows are keyed by the mailbox's id (tableKey: never a leading `~`); our own rows start with
// `~`, which sorts after them.
const summaryKey = '~run';
const requestKey = '~request';
/** Present once the run's users' history rows are written. */
const usersIndexedKey = '~indexed';
const targetPrefix = '~target~';
const driftPrefix = '~drift~';
const targetRow = (mailboxId: string): string => `${targetPrefix}${tableKey(mailboxId)}`;
const progressPrefix = '~progress~';
const stateKey = 'state';
const status = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;

/** Whether a row is there, reading its key only. */
export async function rowExists(table: TableClient, partitionKey: string, rowKey: string): Promise<boolean> {
  try {
    await table.getEntity(partitionKey, rowKey, { queryOptions: { select: ['RowKey'] } });
    return true;
  } catch (err) {
    if (status(err) === 404) return false;
    throw err;
  }
}
const odata = (s: string): string => `'${s.replace(/'/g, "''")}'`;

type DataEntity = TableEntity<Record<string, unknown>>;

export { packData, unpackData };

/** A run's targets, from its rows. */
export async function listRunTargets(runs: TableClient, runId: string): Promise<RunTarget[]> {
  const out: RunTarget[] = [];
  const filter = `PartitionKey eq ${odata(runId)} and RowKey ge ${odata(targetPrefix)} and RowKey lt ${odata(`${targetPrefix}~`)}`;
  for await (const e of runs.listEntities<{ upn: string; departed?: boolean }>({ queryOptions: { filter } }))
    out.push(runTarget(fromTableKey(e.rowKey!.slice(targetPrefix.length)), e));
  return out;
}

const runTarget = (mailboxId: string, e: { upn: string; departed?: boolean }): RunTarget => ({
  mailboxId,
  userPrincipalName: e.upn,
  ...(e.departed === true ? { departed: true } : {}),
});

export class TableRunStore implements RunStore {
  constructor(
    private readonly runs: TableClient,
    private readonly policies: TableClient,
  ) {}

  private async readSummary(runId: string): Promise<{ run: RunSummary; etag: string } | undefined> {
    try {
      const e = await this.runs.getEntity<DataEntity>(runId, summaryKey);
      return { run: unpackData<RunSummary>(e), etag: e.etag };
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
          { partitionKey: runId, rowKey: summaryKey, policyId: next.policyId, ...packData(next) },
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

  async createRun(summary: RunSummary, requestedMailboxes: readonly string[]): Promise<void> {
    // The history index first (a pointer without its run is skipped and swept; a run without pointers
    // would be found by nothing), then the request (at most 1,000 names of at most 320 characters: one
    // entity, in chunks): a run exists once its summary does.
    await upsertRows(this.runs, runIndexRows(pointerOfRun(summary)));
    await this.runs.createEntity({
      partitionKey: summary.runId,
      rowKey: requestKey,
      ...packData(requestedMailboxes),
    });
    await this.runs.createEntity({
      partitionKey: summary.runId,
      rowKey: summaryKey,
      policyId: summary.policyId,
      ...packData(summary),
    });
  }

  async getRun(runId: string): Promise<RunSummary | undefined> {
    return (await this.readSummary(runId))?.run;
  }

  async deleteRun(runId: string): Promise<void> {
    const run = await this.getRun(runId);
    for (const rowKey of [requestKey, summaryKey])
      await this.runs.deleteEntity(runId, rowKey).catch((err: unknown) => {
        if (status(err) !== 404) throw err;
      });
    if (run) await deleteRows(this.runs, runIndexRows(pointerOfRun(run)));
  }

  async requestedMailboxes(runId: string): Promise<string[]> {
    try {
      return unpackData<string[]>(await this.runs.getEntity<DataEntity>(runId, requestKey));
    } catch (err) {
      if (status(err) === 404) return [];
      throw err;
    }
  }

  async startRun(
    runId: string,
    targets: readonly RunTarget[],
    skippedTargets: TargetResolution['skipped'],
    notes: string[] = [],
    departedHeldBack?: DepartedHeldBack,
    progress: () => Promise<void> = () => Promise.resolve(),
  ): Promise<{ run: RunSummary; wrote: boolean }> {
    // Claim the start: every later step is one transaction with the summary under its ETag, so a
    // delivery that another claimed after it (or that finds the run started) writes nothing more.
    const token = randomUUID();
    let current = await this.claimStart(runId, token);
    if (!current) return this.indexStarted(runId);
    const mine = new Set(targets.map((t) => t.mailboxId));
    const stale = (await this.listTargets(runId)).filter((t) => !mine.has(t.mailboxId));
    const actions: TransactionAction[] = [
      ...stale.map((t): TransactionAction => [
        'delete',
        { partitionKey: runId, rowKey: targetRow(t.mailboxId) },
      ]),
      ...targets.map((t): TransactionAction => [
        'upsert',
        {
          partitionKey: runId,
          rowKey: targetRow(t.mailboxId),
          upn: t.userPrincipalName,
          ...(t.departed ? { departed: true } : {}),
        },
        'Replace',
      ]),
    ];
    for (let i = 0; i < actions.length; i += 99) {
      current = await this.withSummary(runId, token, current, actions.slice(i, i + 99));
      if (!current) return this.indexStarted(runId);
      if ((i / 99) % 10 === 9) await progress();
    }
    const run: RunSummary = {
      ...current.run,
      status: 'running',
      expected: targets.length,
      skippedTargets: skippedTargets.slice(0, maxListedSkipped),
      skippedCount: skippedTargets.length,
      ...(notes.length ? { notes: notes.slice(0, maxListedSkipped) } : {}),
      ...(departedHeldBack ? { departedHeldBack } : {}),
    };
    const departed = targets.filter((t) => t.departed).length;
    if (departed > 0) run.departed = emptyDeparted(departed);
    delete run.targetWriter;
    try {
      await this.runs.updateEntity(
        { partitionKey: runId, rowKey: summaryKey, policyId: run.policyId, ...packData(run) },
        'Replace',
        { etag: current.etag },
      );
    } catch (err) {
      if (status(err) !== 412) throw err;
      return this.indexStarted(runId);
    }
    await progress();
    await this.indexUsers(run, targets);
    return { run, wrote: true };
  }

  /** The run's rows in its users' history (in transactions of 100), then a row saying they are there. */
  private async indexUsers(run: RunSummary, targets: readonly RunTarget[]): Promise<void> {
    await upsertRows(this.runs, mailboxIndexRows(pointerOfRun(run), targets, run.skippedTargets));
    await this.runs.upsertEntity({ partitionKey: run.runId, rowKey: usersIndexedKey }, 'Replace');
  }

  /**
   * Another delivery started the run: its targets are final. A delivery that died between storing them
   * and indexing them left no row saying the users are indexed: then they are indexed here.
   */
  private async indexStarted(runId: string): Promise<{ run: RunSummary; wrote: false }> {
    const run = await this.getRun(runId);
    if (!run) throw new RunGoneError(runId);
    if (run.status === 'running' && !(await rowExists(this.runs, runId, usersIndexedKey)))
      await this.indexUsers(run, await this.listTargets(runId));
    return { run, wrote: false };
  }

  /** Marks this delivery as the one writing a starting run's targets; undefined when it is not starting. */
  private async claimStart(
    runId: string,
    token: string,
  ): Promise<{ run: RunSummary; etag: string } | undefined> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = await this.readSummary(runId);
      if (!current) throw new Error(`run ${runId} does not exist`);
      if (current.run.status !== 'starting') return undefined;
      const run = { ...current.run, targetWriter: token };
      try {
        await this.runs.updateEntity(
          { partitionKey: runId, rowKey: summaryKey, policyId: run.policyId, ...packData(run) },
          'Replace',
          { etag: current.etag },
        );
      } catch (err) {
        if (status(err) !== 412) throw err;
        continue;
      }
      const after = await this.readSummary(runId);
      return after?.run.targetWriter === token ? after : undefined;
    }
    throw new Error(`run ${runId}: too many concurrent updates`);
  }

  /**
   * Submits target rows together with the unchanged summary under its ETag: they land only while this
   * delivery still holds the claim. Returns the summary's new state, or undefined once another has it.
   */
  private async withSummary(
    runId: string,
    token: string,
    current: { run: RunSummary; etag: string },
    rows: TransactionAction[],
  ): Promise<{ run: RunSummary; etag: string } | undefined> {
    try {
      await this.runs.submitTransaction([
        ...rows,
        [
          'update',
          {
            partitionKey: runId,
            rowKey: summaryKey,
            policyId: current.run.policyId,
            ...packData(current.run),
          },
          'Replace',
          { etag: current.etag },
        ],
      ]);
    } catch (err) {
      if (status(err) === 412) return undefined;
      throw err;
    }
    const after = await this.readSummary(runId);
    return after?.run.targetWriter === token ? after : undefined;
  }

  async getTarget(runId: string, mailboxId: string): Promise<RunTarget | undefined> {
    try {
      return runTarget(
        mailboxId,
        await this.runs.getEntity<{ upn: string; departed?: boolean }>(runId, targetRow(mailboxId)),
      );
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }

  async indexTarget(runId: string, target: RunTarget): Promise<void> {
    const run = await this.getRun(runId);
    if (run) await upsertRows(this.runs, mailboxIndexRows(pointerOfRun(run), [target], []));
  }

  async mailboxProgress(runId: string, mailboxId: string): Promise<MailboxProgress | undefined> {
    try {
      return unpackData<MailboxProgress>(
        await this.runs.getEntity<DataEntity>(runId, `${progressPrefix}${tableKey(mailboxId)}`),
      );
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }

  async saveMailboxProgress(runId: string, mailboxId: string, progress: MailboxProgress): Promise<void> {
    await this.runs.upsertEntity(
      { partitionKey: runId, rowKey: `${progressPrefix}${tableKey(mailboxId)}`, ...packData(progress) },
      'Replace',
    );
  }

  async savePreReadDrifts(runId: string, drifts: ReadonlyMap<string, PreReadDrift>): Promise<void> {
    // One row each (up to 600 KB): a transaction of them could pass its 4 MiB.
    const all = [...drifts];
    for (let i = 0; i < all.length; i += 32)
      await Promise.all(
        all
          .slice(i, i + 32)
          .map(([mailboxId, drift]) =>
            this.runs.upsertEntity(
              { partitionKey: runId, rowKey: `${driftPrefix}${tableKey(mailboxId)}`, ...packData(drift) },
              'Replace',
            ),
          ),
      );
  }

  async preReadDrift(runId: string, mailboxId: string): Promise<PreReadDrift | undefined> {
    try {
      return unpackData<PreReadDrift>(
        await this.runs.getEntity<DataEntity>(runId, `${driftPrefix}${tableKey(mailboxId)}`),
      );
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }

  async deletePreReadDrift(runId: string, mailboxId: string): Promise<void> {
    await this.runs.deleteEntity(runId, `${driftPrefix}${tableKey(mailboxId)}`).catch((err: unknown) => {
      if (status(err) !== 404) throw err;
    });
  }

  listTargets(runId: string): Promise<RunTarget[]> {
    return listRunTargets(this.runs, runId);
  }

  async failRun(runId: string, error: string): Promise<RunSummary | undefined> {
    return this.copyToIndex(
      await this.updateSummary(runId, (r) =>
        r.status === 'completed' || r.status === 'failed'
          ? undefined
          : { ...r, status: 'failed', error, finishedAt: new Date().toISOString() },
      ),
    );
  }

  /**
   * A finished run's summary, copied onto its `~runs` and `~policy~` rows after each change: lists read
   * them without a read per run. A copy that a crash left out is read around (see
   * IndexedRunHistory.newestRuns); one a crash left behind stays behind until the next change.
   */
  private async copyToIndex(run: RunSummary | undefined): Promise<RunSummary | undefined> {
    if (run && (run.status === 'completed' || run.status === 'failed'))
      await upsertRows(this.runs, runIndexRows(pointerOfRun(run), run));
    return run;
  }

  async getOutcome(runId: string, mailboxId: string): Promise<MailboxOutcome | undefined> {
    try {
      const e = await this.runs.getEntity<DataEntity>(runId, tableKey(mailboxId));
      return unpackData<MailboxOutcome>(e);
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }

  async listOutcomes(runId: string): Promise<MailboxOutcome[]> {
    const out: MailboxOutcome[] = [];
    for await (const e of this.runs.listEntities<DataEntity>({
      queryOptions: { filter: `PartitionKey eq ${odata(runId)} and RowKey lt '~'` },
    })) {
      out.push(unpackData<MailboxOutcome>(e));
    }
    return out;
  }

  async noteAttempt(
    runId: string,
    mailboxId: string,
    userPrincipalName: string,
    error: string,
    graph?: GraphTraffic,
  ): Promise<void> {
    const existing = await this.getOutcome(runId, mailboxId);
    if (existing && isFinal(existing.status)) return;
    // A run deleted meanwhile gets no row: nothing would ever find or delete it.
    if (!(await this.readSummary(runId))) return;
    const outcome = boundOutcome({
      mailboxId,
      userPrincipalName,
      status: 'retrying',
      result: null,
      lastError: error,
      attempts: (existing?.attempts ?? 0) + 1,
      ...withTraffic(sumTraffic(existing?.graph, graph)),
    });
    await this.runs.upsertEntity(
      { partitionKey: runId, rowKey: tableKey(mailboxId), ...packData(outcome) },
      'Replace',
    );
  }

  async addRunTraffic(runId: string, traffic: GraphTraffic): Promise<void> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = await this.readSummary(runId);
      if (!current) return;
      const next = addRunStartTraffic(current.run, traffic);
      try {
        await this.runs.updateEntity(
          { partitionKey: runId, rowKey: summaryKey, policyId: next.policyId, ...packData(next) },
          'Replace',
          { etag: current.etag },
        );
        if (next.status === 'completed' || next.status === 'failed') await this.copyToIndex(next);
        return;
      } catch (err) {
        if (status(err) !== 412) throw err;
      }
    }
    throw new Error(`run ${runId}: too many concurrent updates`);
  }

  async recordOutcome(
    runId: string,
    outcome: MailboxOutcome,
  ): Promise<{ run: RunSummary; recorded: boolean }> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = await this.readSummary(runId);
      if (!current) throw new RunGoneError(runId);
      const existing = await this.getOutcome(runId, outcome.mailboxId);
      if (existing && isFinal(existing.status)) return { run: current.run, recorded: false };
      // The traffic of attempts that failed (kept on the retrying row) belongs to the final outcome.
      const stored = boundOutcome({
        ...outcome,
        attempts: (existing?.attempts ?? 0) + 1,
        ...withTraffic(sumTraffic(existing?.graph, outcome.graph)),
      });
      const next = addOutcome(current.run, stored);
      const actions: TransactionAction[] = [
        [
          'upsert',
          { partitionKey: runId, rowKey: tableKey(outcome.mailboxId), ...packData(stored) },
          'Replace',
        ],
        [
          'update',
          { partitionKey: runId, rowKey: summaryKey, policyId: next.policyId, ...packData(next) },
          'Replace',
          { etag: current.etag },
        ],
      ];
      try {
        await this.runs.submitTransaction(actions);
        // A mailbox that ends after its run failed changes a finished run: its copy follows.
        if (next.status === 'completed' || next.status === 'failed') await this.copyToIndex(next);
        return { run: next, recorded: true };
      } catch (err) {
        if (status(err) !== 412) throw err;
      }
    }
    throw new Error(`run ${runId}: too many concurrent updates`);
  }

  async completeRun(runId: string, finishedAt: string): Promise<boolean> {
    let won = false;
    const run = await this.updateSummary(runId, (r) => {
      if (r.status === 'completed' || r.done < r.expected) return undefined;
      won = true;
      return { ...r, status: 'completed', finishedAt };
    });
    if (won) await this.copyToIndex(run);
    return won;
  }

  async markReportSent(runId: string): Promise<void> {
    await this.copyToIndex(await this.updateSummary(runId, (r) => ({ ...r, reportSent: true })));
  }

  private async readState(policyId: string): Promise<{ state: PolicyState; etag: string | null }> {
    try {
      const e = await this.policies.getEntity<DataEntity>(policyId, stateKey);
      return { state: unpackData<PolicyState>(e), etag: e.etag };
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
    // A holder whose run record is missing or finished holds nothing (a start that failed halfway).
    const { state } = await this.readState(policyId);
    const holder = state.leaseRunId && state.leaseRunId !== runId ? state.leaseRunId : null;
    const holderRun = holder ? await this.getRun(holder) : undefined;
    const holderLive =
      holderRun !== undefined && holderRun.status !== 'completed' && holderRun.status !== 'failed';
    const result = await this.writeState(policyId, (s) => {
      const live =
        s.leaseRunId !== null &&
        s.leaseRunId !== runId &&
        s.leaseExpiresAt !== null &&
        new Date(s.leaseExpiresAt).getTime() > now.getTime() &&
        (s.leaseRunId !== holder || holderLive);
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

  async renewLease(
    policyId: string,
    runId: string,
    expiresAt: Date,
    now: Date,
  ): Promise<{ held: true } | { held: false; heldBy: string | null }> {
    const halfLeft = (s: PolicyState): boolean =>
      s.leaseExpiresAt !== null &&
      new Date(s.leaseExpiresAt).getTime() - now.getTime() > (expiresAt.getTime() - now.getTime()) / 2;
    const { state } = await this.readState(policyId);
    if (state.leaseRunId !== runId) return { held: false, heldBy: state.leaseRunId };
    if (halfLeft(state)) return { held: true };
    let heldBy: string | null = null;
    // An expired lease nobody took is still this run's: progress takes it up again.
    const renewed = await this.writeState(policyId, (s) => {
      heldBy = s.leaseRunId;
      return s.leaseRunId === runId ? { ...s, leaseExpiresAt: expiresAt.toISOString() } : undefined;
    });
    return renewed ? { held: true } : { held: false, heldBy };
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

function withTraffic(graph: GraphTraffic | undefined): { graph?: GraphTraffic } {
  return graph ? { graph } : {};
}

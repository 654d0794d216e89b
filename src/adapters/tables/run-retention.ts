// Upkeep of the run records, a bounded step per scheduler tick: the one-time back-fill of the history
// index for runs recorded before it, and the deletion of runs past their retention with every row they
// own. Both keep their place in the table, so a tick that is stopped halfway is taken up by the next.
import { odata, type TableClient, type TableEntity } from '@azure/data-tables';
import type { RunSummary, RunTarget } from '../../sync/runs';
import { listRunTargets, rowExists, unpackData } from './run-store';
import {
  allRunsPartition,
  deleteFormerUserRows,
  deleteRows,
  expiredFrom,
  mailboxIndexRows,
  newestFirst,
  pointerOf,
  pointerColumns,
  pointerOfRun,
  readIndexState,
  runIndexRows,
  upsertRows,
  writeIndexState,
  type IndexState,
  type RunPointer,
} from './run-index';
import { fromTableKey } from './table-key';

type Row = TableEntity<Record<string, unknown>>;
type Key = { partitionKey: string; rowKey: string };

const summaryKey = '~run';
const targetPrefix = '~target~';
/** Run summaries read per back-fill page, and expired runs deleted together. */
const backfillPage = 50;
const sweepPage = 10;
/** The row (beside the index marker) where the daily look for runs without pointers keeps its place. */
const markerPartition = '~index';
const strayScanRow = 'stray-scan';
const dayMs = 86_400_000;
/** A run's rows deleted together (with the users' rows they point to) before the budget is looked at. */
const pageRows = 1_000;

export class RunRecordKeeper {
  constructor(
    private readonly runs: TableClient,
    /** Monotonic milliseconds, for the time budget. */
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /**
   * Indexes the runs recorded before the index existed, a page of summaries at a time, until
   * `deadline`; the place reached is kept in the marker row. Runs that started before `recentFromMs`
   * get their run pointers only (the sweep deletes them soon; their users' rows would be written for
   * nothing). Returns whether every run is indexed.
   */
  async backfill(deadline: number, recentFromMs: number): Promise<{ complete: boolean; indexed: number }> {
    const state = (await readIndexState(this.runs)) ?? { complete: false };
    if (state.complete) return { complete: true, indexed: 0 };
    let indexed = 0;
    if (!state.runsDone) {
      const reached = await this.indexPages(state, deadline, recentFromMs);
      indexed = reached.indexed;
      if (!reached.done) return { complete: false, indexed };
    }
    // Then the users' rows of the layout before (a partition per user) go, as much as time allows.
    if (!(await deleteFormerUserRows(this.runs, () => this.clock() < deadline))) {
      await writeIndexState(this.runs, { complete: false, runsDone: true });
      return { complete: false, indexed };
    }
    await writeIndexState(this.runs, { complete: true });
    return { complete: true, indexed };
  }

  /** The back-fill's pages of summaries from where it stopped; whether it reached their end. */
  private async indexPages(
    state: IndexState,
    deadline: number,
    recentFromMs: number,
  ): Promise<{ done: boolean; indexed: number }> {
    let indexed = 0;
    // The token that reads the current page again, and the runs of it indexed before.
    let pageStart = state.continuation;
    let doneThrough = state.doneThrough;
    const pages = this.runs
      .listEntities<Row>({ queryOptions: { filter: odata`RowKey eq ${summaryKey}` } })
      .byPage({ maxPageSize: backfillPage, ...(pageStart ? { continuationToken: pageStart } : {}) });
    for await (const page of pages) {
      for (const e of page) {
        if (doneThrough !== undefined && e.partitionKey <= doneThrough) continue;
        await this.indexLegacyRun(unpackData<RunSummary>(e), recentFromMs);
        indexed++;
        // The budget is looked at after each run: a page of large runs is split across ticks.
        if (this.clock() >= deadline) {
          await writeIndexState(this.runs, {
            complete: false,
            ...(pageStart ? { continuation: pageStart } : {}),
            doneThrough: e.partitionKey,
          });
          return { done: false, indexed };
        }
      }
      if (!page.continuationToken) break;
      pageStart = page.continuationToken;
      doneThrough = undefined;
      await writeIndexState(this.runs, { complete: false, continuation: pageStart });
    }
    await writeIndexState(this.runs, { complete: false, runsDone: true });
    return { done: true, indexed };
  }

  /**
   * Finds run summaries that no pointer leads to (recorded by a CLI or an instance of a release before
   * the index, during a deployment) and indexes them, so they show and expire like the rest: a page
   * of 50 summaries at a time until `deadline`, a whole pass of the table once a day. Returns how many
   * it indexed.
   */
  async indexStrays(deadline: number, nowMs: number, recentFromMs: number): Promise<number> {
    const scan = await this.runs.getEntity<Row>(markerPartition, strayScanRow).catch((e: unknown) => {
      if (status(e) === 404) return undefined;
      throw e;
    });
    const token = typeof scan?.continuation === 'string' ? scan.continuation : undefined;
    if (!token && typeof scan?.nextPassAt === 'number' && nowMs < scan.nextPassAt) return 0;
    const save = (fields: Record<string, unknown>) =>
      this.runs.upsertEntity({ partitionKey: markerPartition, rowKey: strayScanRow, ...fields }, 'Replace');
    let indexed = 0;
    for await (const page of this.runs
      .listEntities<Row>({ queryOptions: { filter: odata`RowKey eq ${summaryKey}` } })
      .byPage({ maxPageSize: backfillPage, ...(token ? { continuationToken: token } : {}) })) {
      const summaries = page.map((e) => unpackData<RunSummary>(e));
      const pointed = await Promise.all(
        summaries.map((r) => rowExists(this.runs, allRunsPartition, newestFirst(r.startedAt, r.runId))),
      );
      for (const [i, run] of summaries.entries())
        if (!pointed[i]) {
          await this.indexLegacyRun(run, recentFromMs);
          indexed++;
        }
      if (!page.continuationToken) break;
      await save({ continuation: page.continuationToken });
      if (this.clock() >= deadline) return indexed;
    }
    await save({ nextPassAt: nowMs + dayMs });
    return indexed;
  }

  /** A run recorded before the index: its pointers, and its users' rows unless it is past retention. */
  private async indexLegacyRun(run: RunSummary, recentFromMs: number): Promise<void> {
    const rows = runIndexRows(pointerOfRun(run), run);
    // An expired run is marked: the sweep then looks for no users' rows of it (thousands of misses).
    if (Date.parse(run.startedAt) < recentFromMs) for (const r of rows) r.noUserRows = true;
    else
      rows.push(
        ...mailboxIndexRows(
          pointerOfRun(run),
          await listRunTargets(this.runs, run.runId),
          run.skippedTargets,
        ),
      );
    await upsertRows(this.runs, rows);
  }

  /**
   * Deletes the runs that started before `beforeMs`, oldest pointers last, until `deadline`: every row
   * of each run and its index rows. A run `isLive` says is still running is left alone.
   */
  async sweep(
    beforeMs: number,
    deadline: number,
    isLive: (run: RunPointer) => Promise<boolean>,
  ): Promise<{ deleted: string[]; kept: string[] }> {
    const deleted: string[] = [];
    const kept: string[] = [];
    let filter = odata`PartitionKey eq ${allRunsPartition} and RowKey ge ${expiredFrom(beforeMs)}`;
    // A tick deletes a page of rows at least, however short its budget: the sweep always moves on.
    for (;;) {
      const page = await this.firstPage(filter, sweepPage);
      if (page.length === 0) break;
      const doomed: { pointer: RunPointer; userRows: boolean }[] = [];
      for (const e of page) {
        const pointer = pointerOf(e);
        if (await isLive(pointer)) kept.push(pointer.runId);
        else doomed.push({ pointer, userRows: e.noUserRows !== true });
      }
      let done = 0;
      while (done < doomed.length && (await this.deleteRun(doomed[done]!, deadline))) {
        done++;
        if (this.clock() >= deadline) break;
      }
      deleted.push(...doomed.slice(0, done).map((d) => d.pointer.runId));
      if (done < doomed.length || this.clock() >= deadline) break;
      // Past the page: kept runs are not read again in this tick.
      filter = odata`PartitionKey eq ${allRunsPartition} and RowKey gt ${page.at(-1)!.rowKey}`;
    }
    return { deleted, kept };
  }

  private async firstPage(filter: string, size: number, select = pointerColumns): Promise<Row[]> {
    // A page may come back empty with a continuation (the service's time or partition bounds).
    for await (const page of this.runs
      .listEntities<Row>({ queryOptions: { filter, select } })
      .byPage({ maxPageSize: size }))
      if (page.length > 0) return page;
    return [];
  }

  /**
   * Deletes a run, a page of `pageRows` of its rows at a time, until `deadline` (a tick does at most a
   * page more than its budget, however large the run); returns whether it is gone. The order lets a
   * stopped sweep resume, finding the rest from what is left: each page of the run's rows after the
   * users' rows its targets point to, the left-out users' rows and the summary last (the summary lists
   * them), then the pointers, `~runs` last (the sweep finds a run by it).
   */
  private async deleteRun(
    doomed: { pointer: RunPointer; userRows: boolean },
    deadline: number,
  ): Promise<boolean> {
    const { pointer, userRows } = doomed;
    const rest = odata`PartitionKey eq ${pointer.runId} and RowKey ne ${summaryKey}`;
    for (;;) {
      const page = await this.firstPage(rest, pageRows, ['PartitionKey', 'RowKey', 'upn']);
      if (page.length === 0) break;
      if (userRows) await deleteRows(this.runs, mailboxIndexRows(pointer, targetsIn(page), []));
      await deleteRows(this.runs, page.map(keyOf));
      // A short page was the last: the summary and pointers (a few rows) go in this tick too.
      if (page.length < pageRows) break;
      if (this.clock() >= deadline) return false;
    }
    const summary = await this.runs.getEntity<Row>(pointer.runId, summaryKey).catch((e: unknown) => {
      if (status(e) === 404) return undefined;
      throw e;
    });
    if (summary) {
      const skipped = unpackData<RunSummary>(summary).skippedTargets;
      if (userRows) await deleteRows(this.runs, mailboxIndexRows(pointer, [], skipped));
      await deleteRows(this.runs, [{ partitionKey: pointer.runId, rowKey: summaryKey }]);
    }
    const pointers: Key[] = runIndexRows(pointer);
    await deleteRows(
      this.runs,
      pointers.filter((k) => k.partitionKey !== allRunsPartition),
    );
    await deleteRows(
      this.runs,
      pointers.filter((k) => k.partitionKey === allRunsPartition),
    );
    return true;
  }
}

const keyOf = (e: Row): Key => ({ partitionKey: e.partitionKey, rowKey: e.rowKey });
const status = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;

/** The targets among a run's rows. */
const targetsIn = (rows: Row[]): RunTarget[] =>
  rows
    .filter((e) => e.rowKey.startsWith(targetPrefix))
    .map((e) => ({
      mailboxId: fromTableKey(e.rowKey.slice(targetPrefix.length)),
      userPrincipalName: String(e.upn),
    }));

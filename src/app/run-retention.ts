// Run history upkeep, a bounded step on each scheduler tick (no timer of its own): back-fill the
// history index for runs recorded before it, then delete runs older than RUN_HISTORY_DAYS with all
// their rows. A run that still holds its policy's lease is never deleted, however old.
import { RunRecordKeeper } from '../adapters/tables/run-retention';
import type { RunPointer } from '../adapters/tables/run-index';
import type { App } from './composition';
import type { Logger } from './logging';

const dayMs = 86_400_000;

export interface HistoryUpkeep {
  /** False while runs recorded before the index are still being back-filled (nothing is deleted). */
  indexed: boolean;
  backfilled: number;
  deleted: string[];
  /** Expired runs left alone because they are still running. */
  kept: string[];
  /** Runs found without index rows (recorded by an older release) and indexed. */
  strays?: number;
}

export async function keepRunHistory(app: App, log: Logger, budgetMs = 20_000): Promise<HistoryUpkeep> {
  await app.ensureStorage();
  const keeper = new RunRecordKeeper(app.tables.runs);
  const deadline = performance.now() + budgetMs;
  const now = app.now();
  const cutoff = now.getTime() - app.settings.RUN_HISTORY_DAYS * dayMs;
  const fill = await keeper.backfill(deadline, cutoff);
  if (fill.indexed > 0)
    log.info(`run history: ${fill.indexed} earlier runs indexed${fill.complete ? '; index complete' : ''}`);
  // The sweep finds runs through the index: only a complete one shows every expired run.
  if (!fill.complete) return { indexed: false, backfilled: fill.indexed, deleted: [], kept: [] };
  const swept = await keeper.sweep(cutoff, deadline, (run) => stillRunning(app, run, now));
  if (swept.deleted.length > 0)
    log.info(
      `run history: ${swept.deleted.length} runs older than ${app.settings.RUN_HISTORY_DAYS} days deleted`,
    );
  for (const runId of swept.kept)
    log.warn(`run history: run ${runId} is past its retention but still running; kept`, { run: runId });
  const strays = performance.now() < deadline ? await keeper.indexStrays(deadline, now.getTime(), cutoff) : 0;
  if (strays > 0)
    log.warn(
      `run history: ${strays} runs recorded without index rows (by a CLI or app older than this one: upgrade it) indexed`,
    );
  return { indexed: true, backfilled: fill.indexed, ...swept, strays };
}

/** A run not finished whose policy lease it still holds (a run that lost its lease is over). */
async function stillRunning(app: App, pointer: RunPointer, now: Date): Promise<boolean> {
  const run = await app.runStore.getRun(pointer.runId);
  if (!run || run.status === 'completed' || run.status === 'failed') return false;
  const state = await app.runStore.getPolicyState(run.policyId);
  return (
    state.leaseRunId === run.runId &&
    state.leaseExpiresAt !== null &&
    Date.parse(state.leaseExpiresAt) > now.getTime()
  );
}

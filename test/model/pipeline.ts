// Runs a policy through the real queue pipeline (the Functions handlers over Azurite queues, driven by
// the local runner) and hands back the run record, for the model test and the defect tests.
import assert from 'node:assert/strict';
import { startRun } from '../../src/app/use-cases';
import type { RunSummary } from '../../src/sync/runs';
import type { FunctionsFixture } from '../support/functions-app';

export async function runThroughQueues(
  f: FunctionsFixture,
  policyId: string,
  options: { fullResync?: boolean; drainMs?: number } = {},
): Promise<RunSummary> {
  const found = await f.app.policy(policyId);
  assert.ok(found, `policy ${policyId} is in the policy file`);
  // Started as the CLI does (a storage-key holder): a full resync over HTTP needs the policy's consent.
  const started = await startRun(f.app, found.policy, 'cli', {
    dryRun: false,
    fullResync: options.fullResync ?? false,
    mailboxes: [],
  });
  assert.ok(started.started, `a run of ${policyId} started`);
  // MODEL_DRAIN_MS: a long run on a loaded machine may need more than the default to drain the queues.
  await f.runner.drain(options.drainMs ?? Number(process.env.MODEL_DRAIN_MS ?? 120_000));
  return (await f.app.runStore.getRun(started.runId))!;
}

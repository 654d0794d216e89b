// Defect 6 of issue 15: a mailbox that reaches the cap of continuations is failed and reported,
// never dropped (a dropped message left the run open and its lease held for hours).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { runPolicyNow } from '../../../src/functions/http-api';
import { maxContinuations } from '../../../src/sync/messages';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';

describe('the continuation cap (issue 15, defect 6)', () => {
  let f: FunctionsFixture;
  before(async () => {
    f = await functionsFixture({
      sim: {
        seed: { generate: { users: 400, mailboxes: 400, awkward: false } },
        latency: { meanMs: 40, jitterMs: 0 },
      },
      env: { MAILBOX_TIME_BUDGET_SECONDS: '1' },
      policies: (sim) => [
        {
          id: 'slow',
          name: 'Slow',
          connection: 'contoso',
          source: { type: 'directory' },
          targets: { type: 'users', users: [[...sim.tenant.users.values()][0]!.userPrincipalName] },
          folder: { name: 'Slow' },
        },
      ],
    });
  });
  after(() => f.close());

  it('a mailbox still unfinished at the last continuation is failed and reported, and the run completes', async () => {
    const started = await runPolicyNow(
      new HttpRequest({
        url: 'http://127.0.0.1:7071/api/policies/slow/runs',
        method: 'POST',
        params: { policyId: 'slow' },
        body: { string: '{}' },
        headers: { 'content-type': 'application/json' },
      }),
      new InvocationContext({ invocationId: 'test', functionName: 'http' }),
    );
    const runId = (started.jsonBody as { runId: string }).runId;
    // The mailbox starts one short of the cap, as after 999 slow continuations (the run's progress row).
    await f.app.runStore.saveMailboxProgress(runId, [...f.sim.tenant.users.values()][0]!.id, {
      continuation: maxContinuations - 1,
      carried: { created: 0, updated: 0, deleted: 0, restored: 0, failed: 0 },
    });
    await f.runner.drain();
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.status, 'completed', 'the run is not left open');
    assert.equal(run.mailboxes.failed, 1);
    const [outcome] = await f.app.runStore.listOutcomes(runId);
    assert.equal(outcome!.status, 'failed');
    assert.match(outcome!.lastError ?? '', /continuations/);
    assert.ok(outcome!.result!.created > 0, 'the work done so far is counted');
  });
});

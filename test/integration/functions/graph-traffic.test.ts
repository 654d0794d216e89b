// Issue 19: the Run page shows the Graph requests and 429s. Each mailbox's outcome holds the traffic
// of its passes (retries included) and the run's totals add the run start's; both match what the
// simulated service received.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { functionsFixture, usersPolicy, type FunctionsFixture } from '../../support/functions-app';
import { runThroughQueues } from '../../model/pipeline';
import type { MailboxOutcome, RunSummary } from '../../../src/sync/runs';

describe('Graph requests and 429s on the run record', () => {
  let f: FunctionsFixture;
  let targets: SimUser[];
  before(async () => {
    f = await functionsFixture({
      sim: { seed: { generate: { users: 10, mailboxes: 3 } } },
      policies: (sim) => {
        targets = [...sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
        return [usersPolicy('traffic', targets, {})];
      },
    });
  });
  after(() => f.close());

  /** A run through the queues, with the simulator's log of what it received meanwhile. */
  const run = async (
    fullResync = false,
  ): Promise<{ run: RunSummary; outcomes: MailboxOutcome[]; since: number }> => {
    const since = f.sim.log.lastSeq;
    const summary = await runThroughQueues(f, 'traffic', { fullResync });
    return { run: summary, outcomes: await f.app.runStore.listOutcomes(summary.runId), since };
  };
  const received = (since: number, upn?: string) =>
    f.sim.log
      .since(since)
      .filter(
        (e) =>
          e.service === 'graph' &&
          e.operation !== 'batch' &&
          (upn === undefined || e.mailbox === upn.toLowerCase()),
      );

  it('a throttled mailbox shows its 429s and requests; the run totals add up to what Graph received', async () => {
    const throttled = targets[0]!.userPrincipalName;
    f.sim.faults.add({
      kind: 'status',
      status: 429,
      retryAfterSeconds: 1,
      times: 2,
      match: { mailbox: throttled, operation: /^contact/ },
    });
    const { run: r, outcomes, since } = await run();
    assert.equal(r.status, 'completed');
    const got = received(since);
    const sent429 = got.filter((e) => e.status === 429).length;
    assert.equal(sent429, 2, 'the simulator throttled twice');
    assert.deepEqual(r.graph, { requests: got.length, throttled: 2 }, 'run totals = what Graph received');
    const mine = outcomes.find((o) => o.userPrincipalName.toLowerCase() === throttled.toLowerCase())!;
    assert.equal(mine.status, 'succeeded');
    assert.equal(mine.graph?.throttled, 2);
    assert.equal(mine.graph?.requests, received(since, throttled).length, "the mailbox's requests");
    for (const o of outcomes.filter((o) => o !== mine)) {
      assert.equal(o.graph?.throttled, 0, `${o.userPrincipalName} was not throttled`);
      assert.ok((o.graph?.requests ?? 0) > 0, `${o.userPrincipalName} sent requests`);
    }
    const start = r.graph.requests - outcomes.reduce((n, o) => n + o.graph!.requests, 0);
    assert.ok(start > 0, 'the run start (directory read) counts too');
  });

  it('a mailbox whose pass failed and was retried by the queue shows both attempts', async () => {
    const failing = targets[1]!.userPrincipalName;
    // A 500 is not retried by the SDK: the pass throws and the queue delivers it again.
    f.sim.faults.add({
      kind: 'status',
      status: 500,
      times: 1,
      match: { mailbox: failing, inBatch: false },
    });
    // A full resync: no pre-read at the run start, so the mailbox's own pass reads it.
    const { run: r, outcomes, since } = await run(true);
    assert.equal(r.status, 'completed');
    const mine = outcomes.find((o) => o.userPrincipalName.toLowerCase() === failing.toLowerCase())!;
    const ops = received(since, failing).map((e) => `${e.operation} ${e.status}`);
    assert.ok(
      ops.some((o) => o.endsWith(' 500')),
      ops.join(', '),
    );
    assert.equal(mine.status, 'succeeded');
    assert.ok(mine.attempts >= 2, `retried by the queue (${mine.attempts} attempts)`);
    assert.equal(mine.graph?.requests, received(since, failing).length, 'both attempts counted');
    assert.deepEqual(r.graph, { requests: received(since).length, throttled: 0 });
  });
});

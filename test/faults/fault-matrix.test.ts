// The fault matrix (RELIABILITY.md): for each fault point, break the worker or drop a reply, let the
// queue redeliver, and check that every mailbox converges to exactly the expected contacts (no twin,
// no gap) and that the run record tells the truth.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvocationContext } from '@azure/functions';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import type { PolicyInput } from '../../src/sync/config/schema';
import { startRun, processMailboxSync } from '../../src/app/use-cases';
import { logger } from '../../src/app/logging';
import { folderContacts, tagCounts } from '../support/engine';
import { functionsFixture, type FunctionsFixture } from '../support/functions-app';

let f: FunctionsFixture;
let targets: string[];
let sourceIds: string[];

function policy(id: string): PolicyInput {
  return {
    id,
    name: id,
    connection: 'contoso',
    source: { type: 'directory' },
    targets: { type: 'users', users: targets },
    folder: { name: `F ${id}` },
  };
}

/** Exactly the source (minus the owner) in every target, each once. */
function assertConverged(id: string): void {
  for (const upn of targets) {
    const owner = [...f.sim.tenant.users.values()].find((u) => u.userPrincipalName === upn)!;
    const counts = tagCounts(folderContacts(f.sim, upn, `F ${id}`));
    assert.deepEqual(
      [...counts].filter(([, n]) => n > 1),
      [],
      `${id}: no twins in ${upn}`,
    );
    const source = [...f.sim.tenant.users.values()]
      .filter((u) => u.mail && u.accountEnabled)
      .map((u) => u.id);
    const want = new Set(source.filter((s) => s !== owner.id).map((s) => `${id}|user:${s}`));
    assert.deepEqual(new Set(counts.keys()), want, `${id}: no gaps in ${upn}`);
  }
}

async function runPolicy(id: string): Promise<string> {
  const p = (await f.app.policy(id))!.policy;
  const started = await startRun(f.app, p, 'http', { dryRun: false, fullResync: false, mailboxes: [] });
  assert.ok(started.started);
  await f.runner.drain(120_000);
  return started.runId;
}

/** The run record matches the mailboxes: completed, nothing failed, every contact accounted for. */
async function assertRunTellsTruth(runId: string, id: string): Promise<void> {
  const run = (await f.app.runStore.getRun(runId))!;
  assert.equal(run.status, 'completed', `${id}: ${JSON.stringify(run)}`);
  assert.equal(run.done, run.expected);
  assert.equal(run.mailboxes.failed, 0, `${id}: ${JSON.stringify(await f.app.runStore.listOutcomes(runId))}`);
  for (const o of await f.app.runStore.listOutcomes(runId)) {
    const present = tagCounts(folderContacts(f.sim, o.userPrincipalName, `F ${id}`)).size;
    const r = o.result!;
    assert.equal(
      r.created + r.unchanged + r.restored,
      present,
      `${id}: ${o.userPrincipalName} outcome accounts for every contact`,
    );
  }
}

/** A Table Storage fault: fail matching requests before they are sent, or after they took effect. */
function tableFault(
  name: string,
  when: 'before' | 'after',
  match: (method: string, url: string) => boolean,
  times: number,
  status = 503,
): PipelinePolicy {
  let left = times;
  return {
    name,
    sendRequest: async (req, next) => {
      const hit = left > 0 && match(req.method, req.url);
      if (hit && when === 'before') {
        left--;
        const e = new Error(`injected Table Storage ${status}`) as Error & { statusCode: number };
        e.statusCode = status;
        throw e;
      }
      const res = await next(req);
      if (hit && when === 'after') {
        left--;
        throw new Error('worker killed right after a state write');
      }
      return res;
    },
  };
}

const cells: { id: string; cell: string; arrange: () => void | (() => void) }[] = [
  {
    id: 'before-create',
    cell: 'before a Graph write (connection reset, create)',
    arrange: () =>
      f.sim.faults.add({ kind: 'reset', times: 2, match: { operation: 'contacts.create', inBatch: true } }),
  },
  {
    id: 'after-create',
    cell: 'after a Graph write (reply lost, create)',
    arrange: () =>
      f.sim.faults.add({
        kind: 'lostReply',
        times: 3,
        match: { operation: 'contacts.create', inBatch: true },
      }),
  },
  {
    id: 'mid-batch',
    cell: 'mid-batch (reset after 7 writes of a batch)',
    arrange: () =>
      f.sim.faults.add({
        kind: 'reset',
        times: 1,
        after: 7,
        match: { operation: 'contacts.create', inBatch: true },
      }),
  },
  {
    id: 'batch-reply',
    cell: 'a whole $batch reply lost',
    arrange: () => f.sim.faults.add({ kind: 'lostReply', times: 2, match: { operation: 'batch' } }),
  },
  {
    id: 'storm-429',
    cell: '429 storm inside batches',
    arrange: () =>
      f.sim.faults.add({
        kind: 'status',
        status: 429,
        retryAfterSeconds: 0.02,
        probability: 0.4,
        match: { operation: 'contacts.create', inBatch: true },
      }),
  },
  {
    id: 'burst-503',
    cell: '503/504 bursts',
    arrange: () => (
      f.sim.faults.add({ kind: 'status', status: 503, times: 15, match: { inBatch: true } }),
      f.sim.faults.add({ kind: 'status', status: 504, times: 3, match: { operation: 'contacts.delta' } })
    ),
  },
  {
    id: 'token-outage',
    cell: 'token endpoint outage',
    arrange: () => (
      (f.sim.identity.tokenLifetimeSeconds = 60),
      f.sim.faults.add({ kind: 'status', status: 503, times: 6, match: { service: 'login' } })
    ),
  },
  {
    id: 'vault-outage',
    cell: 'Key Vault outage',
    arrange: () => (
      (f.app.settings.CERTIFICATE_CHECK_MINUTES = 0),
      f.sim.faults.add({ kind: 'status', status: 503, times: 6, match: { service: 'vault' } })
    ),
  },
  {
    id: 'state-crash',
    cell: 'worker killed after a state write',
    arrange: () => {
      const policyFault = tableFault(
        'crash-after-state',
        'after',
        (m, u) => m === 'POST' && u.includes('$batch'),
        2,
      );
      f.app.tables.mailboxes.pipeline.addPolicy(policyFault);
      return () => f.app.tables.mailboxes.pipeline.removePolicy({ name: 'crash-after-state' });
    },
  },
  {
    id: 'table-5xx',
    cell: 'Table Storage 5xx',
    arrange: () => {
      f.app.tables.mailboxes.pipeline.addPolicy(
        tableFault('table-503', 'before', (_m, u) => u.includes('syncmailboxes'), 5),
      );
      f.app.tables.runs.pipeline.addPolicy(
        tableFault('runs-503', 'before', (m, u) => m === 'POST' && u.includes('$batch'), 3),
      );
      return () => {
        f.app.tables.mailboxes.pipeline.removePolicy({ name: 'table-503' });
        f.app.tables.runs.pipeline.removePolicy({ name: 'runs-503' });
      };
    },
  },
];

describe('fault matrix', () => {
  before(async () => {
    f = await functionsFixture({
      sim: {
        seed: { generate: { users: 45, mailboxes: 45, awkward: false } },
        latency: { meanMs: 3, jitterMs: 2 },
      },
      env: { MAILBOX_TIME_BUDGET_SECONDS: '60' },
      policies: (sim) => {
        const users = [...sim.tenant.users.values()];
        targets = users.slice(0, 3).map((u) => u.userPrincipalName);
        sourceIds = users.map((u) => u.id);
        return [
          ...cells.map((c) => policy(c.id)),
          ...['update-lostReply', 'update-reset', 'delete-lostReply', 'delete-reset'].map(policy),
          policy('two-workers'),
          policy('continuations'),
          policy('etag'),
        ];
      },
    });
  });
  after(() => f.close());

  for (const [kind, op] of [
    ['update', 'contacts.update'],
    ['delete', 'contacts.delete'],
  ] as const) {
    for (const fault of ['lostReply', 'reset'] as const) {
      it(`${fault === 'lostReply' ? 'after' : 'before'} a Graph ${kind} (${fault}): converges, and the run record tells the truth`, async () => {
        const id = `${kind}-${fault}`;
        await runPolicy(id);
        assertConverged(id);
        const users = [...f.sim.tenant.users.values()].filter((u) => !targets.includes(u.userPrincipalName));
        if (kind === 'update')
          for (const u of users.slice(0, 3)) f.sim.tenant.updateUser(u.id, { jobTitle: `changed ${id}` });
        else for (const u of users.slice(-2)) f.sim.tenant.deleteUser(u.id);
        f.sim.faults.add({ kind: fault, times: 2, match: { operation: op, inBatch: true } });
        let runId: string;
        try {
          runId = await runPolicy(id);
        } finally {
          f.sim.faults.clear();
        }
        assertConverged(id);
        const run = (await f.app.runStore.getRun(runId))!;
        assert.equal(run.status, 'completed');
        assert.equal(run.mailboxes.failed, 0);
        if (kind === 'update') assert.equal(run.contacts.updated, 3 * targets.length);
        else assert.equal(run.contacts.deleted, 2 * targets.length);
      });
    }
  }

  for (const c of cells) {
    it(`${c.cell}: converges without twins or gaps, and the run record tells the truth`, async () => {
      const undo = c.arrange();
      let runId: string;
      try {
        runId = await runPolicy(c.id);
      } finally {
        f.sim.faults.clear();
        if (typeof undo === 'function') undo();
      }
      assertConverged(c.id);
      await assertRunTellsTruth(runId, c.id);
      // A later change still flows through exactly once.
      f.sim.tenant.updateUser(sourceIds[10]!, { jobTitle: `after ${c.id}` });
      const next = await runPolicy(c.id);
      assertConverged(c.id);
      const outcomes = await f.app.runStore.listOutcomes(next);
      assert.ok(
        outcomes.every((o) => o.result!.updated === 1 && o.result!.created === 0),
        JSON.stringify(outcomes.map((o) => o.result)),
      );
    });
  }

  it('two workers on the same mailbox at once: one yields, writes never interleave', async () => {
    const p = (await f.app.policy('two-workers'))!.policy;
    const started = await startRun(f.app, p, 'http', {
      dryRun: false,
      fullResync: false,
      mailboxes: [targets[0]!],
    });
    assert.ok(started.started);
    // Fan out, then take the one mailbox message and deliver it to two workers at once.
    const q = f.app.queues.mailboxSyncs;
    await f.runner.pollOnce(); // policy-runs only has work; mailbox-syncs is empty at that moment
    const received = await q.receiveMessages({ numberOfMessages: 1, visibilityTimeout: 60 });
    const m = received.receivedMessageItems[0]!;
    const message = JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8'));
    const log = logger(new InvocationContext({ invocationId: 'x', functionName: 'mailboxSyncs' }));
    const results = await Promise.all([
      processMailboxSync(f.app, message, log, 'worker-a'),
      processMailboxSync(f.app, message, log, 'worker-b'),
    ]);
    assert.deepEqual([...results].sort(), ['deferred', 'done']);
    await q.deleteMessage(m.messageId, m.popReceipt);
    await f.runner.drain(60_000); // the deferred copy comes back as a duplicate and is dropped
    const counts = tagCounts(folderContacts(f.sim, targets[0]!, 'F two-workers'));
    assert.ok([...counts.values()].every((n) => n === 1));
    const run = (await f.app.runStore.getRun(started.runId))!;
    assert.equal(run.status, 'completed');
    assert.equal(run.done, 1);
  });

  it('duplicate deliveries of every message (at least once) change nothing twice', async () => {
    const runId = await runPolicy('continuations');
    const before = (await f.app.runStore.getRun(runId))!;
    // Deliver every mailbox message of that run again.
    for (const upn of targets) {
      const owner = [...f.sim.tenant.users.values()].find((u) => u.userPrincipalName === upn)!;
      await f.app.enqueue(f.app.queues.mailboxSyncs, {
        kind: 'mailbox-sync',
        policyId: 'continuations',
        runId,
        mailboxId: owner.id,
        continuation: 0,
      });
    }
    const since = f.sim.log.lastSeq;
    await f.runner.drain(60_000);
    assert.equal(
      f.sim.log.since(since).filter((e) => e.operation.startsWith('contacts.')).length,
      0,
      'duplicates are recognised before touching Graph',
    );
    assert.deepEqual(await f.app.runStore.getRun(runId), before, 'the run record counts each mailbox once');
    assertConverged('continuations');
  });

  it('ETag conflicts: outcomes recorded at once by many workers are each counted once', async () => {
    const p = (await f.app.policy('etag'))!.policy;
    const started = await startRun(f.app, p, 'http', { dryRun: true, fullResync: false, mailboxes: [] });
    assert.ok(started.started);
    const runId = started.runId;
    await f.app.runStore.startRun(
      runId,
      Array.from({ length: 30 }, (_, i) => ({ mailboxId: `m${i}`, userPrincipalName: `m${i}@x` })),
      [],
    );
    const outcome = (i: number) => ({
      mailboxId: `m${i % 20}`,
      userPrincipalName: `m${i % 20}@x`,
      status: 'succeeded' as const,
      result: null,
      lastError: null,
      attempts: 1,
    });
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => f.app.runStore.recordOutcome(runId, outcome(i))),
    );
    assert.equal(results.filter((r) => r.recorded).length, 20);
    assert.equal((await f.app.runStore.getRun(runId))!.done, 20);
    await f.app.runStore.failRun(runId, 'test over');
    await f.app.runStore.releaseLease('etag', runId);
  });
});

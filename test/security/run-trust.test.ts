// The security review of issue 16's landed code: who can cause what through queue messages, the
// HTTP API and a policy changed mid-run. Each finding is driven through the real handlers against
// Azurite and the Graph tenant simulator.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { runPolicyNow } from '../../src/functions/http-api';
import { mailboxSyncHandler } from '../../src/functions/mailbox-syncs';
import { processPolicyRun } from '../../src/app/use-cases';
import { logger } from '../../src/app/logging';
import { randomUUID } from 'node:crypto';
import type { PolicyInput } from '../../src/sync/config/schema';
import { emptyEntry } from '../../src/sync/directory';
import { emptySummary, type RunTarget } from '../../src/sync/runs';
import { folderContacts } from '../support/engine';
import { functionsFixture, type FunctionsFixture } from '../support/functions-app';
import { handleApi, type ApiRequest } from '../../src/dashboard/api';
import { queueNames, type App } from '../../src/app/composition';

const ctx = (lines?: string[]): InvocationContext =>
  new InvocationContext({
    invocationId: `t-${Math.random()}`,
    functionName: 'test',
    ...(lines ? { logHandler: (_l, ...a) => lines.push(a.join(' ')) } : {}),
  });
const post = (policyId: string, body: unknown): HttpRequest =>
  new HttpRequest({
    url: `http://127.0.0.1:7071/api/policies/${policyId}/runs`,
    method: 'POST',
    params: { policyId },
    body: { string: JSON.stringify(body) },
  });

describe('security review of issue 16: trust in messages, policy changes mid-run, the lease', () => {
  let f: FunctionsFixture;
  let mailboxes: { id: string; upn: string }[];
  let policies: PolicyInput[];
  before(async () => {
    f = await functionsFixture({
      sim: { seed: { generate: { users: 30, mailboxes: 4, awkward: false } } },
      policies: (sim) => {
        const users = [...sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
        mailboxes = users.map((u) => ({ id: u.id, upn: u.userPrincipalName }));
        const base = {
          connection: 'contoso',
          source: { type: 'directory' as const },
          folder: { name: 'Directory' },
        };
        policies = [
          { ...base, id: 'gal', name: 'GAL', targets: { type: 'users', users: [mailboxes[0]!.upn] } },
          { ...base, id: 'late', name: 'Late', targets: { type: 'users', users: [mailboxes[3]!.upn] } },
          {
            ...base,
            id: 'two',
            name: 'Two mailboxes',
            targets: { type: 'users', users: [mailboxes[1]!.upn, mailboxes[2]!.upn] },
          },
        ];
        return policies;
      },
    });
  });
  after(() => f.close());

  /** Takes the queued mailbox-sync messages off the queue (the test delivers them itself). */
  async function takeMailboxMessages(): Promise<Record<string, unknown>[]> {
    const q = f.app.queues.mailboxSyncs;
    const out: Record<string, unknown>[] = [];
    for (;;) {
      const got = await q.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 60 });
      if (got.receivedMessageItems.length === 0) return out;
      for (const m of got.receivedMessageItems) {
        out.push(
          JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8')) as Record<string, unknown>,
        );
        await q.deleteMessage(m.messageId, m.popReceipt);
      }
    }
  }

  it('finding 1: drift in a mailbox-sync message is not trusted (no forged removals, no swapped deltaLink)', async () => {
    const target = mailboxes[0]!;
    assert.equal((await runPolicyNow(post('gal', {}), ctx())).status, 202);
    await f.runner.drain();
    const contacts = folderContacts(f.sim, target.upn, 'Directory');
    assert.ok(contacts.length >= 2, `${contacts.length} contacts`);
    const victim = contacts[0]!;
    const runId = await f.startedRun('gal');
    const queued = await takeMailboxMessages();
    assert.equal(queued.length, 1);
    assert.equal('drift' in queued[0]!, false, 'the fan-out message carries ids only');
    const folder = (await f.app.mailboxStore.loadFolder('gal', target.id))!;
    assert.ok(folder.deltaLink, 'the folder has a delta token');
    // A deltaLink on the Graph host but for another user's mailbox.
    const swapped = folder.deltaLink.replace(target.id, mailboxes[3]!.id);
    assert.notEqual(swapped, folder.deltaLink);
    const forged = {
      ...queued[0],
      drift: {
        fromDeltaLink: folder.deltaLink,
        deltaLink: swapped,
        items: [{ contactId: victim.immutableId, removed: true }],
      },
    };
    const lines: string[] = [];
    await mailboxSyncHandler(forged, ctx(lines));
    await f.runner.drain();
    const after = (await f.app.mailboxStore.loadFolder('gal', target.id))!;
    assert.notEqual(after.deltaLink, swapped, 'the forged deltaLink is not stored');
    assert.ok(after.deltaLink?.includes(target.id), `the token is still this mailbox's: ${after.deltaLink}`);
    const state = await f.app.mailboxStore.load('gal', target.id);
    const row = [...state.contacts.values()].find((c) => !c.pending && c.contactId === victim.immutableId);
    assert.ok(row && !row.pending, 'the contact is still managed');
    assert.equal(row.userDeleted, false, 'a forged removal is not taken for a user deletion');
    assert.ok(
      folderContacts(f.sim, target.upn, 'Directory').some((c) => c.id === victim.id),
      'the contact is still in the folder',
    );
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.status, 'completed');
    assert.equal(run.mailboxes.failed, 0, lines.join('\n'));
  });
  /** Rewrites the policy file with `change` applied to one policy, and lets the app's cache expire. */
  function changePolicy(id: string, change: Partial<PolicyInput>): void {
    policies = policies.map((p) => (p.id === id ? { ...p, ...change } : p));
    f.writePolicies(policies);
    f.advanceClock(31_000);
  }

  const writes = (since: number): string[] =>
    f.sim.log
      .since(since)
      .filter((e) => e.service === 'graph' && e.method !== 'GET' && e.operation !== 'batch')
      .map((e) => `${e.method} ${e.operation}`);

  it('finding 2: a mailbox job re-checks its policy: disabled mid-run writes nothing and says so; dryRun switched on only plans', async () => {
    const runId = await f.startedRun('two');
    changePolicy('two', { enabled: false });
    let since = f.sim.log.lastSeq;
    await f.runner.drain();
    assert.deepEqual(writes(since), [], 'nothing written for a disabled policy');
    for (const m of mailboxes.slice(1, 3))
      assert.equal(folderContacts(f.sim, m.upn, 'Directory').length, 0, m.upn);
    let run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.status, 'completed');
    assert.equal(run.mailboxes.failed, 2);
    for (const o of await f.app.runStore.listOutcomes(runId))
      assert.match(o.lastError ?? '', /disabled/, 'the outcome says why');

    changePolicy('two', { enabled: true });
    const dryRunId = await f.startedRun('two');
    changePolicy('two', { enabled: true, options: { dryRun: true } });
    since = f.sim.log.lastSeq;
    await f.runner.drain();
    assert.deepEqual(writes(since), [], 'nothing written once the policy is a dry run');
    run = (await f.app.runStore.getRun(dryRunId))!;
    assert.equal(run.status, 'completed');
    for (const o of await f.app.runStore.listOutcomes(dryRunId)) assert.equal(o.status, 'planned');
    changePolicy('two', { enabled: true, options: { dryRun: false } });
  });
  it('review B: a mailbox taken out of the targets mid-run is skipped: nothing written, the outcome says why', async () => {
    const [kept, dropped] = [mailboxes[1]!, mailboxes[2]!];
    const writesTo = (since: number, m: { id: string; upn: string }): string[] =>
      f.sim.log
        .since(since)
        .filter(
          (e) =>
            e.service === 'graph' &&
            e.method !== 'GET' &&
            e.operation !== 'batch' &&
            [m.id, m.upn.toLowerCase()].includes((e.mailbox ?? '').toLowerCase()),
        )
        .map((e) => `${e.method} ${e.operation}`);
    const cases: [Partial<PolicyInput>, RegExp][] = [
      [
        { targets: { type: 'users', users: [kept.upn, dropped.upn], excludeUsers: [dropped.upn] } },
        /excludeUsers/,
      ],
      [{ targets: { type: 'users', users: [kept.upn] } }, /targets\.users/],
    ];
    for (const [change, reason] of cases) {
      assert.equal(folderContacts(f.sim, dropped.upn, 'Directory').length, 0, 'a mailbox a run would fill');
      const runId = await f.startedRun('two');
      changePolicy('two', change);
      const since = f.sim.log.lastSeq;
      await f.runner.drain();
      assert.deepEqual(writesTo(since, dropped), [], 'nothing written to the mailbox that left');
      assert.equal(folderContacts(f.sim, dropped.upn, 'Directory').length, 0);
      const outcomes = await f.app.runStore.listOutcomes(runId);
      const skipped = outcomes.find((o) => o.mailboxId === dropped.id);
      assert.equal(skipped?.status, 'skipped', JSON.stringify(outcomes));
      assert.match(skipped.lastError ?? '', reason);
      assert.equal(outcomes.find((o) => o.mailboxId === kept.id)?.status, 'succeeded');
      const run = (await f.app.runStore.getRun(runId))!;
      assert.equal(run.status, 'completed');
      assert.equal(run.mailboxes.skipped, 1);
      changePolicy('two', { targets: { type: 'users', users: [kept.upn, dropped.upn] } });
    }
  });
  it('review C: a pre-read drift row is deleted once the first pass has read it', async () => {
    const runId = await f.startedRun('gal');
    const driftRows = async (): Promise<number> => {
      let n = 0;
      const filter = `PartitionKey eq '${runId}' and RowKey ge '~drift~' and RowKey lt '~drift~~'`;
      for await (const _ of f.app.tables.runs.listEntities({ queryOptions: { filter } })) n++;
      return n;
    };
    assert.equal(await driftRows(), 1, 'the fan-out pre-read the drift of the synced mailbox');
    await f.runner.drain();
    assert.equal((await f.app.runStore.getRun(runId))!.status, 'completed');
    assert.equal(await driftRows(), 0, 'no drift row outlives its pass');
  });
  it('finding 3: a run that makes progress keeps its lease; a run that lost it writes nothing', async () => {
    const leaseMs = f.app.settings.POLICY_LEASE_MINUTES * 60_000;
    // Progress near the end of the lease renews it: no second run starts beside this one.
    const runId = await f.startedRun('two');
    const queued = await takeMailboxMessages();
    assert.equal(queued.length, 2);
    f.advanceClock(leaseMs - 60_000);
    await mailboxSyncHandler(queued[0], ctx());
    f.advanceClock(5 * 60_000);
    const beside = await runPolicyNow(post('two', {}), ctx());
    assert.equal(beside.status, 409, `the lease was renewed: ${JSON.stringify(beside.jsonBody)}`);
    await mailboxSyncHandler(queued[1], ctx());
    assert.equal((await f.app.runStore.getRun(runId))!.status, 'completed');

    // A run stalled past its lease loses it to the next run, and its late messages write nothing.
    const stalled = await f.startedRun('late');
    const [late] = await takeMailboxMessages();
    f.advanceClock(leaseMs + 60_000);
    const next = await runPolicyNow(post('late', {}), ctx());
    assert.equal(next.status, 202, 'an expired lease is free');
    const since = f.sim.log.lastSeq;
    const lines: string[] = [];
    await mailboxSyncHandler(late, ctx(lines));
    assert.deepEqual(writes(since), [], 'the run that lost its lease writes nothing');
    assert.equal(folderContacts(f.sim, mailboxes[3]!.upn, 'Directory').length, 0);
    const [outcome] = await f.app.runStore.listOutcomes(stalled);
    assert.equal(outcome?.status, 'failed', lines.join('\n'));
    assert.match(outcome.lastError ?? '', /lease/);
    assert.equal(
      (await f.app.runStore.getPolicyState('late')).leaseRunId,
      (next.jsonBody as { runId: string }).runId,
    );
    await f.runner.drain();
    assert.ok(folderContacts(f.sim, mailboxes[3]!.upn, 'Directory').length > 0, 'the new run fills it');
  });
  it('finding 5: continuation and carried counts in a mailbox-sync message are not trusted', async () => {
    const target = mailboxes[0]!;
    const runId = await f.startedRun('gal');
    const [queued] = await takeMailboxMessages();
    const inflated = { created: 1_000_000, updated: 7, deleted: 7, restored: 7, failed: 7 };
    await mailboxSyncHandler({ ...queued, continuation: 999, carried: inflated }, ctx());
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.status, 'completed');
    assert.deepEqual(
      { ...run.contacts, unchanged: 0 },
      { created: 0, updated: 0, deleted: 0, restored: 0, failed: 0, unchanged: 0 },
      'the counts are what this pass did (nothing changed since the last run)',
    );
    const [outcome] = await f.app.runStore.listOutcomes(runId);
    assert.equal(outcome?.status, 'succeeded');
    assert.equal(
      outcome.result!.unchanged,
      folderContacts(f.sim, target.upn, 'Directory').length,
      'unchanged counts the folder',
    );
  });
  it('finding 6: a function key alone cannot ask for a full resync (403 naming the policy option) unless the policy allows it', async () => {
    const runs = (await f.app.runStore.getPolicyState('gal')).lastRunId;
    const refused = await runPolicyNow(post('gal', { fullResync: true }), ctx());
    assert.equal(refused.status, 403, JSON.stringify(refused.jsonBody));
    const body = refused.jsonBody as { detail: string; errors: { field: string }[] };
    assert.match(body.detail, /allowOnDemandFullResync/);
    assert.deepEqual(
      body.errors.map((e) => e.field),
      ['fullResync'],
    );
    assert.equal((await f.app.runStore.getPolicyState('gal')).lastRunId, runs, 'no run was started');
    changePolicy('gal', { options: { allowOnDemandFullResync: true } });
    const allowed = await runPolicyNow(post('gal', { fullResync: true }), ctx());
    assert.equal(allowed.status, 202, JSON.stringify(allowed.jsonBody));
    await f.runner.drain();
    changePolicy('gal', { options: {} });
  });
  it('review A: the dashboard cannot ask for a full resync either (403 naming the option); its page offers none', async () => {
    const app = Object.create(f.app) as App;
    Object.defineProperty(app, 'settings', { value: { ...f.app.settings, DASHBOARD_LOCAL_SIGN_IN: true } });
    const origin = 'https://contact-sync.example';
    const req = (path: string, init: { method?: string; body?: string; token?: string } = {}): ApiRequest => {
      const headers = new Headers({
        'content-type': 'application/json',
        'sec-fetch-site': 'same-origin',
        origin,
      });
      if (init.token) headers.set('authorization', `Bearer ${init.token}`);
      return {
        method: init.method ?? 'GET',
        path: path.split('?')[0]!,
        query: new URLSearchParams(path.split('?')[1] ?? ''),
        header: (n) => headers.get(n),
        body: () => Promise.resolve(init.body ?? ''),
        origin,
      };
    };
    const token = ((await handleApi(app, req('local-sign-in?role=operator'), {})).body as { token: string })
      .token;
    assert.ok(token, 'local sign-in gives an operator token');
    const runs = (await f.app.runStore.getPolicyState('gal')).lastRunId;
    const full = JSON.stringify({ fullResync: true, dryRun: false });
    const refused = await handleApi(app, req('policies/gal/runs', { method: 'POST', body: full, token }), {});
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    const body = refused.body as { detail: string; errors: { field: string }[] };
    assert.match(body.detail, /allowOnDemandFullResync/);
    assert.deepEqual(
      body.errors.map((e) => e.field),
      ['fullResync'],
    );
    assert.equal((await f.app.runStore.getPolicyState('gal')).lastRunId, runs, 'no run was started');
    const preview = await handleApi(app, req('policies/gal/preview', { token }), {});
    assert.equal((preview.body as { fullResyncAllowed: boolean }).fullResyncAllowed, false);

    changePolicy('gal', { options: { allowOnDemandFullResync: true } });
    const allowed = await handleApi(app, req('policies/gal/runs', { method: 'POST', body: full, token }), {});
    assert.equal(allowed.status, 202, JSON.stringify(allowed.body));
    const run = (await f.app.runStore.getRun((allowed.body as { runId: string }).runId))!;
    assert.equal(run.options.fullResync, true);
    await f.runner.drain();
    changePolicy('gal', { options: {} });
  });
  it("finding 8: a run's target list is written once; a late or concurrent duplicate delivery adds nothing", async () => {
    const targets = (n: number, from = 0): RunTarget[] =>
      Array.from({ length: n }, (_, i) => ({
        mailboxId: randomUUID(),
        userPrincipalName: `user${from + i}@contoso.example`,
      }));
    const newRun = async (): Promise<string> => {
      const runId = randomUUID();
      const options = { dryRun: false, fullResync: false, mailboxes: [] };
      await f.app.runStore.createRun(emptySummary(runId, 'gal', 'http', options, new Date()), []);
      return runId;
    };
    const ids = async (runId: string): Promise<string[]> =>
      (await f.app.runStore.listTargets(runId)).map((t) => t.mailboxId).sort();

    // A delivery that read "starting" before the first one finished (its directory read saw more).
    const late = await newRun();
    const first = targets(150);
    await f.app.runStore.startRun(late, first, []);
    await f.app.runStore.startRun(late, [...first, ...targets(3, 500)], []);
    assert.deepEqual(await ids(late), first.map((t) => t.mailboxId).sort(), 'no target added after start');
    assert.equal((await f.app.runStore.getRun(late))!.expected, 150);

    // Two deliveries at once with different lists: one list wins, whole, and it is what the run expects.
    const raced = await newRun();
    const [a, b] = [targets(120), targets(130, 200)];
    await Promise.all([f.app.runStore.startRun(raced, a, []), f.app.runStore.startRun(raced, b, [])]);
    const stored = await ids(raced);
    const run = (await f.app.runStore.getRun(raced))!;
    assert.equal(run.status, 'running');
    assert.equal(stored.length, run.expected, 'the run expects exactly its stored targets');
    assert.ok(
      [a, b].some((l) => JSON.stringify(l.map((t) => t.mailboxId).sort()) === JSON.stringify(stored)),
      "the stored targets are one delivery's list, not a mix",
    );
  });
  it('finding 9: ids from Graph with / \\ # ? or control characters make escaped Table keys and read back unchanged', async () => {
    const hostile = [
      'a/b',
      'a\\b',
      'a#b',
      'a?b',
      'a\u0000b',
      'a\u001fb',
      'a\u007fb',
      'a\u0085b',
      '%2F',
      '~run',
      '~target~x',
    ];
    const policyId = 'keys';
    const keys = hostile.map((h) => `contact:${h}`);
    // Source rows.
    const meta = {
      userDeltaLink: null,
      orgContactDeltaLink: null,
      groupDeltaLink: null,
      mailboxDeltaLink: null,
      refreshedAt: new Date().toISOString(),
    };
    await f.app.sourceStore.save(
      policyId,
      keys.map((key) => ({ key, entry: emptyEntry('user', key), desired: null, exclusion: 'test' })),
      [],
      meta,
    );
    assert.deepEqual([...(await f.app.sourceStore.load(policyId)).rows.keys()].sort(), [...keys].sort());
    // Mailbox contact rows.
    const mailboxId = randomUUID();
    const contact = (i: number) => ({
      contactId: `c${i}`,
      hash: 'h',
      written: {},
      changeKey: 'k',
      keep: [],
      userDeleted: false,
      orphaned: false,
    });
    await f.app.mailboxStore.apply(
      policyId,
      mailboxId,
      keys.map((k, i) => [k, contact(i)]),
      [],
    );
    assert.deepEqual(
      [...(await f.app.mailboxStore.load(policyId, mailboxId)).contacts.keys()].sort(),
      [...keys].sort(),
    );
    await f.app.mailboxStore.apply(policyId, mailboxId, [], keys.slice(0, 4));
    assert.equal((await f.app.mailboxStore.load(policyId, mailboxId)).contacts.size, keys.length - 4);
    // Run targets and outcomes.
    const runId = randomUUID();
    await f.app.runStore.createRun(
      emptySummary(runId, 'gal', 'http', { dryRun: false, fullResync: false, mailboxes: [] }, new Date()),
      [],
    );
    const targets = hostile.map((h, i) => ({ mailboxId: h, userPrincipalName: `u${i}@contoso.example` }));
    await f.app.runStore.startRun(runId, targets, []);
    assert.deepEqual(
      (await f.app.runStore.listTargets(runId)).map((t) => t.mailboxId).sort(),
      [...hostile].sort(),
    );
    for (const t of targets) {
      assert.deepEqual(await f.app.runStore.getTarget(runId, t.mailboxId), t);
      await f.app.runStore.recordOutcome(runId, {
        mailboxId: t.mailboxId,
        userPrincipalName: t.userPrincipalName,
        status: 'succeeded',
        result: null,
        lastError: null,
        attempts: 1,
      });
      assert.equal((await f.app.runStore.getOutcome(runId, t.mailboxId))?.mailboxId, t.mailboxId);
    }
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.done, hostile.length, 'an outcome keyed "~run" did not overwrite the summary');
    assert.equal(run.status, 'running');
    // What reached the service: no forbidden character, at most 1 KiB (UTF-16), in any key.
    // eslint-disable-next-line no-control-regex -- control characters are what Table keys forbid
    const forbidden = /[/\\#?\u0000-\u001f\u007f-\u009f]/;
    for (const table of [f.app.tables.sources, f.app.tables.mailboxes, f.app.tables.runs])
      for await (const e of table.listEntities()) {
        for (const key of [e.partitionKey!, e.rowKey!]) {
          assert.doesNotMatch(key, forbidden, JSON.stringify(key));
          assert.ok(key.length <= 512, `${key.length} characters`);
        }
      }
    // A key over the limit is refused with a clear error, not written cut short.
    await assert.rejects(
      f.app.mailboxStore.apply(policyId, mailboxId, [[`contact:${'x'.repeat(600)}`, contact(0)]], []),
      /Table key .*1 KiB/,
    );
  });
});

describe('review E: a fan-out that lost its lease queues no more mailboxes', () => {
  let f: FunctionsFixture;
  before(async () => {
    f = await functionsFixture({
      sim: { seed: { generate: { users: 60, mailboxes: 45, awkward: false } } },
      policies: () => [
        {
          id: 'wide',
          name: 'Wide',
          connection: 'contoso',
          source: { type: 'directory' as const },
          targets: { type: 'allMailboxes' },
          folder: { name: 'Directory' },
        },
      ],
    });
  });
  after(() => f.close());

  it('stops fanning out and fails the run when another run took the lease meanwhile', async () => {
    const started = await runPolicyNow(post('wide', {}), ctx());
    assert.equal(started.status, 202, JSON.stringify(started.jsonBody));
    const runId = (started.jsonBody as { runId: string }).runId;
    const q = f.app.queues.policyRuns;
    const [m] = (await q.receiveMessages({ numberOfMessages: 1 })).receivedMessageItems;
    await q.deleteMessage(m!.messageId, m!.popReceipt);
    // The first queued mailbox message stalls past the lease (a slow queue), and a new run takes it.
    let sent = 0;
    let rival: string | undefined;
    const app = Object.create(f.app) as App;
    app.send = async (queue, message, delay) => {
      await f.app.send(queue, message, delay);
      if (queue === queueNames.mailboxSyncs && ++sent === 1) {
        f.advanceClock(f.app.settings.POLICY_LEASE_MINUTES * 60_000 + 60_000);
        const next = await runPolicyNow(post('wide', {}), ctx());
        assert.equal(next.status, 202, 'the expired lease is free');
        rival = (next.jsonBody as { runId: string }).runId;
      }
    };
    const lines: string[] = [];
    await processPolicyRun(
      app,
      JSON.parse(Buffer.from(m!.messageText, 'base64').toString('utf8')),
      logger({
        log: (l) => lines.push(String(l)),
        warn: (l) => lines.push(String(l)),
        error: (l) => lines.push(String(l)),
      }),
    );
    const targets = (await f.app.runStore.listTargets(runId)).length;
    assert.ok(targets > 32, `${targets} targets: more than one chunk`);
    assert.equal(sent, 32, 'the chunk after the lease was lost was not queued');
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.status, 'failed', lines.join('\n'));
    assert.match(run.error ?? '', /lease/);
    assert.equal((await f.app.runStore.getPolicyState('wide')).leaseRunId, rival);
  });

  it('a run whose lease went to another run before its targets were stored queues no mailbox and fails', async () => {
    // The test before left a rival holding the lease and its message queued: both are let go.
    const q = f.app.queues.policyRuns;
    for (const left of (await q.receiveMessages({ numberOfMessages: 32 })).receivedMessageItems)
      await q.deleteMessage(left.messageId, left.popReceipt);
    f.advanceClock(f.app.settings.POLICY_LEASE_MINUTES * 60_000 + 60_000);
    const started = await runPolicyNow(post('wide', {}), ctx());
    assert.equal(started.status, 202, JSON.stringify(started.jsonBody));
    const runId = (started.jsonBody as { runId: string }).runId;
    const [m] = (await q.receiveMessages({ numberOfMessages: 1 })).receivedMessageItems;
    await q.deleteMessage(m!.messageId, m!.popReceipt);
    // The directory read took longer than the lease, and a new run took the policy meanwhile.
    let rival: string | undefined;
    const store = f.app.runStore;
    const slowStore = Object.create(store) as typeof store;
    slowStore.startRun = async (...args: Parameters<typeof store.startRun>) => {
      f.advanceClock(f.app.settings.POLICY_LEASE_MINUTES * 60_000 + 60_000);
      const next = await runPolicyNow(post('wide', {}), ctx());
      assert.equal(next.status, 202, 'the expired lease is free');
      rival = (next.jsonBody as { runId: string }).runId;
      return store.startRun(...args);
    };
    let sent = 0;
    const app = Object.create(f.app) as App;
    Object.defineProperty(app, 'runStore', { value: slowStore });
    app.send = async (queue, message, delay) => {
      if (queue === queueNames.mailboxSyncs) sent++;
      await f.app.send(queue, message, delay);
    };
    const lines: string[] = [];
    await processPolicyRun(
      app,
      JSON.parse(Buffer.from(m!.messageText, 'base64').toString('utf8')),
      logger({
        log: (l) => lines.push(String(l)),
        warn: (l) => lines.push(String(l)),
        error: (l) => lines.push(String(l)),
      }),
    );
    assert.equal(sent, 0, 'no mailbox of a run that lost its policy');
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.status, 'failed', lines.join('\n'));
    assert.match(run.error ?? '', /lease/);
    assert.equal((await f.app.runStore.getPolicyState('wide')).leaseRunId, rival);
  });
});

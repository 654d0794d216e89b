// Issue 16 items 3-7 through the real handlers against Azurite and the simulator: forged queue
// messages write nothing, a policy's dryRun and enabled hold over HTTP, a failed start frees the
// policy, lists that grow stay within Table Storage's limits, and GET /preview and /health change
// nothing and answer a second call from the first.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRequest, InvocationContext } from '@azure/functions';
import type { TableClient } from '@azure/data-tables';
import { getRunStatus, healthCheck, previewPolicy, runPolicyNow } from '../../../src/functions/http-api';
import { mailboxSyncHandler } from '../../../src/functions/mailbox-syncs';
import { policyRunHandler } from '../../../src/functions/policy-runs';
import { buildReport } from '../../../src/sync/report';
import { folderContacts } from '../../support/engine';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';

const ctx = (lines?: string[]): InvocationContext =>
  new InvocationContext({
    invocationId: `t-${Math.random()}`,
    functionName: 'test',
    ...(lines ? { logHandler: (_l, ...a) => lines.push(a.join(' ')) } : {}),
  });
const get = (path: string, params: Record<string, string> = {}): HttpRequest =>
  new HttpRequest({ url: `http://127.0.0.1:7071/api/${path}`, method: 'GET', params });
const post = (policyId: string, body: unknown): HttpRequest =>
  new HttpRequest({
    url: `http://127.0.0.1:7071/api/policies/${policyId}/runs`,
    method: 'POST',
    params: { policyId },
    body: { string: JSON.stringify(body) },
  });

/** Every entity of a table, as JSON text (timestamps and ETags left out), to compare before and after. */
async function snapshot(table: TableClient): Promise<string[]> {
  const out: string[] = [];
  for await (const e of table.listEntities()) {
    const { etag: _e, timestamp: _t, ...rest } = e as Record<string, unknown>;
    out.push(JSON.stringify(rest));
  }
  return out.sort();
}

describe('trust boundaries and size limits of the Functions app', () => {
  let f: FunctionsFixture;
  let mailboxes: { id: string; upn: string }[];
  let admin: string;
  const missing = Array.from(
    { length: 6_000 },
    (_, i) => `someone.who.left.the.company.long.ago.${i}@contoso.example`,
  );
  before(async () => {
    f = await functionsFixture({
      sim: { seed: { generate: { users: 30, mailboxes: 4, awkward: false } } },
      policies: (sim) => {
        const users = [...sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
        mailboxes = users.map((u) => ({ id: u.id, upn: u.userPrincipalName }));
        admin = mailboxes[0]!.upn;
        sim.tenant.setUserPhoto(mailboxes[1]!.upn, {
          contentType: 'image/jpeg',
          bytes: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]),
        });
        const base = {
          connection: 'contoso',
          source: { type: 'directory' as const },
          folder: { name: 'Directory' },
        };
        return [
          { ...base, id: 'gal', name: 'GAL', targets: { type: 'users', users: [mailboxes[0]!.upn] } },
          {
            ...base,
            id: 'held',
            name: 'Dry by policy',
            targets: { type: 'users', users: [mailboxes[1]!.upn] },
            options: { dryRun: true },
          },
          {
            ...base,
            id: 'off',
            name: 'Disabled',
            enabled: false,
            targets: { type: 'users', users: [mailboxes[1]!.upn] },
          },
          {
            ...base,
            id: 'wide',
            name: 'Many named users',
            targets: { type: 'users', users: [mailboxes[2]!.upn, ...missing] },
            notify: { recipients: ['it@contoso.example'], sender: admin, when: 'always' },
          },
          {
            ...base,
            id: 'pics',
            name: 'With photos',
            targets: { type: 'users', users: [mailboxes[1]!.upn] },
            photos: { enabled: true },
          },
        ];
      },
    });
  });
  after(() => f.close());

  it('item 3: a forged policy-run message (unknown run, its own options) writes nothing and reads no Graph', async () => {
    const before = await Promise.all([snapshot(f.app.tables.runs), snapshot(f.app.tables.policies)]);
    const sources = await snapshot(f.app.tables.sources);
    const since = f.sim.log.lastSeq;
    const lines: string[] = [];
    const runId = '0b7c9a3e-1f2d-4c5b-8a6e-9d0f1e2a3b4c';
    for (const forged of [
      // The shape the app used to trust: options inside the message.
      {
        kind: 'policy-run',
        policyId: 'gal',
        runId,
        trigger: 'http',
        options: { dryRun: false, fullResync: true, mailboxes: [] },
      },
      { kind: 'policy-run', policyId: 'gal', runId },
    ])
      await policyRunHandler(forged, ctx(lines));
    assert.deepEqual(
      await Promise.all([snapshot(f.app.tables.runs), snapshot(f.app.tables.policies)]),
      before,
      'no run and no lease written',
    );
    assert.deepEqual(await snapshot(f.app.tables.sources), sources, 'no source snapshot written');
    assert.equal(f.sim.log.since(since).filter((e) => e.service === 'graph').length, 0);
    assert.ok(
      lines.some((l) => /no such run; message dropped|dropped: policy-runs/.test(l)),
      lines.join('\n'),
    );
  });

  it('item 3: a forged mailbox-sync message for a mailbox outside a live run, or with hostile ids, writes nothing', async () => {
    const runId = await f.startedRun('gal');
    const outsider = mailboxes[3]!;
    const runs = await snapshot(f.app.tables.runs);
    const state = await snapshot(f.app.tables.mailboxes);
    const since = f.sim.log.lastSeq;
    const lines: string[] = [];
    const forged: unknown[] = [
      // The old shape: its UPN, dryRun and force were trusted.
      {
        kind: 'mailbox-sync',
        policyId: 'gal',
        runId,
        mailboxId: outsider.id,
        userPrincipalName: outsider.upn,
        dryRun: false,
        force: true,
        continuation: 0,
      },
      { kind: 'mailbox-sync', policyId: 'gal', runId, mailboxId: outsider.id },
      { kind: 'mailbox-sync', policyId: 'held', runId, mailboxId: mailboxes[0]!.id },
      ...['../x', 'a#b', 'a?b', "o'x", `${outsider.id}/x`].map((mailboxId) => ({
        kind: 'mailbox-sync',
        policyId: 'gal',
        runId,
        mailboxId,
        userPrincipalName: outsider.upn,
        dryRun: false,
        force: true,
        continuation: 0,
      })),
      { kind: 'mailbox-sync', policyId: 'gal/../x', runId, mailboxId: outsider.id },
    ];
    for (const m of forged)
      await mailboxSyncHandler(m, ctx(lines)).catch((e: unknown) => assert.fail(`threw: ${String(e)}`));
    assert.equal(
      f.sim.log.since(since).filter((e) => e.service === 'graph').length,
      0,
      'no Graph request for a forged message',
    );
    assert.deepEqual(await snapshot(f.app.tables.mailboxes), state, 'no mailbox state or lock written');
    assert.deepEqual(await snapshot(f.app.tables.runs), runs, 'no outcome written');
    assert.equal(folderContacts(f.sim, outsider.upn, 'Directory').length, 0);
    assert.equal(
      lines.filter((l) => /dropped/.test(l)).length,
      forged.length,
      `each one dropped with a reason:\n${lines.join('\n')}`,
    );
    await f.runner.drain();
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.status, 'completed');
    assert.equal(run.done, 1, 'only the real target counted');
  });

  it("item 4: a policy's dryRun: true holds over HTTP; a disabled policy is answered 409", async () => {
    const since = f.sim.log.lastSeq;
    const res = await runPolicyNow(post('held', { dryRun: false }), ctx());
    assert.equal(res.status, 202);
    await f.runner.drain();
    const runId = (res.jsonBody as { runId: string }).runId;
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.options.dryRun, true, 'the run is recorded as a dry run');
    assert.ok(run.contacts.created > 0, 'it planned creates');
    assert.equal(
      f.sim.log.since(since).filter((e) => e.method !== 'GET' && e.operation.startsWith('contact')).length,
      0,
      'and wrote none',
    );
    assert.equal(folderContacts(f.sim, mailboxes[1]!.upn, 'Directory').length, 0);
    const off = await runPolicyNow(post('off', {}), ctx());
    assert.equal(off.status, 409);
    assert.equal((off.headers as Record<string, string>)['content-type'], 'application/problem+json');
    assert.match((off.jsonBody as { detail: string }).detail, /"off" is disabled/);
    assert.equal((await f.app.runStore.getPolicyState('off')).lastRunId, null, 'no run recorded');
  });

  it('item 5: a start whose queueing fails frees the policy; a lease whose run is missing or finished is free', async () => {
    await f.app.queues.policyRuns.delete();
    try {
      const failed = await runPolicyNow(post('gal', {}), ctx());
      assert.equal(failed.status, 500);
    } finally {
      await f.app.queues.policyRuns.create();
    }
    const state = await f.app.runStore.getPolicyState('gal');
    assert.equal(state.leaseRunId, null, 'the lease was released');
    const again = await runPolicyNow(post('gal', {}), ctx());
    assert.equal(again.status, 202, JSON.stringify(again.jsonBody));
    await f.runner.drain();
    // A lease left by a run that does not exist (a start that died halfway) is free.
    const now = new Date();
    const ghost = '5d1f7c9e-2b3a-4c8d-9e0f-1a2b3c4d5e6f';
    await f.app.runStore.acquireLease('gal', ghost, new Date(now.getTime() + 6 * 3600_000), now);
    const afterGhost = await runPolicyNow(post('gal', {}), ctx());
    assert.equal(afterGhost.status, 202, JSON.stringify(afterGhost.jsonBody));
    await f.runner.drain();
    // And one held by a run that has finished.
    const finished = (afterGhost.jsonBody as { runId: string }).runId;
    assert.equal((await f.app.runStore.getRun(finished))!.status, 'completed');
    await f.app.runStore.acquireLease('gal', finished, new Date(now.getTime() + 6 * 3600_000), now);
    const afterFinished = await runPolicyNow(post('gal', {}), ctx());
    assert.equal(afterFinished.status, 202, JSON.stringify(afterFinished.jsonBody));
    await f.runner.drain();
  });

  it('item 6: 6,000 skipped targets and 1,000 long requested UPNs (the most a request names) fit the run record; the report lists the first and counts the rest', async () => {
    const longUpns = Array.from(
      { length: 999 },
      (_, i) => `${String(i).padStart(4, '0')}.${'x'.repeat(290)}@contoso.example`,
    );
    const res = await runPolicyNow(post('wide', { mailboxes: [mailboxes[2]!.upn, ...longUpns] }), ctx());
    assert.equal(res.status, 202, JSON.stringify(res.jsonBody));
    await f.runner.drain(240_000);
    const runId = (res.jsonBody as { runId: string }).runId;
    const status = await getRunStatus(get(`runs/${runId}`, { runId }), ctx());
    const run = status.jsonBody as {
      status: string;
      expected: number;
      skippedCount: number;
      skippedTargets: unknown[];
    };
    assert.equal(run.status, 'completed', f.logs.filter((l) => l.startsWith('error')).join('\n'));
    assert.equal(run.expected, 1);
    assert.equal(run.skippedCount, 6_999, 'every named or requested UPN not found is counted');
    assert.ok(run.skippedTargets.length <= 50);
    // The policy names 6,000 users that do not exist: the next run reports them all without a request list.
    const all = await runPolicyNow(post('wide', {}), ctx());
    assert.equal(all.status, 202);
    await f.runner.drain(240_000);
    const allRun = (await f.app.runStore.getRun((all.jsonBody as { runId: string }).runId))!;
    assert.equal(allRun.status, 'completed');
    assert.equal(allRun.skippedCount, 6_000);
    const mime = String(f.sim.tenant.mailbox(admin)!.sentMail.at(-1)!.message.mime);
    assert.ok(mime.length < 200_000, `the report mail stays small (${mime.length} bytes)`);
    assert.match(
      buildReport((await f.app.policy('wide'))!.policy, allRun, []).text,
      /and 5,?950 more/,
      'the report lists the first and counts the rest',
    );
  });

  it('item 6: a mailbox outcome with 1,500 per-contact errors is stored, capped, and the report counts the rest', async () => {
    const runId = await f.startedRun('gal');
    const errors = Array.from({ length: 1_500 }, (_, i) => ({
      sourceKey: `user:${i}`,
      status: 400,
      code: 'ErrorInvalidProperty',
      message: `contact ${i} was refused: ${'the value is too long. '.repeat(20)}`,
      requestId: `req-${i}`,
    }));
    const mailbox = mailboxes[0]!;
    const { recorded } = await f.app.runStore.recordOutcome(runId, {
      mailboxId: mailbox.id,
      userPrincipalName: mailbox.upn,
      status: 'succeeded',
      result: {
        mailbox: mailbox.upn,
        userId: mailbox.id,
        status: 'succeeded',
        created: 0,
        updated: 0,
        deleted: 0,
        unchanged: 0,
        restored: 0,
        failed: 1_500,
        duplicatesRemoved: 0,
        errors,
      },
      lastError: errors[0]!.message,
      attempts: 0,
    });
    assert.equal(recorded, true);
    const outcome = (await f.app.runStore.listOutcomes(runId)).find((o) => o.mailboxId === mailbox.id)!;
    assert.equal(outcome.result!.failed, 1_500);
    assert.ok(outcome.result!.errors.length <= 20);
    assert.equal(outcome.errorsLeftOut, 1_500 - outcome.result!.errors.length);
    const run = (await f.app.runStore.getRun(runId))!;
    const report = buildReport((await f.app.policy('gal'))!.policy, run, [outcome]);
    assert.match(report.text, /and 1,?480 more/);
    await f.runner.drain(); // the queued message finds the mailbox done
    await f.app.runStore.failRun(runId, 'test over'); // a finished run's lease is free
  });

  it('item 6: drift carried in a mailbox-sync message is measured in bytes, so the message stays under 64 KiB', async () => {
    const upn = mailboxes[0]!.upn;
    const box = f.sim.tenant.mailbox(upn)!;
    assert.equal((await runPolicyNow(post('gal', {}), ctx())).status, 202, 'a first run fills the folder');
    await f.runner.drain();
    const edited = folderContacts(f.sim, upn, 'Directory').slice(0, 8);
    assert.ok(edited.length >= 3, `${edited.length} contacts`);
    const originals = new Map(edited.map((c) => [c.id, c.data.jobTitle]));
    // 17,600 characters of 3 bytes each: under the carried-drift limit in characters, over 64 KiB in base64.
    const jobTitle = '漢'.repeat(Math.ceil(17_600 / edited.length));
    for (const c of edited) box.updateContact(c, { jobTitle }, [], new Date());
    const res = await runPolicyNow(post('gal', {}), ctx());
    assert.equal(res.status, 202);
    await f.runner.drain();
    const run = (await f.app.runStore.getRun((res.jsonBody as { runId: string }).runId))!;
    assert.equal(
      run.status,
      'completed',
      f.logs
        .filter((l) => /error|warn/.test(l))
        .slice(-5)
        .join('\n'),
    );
    assert.equal(run.mailboxes.failed, 0);
    for (const c of folderContacts(f.sim, upn, 'Directory').filter((x) => originals.has(x.id)))
      assert.equal(c.data.jobTitle, originals.get(c.id), 'the edit is restored');
  });

  it('item 7: GET /preview changes nothing, reads no photos, and a second call within a minute reads nothing', async () => {
    // A real run first, so there is state that a preview could move.
    const started = await runPolicyNow(post('pics', {}), ctx());
    assert.equal(started.status, 202);
    await f.runner.drain();
    f.sim.tenant.addUser({
      userPrincipalName: 'new.joiner@contoso.example',
      displayName: 'New Joiner',
      mail: 'new.joiner@contoso.example',
      mailbox: 'none',
    });
    f.sim.tenant.setUserPhoto('new.joiner@contoso.example', {
      contentType: 'image/jpeg',
      bytes: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 9, 9]),
    });
    const before = await Promise.all(
      [f.app.tables.sources, f.app.tables.mailboxes, f.app.tables.runs, f.app.tables.policies].map(snapshot),
    );
    const since = f.sim.log.lastSeq;
    const first = await previewPolicy(get('policies/pics/preview', { policyId: 'pics' }), ctx());
    assert.equal(first.status, 200);
    assert.ok(
      (first.jsonBody as { source: { samples: { displayName: string }[]; objects: number } }).source.objects >
        0,
    );
    const traffic = f.sim.log.since(since);
    assert.equal(traffic.filter((e) => /photo/i.test(e.operation)).length, 0, 'no photo reads');
    assert.deepEqual(
      await Promise.all(
        [f.app.tables.sources, f.app.tables.mailboxes, f.app.tables.runs, f.app.tables.policies].map(
          snapshot,
        ),
      ),
      before,
      'no snapshot saved, no delta link moved',
    );
    const mark = f.sim.log.lastSeq;
    const second = await previewPolicy(get('policies/pics/preview', { policyId: 'pics' }), ctx());
    assert.deepEqual(second.jsonBody, first.jsonBody);
    assert.equal(
      f.sim.log.since(mark).length,
      0,
      'the second call within a minute is answered from the first',
    );
    // The next real run still sees the new joiner (the preview did not consume the change).
    const next = await runPolicyNow(post('pics', {}), ctx());
    await f.runner.drain();
    const run = (await f.app.runStore.getRun((next.jsonBody as { runId: string }).runId))!;
    assert.equal(run.contacts.created, 1, 'the change the preview saw is still there for the run');
  });

  it('item 7: GET /health reads Key Vault once per call, and a second call within a minute reads nothing', async () => {
    const since = f.sim.log.lastSeq;
    const first = await healthCheck(get('health'), ctx());
    assert.equal(first.status, 200, JSON.stringify(first.jsonBody));
    const vaultReads = f.sim.log.since(since).filter((e) => e.service === 'vault' && e.status === 200);
    assert.equal(vaultReads.length, 1, vaultReads.map((e) => e.path).join('\n'));
    const mark = f.sim.log.lastSeq;
    const second = await healthCheck(get('health'), ctx());
    assert.deepEqual(second.jsonBody, first.jsonBody);
    assert.equal(f.sim.log.since(mark).length, 0);
  });
});

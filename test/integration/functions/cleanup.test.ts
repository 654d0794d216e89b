// Issue 17, item 2: cleanup through the real Functions handlers. The operators' HTTP route removes a
// policy's contacts (dry run first, then a confirmation), a mailbox that leaves the targets is cleaned
// (options.onTargetRemoval), and a policy deleted from the file is cleaned after its grace period.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRequest, InvocationContext } from '@azure/functions';
import type { PolicyInput } from '../../../src/sync/config/schema';
import { randomUUID } from 'node:crypto';
import { startRun } from '../../../src/app/use-cases';
import { startRemoval } from '../../../src/app/removal-runs';
import { listRuns, mailboxHistory } from '../../../src/app/history';
import { queueNames } from '../../../src/app/composition';
import { deletedPolicyNotes } from '../../../src/app/remove-policy';
import { removePolicyContacts } from '../../../src/functions/http-remove';
import type { MailboxOutcome, RunSummary } from '../../../src/sync/runs';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { functionsFixture, usersPolicy as policy, type FunctionsFixture } from '../../support/functions-app';
import { folderContacts, tagOf } from '../../support/engine';

const hourMs = 3_600_000;
const ctx = (): InvocationContext => new InvocationContext({ invocationId: 'test', functionName: 'http' });
const removal = (policyId: string, body: unknown): HttpRequest =>
  new HttpRequest({
    url: `http://127.0.0.1:7071/api/policies/${policyId}/removal`,
    method: 'POST',
    params: { policyId },
    body: { string: JSON.stringify(body) },
  });

describe('cleanup: remove a policy, mailboxes leaving its targets, deleted policies (issue 17 item 2)', () => {
  let f: FunctionsFixture;
  let users: SimUser[];
  let policies: PolicyInput[] = [];
  const setPolicies = (next: PolicyInput[]): void => {
    policies = next;
    f.writePolicies(policies);
    f.advanceClock(31_000); // past the app's 30-second cache of the policy file
  };
  const runNow = async (id: string, trigger: 'http' | 'cli' = 'http'): Promise<string> => {
    const found = (await f.app.policy(id))!;
    const started = await startRun(f.app, found.policy, trigger, {
      dryRun: false,
      fullResync: false,
      mailboxes: [],
    });
    assert.ok(started.started);
    await f.runner.drain();
    return started.runId;
  };
  /** A queued removal, run to its end by the local runner, as run-status reads it. */
  const removalRun = async (runId: string): Promise<{ run: RunSummary; outcomes: MailboxOutcome[] }> => {
    await f.runner.drain();
    return {
      run: (await f.app.runStore.getRun(runId))!,
      outcomes: await f.app.runStore.listOutcomes(runId),
    };
  };
  const ours = (u: SimUser, id: string): number =>
    folderContacts(f.sim, u.userPrincipalName, `Folder ${id}`).filter((c) => tagOf(c)?.startsWith(`${id}|`))
      .length;
  const hasFolder = (u: SimUser, id: string): boolean =>
    f.sim.tenant.mailbox(u.id)!.folderByName(`Folder ${id}`, f.sim.tenant.mailbox(u.id)!.contactsFolderId) !==
    undefined;

  before(async () => {
    f = await functionsFixture({
      sim: { seed: { generate: { users: 12, mailboxes: 6, awkward: false } } },
      policies: () => [],
    });
    users = [...f.sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
  });
  after(() => f.close());

  it('the HTTP route: a dry run lists per mailbox; deleting needs the policy id as confirmation; it removes only our contacts, and the folder we created once empty', async () => {
    const [a, b] = users;
    setPolicies([policy('gone', [a!, b!], { enabled: true })]);
    await runNow('gone');
    assert.ok(ours(a!, 'gone') > 3);
    // A user keeps a contact of their own in our folder: it stays, and so does the folder.
    const mailboxB = f.sim.tenant.mailbox(b!.id)!;
    const folderB = mailboxB.folderByName('Folder gone', mailboxB.contactsFolderId)!;
    const own = mailboxB.createContact(folderB.id, { displayName: 'My plumber' }, [], new Date());

    const dry = await removePolicyContacts(removal('gone', {}), ctx());
    assert.equal(dry.status, 202, 'queued: answered before any mailbox is looked at');
    const queued = dry.jsonBody as { runId: string; dryRun: boolean; statusUrl: string; warnings?: string[] };
    assert.equal(queued.dryRun, true, 'a dry run unless asked otherwise');
    assert.match(
      queued.warnings?.join(' ') ?? '',
      /policy "gone" is still enabled/,
      'said in the answer too',
    );
    assert.match(queued.statusUrl, new RegExp(`/api/runs/${queued.runId}$`));
    const plan = await removalRun(queued.runId);
    assert.equal(plan.run.options.removal, true);
    assert.equal(plan.run.status, 'completed');
    assert.equal(plan.run.expected, 2);
    assert.equal(plan.run.contacts.deleted, ours(a!, 'gone') + ours(b!, 'gone'));
    assert.deepEqual(
      plan.outcomes.map((o) => [o.userPrincipalName, o.status, o.result?.removal?.folderRemoved]).sort(),
      [
        [a!.userPrincipalName, 'planned', true],
        [b!.userPrincipalName, 'planned', false], // b's folder holds a user's contact
      ].sort(),
    );
    assert.match(plan.run.notes?.join(' ') ?? '', /still enabled/);
    assert.ok(ours(a!, 'gone') > 0, 'the dry run removed nothing');

    const unconfirmed = await removePolicyContacts(removal('gone', { dryRun: false }), ctx());
    assert.equal(unconfirmed.status, 400);
    assert.equal((unconfirmed.jsonBody as { errors: { field: string }[] }).errors[0]!.field, 'confirm');
    assert.ok(ours(a!, 'gone') > 0);

    const started = await removePolicyContacts(removal('gone', { dryRun: false, confirm: 'gone' }), ctx());
    assert.equal(started.status, 202, JSON.stringify(started.jsonBody));
    assert.ok(ours(a!, 'gone') > 0, 'nothing is removed inside the request');
    const done = await removalRun((started.jsonBody as { runId: string }).runId);
    assert.equal(done.run.contacts.deleted, plan.run.contacts.deleted);
    assert.equal(ours(a!, 'gone') + ours(b!, 'gone'), 0);
    assert.equal(hasFolder(a!, 'gone'), false, 'the empty folder we created is gone');
    assert.equal(hasFolder(b!, 'gone'), true);
    assert.ok(mailboxB.contact(own.id), "the user's own contact stays");
    assert.deepEqual(await f.app.mailboxStore.listMailboxes('gone'), [], 'the state is gone too');
  });

  it('a removal message is as hard to forge as a run message: only a recorded, running removal of that policy removes, and only from its targets', async () => {
    const [, , c] = users;
    setPolicies([...policies, policy('forge', [c!])]);
    const syncRun = await runNow('forge');
    const before = ours(c!, 'forge');
    assert.ok(before > 0);
    const dry = await startRemoval(f.app, { policyId: 'forge', mailboxes: [], dryRun: true }, 'http');
    assert.ok(dry.started);
    await f.runner.drain();
    for (const runId of [syncRun, dry.runId, randomUUID()]) {
      await f.app.send(queueNames.policyRuns, { kind: 'policy-run', policyId: 'forge', runId });
      await f.app.send(queueNames.mailboxSyncs, {
        kind: 'mailbox-sync',
        policyId: 'forge',
        runId,
        mailboxId: c!.id,
      });
    }
    await f.runner.drain();
    assert.equal(ours(c!, 'forge'), before, 'a forged or replayed message removed contacts');
    assert.equal((await f.app.runStore.getRun(syncRun))!.options.removal, undefined);
  });

  it('a mailbox that leaves the targets is cleaned (onTargetRemoval: remove), or kept (keep); the run says so', async () => {
    const [a, b, c, d] = users;
    setPolicies([
      policy('leaving', [a!, b!, c!]),
      policy('keeping', [a!, d!], { options: { onTargetRemoval: 'keep' } }),
    ]);
    await runNow('leaving');
    await runNow('keeping');
    assert.ok(ours(c!, 'leaving') > 0 && ours(d!, 'keeping') > 0);
    setPolicies([
      policy('leaving', [a!, b!]),
      policy('keeping', [a!], { options: { onTargetRemoval: 'keep' } }),
    ]);
    const runId = await runNow('leaving');
    await runNow('keeping');
    assert.equal(ours(c!, 'leaving'), 0, 'c left the targets: its contacts are removed');
    assert.equal(hasFolder(c!, 'leaving'), false);
    assert.ok(ours(a!, 'leaving') > 0 && ours(b!, 'leaving') > 0, 'the targets keep theirs');
    assert.ok(ours(d!, 'keeping') > 0, 'keep: d keeps its contacts');
    const run = (await f.app.runStore.getRun(runId))!;
    assert.match(
      run.notes?.join('\n') ?? '',
      /1 mailbox left the policy's targets: their contacts are removed/,
    );
    const outcome = (await f.app.runStore.listOutcomes(runId)).find((o) => o.mailboxId === c!.id);
    assert.equal(outcome?.status, 'succeeded');
    assert.ok((outcome?.result?.deleted ?? 0) > 0 && outcome?.result?.removal?.folderRemoved);
  });

  it('mailboxes that left the targets are cleaned one mailbox-syncs message each (retried, then poisoned, like any mailbox), never inside the policy run', async () => {
    const [a, b, c, d] = users;
    const all = { options: { deletionThreshold: { percent: 100, minimum: 10 } } };
    const others = policies.filter((p) => p.id !== 'departing');
    setPolicies([...others, policy('departing', [a!, b!, c!, d!], all)]);
    await runNow('departing');
    assert.ok(ours(b!, 'departing') > 0 && ours(c!, 'departing') > 0 && ours(d!, 'departing') > 0);
    setPolicies([...others, policy('departing', [a!], all)]);
    f.sim.faults.add({ kind: 'status', status: 500, match: { operation: 'contacts.list', mailbox: d!.id } });
    let runId;
    try {
      runId = await f.startedRun('departing'); // the policy-run handler alone; mailbox messages stay queued
      assert.ok(
        ours(b!, 'departing') > 0 && ours(c!, 'departing') > 0,
        'a departed mailbox was cleaned inside the policy run',
      );
      const departed = (await f.app.runStore.listTargets(runId)).filter((t) => t.departed);
      assert.deepEqual(departed.map((t) => t.mailboxId).sort(), [b!.id, c!.id, d!.id].sort());
      await f.runner.drain();
    } finally {
      f.sim.faults.clear();
    }
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.status, 'completed');
    // Counted apart: the run's one target synced; three mailboxes left, two emptied and one failed.
    assert.deepEqual(run.mailboxes, { succeeded: 1, failed: 0, skipped: 0 });
    assert.equal(run.contacts.deleted, 0, 'their removals are not deletions of the sync');
    const { named, ...counts } = run.departed!;
    assert.deepEqual(counts, {
      mailboxes: 3,
      succeeded: 2,
      failed: 1,
      skipped: 0,
      removed: run.departed!.removed,
    });
    assert.ok(run.departed!.removed > 0);
    assert.deepEqual([...named].sort(), [b!, c!, d!].map((u) => u.userPrincipalName).sort(), 'named by UPN');
    const outcomes = await f.app.runStore.listOutcomes(runId);
    assert.equal(
      run.departed!.removed,
      outcomes.filter((o) => o.departed).reduce((n, o) => n + (o.result?.deleted ?? 0), 0),
    );
    for (const u of [b!, c!]) {
      const o = outcomes.find((x) => x.mailboxId === u.id)!;
      assert.equal(o.userPrincipalName, u.userPrincipalName, 'named by UPN once cleaned');
      assert.equal(o.status, 'succeeded');
      assert.ok(o.result!.deleted > 0 && o.result!.removal);
      assert.equal(ours(u, 'departing'), 0);
    }
    // `mailbox UPN` finds the run that emptied it (its target was named by id at the fan-out).
    const history = await mailboxHistory(
      f.app.tables.runs,
      b!.userPrincipalName,
      (r, m) => f.app.runStore.getOutcome(r, m),
      (r) => f.app.runStore.getRun(r),
    );
    const found = history.find((h) => h.run.policyId === 'departing');
    assert.equal(found?.run.runId, runId, '`mailbox UPN` shows an older run');
    assert.ok(found?.outcome?.result?.removal);
    const failed = outcomes.find((o) => o.mailboxId === d!.id)!;
    assert.equal(failed.status, 'failed');
    assert.equal(failed.userPrincipalName, d!.userPrincipalName);
    assert.match(failed.lastError ?? '', /gave up after repeated failures: .*InternalServerError/);
    assert.ok(ours(d!, 'departing') > 0, 'kept while failing');
    await runNow('departing');
    assert.equal(ours(d!, 'departing'), 0, 'the next run tries the failed one again');
  });

  it("a departed mailbox's worker follows the policy as it is now: keep, a dry run, or back in the targets removes nothing", async () => {
    const [a, b, c, d] = users;
    const others = policies.filter((p) => !['now-keep', 'now-dry', 'now-back'].includes(p.id));
    const all = { options: { deletionThreshold: { percent: 100, minimum: 10 } } };
    const cases: [string, SimUser, (p: PolicyInput) => PolicyInput, string][] = [
      ['now-keep', b!, (p) => ({ ...p, options: { ...p.options, onTargetRemoval: 'keep' } }), 'skipped'],
      ['now-dry', c!, (p) => ({ ...p, options: { ...p.options, dryRun: true } }), 'planned'],
      ['now-back', d!, (p) => policy(p.id, [a!, d!], all), 'skipped'],
    ];
    for (const [id, leaving, edit, status] of cases) {
      setPolicies([...others, policy(id, [a!, leaving], all)]);
      await runNow(id);
      const before = ours(leaving, id);
      assert.ok(before > 0);
      const left = policy(id, [a!], all);
      setPolicies([...others, left]);
      const runId = await f.startedRun(id); // fanned out: the departed mailbox's message is queued
      setPolicies([...others, edit(left)]); // then the operator reacts to the run's note
      await f.runner.drain();
      assert.equal(ours(leaving, id), before, `${id}: the contacts were removed`);
      const outcome = await f.app.runStore.getOutcome(runId, leaving.id);
      assert.equal(outcome?.status, status, `${id}: ${JSON.stringify(outcome)}`);
    }
  });

  it('a policy deleted from the file is noticed, reported in every run, and cleaned after the grace period', async () => {
    const [a, b] = users;
    setPolicies([...policies, policy('deleted', [a!]), policy('other', [b!])]);
    await runNow('deleted');
    const before = ours(a!, 'deleted');
    assert.ok(before > 0);
    setPolicies(policies.filter((p) => p.id !== 'deleted'));
    await f.runner.tick(); // notices it
    await f.runner.drain();
    assert.equal(ours(a!, 'deleted'), before, 'nothing is removed within the grace period');
    const runId = await runNow('other');
    const notes = (await f.app.runStore.getRun(runId))!.notes?.join('\n') ?? '';
    assert.match(notes, /policy "deleted" was deleted from the policy file .* removed after/);
    f.advanceClock(8 * 86_400_000); // past the default 7 days
    await f.runner.tick();
    await f.runner.drain();
    assert.equal(ours(a!, 'deleted'), 0, 'cleaned after the grace period');
    assert.equal(hasFolder(a!, 'deleted'), false);
    assert.equal(await f.app.policyRegistry.get('deleted'), undefined, 'and forgotten');
  });

  it('a deleted policy whose removal keeps failing for a mailbox backs off (an hour, doubling, at most a day) and says which mailbox fails and why', async () => {
    const e = users[5]!;
    setPolicies([...policies, policy('stuck', [e]), policy('witness', [users[4]!])]);
    await runNow('stuck');
    const before = ours(e, 'stuck');
    assert.ok(before > 0);
    setPolicies(policies.filter((p) => p.id !== 'stuck'));
    await f.runner.tick(); // noticed missing
    f.advanceClock(8 * 24 * hourMs);
    // Listing the mailbox's folder fails every time: the queue retries, then the poison queue records it.
    f.sim.faults.add({ kind: 'status', status: 500, match: { operation: 'contacts.list', mailbox: e.id } });
    const removals = async (): Promise<number> =>
      (await listRuns(f.app.tables.runs, 'stuck', 1000)).filter((r) => r.options.removal).length;
    const tickFor = async (hours: number, everyMs: number): Promise<void> => {
      for (let t = 0; t < (hours * hourMs) / everyMs; t++) {
        await f.runner.tick();
        await f.runner.drain();
        f.advanceClock(everyMs);
      }
    };
    try {
      // A tick every 10 minutes for 6 hours: removals at 0 h, 1 h and 3 h, not one a tick.
      await tickFor(6, 10 * 60_000);
      assert.equal(await removals(), 3);
      assert.ok(ours(e, 'stuck') > 0, 'the fault kept the contacts');
      const error = f.logs.filter((l) => /removing its contacts keeps failing/.test(l)).at(-1) ?? '';
      assert.match(error, /^error: /);
      assert.match(error, new RegExp(`1 of 1 mailbox failed in run .*mailbox ${e.userPrincipalName}: .+`));
      // Then 7 h, 15 h, 31 h, and 55 h (a day after 31 h, not 32 hours): at most one a day.
      await tickFor(50, hourMs);
      assert.equal(await removals(), 7);
      const runId = await runNow('witness');
      const notes = (await f.app.runStore.getRun(runId))!.notes?.join('\n') ?? '';
      assert.match(
        notes,
        new RegExp(
          `policy "stuck" was deleted .*; removing its contacts: 7 attempts, the last one failed \\(.*mailbox ${e.userPrincipalName}: .+\\); the next attempt is after`,
        ),
      );
    } finally {
      f.sim.faults.clear();
    }
    f.advanceClock(25 * hourMs);
    await f.runner.tick();
    await f.runner.drain();
    assert.equal(ours(e, 'stuck'), 0, 'cleaned once the mailbox answers again');
    assert.equal(await f.app.policyRegistry.get('stuck'), undefined, 'and forgotten');
  });

  it('a removal run whose lease lapsed while it was still running is failed, said so in the notes, and tried again', async () => {
    const g = users[2]!;
    setPolicies([...policies, policy('lapsed', [g]), policy('onlooker', [users[4]!])]);
    await runNow('lapsed');
    const before = ours(g, 'lapsed');
    assert.ok(before > 0, `filled: ${JSON.stringify((await listRuns(f.app.tables.runs, 'lapsed', 1))[0])}`);
    setPolicies(policies.filter((p) => p.id !== 'lapsed'));
    await f.runner.tick(); // noticed missing
    await f.runner.drain();
    f.advanceClock(8 * 24 * hourMs);
    await f.runner.tick(); // the removal is queued ...
    // ... and its worker dies: its message is lost, the run stays "starting" under its lease.
    const first = (await f.app.policyRegistry.get('lapsed'))!.removal!;
    const queued = await f.app.queues.policyRuns.receiveMessages({
      numberOfMessages: 32,
      visibilityTimeout: 1,
    });
    const lost = queued.receivedMessageItems.filter(
      (m) =>
        (JSON.parse(Buffer.from(m.messageText, 'base64').toString()) as { runId: string }).runId ===
        first.runId,
    );
    assert.equal(lost.length, 1);
    for (const m of lost) await f.app.queues.policyRuns.deleteMessage(m.messageId, m.popReceipt);
    await new Promise((r) => setTimeout(r, 1_100)); // the others are visible again
    await f.runner.drain();
    assert.equal((await f.app.runStore.getRun(first.runId))!.status, 'starting');
    const notesOf = async (): Promise<string> =>
      (await f.app.runStore.getRun(await runNow('onlooker')))!.notes?.join('\n') ?? '';
    assert.match(
      await notesOf(),
      new RegExp(
        `policy "lapsed" was deleted .*; removing its contacts: 1 attempt, the last one running \\(run ${first.runId}`,
      ),
    );
    f.advanceClock(7 * hourMs); // past POLICY_LEASE_MINUTES (6 h): the lease lapsed
    await f.runner.tick(); // the sweep fails the stuck run, and (its back-off over) queues the next
    const stuck = (await f.app.runStore.getRun(first.runId))!;
    assert.equal(stuck.status, 'failed', 'a run whose lease lapsed is not left "running" for ever');
    assert.match(
      stuck.error ?? '',
      /stopped while starting: its policy lease lapsed at .* after 0 of 0 mailboxes/,
    );
    const second = (await f.app.policyRegistry.get('lapsed'))!.removal!;
    assert.equal(second.attempts, 2);
    assert.equal(second.failure?.runId, first.runId);
    assert.match(
      (await deletedPolicyNotes(f.app)).join('\n'),
      new RegExp(
        `policy "lapsed" was deleted .*; removing its contacts: 2 attempts, the last one running \\(run ${second.runId}.*\\); the one before failed \\(run ${first.runId} failed: it stopped while starting: its policy lease lapsed`,
      ),
    );
    assert.equal(ours(g, 'lapsed'), before, 'nothing removed yet');
    await f.runner.drain();
    assert.equal(ours(g, 'lapsed'), 0, 'the next attempt cleaned it');
    assert.equal(await f.app.policyRegistry.get('lapsed'), undefined, 'and forgot the policy');
  });

  it('a removal that finished (and forgot the policy) before the sweep noted it started does not stop the sweep', async () => {
    await f.app.policyRegistry.forget('raced');
    await f.app.policyRegistry.removalStarted('raced', randomUUID(), f.app.now(), 1);
    await f.app.policyRegistry.removalFailed('raced', randomUUID(), 'x');
    assert.equal(await f.app.policyRegistry.get('raced'), undefined, 'no row is made up');
  });

  it('a deleted policy put back (even disabled, so it never runs) starts a new grace period when deleted again', async () => {
    const a = users[3]!;
    setPolicies([...policies, policy('back', [a])]);
    await runNow('back');
    const before = ours(a, 'back');
    assert.ok(before > 0);
    const without = policies.filter((p) => p.id !== 'back');
    setPolicies(without);
    await f.runner.tick(); // noticed missing
    f.advanceClock(6 * 86_400_000);
    setPolicies([...without, policy('back', [a], { enabled: false })]);
    await f.runner.tick();
    await f.runner.drain();
    assert.equal((await f.app.policyRegistry.get('back'))?.missingSince, null, 'back in the file');
    f.advanceClock(2 * 86_400_000);
    setPolicies(without);
    await f.runner.tick(); // deleted again: a new grace period, not the old one's end
    await f.runner.drain();
    assert.equal(ours(a, 'back'), before, 'cleaned at once on the first grace period');
    const missing = (await f.app.policyRegistry.get('back'))?.missingSince;
    assert.ok(f.app.now().getTime() - new Date(missing!).getTime() < 60_000, 'marked missing now');
  });

  it('a deleted policy that cannot be cleaned (its connection is gone) holds none of the others up', async () => {
    const d = users[4]!;
    await f.app.policyRegistry.seen({ policyId: 'aaa-orphan', connectionId: 'gone', folderName: 'X' });
    await f.app.policyRegistry.markMissing('aaa-orphan', new Date(f.app.now().getTime() - 30 * 86_400_000));
    setPolicies([...policies, policy('zz-deleted', [d])]);
    await runNow('zz-deleted');
    assert.ok(ours(d, 'zz-deleted') > 0);
    setPolicies(policies.filter((p) => p.id !== 'zz-deleted'));
    await f.runner.tick();
    f.advanceClock(8 * 86_400_000);
    await f.runner.tick();
    await f.runner.drain();
    assert.equal(ours(d, 'zz-deleted'), 0, 'cleaned, though the sweep met a policy it cannot clean first');
    assert.ok(await f.app.policyRegistry.get('aaa-orphan'), 'the other is kept (and logged) for later');
  });

  it('a policy run from the CLI with a local policy file is never taken for a deleted one by the deployed app', async () => {
    const c = users[2]!;
    // The workstation's file has the policy; the deployment's file never had it.
    setPolicies([...policies, policy('local-only', [c])]);
    await runNow('local-only', 'cli');
    const before = ours(c, 'local-only');
    assert.ok(before > 0);
    setPolicies(policies.filter((p) => p.id !== 'local-only'));
    await f.runner.tick();
    f.advanceClock(8 * 86_400_000);
    await f.runner.tick();
    await f.runner.drain();
    assert.equal(ours(c, 'local-only'), before, "the deployed timer removed a CLI-only policy's contacts");
  });
});

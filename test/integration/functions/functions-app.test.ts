import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRequest, InvocationContext } from '@azure/functions';
import {
  getRunStatus,
  healthCheck,
  listPolicies,
  previewPolicy,
  runPolicyNow,
} from '../../../src/functions/http-api';
import { mailboxSyncHandler } from '../../../src/functions/mailbox-syncs';
import type { PolicyInput } from '../../../src/sync/config/schema';
import { folderContacts, tagCounts } from '../../support/engine';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';
import { decodeParts } from '../../support/mime';

const ctx = (): InvocationContext => new InvocationContext({ invocationId: 'test', functionName: 'http' });
const get = (path: string, params: Record<string, string> = {}): HttpRequest =>
  new HttpRequest({ url: `http://127.0.0.1:7071/api/${path}`, method: 'GET', params });
const postTo = (path: string, params: Record<string, string>, body?: unknown, raw?: string): HttpRequest =>
  new HttpRequest({
    url: `http://127.0.0.1:7071/api/${path}`,
    method: 'POST',
    params,
    ...(raw !== undefined
      ? { body: { string: raw } }
      : body !== undefined
        ? { body: { string: JSON.stringify(body) } }
        : {}),
  });

describe('the Functions app against Azurite, the simulator and the Key Vault fake', () => {
  let f: FunctionsFixture;
  let admin: string;
  const basePolicy = (overrides: Partial<PolicyInput> = {}): PolicyInput => ({
    id: 'gal',
    name: 'Company <b>directory</b> & "friends"',
    connection: 'contoso',
    source: { type: 'directory' },
    targets: { type: 'allMailboxes' },
    folder: { name: 'Company Directory' },
    schedule: '0 0 */4 * * *',
    notify: { recipients: ['it-admins@contoso.example'], sender: admin, when: 'always' },
    ...overrides,
  });
  before(async () => {
    f = await functionsFixture({
      sim: { seed: { generate: { users: 40, mailboxes: 6 } } },
      policies: (sim) => {
        admin = [...sim.tenant.users.values()].find(
          (u) => u.mailbox === 'user' && u.accountEnabled,
        )!.userPrincipalName;
        return [basePolicy()];
      },
    });
  });
  after(() => f.close());

  it('a timer tick fans out, the queues drain to a finished run, and the report mail is sent', async () => {
    await f.runner.tick();
    await f.runner.drain();
    const state = await f.app.runStore.getPolicyState('gal');
    assert.ok(state.lastRunId);
    assert.equal(state.leaseRunId, null, 'lease released');
    const run = (await f.app.runStore.getRun(state.lastRunId))!;
    assert.equal(run.status, 'completed');
    assert.equal(run.done, run.expected);
    assert.ok(run.expected > 5);
    assert.equal(
      run.mailboxes.failed,
      0,
      f.logs
        .filter((l) => l.startsWith('error'))
        .slice(0, 5)
        .join('\n'),
    );
    assert.ok(run.contacts.created > 0);
    for (const o of await f.app.runStore.listOutcomes(run.runId)) {
      if (o.status !== 'succeeded') continue;
      assert.equal(
        tagCounts(folderContacts(f.sim, o.userPrincipalName, 'Company Directory')).size,
        o.result!.created,
      );
    }
    const sent = f.sim.tenant.mailbox(admin)!.sentMail;
    assert.equal(sent.length, 1);
    const mime = String(sent[0]!.message.mime);
    assert.match(mime, /^To: it-admins@contoso\.example/m);
    assert.match(mime, /Content-Type: text\/plain/);
    assert.match(mime, /Content-Type: text\/html/);
    const html = decodeParts(mime).html;
    assert.ok(
      html.includes('Company &lt;b&gt;directory&lt;/b&gt; &amp; &quot;friends&quot;'),
      'the policy name is escaped in HTML',
    );
    assert.ok(!html.includes('<b>directory</b>'));
    assert.ok(
      decodeParts(mime).text.includes('Company <b>directory</b> & "friends"'),
      'the text part carries the raw value',
    );
    const second = await f.app.runStore.getPolicyState('gal');
    await f.runner.tick();
    assert.equal(
      (await f.app.runStore.getPolicyState('gal')).lastRunId,
      second.lastRunId,
      'not due again within its schedule',
    );
  });

  it("a later run reads every mailbox's drift in one $batch at its start, and still restores a user's edit", async () => {
    const synced = (
      await f.app.runStore.listOutcomes((await f.app.runStore.getPolicyState('gal')).lastRunId!)
    )
      .filter((o) => o.status === 'succeeded')
      .map((o) => o.userPrincipalName);
    assert.ok(synced.length >= 2 && synced.length <= 20);
    const edited = folderContacts(f.sim, synced[0]!, 'Company Directory')[0]!;
    const original = edited.data.jobTitle;
    f.sim.tenant.mailbox(synced[0]!)!.updateContact(edited, { jobTitle: 'Typed on a phone' }, [], new Date());
    const since = f.sim.log.lastSeq;
    const res = await runPolicyNow(postTo('policies/gal/runs', { policyId: 'gal' }, {}), ctx());
    assert.equal(res.status, 202);
    await f.runner.drain();
    const traffic = f.sim.log.since(since);
    const deltas = traffic.filter((e) => e.operation === 'contacts.delta');
    assert.equal(deltas.length, synced.length, 'one delta round per synced mailbox');
    assert.ok(
      deltas.every((e) => e.inBatch),
      'all read inside a $batch, none one by one',
    );
    // Each folder's name was known when the first run created it: not read again within
    // FOLDER_NAME_CHECK_HOURS (test/integration/functions/folder-name-check.test.ts).
    const names = traffic.filter((e) => e.operation === 'contactFolders.get');
    assert.equal(names.length, 0, "no folder's name read within the check window");
    assert.equal(
      new Set(deltas.map((d) => traffic.find((e) => e.operation === 'batch' && e.seq > d.seq)?.seq)).size,
      Math.ceil(synced.length / 20),
      'in one $batch per 20 mailboxes (a delta round each)',
    );
    const after = folderContacts(f.sim, synced[0]!, 'Company Directory').find((c) => c.id === edited.id)!;
    assert.equal(after.data.jobTitle, original, 'the edit seen in the pre-read is restored');
  });

  it('refuses an overlapping run, over HTTP and from the timer', async () => {
    const first = await runPolicyNow(
      postTo('policies/gal/runs', { policyId: 'gal' }, { dryRun: true }),
      ctx(),
    );
    assert.equal(first.status, 202);
    const body = first.jsonBody as { runId: string; statusUrl: string };
    assert.match(body.statusUrl, new RegExp(`/api/runs/${body.runId}$`));
    const second = await runPolicyNow(postTo('policies/gal/runs', { policyId: 'gal' }, {}), ctx());
    assert.equal(second.status, 409);
    assert.equal((second.headers as Record<string, string>)['content-type'], 'application/problem+json');
    // A scheduled occurrence while it runs is refused and logged.
    await f.app.runStore.markScheduled('gal', new Date(Date.now() - 5 * 3600_000));
    const logs: string[] = [];
    const { schedulerTick } = await import('../../../src/functions/scheduler');
    await schedulerTick(
      { isPastDue: false } as never,
      new InvocationContext({
        invocationId: 't',
        functionName: 'scheduler',
        logHandler: (_l, ...a) => logs.push(a.join(' ')),
      }),
    );
    assert.ok(
      logs.some((l) => l.includes('scheduled run refused') && l.includes(body.runId)),
      logs.join('\n'),
    );
    await f.runner.drain();
    const status = await getRunStatus(get(`runs/${body.runId}`, { runId: body.runId }), ctx());
    assert.equal(status.status, 200);
    const run = status.jsonBody as {
      status: string;
      progress: number;
      options: { dryRun: boolean };
      outcomes: { status: string }[];
    };
    assert.equal(run.status, 'completed');
    assert.equal(run.progress, 1);
    assert.equal(run.options.dryRun, true);
    assert.ok(run.outcomes.every((o) => o.status === 'planned' || o.status === 'skipped'));
  });

  it('names the field in HTTP input errors', async () => {
    const badOption = await runPolicyNow(
      postTo('policies/gal/runs', { policyId: 'gal' }, { dryRun: 'yes' }),
      ctx(),
    );
    assert.equal(badOption.status, 400);
    assert.equal(badOption.jsonBody.errors[0].field, 'dryRun');
    const badMailbox = await runPolicyNow(
      postTo('policies/gal/runs', { policyId: 'gal' }, { mailboxes: ['not-an-upn'] }),
      ctx(),
    );
    assert.equal(badMailbox.jsonBody.errors[0].field, 'mailboxes.0');
    const unknownField = await runPolicyNow(
      postTo('policies/gal/runs', { policyId: 'gal' }, { dryrun: true }),
      ctx(),
    );
    assert.equal(unknownField.status, 400);
    assert.match(unknownField.jsonBody.detail, /dryrun/);
    const notJson = await runPolicyNow(
      postTo('policies/gal/runs', { policyId: 'gal' }, undefined, '{oops'),
      ctx(),
    );
    assert.equal(notJson.status, 400);
    const unknownPolicy = await runPolicyNow(postTo('policies/nope/runs', { policyId: 'nope' }, {}), ctx());
    assert.equal(unknownPolicy.status, 404);
    assert.equal(unknownPolicy.jsonBody.errors[0].field, 'policyId');
    const badRun = await getRunStatus(get('runs/x', { runId: 'x' }), ctx());
    assert.equal(badRun.status, 400);
    assert.equal(badRun.jsonBody.errors[0].field, 'runId');
  });

  it('lists policies with their last run, and previews counts with samples', async () => {
    const list = await listPolicies(get('policies'), ctx());
    const policies = list.jsonBody.policies;
    assert.equal(policies[0].id, 'gal');
    assert.equal(policies[0].lastRun.status, 'completed');
    const pv = await previewPolicy(get('policies/gal/preview', { policyId: 'gal' }), ctx());
    const body = pv.jsonBody;
    assert.ok(body.source.objects > 0);
    assert.ok(body.source.samples.length > 0 && body.source.samples.length <= 10);
    assert.ok(body.targets.mailboxes > 0);
    assert.equal(body.source.excluded.guest, 1);
  });

  it('records a mailbox that keeps failing as failed on its run, through the poison queue', async () => {
    const victim = [...f.sim.tenant.users.values()].find(
      (u) => u.mailbox === 'user' && u.accountEnabled && u.userPrincipalName !== admin,
    )!;
    f.sim.faults.add({
      kind: 'status',
      status: 500,
      match: { operation: 'contactFolders.list', mailbox: victim.userPrincipalName },
    });
    f.sim.faults.add({
      kind: 'status',
      status: 500,
      match: { operation: 'contacts.delta', mailbox: victim.userPrincipalName },
    });
    try {
      const started = await runPolicyNow(postTo('policies/gal/runs', { policyId: 'gal' }, {}), ctx());
      const runId = started.jsonBody.runId as string;
      await f.runner.drain();
      const run = (await f.app.runStore.getRun(runId))!;
      assert.equal(run.status, 'completed');
      assert.equal(run.mailboxes.failed, 1);
      const outcome = (await f.app.runStore.listOutcomes(runId)).find((o) => o.mailboxId === victim.id)!;
      assert.equal(outcome.status, 'failed');
      assert.match(outcome.lastError ?? '', /gave up after repeated failures: .*500|InternalServerError/);
      assert.ok(f.runner.stats.poisoned >= 1);
      const report = f.sim.tenant.mailbox(admin)!.sentMail.at(-1)!;
      assert.ok(decodeParts(String(report.message.mime)).text.includes(victim.userPrincipalName));
    } finally {
      f.sim.faults.clear();
    }
  });

  it('drops a malformed queue message with a logged reason instead of retrying it', async () => {
    const lines: string[] = [];
    await mailboxSyncHandler(
      { kind: 'mailbox-sync', policyId: 'gal' },
      new InvocationContext({
        invocationId: 'x',
        functionName: 'mailboxSyncs',
        logHandler: (_l, ...a) => lines.push(a.join(' ')),
      }),
    );
    assert.ok(
      lines.some((l) => /dropped: mailbox-syncs: runId/.test(l)),
      lines.join('\n'),
    );
  });

  it('names a missing permission in health, and is healthy again when granted', async () => {
    const healthy = await healthCheck(get('health'), ctx());
    assert.equal(healthy.status, 200, JSON.stringify(healthy.jsonBody));
    // Mail.Send absent from the token may be granted by RBAC for Applications (a warning, issue 17
    // item 5), so the permission that must be in the token is User.Read.All.
    f.sim.setPermissions(['GroupMember.Read.All', 'OrgContact.Read.All', 'Contacts.ReadWrite', 'Mail.Send']);
    f.advanceClock(61_000); // a call within a minute is answered from the last one
    try {
      const sick = await healthCheck(get('health'), ctx());
      assert.equal(sick.status, 503);
      const checks = sick.jsonBody.connections[0].checks as {
        name: string;
        ok: boolean;
        fix?: string;
      }[];
      const users = checks.find((c) => c.name === 'permission User.Read.All')!;
      assert.equal(users.ok, false);
      assert.match(users.fix!, /admin consent/);
      assert.ok(checks.find((c) => c.name === 'permission Contacts.ReadWrite')!.ok);
    } finally {
      f.sim.setPermissions([
        'User.Read.All',
        'GroupMember.Read.All',
        'OrgContact.Read.All',
        'Contacts.ReadWrite',
        'Mail.Send',
      ]);
    }
  });

  it('picks up a rotated certificate without a restart', async () => {
    const conn = (await f.app.policies()).connections.get('contoso')!;
    const before = (await f.app.graph(conn)).certificateVersion;
    await f.sim.rotateCertificate({ revokePrevious: true });
    const clients = await f.app.graph(conn);
    assert.notEqual(clients.certificateVersion, before);
    f.sim.tenant.addUser({
      userPrincipalName: 'after.rotation@contoso.example',
      displayName: 'After Rotation',
      mail: 'after.rotation@contoso.example',
      mailbox: 'none',
    });
    const started = await runPolicyNow(postTo('policies/gal/runs', { policyId: 'gal' }, {}), ctx());
    await f.runner.drain();
    const run = (await f.app.runStore.getRun(started.jsonBody.runId))!;
    assert.equal(run.mailboxes.failed, 0);
    assert.ok(run.contacts.created > 0);
  });
});

describe('the Functions app: time budget and credential recovery', () => {
  let f: FunctionsFixture;
  before(async () => {
    f = await functionsFixture({
      sim: {
        seed: { generate: { users: 160, mailboxes: 160, awkward: false } },
        latency: { meanMs: 40, jitterMs: 0 },
      },
      env: { MAILBOX_TIME_BUDGET_SECONDS: '1' },
      policies: (sim) => [
        {
          id: 'big',
          name: 'Big',
          connection: 'contoso',
          source: { type: 'directory' },
          targets: {
            type: 'users',
            users: [...sim.tenant.users.values()].slice(0, 2).map((u) => u.userPrincipalName),
          },
          folder: { name: 'Directory' },
        },
      ],
    });
  });
  after(() => f.close());

  it('continues a mailbox in a new message when its time budget runs out, and still converges', async () => {
    const started = await runPolicyNow(postTo('policies/big/runs', { policyId: 'big' }, {}), ctx());
    const runId = started.jsonBody.runId as string;
    await f.runner.drain();
    assert.ok(
      f.logs.some((l) => l.includes('continuation 1 queued')),
      'a continuation was queued',
    );
    const run = (await f.app.runStore.getRun(runId))!;
    assert.equal(run.status, 'completed');
    assert.equal(run.mailboxes.failed, 0);
    assert.equal(run.expected, 2);
    for (const o of await f.app.runStore.listOutcomes(runId)) {
      const counts = tagCounts(folderContacts(f.sim, o.userPrincipalName, 'Directory'));
      assert.equal(counts.size, 159, 'everyone but the mailbox owner');
      assert.equal(o.result!.created, 159, 'the outcome counts the work of every continuation');
      assert.ok([...counts.values()].every((n) => n === 1));
    }
  });

  it('rebuilds the credential from Key Vault when the token endpoint rejects the key', async () => {
    const conn = (await f.app.policies()).connections.get('contoso')!;
    f.app.settings.CERTIFICATE_CHECK_MINUTES = 600; // no periodic check: only the rejection can trigger it
    const cached = await f.app.graph(conn);
    await f.sim.rotateCertificate({ revokePrevious: true });
    // Short-lived tokens: the next token request meets the revoked key (AADSTS700027), and Graph
    // refuses tokens issued before now.
    f.sim.identity.tokenLifetimeSeconds = 60;
    f.sim.identity.revokedBefore.set(f.sim.clientId, Date.now());
    await new Promise((r) => setTimeout(r, 1100)); // token iat has whole seconds
    const started = await runPolicyNow(postTo('policies/big/runs', { policyId: 'big' }, {}), ctx());
    await f.runner.drain();
    const run = (await f.app.runStore.getRun(started.jsonBody.runId))!;
    assert.equal(run.status, 'completed', f.logs.slice(-6).join('\n'));
    assert.equal(run.mailboxes.failed, 0);
    assert.notEqual((await f.app.graph(conn)).certificateVersion, cached.certificateVersion);
  });
});

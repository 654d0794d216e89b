// Run history that scales: the history index makes each read one partition with $top (its cost does
// not grow with other policies' runs), runs recorded before the index still show and are back-filled,
// and RUN_HISTORY_DAYS deletes exactly the expired runs with all their rows, resumably, never a run
// still running. Real run store, readers, scheduler handler and CLI history against Azurite.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvocationContext, type Timer } from '@azure/functions';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import type { TableClient } from '@azure/data-tables';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { App, setApp } from '../../../src/app/composition';
import { parseSettings } from '../../../src/app/settings';
import { listRuns, mailboxHistory } from '../../../src/app/history';
import { keepRunHistory } from '../../../src/app/run-retention';
import { finishRun, recordAndMaybeFinish } from '../../../src/app/use-cases';
import { mailboxIndexRows, upsertRows } from '../../../src/adapters/tables/run-index';
import { schedulerTick } from '../../../src/functions/scheduler';
import { RunHistory } from '../../../src/dashboard/history';
import { emptySummary, type MailboxOutcomeStatus, type RunSummary } from '../../../src/sync/runs';
import type { Logger } from '../../../src/app/logging';

const day = 86_400_000;
const logs: string[] = [];
const log: Logger = {
  info: (m) => logs.push(`info ${m}`),
  warn: (m) => logs.push(`warn ${m}`),
  error: (m) => logs.push(`error ${m}`),
};

function historyApp(azurite: AzuriteHandle, now: () => Date, env: Record<string, string> = {}): App {
  const dir = mkdtempSync(join(tmpdir(), 'history-'));
  const policyFile = join(dir, 'policies.json');
  // A connection the tests never use (no Graph call is made) and no policy: the scheduler only keeps.
  writeFileSync(
    policyFile,
    JSON.stringify({
      connections: [
        {
          id: 'unused',
          tenantId: '11111111-1111-4111-8111-111111111111',
          clientId: '22222222-2222-4222-8222-222222222222',
          certificate: { pemFile: join(dir, 'none.pem') },
        },
      ],
      policies: [],
    }),
  );
  return new App({
    settings: parseSettings({
      AzureWebJobsStorage: azurite.connectionString,
      POLICY_FILE: policyFile,
      ...env,
    }),
    credential: { getToken: () => Promise.resolve(null) },
    now,
  });
}

interface Target {
  mailboxId: string;
  upn: string;
  status?: MailboxOutcomeStatus;
  error?: string;
}

/** Records a run as the pipeline does, through the real run store. */
async function recordRun(
  app: App,
  policyId: string,
  startedAt: Date,
  targets: Target[],
  options: { skipped?: RunSummary['skippedTargets']; finish?: boolean; extraRows?: boolean } = {},
): Promise<string> {
  const runId = randomUUID();
  const store = app.runStore;
  const run = { dryRun: false, fullResync: false, mailboxes: targets.length > 1 ? [targets[0]!.upn] : [] };
  await store.createRun(emptySummary(runId, policyId, 'schedule', run, startedAt), run.mailboxes);
  await store.startRun(
    runId,
    targets.map((t) => ({ mailboxId: t.mailboxId, userPrincipalName: t.upn })),
    options.skipped ?? [],
  );
  if (options.extraRows) {
    await store.saveMailboxProgress(runId, targets[0]!.mailboxId, {
      continuation: 1,
      carried: { created: 1, updated: 0, deleted: 0, restored: 0, failed: 0 },
    });
    await store.savePreReadDrifts(
      runId,
      new Map([[targets[0]!.mailboxId, { fromDeltaLink: 'a', deltaLink: 'b', items: [] }]]),
    );
  }
  for (const t of targets)
    if (t.status)
      await store.recordOutcome(runId, {
        mailboxId: t.mailboxId,
        userPrincipalName: t.upn,
        status: t.status,
        result: null,
        lastError: t.error ?? null,
        attempts: 1,
      });
  if (options.finish ?? true)
    await store.completeRun(runId, new Date(startedAt.getTime() + 60_000).toISOString());
  return runId;
}

/** Every (partition, row) of the runs table. */
async function keys(runs: TableClient): Promise<string[]> {
  const out: string[] = [];
  for await (const e of runs.listEntities({ queryOptions: { select: ['PartitionKey', 'RowKey'] } }))
    // The daily look for runs without pointers keeps its place in a row of its own.
    if (`${e.partitionKey} | ${e.rowKey}` !== '~index | stray-scan')
      out.push(`${e.partitionKey} | ${e.rowKey}`);
  return out.sort();
}

interface Request {
  method: string;
  url: string;
  entities: number;
}

/** Records each request to the runs table and how many entities its answer held. */
function recorder(runs: TableClient): { requests: Request[]; stop(): void } {
  const requests: Request[] = [];
  const policy: PipelinePolicy = {
    name: 'history-recorder',
    async sendRequest(req, next) {
      const res = await next(req);
      let entities = 0;
      if (req.method === 'GET' && res.status === 200) {
        const body = JSON.parse(res.bodyAsText ?? '{}') as { value?: unknown[] };
        entities = Array.isArray(body.value) ? body.value.length : 1;
      }
      requests.push({ method: req.method, url: decodeURIComponent(req.url), entities });
      return res;
    },
  };
  runs.pipeline.addPolicy(policy);
  return { requests, stop: () => runs.pipeline.removePolicy({ name: policy.name }) };
}

/** Fails every request to the runs table once `after` writes went through: the worker was killed. */
function killAfterWrites(runs: TableClient, after: number): () => void {
  let writes = 0;
  const policy: PipelinePolicy = {
    name: 'kill-after-writes',
    sendRequest(req, next) {
      if (req.method !== 'GET' && ++writes > after) throw new Error(`killed after ${after} writes`);
      return next(req);
    },
  };
  runs.pipeline.addPolicy(policy);
  return () => runs.pipeline.removePolicy({ name: policy.name });
}

const anna = { mailboxId: 'aaaaaaaa-0000-4000-8000-000000000001', upn: 'Anna@contoso.example' };
const bob = { mailboxId: 'bbbbbbbb-0000-4000-8000-000000000002', upn: 'bob@contoso.example' };
const queryFilter = (url: string): string | undefined =>
  new URL(url).searchParams.get('$filter') ?? undefined;

describe('history reads are one partition each: their cost does not grow with other runs', () => {
  let azurite: AzuriteHandle;
  let app: App;
  const base = Date.UTC(2026, 10, 1);

  before(async () => {
    azurite = await startAzurite();
    app = historyApp(azurite, () => new Date(base + 10 * day));
    await app.ensureStorage();
    for (let i = 0; i < 3; i++)
      await recordRun(
        app,
        'alpha',
        new Date(base + i * day),
        [
          {
            ...anna,
            status: i === 2 ? 'failed' : 'succeeded',
            error: i === 2 ? 'ErrorAccessDenied' : undefined,
          },
        ],
        {
          skipped: [{ user: 'zoe@contoso.example', reason: 'noMail' }],
        },
      );
  });
  after(() => azurite.close());

  const reads = (history: RunHistory) => ({
    "dashboard Policies page (a policy's last 30 runs)": () => history.recentRuns('alpha'),
    'dashboard mailbox search by UPN': () => history.mailbox('anna@contoso.example'),
    'dashboard mailbox search by id': () => history.mailbox(anna.mailboxId),
    'dashboard search for a user left out': () => history.mailbox('zoe@contoso.example'),
    'CLI runs --policy alpha --last 5': () => listRuns(app.tables.runs, 'alpha', 5),
    'CLI runs --last 2': () => listRuns(app.tables.runs, undefined, 2),
    'CLI mailbox UPN': () =>
      mailboxHistory(
        app.tables.runs,
        'ANNA@contoso.example',
        (r, m) => app.runStore.getOutcome(r, m),
        (r) => app.runStore.getRun(r),
      ),
  });

  async function measure(): Promise<Record<string, { requests: number; entities: number; result: unknown }>> {
    const out: Record<string, { requests: number; entities: number; result: unknown }> = {};
    for (const [name, read] of Object.entries(reads(new RunHistory(app.tables.runs)))) {
      const rec = recorder(app.tables.runs);
      const result = await read();
      rec.stop();
      for (const r of rec.requests) {
        const filter = queryFilter(r.url);
        // A query names its partition and asks for a page ($top); anything else is a read by key.
        if (filter !== undefined) {
          assert.match(
            filter,
            /^PartitionKey eq '[^']+'( and RowKey (ge|gt) '[^']+'( and RowKey lt '[^']+')?)?$/,
            `${name}: ${filter}`,
          );
          assert.ok(new URL(r.url).searchParams.get('$top'), `${name}: a query without $top: ${r.url}`);
        } else assert.match(r.url, /\(PartitionKey='[^']+',RowKey='[^']+'\)/, `${name}: ${r.url}`);
      }
      out[name] = {
        requests: rec.requests.length,
        entities: rec.requests.reduce((n, r) => n + r.entities, 0),
        result,
      };
    }
    return out;
  }

  it('reads the same entities with 3 runs in the table as with 300 more of another policy and user', async () => {
    const first = await measure();
    const alpha = first["dashboard Policies page (a policy's last 30 runs)"]!.result as {
      startedAt: string;
    }[];
    assert.deepEqual(
      alpha.map((r) => r.startedAt),
      [2, 1, 0].map((i) => new Date(base + i * day).toISOString()),
      'newest first',
    );
    const annaEntries = first['dashboard mailbox search by UPN']!.result as {
      status: string;
      reason: string | null;
    }[];
    assert.deepEqual(
      annaEntries.map((e) => e.status),
      ['failed', 'succeeded', 'succeeded'],
    );
    assert.equal(annaEntries[0]!.reason, 'ErrorAccessDenied');
    assert.deepEqual(
      first['dashboard mailbox search by id']!.result,
      first['dashboard mailbox search by UPN']!.result,
    );
    const zoe = first['dashboard search for a user left out']!.result as { status: string; reason: string }[];
    assert.deepEqual(
      zoe.map((e) => [e.status, e.reason]),
      [2, 1, 0].map(() => ['left out', 'noMail']),
    );
    const cli = first['CLI mailbox UPN']!.result as {
      run: { startedAt: string };
      outcome?: { status: string };
    }[];
    assert.equal(cli.length, 1, 'one line per policy');
    assert.equal(cli[0]!.outcome?.status, 'failed', "the policy's newest run");

    const others = Array.from({ length: 300 }, (_, i) => i);
    for (let i = 0; i < others.length; i += 20)
      await Promise.all(
        others.slice(i, i + 20).map((n) =>
          recordRun(
            app,
            `beta-${n % 10}`,
            new Date(base + 3 * day + n * 60_000),
            [{ ...bob, status: 'succeeded' }],
            {
              skipped: [{ user: 'carl@contoso.example', reason: 'excluded' }],
            },
          ),
        ),
      );
    const second = await measure();
    for (const name of Object.keys(first)) {
      if (name === 'CLI runs --last 2') continue; // all runs: it shows the others' (same cost, other runs)
      assert.deepEqual(second[name], first[name], name);
    }
    assert.equal(second['CLI runs --last 2']!.requests, first['CLI runs --last 2']!.requests);
    assert.equal(second['CLI runs --last 2']!.entities, first['CLI runs --last 2']!.entities);
  });

  it('CLI mailbox finds each policy however many newer runs another has; a search no key can hold finds nothing', async () => {
    // 1,001 newer rows of another policy in Anna's partition (pointers only: their runs are gone).
    const flood = Array.from({ length: 1001 }, (_, i) => ({
      runId: randomUUID(),
      policyId: 'flood',
      startedAt: new Date(base + 5 * day + i * 60_000).toISOString(),
      dryRun: false,
    }));
    await upsertRows(
      app.tables.runs,
      flood.flatMap((p) =>
        mailboxIndexRows(p, [{ mailboxId: anna.mailboxId, userPrincipalName: anna.upn }], []),
      ),
    );
    const cliMailbox = (upn: string) =>
      mailboxHistory(
        app.tables.runs,
        upn,
        (r, m) => app.runStore.getOutcome(r, m),
        (r) => app.runStore.getRun(r),
      );
    assert.deepEqual(
      (await cliMailbox(anna.upn)).map((f) => [f.run.policyId, f.outcome?.status]),
      [['alpha', 'failed']],
    );
    const tooLong = '%'.repeat(400);
    assert.deepEqual(await new RunHistory(app.tables.runs).mailbox(tooLong), []);
    assert.deepEqual(await cliMailbox(tooLong), []);
  });
});

describe("lists of runs are one partition read: a finished run's summary rides on its index rows", () => {
  let azurite: AzuriteHandle;
  let app: App;
  const base = Date.UTC(2026, 10, 1);

  before(async () => {
    azurite = await startAzurite();
    app = historyApp(azurite, () => new Date(base + 40 * day));
    await app.ensureStorage();
  });
  after(() => azurite.close());

  /** The requests a read makes, and what it returned. */
  async function cost<T>(read: () => Promise<T>): Promise<{ requests: string[]; result: T }> {
    const rec = recorder(app.tables.runs);
    try {
      const result = await read();
      return { requests: rec.requests.map((r) => `${r.method} ${r.url}`), result };
    } finally {
      rec.stop();
    }
  }

  it('30 finished runs: the Policies page and runs --policy read one page and show what the runs hold', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i++)
      ids.push(
        await recordRun(
          app,
          'gamma',
          new Date(base + i * day),
          [{ ...anna, status: i % 3 ? 'succeeded' : 'failed', error: i % 3 ? undefined : 'boom' }, bob],
          { skipped: [{ user: 'zoe@contoso.example', reason: 'noMail' }], finish: false },
        ),
      );
    // Runs end as the pipeline ends them: completed with every mailbox done, or failed.
    for (const [i, id] of ids.entries())
      if (i % 2) await app.runStore.failRun(id, `the directory could not be read (${i})`);
      else {
        await app.runStore.recordOutcome(id, {
          mailboxId: bob.mailboxId,
          userPrincipalName: bob.upn,
          status: 'skipped',
          result: null,
          lastError: null,
          attempts: 1,
        });
        assert.ok(await app.runStore.completeRun(id, new Date(base + i * day + 60_000).toISOString()));
        await app.runStore.markReportSent(id);
      }
    const stored = await Promise.all(ids.map((id) => app.runStore.getRun(id)));
    const newestFirst = stored.reverse();
    const page = await cost(() => new RunHistory(app.tables.runs).recentRuns('gamma'));
    assert.deepEqual(page.result, newestFirst, 'the summaries as the run records hold them');
    assert.equal(page.requests.length, 1, page.requests.join('\n'));
    const cli = await cost(() => listRuns(app.tables.runs, 'gamma', 5));
    assert.deepEqual(cli.result, newestFirst.slice(0, 5));
    assert.equal(cli.requests.length, 1, cli.requests.join('\n'));
    const all = await cost(() => listRuns(app.tables.runs, undefined, 30));
    assert.deepEqual(all.result, newestFirst);
    assert.equal(all.requests.length, 1, all.requests.join('\n'));
  });

  it('a run still running is read by key, and shows its latest totals', async () => {
    const live = await recordRun(app, 'gamma', new Date(base + 35 * day), [anna, bob], { finish: false });
    await app.runStore.recordOutcome(live, {
      mailboxId: anna.mailboxId,
      userPrincipalName: anna.upn,
      status: 'succeeded',
      result: null,
      lastError: null,
      attempts: 1,
    });
    const page = await cost(() => new RunHistory(app.tables.runs).recentRuns('gamma'));
    assert.equal(page.result[0]!.runId, live);
    assert.deepEqual([page.result[0]!.status, page.result[0]!.done], ['running', 1]);
    assert.equal(page.requests.length, 2, 'the page and the running run');
    await app.runStore.failRun(live, 'stopped');
    const after = await cost(() => new RunHistory(app.tables.runs).recentRuns('gamma'));
    assert.deepEqual([after.result[0]!.status, after.result[0]!.error], ['failed', 'stopped']);
    assert.equal(after.requests.length, 1);
    // A mailbox queued before the run failed ends afterwards: the lists show it as the run does.
    await app.runStore.recordOutcome(live, {
      mailboxId: bob.mailboxId,
      userPrincipalName: bob.upn,
      status: 'succeeded',
      result: null,
      lastError: null,
      attempts: 1,
    });
    const late = await new RunHistory(app.tables.runs).recentRuns('gamma');
    assert.deepEqual(late[0], await app.runStore.getRun(live));
    assert.equal(late[0]!.done, 2);
  });
});

describe("a redelivered policy-run message indexes the run's users again", () => {
  let azurite: AzuriteHandle;
  let app: App;

  before(async () => {
    azurite = await startAzurite();
    app = historyApp(azurite, () => new Date());
    await app.ensureStorage();
  });
  after(() => azurite.close());

  it('a delivery that died after storing the targets and before indexing them leaves no user without the run', async () => {
    const runId = randomUUID();
    const options = { dryRun: false, fullResync: false, mailboxes: [] };
    await app.runStore.createRun(emptySummary(runId, 'alpha', 'schedule', options, new Date()), []);
    const targets = [anna, bob].map((t) => ({ mailboxId: t.mailboxId, userPrincipalName: t.upn }));
    // A requested name no Table key can hold (320 characters, each escaped to 3) is not indexed.
    const unindexable = [{ user: '%'.repeat(320), reason: 'notFound' as const }];
    const started = await app.runStore.startRun(runId, targets, unindexable);
    assert.equal(started.wrote, true);
    assert.deepEqual(started.run.skippedTargets, unindexable, 'the summary keeps it');
    // The users' rows the dying delivery never wrote:
    const userRows: { partitionKey: string; rowKey: string }[] = [];
    for await (const e of app.tables.runs.listEntities({
      queryOptions: {
        filter: "PartitionKey ge '~users~' and PartitionKey lt '~users~~'",
      },
    }))
      userRows.push({ partitionKey: e.partitionKey!, rowKey: e.rowKey! });
    assert.equal(userRows.length, 4, 'UPN and mailbox id of each target');
    for (const k of userRows) await app.tables.runs.deleteEntity(k.partitionKey, k.rowKey);
    await app.tables.runs.deleteEntity(runId, '~indexed');
    const history = new RunHistory(app.tables.runs);
    assert.deepEqual(await history.mailbox(bob.upn), []);

    const again = await app.runStore.startRun(runId, targets, unindexable);
    assert.equal(again.wrote, false, 'the redelivery stores nothing of its own');
    assert.deepEqual(
      (await history.mailbox(bob.upn)).map((e) => [e.runId, e.status]),
      [[runId, 'pending']],
    );
    assert.deepEqual(
      (await history.mailbox(anna.mailboxId)).map((e) => e.runId),
      [runId],
    );
  });
});

describe("a run start writes its users' index rows in transactions, once", () => {
  let azurite: AzuriteHandle;
  let app: App;

  before(async () => {
    azurite = await startAzurite();
    app = historyApp(azurite, () => new Date());
    await app.ensureStorage();
  });
  after(() => azurite.close());

  const people = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      mailboxId: `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
      userPrincipalName: `user${i}@contoso.example`,
    }));

  it('300 targets: a few dozen requests (not 2 a target), none again on redelivery; every user findable', async () => {
    const runId = randomUUID();
    const options = { dryRun: false, fullResync: false, mailboxes: [] };
    await app.runStore.createRun(emptySummary(runId, 'alpha', 'schedule', options, new Date()), []);
    const targets = people(300);
    const skipped = people(320)
      .slice(300)
      .map((p) => ({ user: p.userPrincipalName, reason: 'noMail' as const }));
    const rec = recorder(app.tables.runs);
    const started = await app.runStore.startRun(runId, targets, skipped);
    rec.stop();
    assert.equal(started.wrote, true);
    const writes = rec.requests.filter((r) => r.method !== 'GET');
    // Claim, 4 transactions of 99 target rows, the summary; the users' rows by the 100 per partition.
    assert.ok(
      rec.requests.length <= 40,
      `${rec.requests.length} requests: ${writes.map((r) => r.url).join('\n')}`,
    );
    const again = recorder(app.tables.runs);
    const redelivered = await app.runStore.startRun(runId, targets, skipped);
    again.stop();
    assert.equal(redelivered.wrote, false);
    assert.deepEqual(
      again.requests.filter((r) => r.method !== 'GET'),
      [],
      'a redelivery finds the rows written and writes none',
    );
    const history = new RunHistory(app.tables.runs);
    for (const t of [targets[0]!, targets[150]!, targets[299]!]) {
      assert.deepEqual(
        (await history.mailbox(t.userPrincipalName.toUpperCase())).map((e) => [e.runId, e.status]),
        [[runId, 'pending']],
      );
      assert.deepEqual(
        (await history.mailbox(t.mailboxId)).map((e) => e.userPrincipalName),
        [t.userPrincipalName],
      );
    }
    assert.deepEqual(
      (await history.mailbox('user310@contoso.example')).map((e) => [e.status, e.reason]),
      [['left out', 'noMail']],
    );
    // A user whose name begins another's is not shown the other's runs.
    assert.deepEqual(await history.mailbox('user1@contoso.exampl'), []);
  });
});

describe('runs recorded before the index still show, and are back-filled a page per tick', () => {
  let azurite: AzuriteHandle;
  let app: App;
  const now = Date.UTC(2026, 11, 1);
  /** A mailbox id the table key escapes: the CLI must find its outcome by the id, not by its key. */
  const odd = { mailboxId: 'odd/id#1', upn: 'odd@contoso.example' };
  /** Past the default 90 days: back-filled without its users' rows, then swept. */
  let expiredLegacy: string;

  before(async () => {
    azurite = await startAzurite();
    const writer = historyApp(azurite, () => new Date(now));
    await writer.ensureStorage();
    for (let i = 0; i < 120; i += 20)
      await Promise.all(
        Array.from({ length: 20 }, (_, j) => i + j).map((n) =>
          recordRun(writer, n % 2 ? 'alpha' : 'beta', new Date(now - 20 * day + n * 60_000), [
            { ...anna, status: 'succeeded' },
            ...(n === 119 ? [{ ...odd, status: 'succeeded' as const }] : []),
          ]),
        ),
      );
    expiredLegacy = await recordRun(writer, 'alpha', new Date(now - 100 * day), [
      { ...anna, status: 'succeeded' },
    ]);
    // The table as the release before the index left it: no index rows, no marker.
    const runs = azurite.tableClient('syncruns');
    const index: { partitionKey: string; rowKey: string }[] = [];
    for await (const e of runs.listEntities({ queryOptions: { filter: "PartitionKey ge '~'" } }))
      index.push({ partitionKey: e.partitionKey!, rowKey: e.rowKey! });
    for (const k of index) await runs.deleteEntity(k.partitionKey, k.rowKey);
    app = historyApp(azurite, () => new Date(now));
    await app.ensureStorage();
  });
  after(() => azurite.close());

  const readAll = async () => {
    const history = new RunHistory(app.tables.runs);
    return {
      alpha: (await history.recentRuns('alpha')).map((r) => r.runId),
      anna: (await history.mailbox(anna.upn)).map((e) => [e.runId, e.status]),
      runs: (await listRuns(app.tables.runs, undefined, 200)).map((r) => r.runId),
      odd: await mailboxHistory(
        app.tables.runs,
        odd.upn,
        (r, m) => app.runStore.getOutcome(r, m),
        (r) => app.runStore.getRun(r),
      ),
    };
  };

  it('shows them by scanning until the back-fill is done, then from the index, the same', async () => {
    const before = await readAll();
    assert.equal(before.alpha.length, 30);
    assert.equal(before.anna.length, 50);
    assert.equal(before.runs.length, 121);
    assert.equal(before.odd.length, 1);
    assert.equal(
      before.odd[0]!.outcome?.status,
      'succeeded',
      'the outcome of a mailbox whose id the key escapes',
    );

    // A tick out of time stops after the run it is on (the budget is looked at after each run, not
    // each page of 50), and the next goes on from there, inside the page; one is killed halfway.
    const pointers = async (): Promise<number> => {
      let n = 0;
      for await (const _ of app.tables.runs.listEntities({
        queryOptions: { filter: "PartitionKey eq '~runs'" },
      }))
        n++;
      return n;
    };
    for (let tick = 1; tick <= 3; tick++) {
      const upkeep = await keepRunHistory(app, log, 0);
      assert.deepEqual([upkeep.indexed, upkeep.backfilled], [false, 1], `tick ${tick}`);
      assert.equal(await pointers(), tick, 'one more run each tick, none twice');
    }
    const revive = killAfterWrites(app.tables.runs, 3);
    await assert.rejects(keepRunHistory(app, log, 0), /killed after 3 writes/);
    revive();
    let upkeep = await keepRunHistory(app, log);
    for (let ticks = 1; !upkeep.indexed && ticks < 5; ticks++) upkeep = await keepRunHistory(app, log);
    assert.equal(upkeep.indexed, true);
    // The tick that completed the index swept the one run past 90 days (indexed without users' rows).
    assert.deepEqual(upkeep.deleted, [expiredLegacy]);
    assert.equal(await pointers(), 120);
    assert.ok(!(await keys(app.tables.runs)).some((k) => k.includes(expiredLegacy)));

    const rec = recorder(app.tables.runs);
    const afterFill = await readAll();
    rec.stop();
    assert.deepEqual(afterFill, { ...before, runs: before.runs.filter((r) => r !== expiredLegacy) });
    assert.ok(
      rec.requests.every(
        (r) => queryFilter(r.url) === undefined || /^PartitionKey eq /.test(queryFilter(r.url)!),
      ),
      'read from the index',
    );
  });
});

describe('a table indexed in the layout before (a partition per user) is indexed again and its rows go', () => {
  let azurite: AzuriteHandle;
  let app: App;
  const now = Date.UTC(2026, 11, 1);

  before(async () => {
    azurite = await startAzurite();
    const writer = historyApp(azurite, () => new Date(now));
    await writer.ensureStorage();
    const runId = await recordRun(writer, 'alpha', new Date(now - day), [{ ...anna, status: 'succeeded' }]);
    // What the release before left: its users' rows and its marker, none of this layout's users' rows.
    const runs = azurite.tableClient('syncruns');
    for await (const e of runs.listEntities({ queryOptions: { filter: "PartitionKey ge '~'" } }))
      if (e.partitionKey!.startsWith('~users~') || e.partitionKey === '~index')
        await runs.deleteEntity(e.partitionKey!, e.rowKey!);
    const row = { runId, policyId: 'alpha', startedAt: new Date(now - day).toISOString(), dryRun: false };
    const key = `${String(9_999_999_999_999 - (now - day)).padStart(13, '0')}_${runId}`;
    for (const partitionKey of ['~upn~anna@contoso.example', `~mailbox~${anna.mailboxId}`])
      await runs.createEntity({
        partitionKey,
        rowKey: key,
        ...row,
        kind: 'target',
        mailboxId: anna.mailboxId,
      });
    await runs.createEntity({ partitionKey: '~index', rowKey: 'state', complete: true });
    app = historyApp(azurite, () => new Date(now));
    await app.ensureStorage();
  });
  after(() => azurite.close());

  it('the next ticks index the runs in this layout, delete the former rows and marker, and Anna is found', async () => {
    let upkeep = await keepRunHistory(app, log);
    for (let ticks = 1; !upkeep.indexed && ticks < 5; ticks++) upkeep = await keepRunHistory(app, log);
    assert.equal(upkeep.indexed, true);
    const all = await keys(app.tables.runs);
    assert.deepEqual(
      all.filter((k) => /^~(upn|mailbox)~|^~index \| state$/.test(k)),
      [],
      'no row of the layout before is left',
    );
    const history = new RunHistory(app.tables.runs);
    assert.deepEqual(
      (await history.mailbox(anna.upn)).map((e) => e.status),
      ['succeeded'],
    );
    assert.deepEqual(
      (await history.mailbox(anna.mailboxId)).map((e) => e.status),
      ['succeeded'],
    );
  });
});

describe('RUN_HISTORY_DAYS: expired runs are deleted with every row they own, resumably', () => {
  let azurite: AzuriteHandle;
  let app: App;
  let nowMs = Date.UTC(2026, 11, 1, 12);
  let keptRows: string[];
  let stillRunning: string;
  let recent: string;

  before(async () => {
    azurite = await startAzurite();
    app = historyApp(azurite, () => new Date(nowMs), { RUN_HISTORY_DAYS: '30' });
    await app.ensureStorage();
    recent = await recordRun(app, 'alpha', new Date(nowMs - 29 * day), [{ ...anna, status: 'succeeded' }], {
      skipped: [{ user: 'zoe@contoso.example', reason: 'noMail' }],
    });
    // Started 45 days ago and still running: it holds its policy's lease (renewed by its progress).
    stillRunning = await recordRun(app, 'long', new Date(nowMs - 45 * day), [anna, bob], { finish: false });
    const lease = await app.runStore.acquireLease(
      'long',
      stillRunning,
      new Date(nowMs + 3_600_000),
      new Date(nowMs),
    );
    assert.ok(lease.acquired);
    keptRows = await keys(app.tables.runs);
  });
  after(() => azurite.close());

  /** Runs past the retention in every shape: finished, failed, dead while running, never started. */
  async function expiredRuns(): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++)
      ids.push(
        await recordRun(
          app,
          i % 2 ? 'alpha' : 'beta',
          new Date(nowMs - (31 + i * 7) * day),
          [
            { ...anna, status: 'succeeded' },
            { ...bob, status: 'failed', error: 'boom' },
          ],
          { skipped: [{ user: 'zoe@contoso.example', reason: 'noMail' }], extraRows: true },
        ),
      );
    const failed = await recordRun(app, 'alpha', new Date(nowMs - 60 * day), [anna], { finish: false });
    await app.runStore.failRun(failed, 'the directory could not be read');
    // A run whose worker died: still "running", but its lease went to a later run long ago.
    ids.push(
      failed,
      await recordRun(app, 'alpha', new Date(nowMs - 70 * day), [anna, bob], { finish: false }),
    );
    const neverStarted = randomUUID();
    await app.runStore.createRun(
      emptySummary(
        neverStarted,
        'beta',
        'http',
        { dryRun: true, fullResync: false, mailboxes: [] },
        new Date(nowMs - 90 * day),
      ),
      [],
    );
    ids.push(neverStarted);
    return ids;
  }

  it('the scheduler tick deletes exactly the expired runs and their rows; a running one stays', async () => {
    const expired = await expiredRuns();
    assert.ok((await keys(app.tables.runs)).length > keptRows.length + 8 * 5);
    setApp(app);
    try {
      const context = new InvocationContext({ invocationId: randomUUID(), functionName: 'scheduler' });
      await schedulerTick({ isPastDue: false, scheduleStatus: undefined } as unknown as Timer, context);
    } finally {
      setApp(undefined);
    }
    assert.deepEqual(await keys(app.tables.runs), keptRows);
    for (const id of expired) assert.equal(await app.runStore.getRun(id), undefined);
    assert.ok(await app.runStore.getRun(stillRunning));
    assert.ok(await app.runStore.getRun(recent));
    const history = new RunHistory(app.tables.runs);
    assert.deepEqual(
      (await history.mailbox(anna.upn)).map((e) => e.runId),
      [recent, stillRunning],
    );
  });

  for (const killAt of [1, 4, 9, 16])
    it(`a sweep killed after ${killAt} writes is taken up by the next tick and ends the same`, async () => {
      await expiredRuns();
      const revive = killAfterWrites(app.tables.runs, killAt);
      await assert.rejects(keepRunHistory(app, log), /killed after/);
      revive();
      const partial = await keys(app.tables.runs);
      assert.ok(partial.length > keptRows.length, 'the killed sweep left work');
      const upkeep = await keepRunHistory(app, log);
      assert.deepEqual(upkeep.kept, [stillRunning]);
      assert.deepEqual(await keys(app.tables.runs), keptRows);
    });

  it('the running run goes once it has ended and is past the retention', async () => {
    await app.runStore.failRun(stillRunning, 'stopped by its admin');
    await app.runStore.releaseLease('long', stillRunning);
    nowMs += 2 * day; // `recent` passes its 30 days too
    const upkeep = await keepRunHistory(app, log);
    assert.deepEqual(upkeep.deleted.sort(), [recent, stillRunning].sort());
    assert.deepEqual(await keys(app.tables.runs), ['~index | users-by-bucket']);
  });
});

describe('one large expired run is deleted over several ticks, a page of its rows at a time', () => {
  let azurite: AzuriteHandle;
  let app: App;
  const nowMs = Date.UTC(2026, 11, 1, 12);

  before(async () => {
    azurite = await startAzurite();
    app = historyApp(azurite, () => new Date(nowMs), { RUN_HISTORY_DAYS: '30' });
    await app.ensureStorage();
  });
  after(() => azurite.close());

  it("1,200 targets: a tick out of time stops after 1,000 of its rows (and their users' rows); the next ends it", async () => {
    const baseline = await keys(app.tables.runs);
    const targets = Array.from({ length: 1200 }, (_, i) => ({
      mailboxId: `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
      upn: `user${i}@contoso.example`,
    }));
    const runId = await recordRun(app, 'alpha', new Date(nowMs - 40 * day), targets, {
      skipped: [{ user: 'zoe@contoso.example', reason: 'noMail' }],
      finish: false,
    });
    await app.runStore.failRun(runId, 'stopped');
    const full = await keys(app.tables.runs);
    assert.ok(full.length - baseline.length > 3600, `${full.length - baseline.length} rows`);
    const first = await keepRunHistory(app, log, 50);
    assert.deepEqual(first.deleted, [], 'the run is not gone after one tick');
    const afterFirst = await keys(app.tables.runs);
    const gone = full.length - afterFirst.length;
    assert.ok(
      gone > 0 && gone <= 3000,
      `${gone} rows deleted in one tick (at most 1,000 and 2 users' rows each)`,
    );
    assert.ok(await app.runStore.getRun(runId), 'its summary stays until the rest is gone');
    assert.equal(
      (await new RunHistory(app.tables.runs).mailbox('zoe@contoso.example')).length,
      1,
      'the left-out user keeps the run until its summary goes',
    );
    const second = await keepRunHistory(app, log, 1);
    assert.deepEqual(second.deleted, [runId]);
    assert.deepEqual(await keys(app.tables.runs), baseline);
  });
});

describe('runs recorded without index rows (an older CLI or app) are found by a daily pass, shown and expired', () => {
  let azurite: AzuriteHandle;
  let app: App;
  const nowMs = Date.UTC(2026, 11, 1, 12);

  before(async () => {
    azurite = await startAzurite();
    app = historyApp(azurite, () => new Date(nowMs), { RUN_HISTORY_DAYS: '30' });
    await app.ensureStorage();
  });
  after(() => azurite.close());

  it('a recent one shows in runs and the mailbox search; one past the retention is deleted', async () => {
    const recent = await recordRun(app, 'alpha', new Date(nowMs - day), [{ ...anna, status: 'succeeded' }]);
    const old = await recordRun(app, 'alpha', new Date(nowMs - 40 * day), [{ ...anna, status: 'succeeded' }]);
    // What a CLI of the release before writes: the run's own rows, no pointer, no users' rows.
    for (const k of await keys(app.tables.runs)) {
      const [partitionKey, rowKey] = k.split(' | ') as [string, string];
      if ((partitionKey.startsWith('~') && partitionKey !== '~index') || rowKey === '~indexed')
        await app.tables.runs.deleteEntity(partitionKey, rowKey);
    }
    assert.deepEqual(await listRuns(app.tables.runs, 'alpha', 10), [], 'invisible before');
    logs.length = 0;
    const first = await keepRunHistory(app, log);
    assert.equal(first.strays, 2);
    assert.ok(
      logs.some((l) => l.startsWith('warn') && l.includes('upgrade')),
      logs.join('\n'),
    );
    assert.deepEqual(
      (await listRuns(app.tables.runs, 'alpha', 10)).map((r) => r.runId),
      [recent, old],
    );
    assert.deepEqual(
      (await new RunHistory(app.tables.runs).mailbox(anna.upn)).map((e) => e.runId),
      [recent],
    );
    const second = await keepRunHistory(app, log);
    assert.deepEqual(second.deleted, [old]);
    assert.equal(second.strays, 0, 'one pass a day');
    assert.ok(!(await keys(app.tables.runs)).some((k) => k.includes(old)));
  });
});

describe('a late mailbox result for a run the sweep deleted (RUN_HISTORY_DAYS=1) is dropped with a log line', () => {
  let azurite: AzuriteHandle;
  let app: App;
  const nowMs = Date.UTC(2026, 11, 1, 12);

  before(async () => {
    azurite = await startAzurite();
    app = historyApp(azurite, () => new Date(nowMs), { RUN_HISTORY_DAYS: '1' });
    await app.ensureStorage();
  });
  after(() => azurite.close());

  it('records nothing into the deleted run, does not throw (no poison loop), and says why', async () => {
    // A run whose workers outlived its lease: still "running" two days on, so the sweep takes it.
    const runId = await recordRun(app, 'alpha', new Date(nowMs - 2 * day), [anna, bob], { finish: false });
    const upkeep = await keepRunHistory(app, log);
    assert.deepEqual(upkeep.deleted, [runId]);
    const left = await keys(app.tables.runs);
    logs.length = 0;
    // The mailbox that was being synced meanwhile ends: its error is noted, then its result recorded.
    await app.runStore.noteAttempt(runId, anna.mailboxId, anna.upn, 'throttled');
    await recordAndMaybeFinish(
      app,
      runId,
      {
        mailboxId: anna.mailboxId,
        userPrincipalName: anna.upn,
        status: 'succeeded',
        result: null,
        lastError: null,
        attempts: 1,
      },
      log,
    );
    await finishRun(app, runId, log);
    assert.deepEqual(await keys(app.tables.runs), left, 'no row written for the deleted run');
    assert.ok(
      logs.some((l) => l.startsWith('warn') && l.includes(runId) && /deleted|no longer/.test(l)),
      logs.join('\n'),
    );
  });
});

// npm run bench:history [-- --runs N]: what the history reads cost with N runs (default 10,000) in the
// runs table, before the index (the scans readers fall back to while a back-fill is pending, exactly
// the queries of the release before) and with it. Rows are written in the run store's layout with its
// own functions (summary, targets, outcomes, index rows); the reads are the dashboard's and the CLI's.
// Writes bench/results-run-history.json.
import { writeFileSync, mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import type { TableClient, TransactionAction } from '@azure/data-tables';
import { startAzurite } from '../dev/azurite';
import { App } from '../src/app/composition';
import { parseSettings } from '../src/app/settings';
import { listRuns, mailboxHistory } from '../src/app/history';
import { RunHistory } from '../src/dashboard/history';
import { packData } from '../src/adapters/tables/run-store';
import {
  mailboxIndexRows,
  pointerOfRun,
  runIndexRows,
  upsertRows,
  writeIndexState,
} from '../src/adapters/tables/run-index';
import { emptySummary, type RunSummary } from '../src/sync/runs';

const policies = 10;
const users = 50;
const targetsPerRun = 5;

const upnOf = (u: number): string => `user${u}@contoso.example`;
const idOf = (u: number): string => `00000000-0000-4000-8000-${u.toString(16).padStart(12, '0')}`;

/** Writes the runs as the release before the index did; returns their index rows, for later. */
async function fill(runs: TableClient, count: number): Promise<Parameters<typeof upsertRows>[1][number][]> {
  const start = Date.UTC(2026, 8, 1);
  const index: Parameters<typeof upsertRows>[1][number][] = [];
  const runRows: TransactionAction[][] = [];
  for (let n = 0; n < count; n++) {
    const runId = `${n.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
    const policyId = `policy-${n % policies}`;
    const targets = Array.from({ length: targetsPerRun }, (_, k) => (n * targetsPerRun + k) % users).map(
      (u) => ({ mailboxId: idOf(u), userPrincipalName: upnOf(u) }),
    );
    const summary: RunSummary = {
      ...emptySummary(
        runId,
        policyId,
        'schedule',
        { dryRun: false, fullResync: false, mailboxes: [] },
        new Date(start + n * 600_000),
      ),
      status: 'completed',
      finishedAt: new Date(start + n * 600_000 + 60_000).toISOString(),
      expected: targetsPerRun,
      done: targetsPerRun,
      mailboxes: { succeeded: targetsPerRun, failed: 0, skipped: 0 },
      skippedTargets: [{ user: 'left.out@contoso.example', reason: 'noMail' }],
      skippedCount: 1,
    };
    runRows.push([
      ['upsert', { partitionKey: runId, rowKey: '~request', ...packData([]) }],
      ['upsert', { partitionKey: runId, rowKey: '~run', policyId, ...packData(summary) }],
      ...targets.map((t): TransactionAction => [
        'upsert',
        { partitionKey: runId, rowKey: `~target~${t.mailboxId}`, upn: t.userPrincipalName },
      ]),
      ...targets.map((t): TransactionAction => [
        'upsert',
        {
          partitionKey: runId,
          rowKey: t.mailboxId,
          ...packData({ ...t, status: 'succeeded', result: null, lastError: null, attempts: 1 }),
        },
      ]),
    ]);
    index.push(
      ...runIndexRows(pointerOfRun(summary), summary),
      ...mailboxIndexRows(pointerOfRun(summary), targets, summary.skippedTargets),
    );
  }
  for (let i = 0; i < runRows.length; i += 32) {
    await Promise.all(runRows.slice(i, i + 32).map((t) => runs.submitTransaction(t)));
    if ((i / 32) % 30 === 0) console.error(`${i} runs written`);
  }
  return index;
}

interface Cost {
  requests: number;
  entities: number;
  ms: number;
}

async function measure(runs: TableClient, read: () => Promise<unknown>): Promise<Cost> {
  let requests = 0;
  let entities = 0;
  const policy: PipelinePolicy = {
    name: 'bench-counter',
    async sendRequest(req, next) {
      const res = await next(req);
      requests++;
      if (res.status === 200) {
        const body = JSON.parse(res.bodyAsText ?? '{}') as { value?: unknown[] };
        entities += Array.isArray(body.value) ? body.value.length : 1;
      }
      return res;
    },
  };
  runs.pipeline.addPolicy(policy);
  const t0 = performance.now();
  try {
    await read();
  } finally {
    runs.pipeline.removePolicy({ name: policy.name });
  }
  return { requests, entities, ms: Math.round(performance.now() - t0) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '10000' } } });
  const count = Number(values.runs);
  const azurite = await startAzurite();
  try {
    const dir = mkdtempSync(join(tmpdir(), 'bench-history-'));
    const policyFile = join(dir, 'policies.json');
    writeFileSync(policyFile, '{}');
    const app = new App({
      settings: parseSettings({ AzureWebJobsStorage: azurite.connectionString, POLICY_FILE: policyFile }),
      credential: { getToken: () => Promise.resolve(null) },
    });
    const runs = app.tables.runs;
    await runs.createTable();
    const t0 = performance.now();
    const index = await fill(runs, count);
    const fillSeconds = Math.round((performance.now() - t0) / 1000);
    const countEntities = async (): Promise<number> => {
      let n = 0;
      for await (const page of runs.listEntities({ queryOptions: { select: ['RowKey'] } }).byPage())
        n += page.length;
      return n;
    };
    const tableEntities = { before: await countEntities(), after: 0 };

    const reads = {
      policiesPage: () =>
        Promise.all(
          Array.from({ length: policies }, (_, p) => new RunHistory(runs).recentRuns(`policy-${p}`)),
        ),
      mailboxSearch: () => new RunHistory(runs).mailbox(upnOf(0)),
      cliRunsPolicy: () => listRuns(runs, 'policy-0', 30),
      cliMailbox: () =>
        mailboxHistory(
          runs,
          upnOf(0),
          (r, m) => app.runStore.getOutcome(r, m),
          (r) => app.runStore.getRun(r),
        ),
    };
    const run = async (): Promise<Record<string, Cost>> => {
      const out: Record<string, Cost> = {};
      for (const [name, read] of Object.entries(reads)) out[name] = await measure(runs, read);
      return out;
    };
    // Before: no marker, the readers scan as the release before the index did.
    const before = await run();
    const t1 = performance.now();
    await upsertRows(runs, index);
    const indexSeconds = Math.round((performance.now() - t1) / 1000);
    tableEntities.after = await countEntities();
    await writeIndexState(runs, { complete: true });
    const after = await run();
    // A run start with 300 targets (claim, target rows, summary, the users' history rows).
    const startId = 'ffffffff-0000-4000-8000-000000000000';
    const options = { dryRun: false, fullResync: false, mailboxes: [] };
    await app.runStore.createRun(emptySummary(startId, 'policy-0', 'schedule', options, new Date()), []);
    const runStart300Targets = await measure(runs, () =>
      app.runStore.startRun(
        startId,
        Array.from({ length: 300 }, (_, u) => ({
          mailboxId: idOf(1000 + u),
          userPrincipalName: upnOf(1000 + u),
        })),
        [],
      ),
    );
    const result = {
      date: new Date().toISOString().slice(0, 10),
      node: process.version,
      cpus: cpus().length,
      storage: 'Azurite (in memory), 127.0.0.1',
      runs: count,
      policies,
      users,
      targetsPerRun,
      tableEntities,
      fillSeconds,
      indexSeconds,
      note: 'entities = entities in the answers the client read; a scan (before) also makes the service examine every entity of the table (tableEntities.before; the index rows make tableEntities.after). policiesPage = the last 30 runs of each of the 10 policies (the dashboard Policies page); mailboxSearch = the dashboard mailbox search by UPN (newest 50 entries); cliRunsPolicy = runs --policy --last 30; cliMailbox = mailbox UPN; runStart300Targets = the run store startRun for 300 targets (claim, target rows, summary, users history rows).',
      before,
      after,
      runStart300Targets,
    };
    const text = JSON.stringify(result, null, 2);
    writeFileSync(resolve(__dirname, '../../bench/results-run-history.json'), `${text}\n`);
    console.log(text);
  } finally {
    await azurite.close();
  }
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});

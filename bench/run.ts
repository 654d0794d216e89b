// npm run bench [-- --json] [-- --quick] [-- --scenario NAME]: the sync through the real queue pipeline
// (Azurite, the local runner, the registered handlers) against the Graph tenant simulator run as a
// process with Graph's throttling and realistic latency. Prints a table, or JSON with --json.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import * as tls from 'node:tls';
import { parseArgs } from 'node:util';
import { ClientSecretCredential } from '@azure/identity';
import { App, setApp } from '../src/app/composition';
import { parseSettings } from '../src/app/settings';
import { startRun } from '../src/app/use-cases';
import { startAzurite, type AzuriteHandle } from '../dev/azurite';
import { LocalRunner, defaultRunnerOptions } from '../dev/local-runner';

interface Endpoints {
  graphUrl: string;
  authorityHost: string;
  keyVaultUrl: string;
  tenantId: string;
  clientId: string;
  certificateName: string;
  caCertPath: string;
  hostIdentity: { clientId: string; clientSecret: string };
}

interface Scenario {
  name: string;
  description: string;
  /** Users in the source (with mail), target mailboxes, and users changed before the run. */
  sourceUsers: number;
  targetMailboxes: number;
  latencyMs: number;
  timeScale: number;
  /** Runs before the measured one (e.g. the fill before a steady-state run). */
  warmups: number;
  changePercent: number;
  goal: string;
}

function scenarios(quick: boolean): Scenario[] {
  const q = (full: number, small: number): number => (quick ? small : full);
  return [
    {
      name: 'initial-fill',
      description: `${q(2000, 300)} contacts into each of ${q(20, 4)} mailboxes`,
      sourceUsers: q(2000, 300),
      targetMailboxes: q(20, 4),
      latencyMs: 80,
      timeScale: 1,
      warmups: 0,
      changePercent: 0,
      goal: 'writes/s per mailbox >= 90 % of the per-mailbox limit',
    },
    {
      name: 'steady-state',
      description: 'the same again, nothing changed',
      sourceUsers: q(2000, 300),
      targetMailboxes: q(20, 4),
      latencyMs: 80,
      timeScale: 1,
      warmups: 1,
      changePercent: 0,
      goal: '<= 1.05 Graph requests per mailbox, 0 writes',
    },
    {
      name: 'incremental',
      description: '1 % of users changed',
      sourceUsers: q(2000, 300),
      targetMailboxes: q(20, 4),
      latencyMs: 80,
      timeScale: 1,
      warmups: 1,
      changePercent: 1,
      goal: '<= 1 HTTP call per 15 contact writes',
    },
    {
      name: 'large-gal',
      description: `${q(50000, 2000)} users into one mailbox`,
      sourceUsers: q(50000, 2000),
      targetMailboxes: 1,
      latencyMs: 80,
      timeScale: 60,
      warmups: 0,
      changePercent: 0,
      goal: 'peak memory < 256 MB',
    },
    {
      name: 'wide',
      description: `${q(1000, 60)} mailboxes x ${q(200, 40)} contacts, time scaled`,
      sourceUsers: q(200, 40),
      targetMailboxes: q(1000, 60),
      latencyMs: 80,
      timeScale: 60,
      warmups: 0,
      changePercent: 0,
      goal: 'time; no failed mailbox',
    },
  ];
}

async function startSimulatorProcess(
  seedFile: string,
  latencyMs: number,
  timeScale: number,
): Promise<{ endpoints: Endpoints; child: ChildProcess }> {
  const cli = resolve(__dirname, '../test/doubles/graph-tenant-simulator/cli.js');
  const child = spawn(
    process.execPath,
    [
      '--max-old-space-size=4096',
      cli,
      '--seed',
      seedFile,
      '--port',
      '0',
      '--latency',
      String(latencyMs),
      '--time-scale',
      String(timeScale),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const line = await new Promise<string>((ok, fail) => {
    createInterface({ input: child.stdout }).once('line', ok);
    child.once('exit', (code) => fail(new Error(`simulator exited with ${code}`)));
  });
  return { endpoints: JSON.parse(line) as Endpoints, child };
}

async function control<T>(e: Endpoints, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${e.graphUrl}/_sim${path}`, {
    method,
    ...(body !== undefined
      ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
      : {}),
  });
  if (!res.ok) throw new Error(`simulator control ${method} ${path}: ${res.status} ${await res.text()}`);
  return (res.status === 204 ? undefined : await res.json()) as T;
}

interface LogEntry {
  at: number;
  operation: string;
  mailbox: string | null;
  status: number;
  inBatch: boolean;
}

interface Summary {
  seq: number;
  httpCalls: number;
  graphRequests: number;
  byOperation: Record<string, number>;
  throttled: number;
}

/**
 * The seed file: source users carry department "Directory"; extra mailbox users make up the targets.
 * Built in its own function so the 50,000 seed objects are gone before the measured run.
 */
function writeSeed(dir: string, s: Scenario, total: number): string {
  const users = [];
  for (let i = 0; i < total; i++) {
    const inSource = i < s.sourceUsers;
    users.push({
      userPrincipalName: `user${i}@contoso.example`,
      displayName: `User ${i}`,
      givenName: 'User',
      surname: String(i),
      mail: `user${i}@contoso.example`,
      department: inSource ? 'Directory' : 'Elsewhere',
      jobTitle: 'Engineer',
      businessPhones: [`+1 555 ${String(i).padStart(7, '0')}`],
      city: 'Seattle',
      companyName: 'Contoso',
      mailbox: 'user',
    });
  }
  const seedFile = join(dir, 'seed.json');
  writeFileSync(seedFile, JSON.stringify({ users }));
  return seedFile;
}

async function runScenario(s: Scenario, azurite: AzuriteHandle): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), `bench-${s.name}-`));
  try {
    const total = Math.max(s.sourceUsers, s.targetMailboxes);
    const seedFile = writeSeed(dir, s, total);
    const { endpoints, child } = await startSimulatorProcess(seedFile, s.latencyMs, s.timeScale);
    try {
      const ca = readFileSync(endpoints.caCertPath, 'utf8');
      tls.setDefaultCACertificates([...tls.getCACertificates('default'), ca]);
      const targets = Array.from({ length: s.targetMailboxes }, (_, i) => `user${i}@contoso.example`);
      const policyFile = join(dir, 'policies.json');
      writeFileSync(
        policyFile,
        JSON.stringify({
          connections: [
            {
              id: 'bench',
              tenantId: endpoints.tenantId,
              clientId: endpoints.clientId,
              certificate: { keyVaultUrl: endpoints.keyVaultUrl, name: endpoints.certificateName },
              authorityHost: endpoints.authorityHost,
              graphEndpoint: endpoints.graphUrl,
            },
          ],
          policies: [
            {
              id: s.name,
              name: s.description,
              connection: 'bench',
              source: {
                type: 'directory',
                filters: [{ attribute: 'department', op: 'equals', value: 'Directory' }],
              },
              targets:
                s.targetMailboxes === total ? { type: 'allMailboxes' } : { type: 'users', users: targets },
              folder: { name: 'Company Directory' },
            },
          ],
        }),
      );
      const credential = new ClientSecretCredential(
        endpoints.tenantId,
        endpoints.hostIdentity.clientId,
        endpoints.hostIdentity.clientSecret,
        { authorityHost: endpoints.authorityHost, disableInstanceDiscovery: true },
      );
      const app = new App({
        settings: parseSettings({
          AzureWebJobsStorage: azurite.connectionString,
          POLICY_FILE: policyFile,
          MAILBOX_TIME_BUDGET_SECONDS: '240',
        }),
        credential,
        disableChallengeResourceVerification: true,
      });
      setApp(app);
      await app.ensureStorage();
      const tableOps = { count: 0 };
      for (const t of Object.values(app.tables))
        t.pipeline.addPolicy({
          name: 'count',
          sendRequest: (req, next) => ((tableOps.count += 1), next(req)),
        });
      const runner = new LocalRunner(app, defaultRunnerOptions);
      const policy = (await app.policy(s.name))!.policy;
      const runOnce = async (): Promise<string> => {
        const started = await startRun(app, policy, 'cli', {
          dryRun: false,
          fullResync: false,
          mailboxes: [],
        });
        if (!started.started) throw new Error('run refused');
        await runner.drain(3_600_000);
        return started.runId;
      };
      for (let i = 0; i < s.warmups; i++) await runOnce();
      if (s.changePercent > 0) {
        const n = Math.max(1, Math.round((s.sourceUsers * s.changePercent) / 100));
        for (let i = 0; i < n; i++)
          await control(
            endpoints,
            'PATCH',
            `/users/${encodeURIComponent(`user${s.sourceUsers - 1 - i}@contoso.example`)}`,
            { jobTitle: `Changed ${Date.now()}` },
          );
      }
      const before = await control<Summary>(endpoints, 'GET', '/log/summary');
      tableOps.count = 0;
      // Start from the live baseline, not from garbage of the set-up (the bench runs with --expose-gc).
      (globalThis as { gc?: () => void }).gc?.();
      const startRss = process.memoryUsage().rss;
      let peakRss = startRss;
      let peakHeap = process.memoryUsage().heapUsed;
      const sampler = setInterval(() => {
        const m = process.memoryUsage();
        peakRss = Math.max(peakRss, m.rss);
        peakHeap = Math.max(peakHeap, m.heapUsed);
      }, 50);
      const t0 = Date.now();
      const runId = await runOnce();
      const seconds = (Date.now() - t0) / 1000;
      clearInterval(sampler);
      const after = await control<Summary>(endpoints, 'GET', `/log/summary?since=${before.seq}`);
      const entries = await control<LogEntry[]>(endpoints, 'GET', `/log?since=${before.seq}`);
      const run = (await app.runStore.getRun(runId))!;
      const writes =
        run.contacts.created + run.contacts.updated + run.contacts.deleted + run.contacts.restored;
      // Achieved write rate per mailbox, over the span its writes took.
      const perMailbox = new Map<string, number[]>();
      for (const e of entries) {
        if (e.mailbox && e.status < 300 && /^contacts\.(create|update|delete)$/.test(e.operation))
          perMailbox.set(e.mailbox, [...(perMailbox.get(e.mailbox) ?? []), e.at]);
      }
      const rates = [...perMailbox.values()]
        .filter((t) => t.length > 20)
        .map((t) => (t.length - 1) / ((Math.max(...t) - Math.min(...t)) / 1000));
      // The fastest Graph allows for this many writes per mailbox: 4 in flight at the latency, and
      // 10,000 per (time-scaled) 10 minutes, whichever takes longer.
      const mailboxes = run.expected;
      const writesPerMailbox = writes / Math.max(1, mailboxes);
      const windowSeconds = 600 / s.timeScale;
      const concurrencyLimit = 4 / (s.latencyMs / 1000);
      const minSeconds = Math.max(
        writesPerMailbox / concurrencyLimit,
        (Math.ceil(writesPerMailbox / 10_000) - 1) * windowSeconds,
      );
      const perMailboxLimit = writesPerMailbox > 0 ? writesPerMailbox / minSeconds : concurrencyLimit;
      const windowBinds =
        (Math.ceil(writesPerMailbox / 10_000) - 1) * windowSeconds > writesPerMailbox / concurrencyLimit;
      const mailboxRequests = entries.filter(
        (e) => e.mailbox !== null && (e.inBatch || e.operation !== 'batch'),
      ).length;
      const batchCalls = after.byOperation.batch ?? 0;
      // The fewest requests the scenario can take: each write once, one delta read per mailbox, and on
      // a first run the folder look-up and creation.
      const lowerBound = writes + mailboxes * (s.warmups === 0 ? 3 : 1);
      const byKind = Object.fromEntries(Object.entries(after.byOperation).filter(([k]) => k !== 'batch'));
      setApp(undefined);
      return {
        scenario: s.name,
        description: s.description,
        goal: s.goal,
        mailboxes,
        failedMailboxes: run.mailboxes.failed,
        contacts: run.contacts,
        graphRequests: after.graphRequests,
        httpCalls: after.httpCalls,
        requestsByKind: byKind,
        lowerBoundRequests: lowerBound,
        ratioToLowerBound: Math.round((after.graphRequests / lowerBound) * 1000) / 1000,
        mailboxRequestsPerMailbox: Math.round((mailboxRequests / Math.max(1, mailboxes)) * 1000) / 1000,
        graphRequestsPerMailbox: Math.round((after.graphRequests / Math.max(1, mailboxes)) * 1000) / 1000,
        httpCallsPerWrite: writes > 0 ? Math.round((after.httpCalls / writes) * 10000) / 10000 : null,
        batchCallsPerWrite: writes > 0 ? Math.round((batchCalls / writes) * 10000) / 10000 : null,
        writesPerSecondPerMailbox: rates.length
          ? Math.round((rates.reduce((a, b) => a + b, 0) / rates.length) * 10) / 10
          : null,
        perMailboxLimit: {
          writesPerSecond: Math.round(perMailboxLimit * 10) / 10,
          bindingLimit: windowBinds
            ? '10,000 requests / 10 min (time-scaled)'
            : '4 concurrent requests at this latency',
        },
        shareOfLimit: rates.length
          ? Math.round((rates.reduce((a, b) => a + b, 0) / rates.length / perMailboxLimit) * 1000) / 1000
          : null,
        throttled429: after.throttled,
        wallSeconds: Math.round(seconds * 10) / 10,
        peakRssMB: Math.round(peakRss / 1048576),
        startRssMB: Math.round(startRss / 1048576),
        peakHeapMB: Math.round(peakHeap / 1048576),
        tableTransactions: tableOps.count,
        latencyMs: s.latencyMs,
        timeScale: s.timeScale,
      };
    } finally {
      child.kill('SIGINT');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      scenario: { type: 'string', multiple: true },
      // Profiling aid: another simulated latency (0 makes the large scenarios quick; rates then mean little).
      latency: { type: 'string' },
    },
  });
  const chosen = scenarios(values.quick)
    .filter((s) => !values.scenario || values.scenario.includes(s.name))
    .map((s) => (values.latency === undefined ? s : { ...s, latencyMs: Number(values.latency) }));
  const azurite = await startAzurite();
  const results: Record<string, unknown>[] = [];
  try {
    for (const s of chosen) {
      if (!values.json) process.stderr.write(`running ${s.name}: ${s.description} ...\n`);
      results.push(await runScenario(s, azurite));
      if (!values.json) process.stderr.write(`  done in ${String(results.at(-1)!.wallSeconds)} s\n`);
    }
  } finally {
    await azurite.close();
  }
  const report = {
    quick: values.quick,
    node: process.version,
    cpus: cpus().length,
    memoryGB: Math.round(totalmem() / 2 ** 30),
    results,
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(report) + '\n');
  } else {
    for (const r of results) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});

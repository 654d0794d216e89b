// npm run bench [-- --json] [-- --quick] [-- --scenario NAME]: the sync through the real queue pipeline
// (Azurite, the local runner, the registered handlers) against the Graph tenant simulator run as a
// process with Graph's throttling and realistic latency. Prints a table, or JSON with --json.
// `--scenario cold-start` times the deployable artifact's start instead (bench/cold-start.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import * as tls from 'node:tls';
import { parseArgs } from 'node:util';
import { fork } from 'node:child_process';
import { startAzurite, type AzuriteHandle } from '../dev/azurite';
import type { WorkerCommand, WorkerInit, WorkerReply, WorkerRunResult } from './worker';
import { coldStart } from './cold-start';

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
  /**
   * V8 heap sizes for the worker process where the goal is a memory limit (without them V8 lets
   * garbage pile up to whatever the machine allows, which says little about what the job needs):
   * the old space in MB, and each young-generation semi-space in MB.
   */
  workerHeap?: { oldSpaceMB: number; semiSpaceMB: number };
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
      // 256 MB for the process: 160 MB old space, 3 x 8 MB young generation, and about 70 MB that
      // Node holds outside the heap (code, buffers, sockets).
      workerHeap: { oldSpaceMB: 160, semiSpaceMB: 8 },
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

interface WorkerHandle {
  run(policyId: string): Promise<WorkerRunResult>;
  close(): Promise<void>;
}

/** Starts bench/worker.js in its own process with the deployed worker's Node arguments. */
async function startWorker(nodeArguments: string[], init: WorkerInit): Promise<WorkerHandle> {
  const child = fork(resolve(__dirname, 'worker.js'), [], {
    execArgv: [...nodeArguments, '--expose-gc'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = signal ? `was killed by ${signal}` : `exited with ${code}`));
  child.on('error', () => undefined); // a send to a worker that died: the exit says why
  const ask = (c: WorkerCommand): Promise<WorkerRunResult | undefined> =>
    new Promise((ok, fail) => {
      if (exited) return fail(new Error(`bench worker ${exited}`));
      const onExit = (): void => fail(new Error(`bench worker ${exited ?? 'exited'} (out of memory?)`));
      child.once('exit', onExit);
      child.once('message', (r: WorkerReply) => {
        child.off('exit', onExit);
        if (r.ok) ok(r.result);
        else fail(new Error(`bench worker: ${r.error}`));
      });
      child.send(c);
    });
  await ask(init);
  return {
    run: async (policyId) => (await ask({ cmd: 'run', policyId }))!,
    close: () =>
      new Promise<void>((done) => {
        if (exited) return done();
        child.once('exit', () => done());
        child.send({ cmd: 'exit' });
        setTimeout(() => child.kill(), 5_000).unref();
      }),
  };
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

async function runScenario(
  s: Scenario,
  azurite: AzuriteHandle,
  nodeArguments: string[],
): Promise<Record<string, unknown>> {
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
      let before: Summary;
      const worker = await startWorker(nodeArguments, {
        cmd: 'init',
        storageConnectionString: azurite.connectionString,
        policyFile,
        tenantId: endpoints.tenantId,
        authorityHost: endpoints.authorityHost,
        caCertPath: endpoints.caCertPath,
        hostIdentity: endpoints.hostIdentity,
        timeBudgetSeconds: 240,
      });
      let measured: WorkerRunResult;
      try {
        for (let i = 0; i < s.warmups; i++) await worker.run(s.name);
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
        before = await control<Summary>(endpoints, 'GET', '/log/summary');
        measured = await worker.run(s.name);
      } finally {
        await worker.close();
      }
      const { run, wallSeconds: seconds } = measured;
      const after = await control<Summary>(endpoints, 'GET', `/log/summary?since=${before.seq}`);
      const entries = await control<LogEntry[]>(endpoints, 'GET', `/log?since=${before.seq}`);
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
        peakRssMB: measured.peakRssMB,
        startRssMB: measured.startRssMB,
        peakHeapMB: measured.peakHeapMB,
        heapLimitMB: measured.heapLimitMB,
        workerNodeArguments: nodeArguments.join(' '),
        tableTransactions: measured.tableTransactions,
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
      // Experiments: Node arguments for the worker process instead of the scenario's ('' for none).
      'worker-node-args': { type: 'string' },
    },
  });
  if (values.scenario?.includes('cold-start')) {
    const r = coldStart();
    process.stdout.write(values.json ? JSON.stringify(r) + '\n' : `${JSON.stringify(r, null, 2)}\n`);
    if (values.scenario.length === 1) return;
  }
  const chosen = scenarios(values.quick)
    .filter((s) => !values.scenario || values.scenario.includes(s.name))
    .map((s) => (values.latency === undefined ? s : { ...s, latencyMs: Number(values.latency) }));
  const azurite = await startAzurite();
  const results: Record<string, unknown>[] = [];
  try {
    for (const s of chosen) {
      if (!values.json) process.stderr.write(`running ${s.name}: ${s.description} ...\n`);
      const nodeArguments =
        values['worker-node-args'] !== undefined
          ? values['worker-node-args'].split(' ').filter(Boolean)
          : s.workerHeap
            ? [
                `--max-old-space-size=${s.workerHeap.oldSpaceMB}`,
                `--max-semi-space-size=${s.workerHeap.semiSpaceMB}`,
              ]
            : [];
      results.push(await runScenario(s, azurite, nodeArguments));
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

// The benchmark's worker process: what a Function App instance runs (the composition root, the
// registered handlers behind the local runner), alone in its own Node process started with the
// deployed worker's Node arguments, so its memory is measured apart from the benchmark's set-up and
// bookkeeping. Driven by bench/run.ts over IPC.
import { readFileSync, writeFileSync } from 'node:fs';
import * as tls from 'node:tls';
import { ClientSecretCredential } from '@azure/identity';
import { App, setApp } from '../src/app/composition';
import { parseSettings } from '../src/app/settings';
import { startRun } from '../src/app/use-cases';
import type { RunSummary } from '../src/sync/runs';
import { LocalRunner, defaultRunnerOptions } from '../dev/local-runner';

export interface WorkerInit {
  cmd: 'init';
  storageConnectionString: string;
  policyFile: string;
  tenantId: string;
  authorityHost: string;
  caCertPath: string;
  hostIdentity: { clientId: string; clientSecret: string };
  timeBudgetSeconds: number;
}
export interface WorkerRun {
  cmd: 'run';
  policyId: string;
}
export type WorkerCommand = WorkerInit | WorkerRun | { cmd: 'exit' };

export interface WorkerRunResult {
  runId: string;
  run: RunSummary;
  wallSeconds: number;
  tableTransactions: number;
  /** The kernel's high-water mark of this process's resident memory during the run (VmHWM). */
  peakRssMB: number;
  startRssMB: number;
  peakHeapMB: number;
  heapLimitMB: number;
}
export type WorkerReply = { ok: true; result?: WorkerRunResult } | { ok: false; error: string };

const mb = (bytes: number): number => Math.round(bytes / 1048576);

/** Peak resident memory since the last reset, from the kernel (no sampling gaps). */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}
function resetPeakRss(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5'); // Linux: reset VmHWM to the current RSS
  } catch {
    /* not Linux: the peak then covers the whole process life */
  }
}

let app: App | undefined;
let runner: LocalRunner | undefined;
const tableOps = { count: 0 };

async function init(c: WorkerInit): Promise<void> {
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), readFileSync(c.caCertPath, 'utf8')]);
  const credential = new ClientSecretCredential(
    c.tenantId,
    c.hostIdentity.clientId,
    c.hostIdentity.clientSecret,
    {
      authorityHost: c.authorityHost,
      disableInstanceDiscovery: true,
    },
  );
  app = new App({
    settings: parseSettings({
      AzureWebJobsStorage: c.storageConnectionString,
      POLICY_FILE: c.policyFile,
      MAILBOX_TIME_BUDGET_SECONDS: String(c.timeBudgetSeconds),
    }),
    credential,
    disableChallengeResourceVerification: true,
  });
  setApp(app);
  await app.ensureStorage();
  for (const t of Object.values(app.tables))
    t.pipeline.addPolicy({ name: 'count', sendRequest: (req, next) => ((tableOps.count += 1), next(req)) });
  runner = new LocalRunner(app, defaultRunnerOptions);
}

async function run(c: WorkerRun): Promise<WorkerRunResult> {
  if (!app || !runner) throw new Error('worker: run before init');
  const policy = (await app.policy(c.policyId))?.policy;
  if (!policy) throw new Error(`worker: no policy ${c.policyId}`);
  (globalThis as { gc?: () => void }).gc?.();
  resetPeakRss();
  const startRss = process.memoryUsage().rss;
  let peakHeap = process.memoryUsage().heapUsed;
  const sampler = setInterval(() => (peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)), 50);
  tableOps.count = 0;
  const t0 = Date.now();
  try {
    const started = await startRun(app, policy, 'cli', { dryRun: false, fullResync: false, mailboxes: [] });
    if (!started.started) throw new Error('worker: run refused');
    await runner.drain(3_600_000);
    const wallSeconds = (Date.now() - t0) / 1000;
    const transactions = tableOps.count;
    const peak = peakRss();
    const summary = await app.runStore.getRun(started.runId);
    if (!summary) throw new Error(`worker: run ${started.runId} has no record`);
    const { getHeapStatistics } = await import('node:v8');
    return {
      runId: started.runId,
      run: summary,
      wallSeconds,
      tableTransactions: transactions,
      peakRssMB: mb(peak),
      startRssMB: mb(startRss),
      peakHeapMB: mb(peakHeap),
      heapLimitMB: mb(getHeapStatistics().heap_size_limit),
    };
  } finally {
    clearInterval(sampler);
  }
}

process.on('message', (c: WorkerCommand) => {
  const reply = (r: WorkerReply): void => void process.send?.(r);
  const fail = (e: unknown): void =>
    reply({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  switch (c.cmd) {
    case 'init':
      init(c).then(() => reply({ ok: true }), fail);
      break;
    case 'run':
      run(c).then((result) => reply({ ok: true, result }), fail);
      break;
    case 'exit':
      process.disconnect?.();
      break;
  }
});

// Loads an unpacked artifact the way the Azure Functions Node.js worker does, without the host:
// `@azure/functions-core` (which only the worker provides) records what `@azure/functions` registers,
// every file the `main` glob of the artifact's package.json matches is required, and each registered
// handler is then called once. Every module request made on the way is recorded, so the test can tell
// whether the app reached anything it does not carry.
//
// Usage: node fake-worker.js <artifact dir> [--register-only | --pipeline <policyId>]; prints one JSON
// line. --register-only stops once the functions are registered (the cold-start bench times that).
// --pipeline plays the host for one run instead: the run-now route starts it, then whatever the
// handlers enqueue is received from the real queues (AzureWebJobsStorage) and handed to the function
// registered for that queue, as the host does, until every queue is empty.
import { globSync, readFileSync } from 'node:fs';
import Module, { builtinModules } from 'node:module';
import { join, relative, sep } from 'node:path';
import { QueueClient } from '@azure/storage-queue';

interface Registration {
  name: string;
  bindings: Record<string, Record<string, unknown>>;
  handler: (...args: unknown[]) => unknown;
}

export interface FakeWorkerReport {
  nodeVersion: string;
  /** Milliseconds from process start until every entry point was loaded and registered. */
  registeredAfterMs: number;
  main: string;
  mainFiles: string[];
  programmingModel: string | null;
  functions: { name: string; bindings: Record<string, Record<string, unknown>> }[];
  /** Per function: what calling the handler once with a plausible input gave. */
  invocations: Record<string, { returned?: unknown; threw?: string; logged: string[] }>;
  /** Non-relative module requests made by files inside the artifact, and whether they resolved. */
  requests: { request: string; from: string; resolved: boolean; error?: string }[];
  /** With --pipeline: what the run-now route answered, each queue message handled, the final status. */
  pipeline?: PipelineReport;
}

export interface PipelineReport {
  runNow: { status?: number; jsonBody?: unknown };
  handled: { function: string; queue: string; dequeueCount: number; error?: string }[];
  runStatus?: { status?: number; jsonBody?: unknown };
}

const dir = process.argv[2];
if (!dir) throw new Error('usage: fake-worker <artifact dir> [--register-only]');
const registerOnly = process.argv.includes('--register-only');
const pipelineAt = process.argv.indexOf('--pipeline');
const pipelinePolicy = pipelineAt > 0 ? process.argv[pipelineAt + 1] : undefined;

const registrations: Registration[] = [];
let programmingModel: string | null = null;
const fakeCore = {
  version: '3.10.1',
  setProgrammingModel: (m: { name?: string; version?: string }) => {
    programmingModel = `${m.name ?? '?'}@${m.version ?? '?'}`;
  },
  getProgrammingModel: () => undefined,
  registerFunction: (metadata: Omit<Registration, 'handler'>, handler: Registration['handler']) => {
    registrations.push({ ...metadata, handler });
    return { dispose: () => undefined };
  },
  registerHook: () => ({ dispose: () => undefined }),
  log: () => undefined,
};

const requests: FakeWorkerReport['requests'] = [];
type Load = (request: string, parent: { filename?: string } | undefined, isMain: boolean) => unknown;
const mod = Module as unknown as { _load: Load };
const load = mod._load;
mod._load = function (request, parent, isMain) {
  if (request === '@azure/functions-core') return fakeCore;
  const from = parent?.filename ?? '';
  const inArtifact = from.startsWith(dir + sep) || from === dir;
  if (!inArtifact || request.startsWith('.') || request.startsWith('/')) return load(request, parent, isMain);
  try {
    const loaded = load(request, parent, isMain);
    requests.push({ request, from: relative(dir, from), resolved: true });
    return loaded;
  } catch (e) {
    requests.push({ request, from: relative(dir, from), resolved: false, error: (e as Error).message });
    throw e;
  }
};

function fakeContext(functionName: string, logged: string[], dequeueCount = 1) {
  const log = (...args: unknown[]) => logged.push(args.map(String).join(' '));
  return {
    invocationId: '00000000-0000-4000-8000-000000000001',
    functionName,
    triggerMetadata: { dequeueCount },
    extraInputs: { get: () => undefined, set: () => undefined },
    extraOutputs: { get: () => undefined, set: () => undefined },
    log,
    trace: log,
    debug: log,
    info: log,
    warn: log,
    error: log,
  };
}

/** A request as the HTTP trigger hands it over, with route parameters that pass validation. */
function fakeRequest(
  route: string,
  params = { policyId: 'artifact-check', runId: '00000000-0000-4000-8000-000000000002' },
  method = 'GET',
) {
  const url = new URL(`http://127.0.0.1/api/${route}`);
  return {
    method,
    url: url.href,
    headers: new Headers(),
    query: url.searchParams,
    params,
    user: null,
    text: () => Promise.resolve(''),
    json: () => Promise.resolve({}),
  };
}

function triggerInput(r: Registration): unknown {
  const trigger = Object.values(r.bindings).find((b) => String(b.type).endsWith('Trigger'));
  switch (trigger?.type) {
    case 'httpTrigger':
      return fakeRequest(typeof trigger.route === 'string' ? trigger.route : '');
    case 'timerTrigger':
      return { isPastDue: false, scheduleStatus: undefined };
    default:
      return { not: 'a valid message' };
  }
}

const triggerOf = (r: Registration) =>
  Object.values(r.bindings).find((b) => b.direction === 'in' && String(b.type).endsWith('Trigger'));

/** Calls the registered HTTP function on this route and method. */
async function callRoute(route: string, method: string, params: Record<string, string>) {
  const r = registrations.find((x) => triggerOf(x)?.route === route);
  if (!r) throw new Error(`no function registered for ${method} ${route}`);
  const req = fakeRequest(
    route.replace(/\{(\w+)\}/g, (_, k: string) => params[k] ?? ''),
    params as never,
    method,
  );
  return (await r.handler(req, fakeContext(r.name, []))) as { status?: number; jsonBody?: unknown };
}

/**
 * The host's part for one run: POST policies/{policyId}/runs, then every queue a registered function
 * listens on is read and each message handed to that function (base64 JSON decoded, as the host's
 * default messageEncoding does), deleted on success and made visible again on failure, until all are empty.
 */
async function runPipeline(policyId: string): Promise<PipelineReport> {
  const runNow = await callRoute('policies/{policyId}/runs', 'POST', { policyId });
  const report: PipelineReport = {
    runNow: { status: runNow.status, jsonBody: runNow.jsonBody },
    handled: [],
  };
  if (runNow.status !== 202) return report;
  const connection = process.env.AzureWebJobsStorage!;
  const consumers = registrations
    .filter((r) => triggerOf(r)?.type === 'queueTrigger')
    .map((r) => ({ r, queue: new QueueClient(connection, String(triggerOf(r)!.queueName)) }));
  const until = Date.now() + 180_000;
  for (;;) {
    if (Date.now() > until) throw new Error('the queues did not drain within 180 s');
    let handled = 0;
    for (const { r, queue } of consumers) {
      if (!(await queue.exists())) continue;
      const { receivedMessageItems } = await queue.receiveMessages({
        numberOfMessages: 16,
        visibilityTimeout: 60,
      });
      for (const m of receivedMessageItems) {
        handled++;
        const text = Buffer.from(m.messageText, 'base64').toString('utf8');
        let message: unknown = text;
        try {
          message = JSON.parse(text);
        } catch {
          /* the host hands over a string; the handler reports it */
        }
        const step: PipelineReport['handled'][number] = {
          function: r.name,
          queue: queue.name,
          dequeueCount: m.dequeueCount,
        };
        try {
          await r.handler(message, fakeContext(r.name, [], m.dequeueCount));
          await queue.deleteMessage(m.messageId, m.popReceipt);
        } catch (e) {
          step.error = e instanceof Error ? e.message : String(e);
          await queue.updateMessage(m.messageId, m.popReceipt, undefined, 0);
        }
        report.handled.push(step);
      }
    }
    if (handled > 0) continue;
    // Done when nothing is left, counting messages that are invisible for now (a delayed continuation).
    const left = await Promise.all(
      consumers.map(async ({ queue }) =>
        (await queue.exists()) ? ((await queue.getProperties()).approximateMessagesCount ?? 0) : 0,
      ),
    );
    if (left.every((n) => n === 0)) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  const runId = (runNow.jsonBody as { runId?: string }).runId ?? '';
  const status = await callRoute('runs/{runId}', 'GET', { runId });
  report.runStatus = { status: status.status, jsonBody: status.jsonBody };
  return report;
}

async function main(): Promise<void> {
  const pkg = JSON.parse(readFileSync(join(dir!, 'package.json'), 'utf8')) as { main: string };
  const mainFiles = globSync(pkg.main, { cwd: dir }).sort();
  // The worker loads each entry point with require (CommonJS), as here.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  for (const f of mainFiles) require(join(dir!, f));
  // performance.now() counts from the start of the process.
  const registeredAfterMs = performance.now();
  const invocations: FakeWorkerReport['invocations'] = {};
  const pipeline = pipelinePolicy ? await runPipeline(pipelinePolicy) : undefined;
  for (const r of registerOnly || pipeline ? [] : registrations) {
    const logged: string[] = [];
    try {
      const returned = await r.handler(triggerInput(r), fakeContext(r.name, logged));
      invocations[r.name] = { returned, logged };
    } catch (e) {
      invocations[r.name] = { threw: e instanceof Error ? `${e.name}: ${e.message}` : String(e), logged };
    }
  }
  const report: FakeWorkerReport = {
    nodeVersion: process.version,
    registeredAfterMs,
    main: pkg.main,
    mainFiles,
    programmingModel,
    functions: registrations.map(({ name, bindings }) => ({ name, bindings })),
    invocations,
    requests: requests.filter((q) => !builtinModules.includes(q.request.replace(/^node:/, ''))),
    ...(pipeline ? { pipeline } : {}),
  };
  process.stdout.write(JSON.stringify(report) + '\n');
}

void main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`fake-worker: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);

// Loads an unpacked artifact the way the Azure Functions Node.js worker does, without the host:
// `@azure/functions-core` (which only the worker provides) records what `@azure/functions` registers,
// every file the `main` glob of the artifact's package.json matches is required, and each registered
// handler is then called once. Every module request made on the way is recorded, so the test can tell
// whether the app reached anything it does not carry.
//
// Usage: node fake-worker.js <artifact dir> [--register-only]; prints one JSON line. --register-only
// stops once the functions are registered (the cold-start bench times that).
import { globSync, readFileSync } from 'node:fs';
import Module, { builtinModules } from 'node:module';
import { join, relative, sep } from 'node:path';

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
}

const dir = process.argv[2];
if (!dir) throw new Error('usage: fake-worker <artifact dir> [--register-only]');
const registerOnly = process.argv.includes('--register-only');

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

function fakeContext(functionName: string, logged: string[]) {
  const log = (...args: unknown[]) => logged.push(args.map(String).join(' '));
  return {
    invocationId: '00000000-0000-4000-8000-000000000001',
    functionName,
    triggerMetadata: { dequeueCount: 1 },
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
function fakeRequest(route: string) {
  const url = new URL(`http://127.0.0.1/api/${route}`);
  return {
    method: 'GET',
    url: url.href,
    headers: new Headers(),
    query: url.searchParams,
    params: { policyId: 'artifact-check', runId: '00000000-0000-4000-8000-000000000002' },
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

async function main(): Promise<void> {
  const pkg = JSON.parse(readFileSync(join(dir!, 'package.json'), 'utf8')) as { main: string };
  const mainFiles = globSync(pkg.main, { cwd: dir }).sort();
  // The worker loads each entry point with require (CommonJS), as here.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  for (const f of mainFiles) require(join(dir!, f));
  // performance.now() counts from the start of the process.
  const registeredAfterMs = performance.now();
  const invocations: FakeWorkerReport['invocations'] = {};
  for (const r of registerOnly ? [] : registrations) {
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

// The deployable artifact, as `npm run package` builds it and azd uploads it: unpacked into an empty
// folder outside the repository and run on Node 22 with nothing but its own files.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { unzipSync } from 'fflate';
import ignore from 'ignore';
import { startAzurite } from '../../dev/azurite';
import { GraphTenantSimulator } from '../doubles/graph-tenant-simulator/simulator';
import { simulatorConnection } from '../support/clients';
import { folderContacts } from '../support/engine';
import { startAll } from '../support/start-all';
import type { FakeWorkerReport } from './fake-worker';

const repo = resolve(__dirname, '../../..');
const budgetBytes = 60 * 1024 * 1024;
/** Node 22 from the `node` devDependency (what Azure runs), whatever node runs the tests. */
const node22 = existsSync(join(repo, 'node_modules/.bin/node'))
  ? join(repo, 'node_modules/.bin/node')
  : process.execPath;
/** The artifact runs with no inherited module paths or options: only its own files. */
const bareEnv = { PATH: process.env.PATH ?? '', HOME: tmpdir() };

/** Temporary folders this file makes (about 30 MB per run), removed after its tests. */
const temporary: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

function run(args: string[], cwd: string, env: Record<string, string> = bareEnv) {
  const r = spawnSync(node22, args, { cwd, env, encoding: 'utf8', timeout: 600_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** As run(), without blocking this process (the simulator the artifact talks to runs in it). */
function runAsync(args: string[], cwd: string, env: Record<string, string>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((done, fail) => {
    const child = spawn(node22, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

function filesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => statSync(join(dir, f)).isFile())
    .map((f) => f.split('\\').join('/'))
    .sort();
}

function ancestorsWithNodeModules(dir: string): string[] {
  const found: string[] = [];
  for (let d = dirname(dir); ; d = dirname(d)) {
    if (existsSync(join(d, 'node_modules'))) found.push(d);
    if (dirname(d) === d) return found;
  }
}

describe('the deployable artifact (npm run package)', () => {
  let zip: string;
  let folder: string;
  let unpacked: string;
  let files: string[];
  let packageLog: string;
  let worker: FakeWorkerReport;

  before(async () => {
    const out = tempDir('artifact-out-');
    const packaged = run([join(repo, 'scripts/package.js'), '--out', out], repo, {
      ...(process.env as Record<string, string>),
    });
    assert.equal(packaged.code, 0, `npm run package failed:\n${packaged.stderr}\n${packaged.stdout}`);
    packageLog = packaged.stdout;
    zip = packaged.stdout.trim().split('\n').at(-1)!;
    folder = join(out, 'app');
    unpacked = tempDir('artifact-unpacked-');
    for (const [name, bytes] of Object.entries(unzipSync(readFileSync(zip)))) {
      if (name.endsWith('/')) continue;
      mkdirSync(dirname(join(unpacked, name)), { recursive: true });
      writeFileSync(join(unpacked, name), bytes);
    }
    files = filesUnder(unpacked);
    // The handlers run against real storage (Azurite) and a policy whose Key Vault cannot be reached:
    // storage, queue and table clients work from the bundle, and the Key Vault path runs to its
    // network call.
    const azurite = await startAzurite();
    try {
      const policyFile = join(tempDir('artifact-policy-'), 'policies.json');
      writeFileSync(policyFile, JSON.stringify(policyFileFor('https://127.0.0.1:1')));
      const w = run([join(__dirname, 'fake-worker.js'), unpacked], unpacked, {
        ...bareEnv,
        AzureWebJobsStorage: azurite.connectionString,
        POLICY_FILE: policyFile,
      });
      assert.equal(w.code, 0, `the fake worker failed to load the artifact:\n${w.stderr}`);
      worker = JSON.parse(w.stdout.trim().split('\n').at(-1)!) as FakeWorkerReport;
    } finally {
      await azurite.close();
    }
  });

  after(() => {
    for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('prints the zip path as its last line and is unpacked into an empty folder with no node_modules above it', () => {
    assert.match(zip, /\.zip$/);
    assert.ok(existsSync(zip));
    assert.deepEqual(ancestorsWithNodeModules(unpacked), [], 'a node_modules above would hide a missing one');
  });

  it('holds the app only: host.json, package.json, the CLI shim, the bundles with their maps and the dashboard pages', () => {
    assert.deepEqual(files, [
      'bin/m365-contact-sync.js',
      'dist/src/cli/main.js',
      'dist/src/cli/main.js.map',
      'dist/src/dashboard/static/app.css',
      'dist/src/dashboard/static/app.js',
      'dist/src/dashboard/static/index.html',
      'dist/src/functions/index.js',
      'dist/src/functions/index.js.map',
      'host.json',
      'package.json',
    ]);
    assert.deepEqual(
      JSON.parse(readFileSync(join(unpacked, 'host.json'), 'utf8')),
      JSON.parse(readFileSync(join(repo, 'host.json'), 'utf8')),
    );
    const pkg = JSON.parse(readFileSync(join(unpacked, 'package.json'), 'utf8'));
    assert.equal(pkg.dependencies, undefined, 'everything the app needs is in the bundles');
    assert.equal(pkg.devDependencies, undefined);
    assert.equal(pkg.scripts, undefined, 'nothing for a remote build to run');
  });

  it('is exactly the folder azure.yaml deploys (dist), file for file and byte for byte', () => {
    assert.deepEqual(filesUnder(folder), files);
    for (const f of files)
      assert.ok(readFileSync(join(folder, f)).equals(readFileSync(join(unpacked, f))), f);
    assert.match(readFileSync(join(repo, 'azure.yaml'), 'utf8'), /^\s+dist: \.artifact\/app\s*$/m);
  });

  it('stays within the 60 MB budget (size and file count printed)', () => {
    const size = files.reduce((n, f) => n + statSync(join(unpacked, f)).size, 0);
    process.stdout.write(
      `artifact: ${files.length} files, ${(size / 1024 / 1024).toFixed(2)} MB unpacked, zip ${(statSync(zip).size / 1024 / 1024).toFixed(2)} MB\n`,
    );
    process.stdout.write(`${packageLog.split('\n').find((l) => l.includes('largest dependencies')) ?? ''}\n`);
    assert.ok(size <= budgetBytes, `${size} bytes unpacked, over the ${budgetBytes} budget`);
  });

  it('runs on Node 22, and its main glob matches the function files', () => {
    assert.match(worker.nodeVersion, /^v22\./);
    assert.equal(worker.main, JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).main);
    assert.deepEqual(worker.mainFiles, ['dist/src/functions/index.js']);
    assert.match(worker.programmingModel ?? '', /^@azure\/functions@4\./);
  });

  it('registers every function by name and trigger, as @azure/functions hands them to the worker', () => {
    const triggers = Object.fromEntries(
      worker.functions.map((f) => {
        const t = Object.values(f.bindings).find(
          (b) => b.direction === 'in' && String(b.type).endsWith('Trigger'),
        )!;
        return [f.name, t];
      }),
    );
    assert.deepEqual(Object.keys(triggers).sort(), [
      'certificate-rotation',
      'dashboard',
      'dashboardApi',
      'getRunStatus',
      'health',
      'listPolicies',
      'mailboxSyncs',
      'mailboxSyncsPoison',
      'policyRuns',
      'policyRunsPoison',
      'previewPolicy',
      'removePolicyContacts',
      'runPolicyNow',
      'scheduler',
    ]);
    assert.equal(triggers.scheduler!.type, 'timerTrigger');
    assert.equal(triggers.scheduler!.schedule, '%SCHEDULER_SCHEDULE%');
    assert.equal(triggers['certificate-rotation']!.schedule, '%CERTIFICATE_ROTATION_SCHEDULE%');
    const queues = {
      mailboxSyncs: 'mailbox-syncs',
      mailboxSyncsPoison: 'mailbox-syncs-poison',
      policyRuns: 'policy-runs',
      policyRunsPoison: 'policy-runs-poison',
    };
    for (const [name, queueName] of Object.entries(queues)) {
      assert.equal(triggers[name]!.type, 'queueTrigger', name);
      assert.equal(triggers[name]!.queueName, queueName, name);
      assert.equal(triggers[name]!.connection, 'AzureWebJobsStorage', name);
    }
    const routes = {
      runPolicyNow: ['POST', 'policies/{policyId}/runs'],
      getRunStatus: ['GET', 'runs/{runId}'],
      listPolicies: ['GET', 'policies'],
      previewPolicy: ['GET', 'policies/{policyId}/preview'],
      health: ['GET', 'health'],
    };
    for (const [name, [method, route]] of Object.entries(routes)) {
      assert.equal(triggers[name]!.type, 'httpTrigger', name);
      assert.equal(triggers[name]!.authLevel, 'function', name);
      assert.equal(triggers[name]!.route, route, name);
      assert.deepEqual(triggers[name]!.methods, [method], name);
    }
    // The dashboard needs no function key in the browser: it signs users in and checks their role itself.
    assert.equal(triggers.dashboard!.authLevel, 'anonymous');
    assert.equal(triggers.dashboard!.route, 'dashboard/{*path}');
    assert.equal(triggers.dashboardApi!.authLevel, 'anonymous');
    assert.equal(triggers.dashboardApi!.route, 'dashboard-api/{*path}');
    // Removing a policy's contacts is for operators: the master key, not the function key.
    assert.equal(triggers.removePolicyContacts!.authLevel, 'admin');
    assert.equal(triggers.removePolicyContacts!.route, 'policies/{policyId}/removal');
  });

  it('runs every handler from the bundle against real storage, and the Key Vault path to its network call', () => {
    assert.equal(Object.keys(worker.invocations).length, worker.functions.length);
    for (const [name, inv] of Object.entries(worker.invocations))
      assert.doesNotMatch(
        JSON.stringify(inv),
        /Cannot find module|MODULE_NOT_FOUND|ENOENT|is not a function|is not defined|app settings are invalid/,
        name,
      );
    const returned = (name: string) => {
      const r = worker.invocations[name]!.returned as { status: number; jsonBody?: unknown };
      return { status: r.status, body: JSON.stringify(r.jsonBody ?? null) };
    };
    assert.equal(returned('listPolicies').status, 200);
    assert.match(returned('listPolicies').body, /"id":"artifact-check"/);
    assert.equal(returned('getRunStatus').status, 404, 'read the runs table');
    assert.equal(returned('runPolicyNow').status, 202, 'wrote the run and queued it');
    // Key Vault (127.0.0.1:1) refuses the connection: the health check says so for the connection.
    assert.equal(returned('health').status, 503);
    assert.match(returned('health').body, /ECONNREFUSED|connect/i);
    assert.equal(returned('previewPolicy').status, 500);
    // The dashboard's page is served from the files packed beside the bundle.
    assert.equal(returned('dashboard').status, 200);
    const page = worker.invocations.dashboard!.returned as { headers: Record<string, string> };
    assert.match(page.headers['content-type']!, /^text\/html/);
    assert.match(page.headers['content-security-policy']!, /frame-ancestors 'none'/);
    assert.deepEqual(worker.invocations.scheduler!.threw, undefined);
  });

  it('syncs one policy end to end from the bundle: run now, policy-runs, mailbox-syncs, contacts and the report mail in the simulator', async () => {
    const started = await startAll(
      // Only the artifact's process talks to it (trusting its CA through NODE_EXTRA_CA_CERTS).
      GraphTenantSimulator.start({
        latency: { meanMs: 0, jitterMs: 0 },
        workDir: tempDir('artifact-sim-'),
        seed: { generate: { users: 12, mailboxes: 3 } },
      }),
      startAzurite(),
    );
    const [sim, azurite] = started;
    try {
      const admin = [...sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
      const policyFile = join(tempDir('artifact-policy-'), 'policies.json');
      writeFileSync(
        policyFile,
        JSON.stringify({
          // The certificate from a PEM file: the app's Key Vault client verifies the challenge's
          // resource against Azure's vault domains, which a local fake cannot pass.
          connections: [simulatorConnection(sim, 'contoso', 'pemFile')],
          policies: [
            {
              id: 'artifact-sync',
              name: 'Artifact sync',
              connection: 'contoso',
              source: { type: 'directory' },
              targets: { type: 'allMailboxes' },
              folder: { name: 'Company Directory' },
              notify: {
                recipients: ['it-admins@contoso.example'],
                sender: admin.userPrincipalName,
                when: 'always',
              },
            },
          ],
        }),
      );
      const w = await runAsync(
        [join(__dirname, 'fake-worker.js'), unpacked, '--pipeline', 'artifact-sync'],
        unpacked,
        {
          ...bareEnv,
          AzureWebJobsStorage: azurite.connectionString,
          POLICY_FILE: policyFile,
          CERTIFICATE_CHECK_MINUTES: '0',
          // The simulator's TLS certificate, trusted as Azure's own are.
          NODE_EXTRA_CA_CERTS: sim.caCertPath,
        },
      );
      assert.equal(w.code, 0, `the fake worker failed:\n${w.stderr}`);
      const { pipeline } = JSON.parse(w.stdout.trim().split('\n').at(-1)!) as FakeWorkerReport;
      const trace = JSON.stringify(pipeline);
      assert.equal(pipeline!.runNow.status, 202, trace);
      const handledBy = new Set(pipeline!.handled.map((h) => `${h.function}<-${h.queue}`));
      assert.ok(handledBy.has('policyRuns<-policy-runs'), trace);
      assert.ok(handledBy.has('mailboxSyncs<-mailbox-syncs'), trace);
      assert.deepEqual(
        pipeline!.handled.filter((h) => h.error),
        [],
        'no message failed',
      );
      const run = pipeline!.runStatus!.jsonBody as {
        status: string;
        expected: number;
        done: number;
        contacts: { created: number };
        outcomes: { userPrincipalName: string; status: string; result?: { created: number } }[];
      };
      assert.equal(pipeline!.runStatus!.status, 200, trace);
      assert.equal(run.status, 'completed', trace);
      assert.ok(run.expected >= 3 && run.done === run.expected, trace);
      assert.ok(run.contacts.created > 0, trace);
      // The seeded tenant also holds users without a mailbox, which a run skips.
      assert.deepEqual(
        run.outcomes.filter((o) => o.status !== 'succeeded' && o.status !== 'skipped'),
        [],
        'no mailbox failed',
      );
      const synced = run.outcomes.filter((o) => o.status === 'succeeded');
      assert.ok(synced.length >= 2, trace);
      let created = 0;
      for (const o of synced) {
        const contacts = folderContacts(sim, o.userPrincipalName, 'Company Directory');
        assert.ok(contacts.length > 0, `${o.userPrincipalName} has no synced contacts in the simulator`);
        assert.equal(contacts.length, o.result!.created, o.userPrincipalName);
        created += contacts.length;
      }
      assert.equal(created, run.contacts.created);
      const sent = sim.tenant.mailbox(admin.userPrincipalName)!.sentMail;
      assert.equal(sent.length, 1, 'the report mail was sent');
      assert.match(String(sent[0]!.message.mime), /^To: it-admins@contoso\.example/m);
      assert.match(String(sent[0]!.message.mime), /Artifact sync/);
    } finally {
      await Promise.allSettled([sim.close(), azurite.close()]);
    }
  });

  it('reaches no module outside itself except the optional ones it can do without', () => {
    const missing = worker.requests.filter((q) => !q.resolved);
    assert.deepEqual(
      missing.map((q) => q.request),
      missing.length ? ['supports-color'] : [],
      JSON.stringify(worker.requests),
    );
    const bundles = files.filter((f) => f.endsWith('.js') && f.startsWith('dist/'));
    for (const f of bundles) {
      const text = readFileSync(join(unpacked, f), 'utf8');
      const required = new Set(
        [...text.matchAll(/\brequire\(\s*["']([^"'.][^"']*)["']\s*\)/g)].map((m) => m[1]!),
      );
      const foreign = [...required].filter(
        (r) =>
          !r.startsWith('node:') && !isBuiltin(r) && r !== '@azure/functions-core' && r !== 'supports-color',
      );
      assert.deepEqual(foreign, [], `${f} requires modules the artifact does not carry`);
    }
  });

  it('carries the CLI: --help and validate answer from the artifact alone', () => {
    const help = run(['bin/m365-contact-sync.js', '--help'], unpacked);
    assert.equal(help.code, 0, help.stderr);
    for (const c of ['validate', 'preview', 'run', 'doctor', 'cert', 'scope'])
      assert.match(help.stdout, new RegExp(`\\b${c}\\b`));
    const dir = tempDir('artifact-cli-');
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify(policyFileFor('https://contoso-kv.vault.azure.net')));
    const ok = run(['bin/m365-contact-sync.js', 'validate', good], unpacked);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ connections: [], policies: [{ id: 'x' }] }));
    const refused = run(['bin/m365-contact-sync.js', 'validate', bad], unpacked);
    assert.equal(refused.code, 2, refused.stdout + refused.stderr);
    assert.match(refused.stdout + refused.stderr, /bad\.json: connections: /, 'the error names the field');
  });

  it('loses no file to a .funcignore, read with the gitignore rules azd applies', () => {
    for (const at of [repo, folder]) {
      const file = join(at, '.funcignore');
      if (!existsSync(file)) continue;
      const rules = ignore().add(readFileSync(file, 'utf8'));
      const base = at === repo ? '.artifact/app/' : '';
      const dropped = files.filter((f) => rules.ignores(base + f) || rules.ignores(f));
      assert.deepEqual(dropped, [], `${file} would drop these from the deployment`);
    }
  });
});

/** A valid policy file with one policy on a connection whose certificate sits in the given vault. */
function policyFileFor(keyVaultUrl: string) {
  return {
    connections: [
      {
        id: 'contoso',
        tenantId: '11111111-1111-4111-8111-111111111111',
        clientId: '22222222-2222-4222-8222-222222222222',
        certificate: { keyVaultUrl, name: 'contact-sync' },
      },
    ],
    policies: [
      {
        id: 'artifact-check',
        name: 'Artifact check',
        connection: 'contoso',
        source: { type: 'directory' },
        targets: { type: 'allMailboxes' },
        folder: { name: 'Company Directory' },
      },
    ],
  };
}

// DEV TOOL: the transcript in docs/setup.md, from a real run. `setup --yes` (the CLI as a child
// process) runs twice against the Graph tenant simulator from an empty tenant, its test hook approving
// the device code as an admin holding Privileged Role Administrator and the two Key Vault roles.
// `npm run docs:setup-transcript` writes both runs between the markers in docs/setup.md; the
// transcript test compares the committed text with a fresh run, ids, times and thumbprints aside.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { GraphTenantSimulator } from '../test/doubles/graph-tenant-simulator/simulator';

const root = resolve(__dirname, '../..');
export const setupDoc = join(root, 'docs/setup.md');
export const transcriptRuns = ['first-run', 'second-run'] as const;
type Run = (typeof transcriptRuns)[number];

/** The simulator's loopback origins, as the docs show them. */
const origin = /https:\/\/127\.0\.0\.1:\d+/g;

/** Both runs of `setup --yes`, each as the reader sees it: the command, its output, its exit code. */
export async function setupTranscript(): Promise<Record<Run, string>> {
  const sim = await GraphTenantSimulator.start({
    registerApp: false,
    deviceCodeIntervalSeconds: 1,
    latency: { meanMs: 0, jitterMs: 0 },
    seed: { generate: { users: 16, mailboxes: 3, awkward: false } },
  });
  const dir = mkdtempSync(join(tmpdir(), 'setup-transcript-'));
  try {
    const admin = [...sim.tenant.users.values()].find((u) => u.accountEnabled && u.mailbox === 'user')!;
    sim.assignDirectoryRole(admin.userPrincipalName, 'Privileged Role Administrator');
    sim.grantUserVaultRoles(admin.userPrincipalName, ['secrets-read', 'certificates-write']);
    const args = [
      'setup',
      '--yes',
      '--vault',
      sim.keyVaultUrl,
      '--authority-host',
      sim.authorityHost,
      '--graph-endpoint',
      sim.graphUrl,
      '--out',
      'policies.json',
    ];
    const run = async (): Promise<string> => {
      const r = await cli(sim, args, dir, admin.userPrincipalName);
      return `$ npm run cli -- ${args.join(' ')}\n${r.output}(exit ${r.code})\n`.replace(
        origin,
        'https://127.0.0.1:PORT',
      );
    };
    return { 'first-run': await run(), 'second-run': await run() };
  } finally {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The CLI with no Azure sign-in of its own: only the device code, which `user` approves. */
function cli(
  sim: GraphTenantSimulator,
  args: string[],
  cwd: string,
  user: string,
): Promise<{ code: number | null; output: string }> {
  return new Promise((done) => {
    const env: Record<string, string | undefined> = {
      ...process.env,
      NODE_EXTRA_CA_CERTS: sim.caCertPath,
      CONTACTSYNC_LOCAL_KEY_VAULT: 'allow',
    };
    for (const name of Object.keys(env))
      if (name.startsWith('AZURE_') || name === 'CONTACTSYNC_STORAGE') delete env[name];
    const child = spawn(process.execPath, [join(root, 'bin/m365-contact-sync.js'), ...args], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let approved = false;
    const take = (d: Buffer): void => {
      output += d.toString();
      const code = /enter the code (\S+) to authenticate/.exec(output)?.[1];
      if (code && !approved) {
        approved = true;
        sim.approveDeviceCode(code, user);
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('exit', (code) => done({ code, output }));
  });
}

/** What differs between two honest runs (ids, codes, thumbprints, versions, dates, days) made alike. */
export function comparable(text: string): string {
  return text
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>')
    .replace(/\b[0-9A-F]{40}\b/g, '<thumbprint>')
    .replace(/\b[0-9a-f]{32}\b/g, '<version>')
    .replace(/the code \S+ to/g, 'the code <code> to')
    .replace(/\d{4}-\d{2}-\d{2}(T[\d:.]+Z)?/g, '<date>')
    .replace(/\b\d+ days\b/g, '<n> days');
}

const marker = (run: Run, end: boolean): string =>
  `<!-- setup-transcript:${run}:${end ? 'end' : 'begin'} -->`;

/** The text between a run's markers in the doc (the fenced block). */
export function committedRun(doc: string, run: Run): string {
  const begin = doc.indexOf(marker(run, false));
  const end = doc.indexOf(marker(run, true));
  if (begin < 0 || end < begin)
    throw new Error(`docs/setup.md has no ${marker(run, false)} … ${marker(run, true)}`);
  return doc
    .slice(begin + marker(run, false).length, end)
    .replace(/^\n+```text\n/, '')
    .replace(/```\n+$/, '');
}

/** The doc with each run's block replaced. */
export function withTranscript(doc: string, runs: Record<Run, string>): string {
  let out = doc;
  for (const run of transcriptRuns) {
    const begin = out.indexOf(marker(run, false));
    const end = out.indexOf(marker(run, true));
    if (begin < 0 || end < begin)
      throw new Error(`docs/setup.md has no ${marker(run, false)} … ${marker(run, true)}`);
    out = `${out.slice(0, begin + marker(run, false).length)}\n\n\`\`\`text\n${runs[run]}\`\`\`\n\n${out.slice(end)}`;
  }
  return out;
}

if (require.main === module) {
  void setupTranscript().then(
    (runs) => {
      writeFileSync(setupDoc, withTranscript(readFileSync(setupDoc, 'utf8'), runs));
      console.log(`wrote both setup runs into ${setupDoc}`);
    },
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}

// Issue 17 item 7: the README and docs/ agree with the code wherever a list can be compared: the
// permission tables with neededPermissions, the policy fields and options with the schema, the HTTP
// run request's fields with its schema, the app settings with the settings schema, and the CLI
// commands the docs show with the CLI (run the way the docs say: `npm run cli --`).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { neededPermissions } from '../../src/app/diagnostics';
import { settingKeys } from '../../src/app/settings';
import { policySchema } from '../../src/sync/config/schema';
import { runOptionsSchema } from '../../src/sync/messages';
import { main } from '../../src/cli/main';

const root = resolve(__dirname, '../../..');
const read = (file: string): string => readFileSync(join(root, file), 'utf8');
const docFiles = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** The first cells of the markdown table that follows `heading`, without backticks. */
function tableKeys(text: string, heading: RegExp): string[] {
  const at = text.search(heading);
  assert.ok(at >= 0, `no ${heading}`);
  const lines = text.slice(at).split('\n');
  const start = lines.findIndex((l) => l.trimStart().startsWith('|'));
  const keys: string[] = [];
  for (const line of lines.slice(start)) {
    if (!line.trimStart().startsWith('|')) break;
    const cell = line.trim().split('|')[1]!.trim();
    if (/^-+$/.test(cell) || cell === '') continue;
    keys.push(cell.replace(/`/g, ''));
  }
  return keys.slice(1); // the header row
}

/** A policy that needs every permission there is. */
const everything = policySchema.parse({
  id: 'all',
  name: 'All',
  connection: 'c',
  source: {
    type: 'directory',
    includeGroups: ['00000000-0000-4000-8000-000000000001'],
    includeOrgContacts: true,
    sharedMailboxes: true,
  },
  targets: { type: 'allMailboxes' },
  folder: { name: 'Directory' },
  notify: { recipients: ['it@contoso.example'], sender: 'reports@contoso.example', when: 'always' },
});
const permissions = neededPermissions([everything])
  .map((p) => p.permission)
  .sort();

describe('the docs agree with the code (issue 17 item 7)', () => {
  it("the README's and docs/deploy.md's permission tables list exactly what the policies can need", () => {
    assert.deepEqual(tableKeys(read('README.md'), /^### Permissions/m).sort(), permissions);
    assert.deepEqual(
      tableKeys(read('docs/deploy.md'), /^## 2\. Register the app/m).sort(),
      permissions,
      'docs/deploy.md step 2',
    );
  });

  it("the README's policy field table documents every policy field (enabled too) and every option", () => {
    const readme = read('README.md');
    const documented = tableKeys(readme, /^\| field +\| meaning/m).flatMap((cell) =>
      cell.split(',').map((k) =>
        k
          .trim()
          .replace(/^(policies|connections)\[\]\./, '')
          .replace(/\..*$/, ''),
      ),
    );
    for (const key of Object.keys(policySchema.shape))
      assert.ok(documented.includes(key), `policy field "${key}" is not in the README's field table`);
    const optionsRow = readme.split('\n').find((l) => l.startsWith('| `options`'))!;
    const options = policySchema.shape.options.unwrap();
    for (const key of Object.keys(options.shape))
      assert.ok(optionsRow.includes(`\`${key}\``), `option "${key}" is not in the README's options row`);
  });

  it('every field of the HTTP run request is in the README (fullResync too)', () => {
    const readme = read('README.md');
    for (const key of Object.keys(runOptionsSchema.shape))
      assert.ok(readme.includes(`"${key}"`), `the run request's "${key}" is not in the README`);
  });

  it('docs/deploy.md lists exactly the app settings the app reads', () => {
    assert.deepEqual(tableKeys(read('docs/deploy.md'), /^## App settings/m).sort(), [...settingKeys].sort());
  });

  it('the docs run the CLI as `npm run cli --` (the package is not published), with commands that exist', async () => {
    let help = '';
    await main(['--help'], { out: (l) => (help += l + '\n'), err: (l) => (help += l + '\n'), isTTY: false });
    const commands = new Set(
      [...help.slice(help.indexOf('Commands:')).matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!),
    );
    assert.ok(commands.has('doctor') && commands.has('scope'), help);
    for (const file of docFiles) {
      const text = read(file);
      assert.doesNotMatch(
        text,
        /npx m365-contact-sync/,
        `${file} tells to run an unpublished package with npx`,
      );
      for (const m of text.matchAll(/npm run cli -- ([a-z][a-z-]*)/g))
        assert.ok(commands.has(m[1]!), `${file}: "npm run cli -- ${m[1]}" is not a CLI command`);
    }
    // The documented command, as documented, from the repository root.
    const dir = mkdtempSync(join(tmpdir(), 'docs-cli-'));
    const file = join(dir, 'policies.json');
    writeFileSync(
      file,
      JSON.stringify({
        connections: [
          {
            id: 'c',
            tenantId: '00000000-0000-4000-8000-000000000001',
            clientId: '00000000-0000-4000-8000-000000000002',
            certificate: { pemFile: 'app.pem' },
          },
        ],
        policies: [
          {
            id: 'p',
            name: 'P',
            connection: 'c',
            source: { type: 'directory' },
            targets: { type: 'allMailboxes' },
            folder: { name: 'Directory' },
          },
        ],
      }),
    );
    const run = spawnSync('npm', ['run', 'cli', '--', 'validate', file], { cwd: root, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /1 connection\(s\), 1 valid policy, 0 invalid/);
  });
});

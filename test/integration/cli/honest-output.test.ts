// Issue 17 item 5 through `run` against the simulator and Azurite: a policy whose targets select no
// mailbox says so, and an unknown group id fails the run naming its JSON path in the policy file.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import { simulatorConnection, startSimulator } from '../../support/clients';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { startAll } from '../../support/start-all';
import { runCli as cli } from '../../support/cli';

describe('run says what it could not do (issue 17 item 5)', () => {
  let sim: GraphTenantSimulator;
  let azurite: AzuriteHandle;
  let env: Record<string, string>;
  const file = (policies: object[]): string => {
    const path = join(mkdtempSync(join(tmpdir(), 'honest17-')), 'policies.json');
    writeFileSync(
      path,
      JSON.stringify({ connections: [simulatorConnection(sim, 'contoso', 'pemFile')], policies }),
    );
    return path;
  };
  const policy = (id: string, targets: object): object => ({
    id,
    name: id,
    connection: 'contoso',
    source: { type: 'directory' },
    targets,
    folder: { name: 'Directory' },
  });
  before(async () => {
    [sim, azurite] = await startAll(
      startSimulator({ seed: { generate: { users: 10, mailboxes: 4, awkward: false } } }),
      startAzurite(),
    );
    env = { NODE_EXTRA_CA_CERTS: sim.caCertPath, CONTACTSYNC_STORAGE: azurite.connectionString };
  });
  after(async () => {
    await Promise.all([sim.close(), azurite.close()]);
  });

  it('a policy whose targets select no mailbox says so', async () => {
    const unlicensed = [...sim.tenant.users.values()].find((u) => u.mailbox === 'none')!;
    const r = await cli(
      [
        'run',
        '--config',
        file([policy('nobody', { type: 'users', users: [unlicensed.userPrincipalName] })]),
        '--policy',
        'nobody',
      ],
      env,
    );
    assert.match(r.stdout, /Run \S+: 0 mailboxes/);
    assert.match(r.stdout, /note: the policy selects no target mailboxes/);
    assert.match(r.stdout, new RegExp(`skipped ${unlicensed.userPrincipalName.replace(/\./g, '\\.')}: `));
  });

  it('an unknown group id fails the run naming its JSON path', async () => {
    const known = [...sim.tenant.groups.values()][0]!.id;
    const missing = '11111111-2222-4333-8444-555555555555';
    const config = file([
      policy('first', { type: 'allMailboxes' }),
      policy('grouped', { type: 'groups', groups: [known, missing] }),
    ]);
    const r = await cli(['run', '--config', config, '--policy', 'grouped'], env);
    assert.equal(r.code, 1, r.stdout);
    assert.match(
      r.stderr,
      new RegExp(
        `run failed: reading the directory failed: policies\\[1\\]\\.targets\\.groups\\[1\\]: no group ${missing} in the directory`,
      ),
    );
  });
});

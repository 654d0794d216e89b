// A departed mailbox whose clean-up fails is a failure of the run, though it is counted apart: the CLI
// exits 1, notify.when 'onErrors' mails the report, the runs line says so (review 17, finding 1: after
// departed mailboxes were counted apart, all three said success while the leaver kept its contacts).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { simulatorConnection, startSimulator } from '../../support/clients';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { startAll } from '../../support/start-all';
import { folderContacts } from '../../support/engine';
import { runCli as cli } from '../../support/cli';

const lastJson = (stdout: string): { runId: string; departed?: { failed: number } } =>
  JSON.parse(stdout.trim().split('\n').at(-1)!) as { runId: string; departed?: { failed: number } };

describe('a departed mailbox whose clean-up fails', () => {
  let sim: GraphTenantSimulator;
  let azurite: AzuriteHandle;
  let env: Record<string, string>;
  let users: SimUser[];
  before(async () => {
    [sim, azurite] = await startAll(
      startSimulator({ seed: { generate: { users: 12, mailboxes: 12, awkward: false } } }),
      startAzurite(),
    );
    users = [...sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
    env = { NODE_EXTRA_CA_CERTS: sim.caCertPath, CONTACTSYNC_STORAGE: azurite.connectionString };
  });
  after(async () => {
    await Promise.all([sim.close(), azurite.close()]);
  });

  it('is a failure: exit 1, a report mail (onErrors), "failed" in the runs line', async () => {
    const [admin, keep, leaver] = [users[0]!, users[1]!, users[2]!];
    const file = (targets: string[]): string => {
      const f = join(mkdtempSync(join(tmpdir(), 'departed-failed-')), 'policies.json');
      writeFileSync(
        f,
        JSON.stringify({
          connections: [simulatorConnection(sim, 'contoso', 'pemFile')],
          policies: [
            {
              id: 'dep',
              name: 'Dep',
              connection: 'contoso',
              source: { type: 'directory' },
              targets: { type: 'users', users: targets },
              folder: { name: 'Dep' },
              notify: { recipients: [admin.mail!], sender: admin.userPrincipalName, when: 'onErrors' },
            },
          ],
        }),
      );
      return f;
    };
    const filled = await cli(
      ['run', '--config', file([keep.userPrincipalName, leaver.userPrincipalName]), '--policy', 'dep'],
      env,
    );
    assert.equal(filled.code, 0, filled.stdout + filled.stderr);
    const had = folderContacts(sim, leaver.userPrincipalName, 'Dep').length;
    assert.ok(had > 0);
    const mailsBefore = sim.tenant.mailbox(admin.id)!.sentMail.length;
    // The leaver's mailbox refuses every Graph call (e.g. mailbox moved / on hold / a 5xx storm).
    sim.faults.add({ kind: 'status', status: 503, match: { mailbox: leaver.id } });
    sim.faults.add({ kind: 'status', status: 503, match: { mailbox: leaver.userPrincipalName } });
    const r = await cli(
      ['run', '--config', file([keep.userPrincipalName]), '--policy', 'dep', '--force', '--json'],
      env,
    );
    sim.faults.clear();
    const s = lastJson(r.stdout);
    const listed = await cli(['runs', '--policy', 'dep', '--last', '1'], env);
    assert.match(listed.stdout, /departed 1 \(-0, 1 failed\)/, listed.stdout);
    const mails = sim.tenant.mailbox(admin.id)!.sentMail.length - mailsBefore;
    assert.equal(
      folderContacts(sim, leaver.userPrincipalName, 'Dep').length,
      had,
      'the leaver kept its contacts',
    );
    assert.equal(s.departed?.failed, 1, 'the departed mailbox failed');
    assert.equal(r.code, 1, 'a run in which a mailbox failed exits 1 ');
    assert.equal(mails, 1, 'notify.when onErrors: a failed mailbox mails the report ');
  });
});

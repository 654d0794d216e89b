// Issue 16 item 8: Mail.Send is tenant-wide, and `notify.sender` can name any mailbox, so whoever edits
// the policy file could send mail as the CEO. `scope` prints the RBAC for Applications assignment that
// limits Mail.Send to the senders the policies name; `doctor` and /api/health warn while the app's
// token still carries the tenant-wide grant.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GraphTenantSimulator } from '../doubles/graph-tenant-simulator/simulator';
import { simulatorConnection, startSimulator } from '../support/clients';
import { main } from '../../src/cli/main';
import { App } from '../../src/app/composition';
import { parseSettings } from '../../src/app/settings';
import { checkConnection } from '../../src/app/diagnostics';
import { parsePolicyFile } from '../../src/sync/config/policy-file';

const policy = (id: string, connection: string, notify: object) => ({
  id,
  name: id,
  connection,
  source: { type: 'directory' },
  targets: { type: 'users', users: ['a@contoso.example'] },
  folder: { name: 'Directory' },
  notify,
});
const reports = (sender: string, when = 'always') => ({ recipients: ['it@contoso.example'], sender, when });

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await main(args, {
    out: (l) => (out += l + '\n'),
    err: (l) => (out += l + '\n'),
    isTTY: false,
  });
  return { code, out };
}

describe('Mail.Send limited to the report senders', () => {
  let sim: GraphTenantSimulator;
  let dir: string;
  /** A mailbox of the tenant: doctor checks the report sender exists. */
  let sender: string;
  const write = (name: string, file: object): string => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(file));
    return path;
  };

  before(async () => {
    sim = await startSimulator({ seed: { generate: { users: 5, mailboxes: 1 } } });
    dir = mkdtempSync(join(tmpdir(), 'mail-send-'));
    sender = [...sim.tenant.users.values()].find((u) => u.mailbox === 'user')!.userPrincipalName;
  });
  after(() => sim.close());

  it('scope prints the Application Mail.Send assignment for exactly the senders on that connection', async () => {
    const other = simulatorConnection(sim, 'other', 'pemFile');
    const file = write('scope.json', {
      connections: [simulatorConnection(sim, 'contoso', 'pemFile'), other],
      policies: [
        policy('first', 'contoso', reports('reports@contoso.example')),
        policy('second', 'contoso', reports("o'hara@contoso.example", 'onErrors')),
        policy('twice', 'contoso', reports('REPORTS@contoso.example')),
        policy('silent', 'contoso', reports('quiet@contoso.example', 'never')),
        policy('elsewhere', 'other', reports('other@fabrikam.example')),
      ],
    });
    const r = await cli(['scope', '--config', file, '--policy', 'first']);
    assert.equal(r.code, 0, r.out);
    assert.ok(
      r.out.includes(
        "New-ManagementScope -Name 'ContactSync-senders-contoso' -RecipientRestrictionFilter 'UserPrincipalName -eq ''reports@contoso.example'' -or UserPrincipalName -eq ''o''''hara@contoso.example'''",
      ),
      r.out,
    );
    assert.match(
      r.out,
      /New-ManagementRoleAssignment -App \$sp\.AppId -Role 'Application Mail\.Send' -CustomResourceScope 'ContactSync-senders-contoso'/,
    );
    assert.match(r.out, /remove the tenant-wide Mail\.Send application permission/);
    assert.doesNotMatch(r.out, /quiet@|other@fabrikam/);

    const none = write('none.json', {
      connections: [simulatorConnection(sim, 'contoso', 'pemFile')],
      policies: [policy('first', 'contoso', { recipients: [], when: 'never' })],
    });
    const quiet = await cli(['scope', '--config', none, '--policy', 'first']);
    assert.match(quiet.out, /No policy on connection "contoso" sends reports: remove Mail\.Send/);
    assert.doesNotMatch(quiet.out, /Application Mail\.Send/);
  });

  it('doctor warns while Mail.Send is tenant-wide, without failing', async () => {
    const file = write('doctor.json', {
      connections: [simulatorConnection(sim, 'contoso', 'pemFile')],
      policies: [policy('first', 'contoso', reports(sender))],
    });
    const r = await cli(['doctor', '--config', file]);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      new RegExp(`OK   contoso: report sender ${sender.replace(/\./g, '\\.')}: .* has a mailbox`),
    );
    assert.match(
      r.out,
      /WARN contoso: Mail\.Send is granted tenant-wide: the app can send mail as any mailbox, not only \S+@contoso\.example\n {5}fix: limit it to the sender mailboxes with the RBAC for Applications assignment `m365-contact-sync scope` prints/,
    );
    // Without the tenant-wide grant (scoped by Exchange, or not needed) there is nothing to warn about.
    const noReports = write('no-reports.json', {
      connections: [simulatorConnection(sim, 'contoso', 'pemFile')],
      policies: [policy('first', 'contoso', { recipients: [], when: 'never' })],
    });
    const unneeded = await cli(['doctor', '--config', noReports]);
    assert.match(
      unneeded.out,
      /WARN contoso: Mail\.Send is granted tenant-wide, and no policy on this connection sends reports/,
    );
    sim.setPermissions(['User.Read.All', 'Contacts.ReadWrite']);
    try {
      const scoped = await cli(['doctor', '--config', noReports]);
      assert.equal(scoped.code, 0, scoped.out);
      assert.doesNotMatch(scoped.out, /WARN [^\n]*Mail\.Send/);
    } finally {
      sim.setPermissions([
        'User.Read.All',
        'GroupMember.Read.All',
        'OrgContact.Read.All',
        'Contacts.ReadWrite',
        'Mail.Send',
      ]);
    }
  });

  it('health carries the same warning as a check that does not fail', async () => {
    const file = write('health.json', {
      connections: [simulatorConnection(sim, 'contoso', 'pemFile')],
      policies: [policy('first', 'contoso', reports(sender))],
    });
    const app = new App({
      settings: parseSettings({ AzureWebJobsStorage: 'UseDevelopmentStorage=true', POLICY_FILE: file }),
      credential: { getToken: () => Promise.resolve(null) },
    });
    const loaded = parsePolicyFile(readFileSync(file, 'utf8'));
    const health = await checkConnection(app, loaded.connections.get('contoso')!, loaded.policies);
    const warning = health.checks.find((c) => c.name === 'Mail.Send scope');
    assert.equal(warning?.warning, true, JSON.stringify(health.checks));
    assert.ok(
      warning.detail.includes(`tenant-wide: the app can send mail as any mailbox, not only ${sender}`),
    );
    assert.equal(health.ok, true);
  });
});

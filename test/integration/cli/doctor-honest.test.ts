// Issue 17 item 5 through the CLI binary against the simulator: `doctor` accepts Contacts.ReadWrite
// granted by Exchange RBAC for Applications (not in the token) once a target mailbox answers, checks
// the report sender's mailbox, names an unknown group id by its JSON path, and calls a TLS failure TLS.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { simulatorConnection, startSimulator } from '../../support/clients';
import { productPermissions } from '../../doubles/graph-tenant-simulator/simulator';
import { runCli as cli } from '../../support/cli';

describe('doctor tells what is really wrong (issue 17 item 5)', () => {
  let sim: GraphTenantSimulator;
  let env: Record<string, string>;
  let a: SimUser;
  let b: SimUser;
  let sender: SimUser;
  let noMailbox: SimUser;
  const file = (policies: object[]): string => {
    const path = join(mkdtempSync(join(tmpdir(), 'doctor17-')), 'policies.json');
    writeFileSync(
      path,
      JSON.stringify({ connections: [simulatorConnection(sim, 'contoso', 'pemFile')], policies }),
    );
    return path;
  };
  const policy = (id: string, extra: object = {}): object => ({
    id,
    name: id,
    connection: 'contoso',
    source: { type: 'directory' },
    targets: { type: 'users', users: [a.userPrincipalName] },
    folder: { name: 'Directory' },
    ...extra,
  });
  before(async () => {
    sim = await startSimulator({ seed: { generate: { users: 12, mailboxes: 8, awkward: false } } });
    const mailboxUsers = [...sim.tenant.users.values()].filter((u) => u.mailbox === 'user');
    [a, b, sender] = [mailboxUsers[0]!, mailboxUsers[1]!, mailboxUsers[2]!];
    noMailbox = [...sim.tenant.users.values()].find((u) => u.mailbox === 'none')!;
    env = { NODE_EXTRA_CA_CERTS: sim.caCertPath };
  });
  after(() => sim.close());

  it('accepts Contacts.ReadWrite granted by RBAC for Applications; names a target outside the scope; FAILs without either', async () => {
    sim.setPermissions(productPermissions.filter((p) => p !== 'Contacts.ReadWrite'));
    sim.assignApplicationRole('Contacts.ReadWrite', [a.userPrincipalName]);
    try {
      const scoped = await cli(['doctor', '--config', file([policy('one')])], env);
      assert.equal(scoped.code, 0, scoped.stdout);
      assert.match(
        scoped.stdout,
        new RegExp(
          `OK +contoso: permission Contacts.ReadWrite: not in the token: granted by Exchange RBAC for Applications \\(a test write that changes nothing was allowed in ${a.userPrincipalName.replace(/\./g, '\\.')}\\)`,
        ),
      );
      assert.doesNotMatch(scoped.stdout, /FAIL/);

      const wider = await cli(
        [
          'doctor',
          '--config',
          file([
            policy('two', { targets: { type: 'users', users: [a.userPrincipalName, b.userPrincipalName] } }),
          ]),
        ],
        env,
      );
      assert.equal(wider.code, 0, wider.stdout);
      assert.match(
        wider.stdout,
        new RegExp(
          `WARN contoso: permission Contacts.ReadWrite: .*but not for ${b.userPrincipalName.replace(/\./g, '\\.')} \\(ErrorAccessDenied\\): targets outside its scope`,
        ),
      );

      sim.assignApplicationRole('Contacts.ReadWrite', undefined);
      const none = await cli(['doctor', '--config', file([policy('one')])], env);
      assert.equal(none.code, 1);
      assert.match(
        none.stdout,
        /FAIL contoso: permission Contacts.ReadWrite: missing: not in the token, and refused for .* \(ErrorAccessDenied\)/,
      );
      assert.match(none.stdout, /fix: assign "Application Contacts.ReadWrite" .*m365-contact-sync scope/);
    } finally {
      sim.setPermissions([...productPermissions]);
      sim.assignApplicationRole('Contacts.ReadWrite', undefined);
    }
  });

  it('a read-only grant is not Contacts.ReadWrite; every listed target and every policy is tested; excluded members are not', async () => {
    const upn = (u: SimUser): string => u.userPrincipalName.replace(/\./g, '\\.');
    const users = [...sim.tenant.users.values()].filter((u) => u.mailbox === 'user');
    const [c, d] = [users[3]!, users[4]!];
    sim.setPermissions(productPermissions.filter((p) => p !== 'Contacts.ReadWrite'));
    try {
      // Contacts.Read by RBAC, or in the token: reads work, writes do not.
      sim.assignApplicationRole('Contacts.Read', [a.userPrincipalName]);
      const rbacRead = await cli(['doctor', '--config', file([policy('one')])], env);
      assert.equal(rbacRead.code, 1, rbacRead.stdout);
      assert.match(
        rbacRead.stdout,
        new RegExp(`FAIL contoso: permission Contacts.ReadWrite: .*${upn(a)} \\(read only`),
      );
      sim.assignApplicationRole('Contacts.Read', undefined);
      sim.setPermissions([...productPermissions.filter((p) => p !== 'Contacts.ReadWrite'), 'Contacts.Read']);
      const tokenRead = await cli(['doctor', '--config', file([policy('one')])], env);
      assert.equal(tokenRead.code, 1, tokenRead.stdout);
      sim.setPermissions(productPermissions.filter((p) => p !== 'Contacts.ReadWrite'));

      // The fourth listed user, and the second policy's user, are outside the scope: both named.
      sim.assignApplicationRole(
        'Contacts.ReadWrite',
        [a, b, sender].map((u) => u.userPrincipalName),
      );
      const listed = await cli(
        [
          'doctor',
          '--config',
          file([
            policy('four', {
              targets: { type: 'users', users: [a, b, sender, c].map((u) => u.userPrincipalName) },
            }),
            policy('other', { targets: { type: 'users', users: [d.userPrincipalName] } }),
          ]),
        ],
        env,
      );
      assert.match(
        listed.stdout,
        new RegExp(`WARN contoso: permission Contacts.ReadWrite: .*but not for .*${upn(c)}`),
      );
      assert.match(
        listed.stdout,
        new RegExp(`WARN contoso: permission Contacts.ReadWrite: .*but not for .*${upn(d)}`),
      );

      // Members of excludeGroups are left out of the test, as they are out of the scope.
      const inner = sim.tenant.addGroup({ displayName: 'Excluded inner', members: [c.id] });
      const group = sim.tenant.addGroup({ displayName: 'Excluded outer', members: [inner.id] });
      {
        const excluded = await cli(
          [
            'doctor',
            '--config',
            file([
              policy('ex', {
                targets: {
                  type: 'users',
                  users: [a.userPrincipalName, c.userPrincipalName],
                  excludeGroups: [group.id],
                },
              }),
            ]),
          ],
          env,
        );
        assert.doesNotMatch(excluded.stdout, new RegExp(upn(c)), excluded.stdout);
      }
    } finally {
      sim.setPermissions([...productPermissions]);
      sim.assignApplicationRole('Contacts.ReadWrite', undefined);
      sim.assignApplicationRole('Contacts.Read', undefined);
    }
  });

  it('checks the report sender: a mailbox, Mail.Send from RBAC a warning; no user or no mailbox FAIL naming notify.sender', async () => {
    const notify = (s: string) => ({
      notify: { recipients: ['it@contoso.example'], sender: s, when: 'always' },
    });
    sim.setPermissions(productPermissions.filter((p) => p !== 'Mail.Send'));
    try {
      const rbac = await cli(
        ['doctor', '--config', file([policy('p', notify(sender.userPrincipalName))])],
        env,
      );
      assert.equal(rbac.code, 0, rbac.stdout);
      assert.match(
        rbac.stdout,
        /WARN contoso: report sender .*: .* has a mailbox; Mail.Send is not in the token: granted by RBAC for Applications, or missing/,
      );
      assert.match(rbac.stdout, /Test-ServicePrincipalAuthorization -Identity '[^']+' -Resource '/);
    } finally {
      sim.setPermissions([...productPermissions]);
    }
    // Without any Contacts grant a 403 says nothing about the sender's mailbox: not "has a mailbox".
    sim.setPermissions(productPermissions.filter((p) => p !== 'Contacts.ReadWrite'));
    try {
      const blind = await cli(
        ['doctor', '--config', file([policy('p', notify(noMailbox.userPrincipalName))])],
        env,
      );
      assert.doesNotMatch(blind.stdout, /report sender .* has a mailbox/);
      assert.match(
        blind.stdout,
        /WARN contoso: report sender .*: policies\[0\]\.notify\.sender: whether .* has an Exchange Online mailbox could not be checked/,
      );
    } finally {
      sim.setPermissions([...productPermissions]);
    }
    const ghost = await cli(
      ['doctor', '--config', file([policy('p0'), policy('p1', notify('ghost@contoso.example'))])],
      env,
    );
    assert.equal(ghost.code, 1);
    assert.match(
      ghost.stdout,
      /FAIL contoso: report sender ghost@contoso\.example: policies\[1\]\.notify\.sender: no user ghost@contoso\.example in the tenant/,
    );
    const unlicensed = await cli(
      ['doctor', '--config', file([policy('p', notify(noMailbox.userPrincipalName))])],
      env,
    );
    assert.equal(unlicensed.code, 1);
    assert.match(
      unlicensed.stdout,
      /FAIL contoso: report sender .*: policies\[0\]\.notify\.sender: .* has no Exchange Online mailbox/,
    );
  });

  it('without User.Read.All every FAIL line names the missing permission (no bare 403)', async () => {
    sim.setPermissions(productPermissions.filter((p) => p !== 'User.Read.All'));
    try {
      const run = await cli(
        [
          'doctor',
          '--config',
          file([
            policy('nouser', {
              notify: { recipients: [a.userPrincipalName], sender: sender.userPrincipalName },
            }),
          ]),
        ],
        env,
      );
      assert.equal(run.code, 1, run.stdout);
      const fails = run.stdout.split('\n').filter((l) => /^FAIL /.test(l));
      assert.ok(fails.length > 0, run.stdout);
      assert.match(run.stdout, /FAIL contoso: permission User.Read.All: missing/);
      for (const line of fails)
        assert.match(line, /User\.Read\.All/, `a FAIL line that does not name it: ${line}`);
    } finally {
      sim.setPermissions([...productPermissions]);
    }
  });

  it('names an unknown group id by its JSON path', async () => {
    const group = [...sim.tenant.groups.values()][0]!;
    const missing = '11111111-2222-4333-8444-555555555555';
    const r = await cli(
      [
        'doctor',
        '--config',
        file([
          policy('ok'),
          policy('bad', {
            source: { type: 'directory', excludeGroups: [group.id] },
            targets: { type: 'groups', groups: [group.id, missing] },
          }),
        ]),
      ],
      env,
    );
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      new RegExp(
        `FAIL contoso: group: policies\\[1\\]\\.targets\\.groups\\[1\\]: no group ${missing} in the tenant`,
      ),
    );
    assert.doesNotMatch(r.stdout, new RegExp(`no group ${group.id}`));
  });

  it('a certificate authority it does not trust is TLS, not "upload the certificate"', async () => {
    const r = await cli(['doctor', '--config', file([policy('one')])], { NODE_EXTRA_CA_CERTS: undefined });
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      /FAIL contoso: token: TLS: the server certificate is not trusted \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|[^)]*)\)/,
    );
    assert.match(r.stdout, /NODE_EXTRA_CA_CERTS/);
    assert.doesNotMatch(r.stdout, /upload the certificate/);
  });
});

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { runPolicyNow } from '../../src/functions/http-api';
import { functionsFixture, type FunctionsFixture } from '../support/functions-app';

const root = resolve(__dirname, '../../..');

describe('security', () => {
  it('every HTTP function requires a function key, except the dashboard, which signs users in itself, and removal, which needs the master key', () => {
    const dir = join(root, 'src/functions');
    let registrations = 0;
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(dir, file), 'utf8');
      for (const m of text.matchAll(/app\.http\(([^;]+)\);/g)) {
        registrations++;
        // The dashboard's functions check an Entra ID token and app role on every API request
        // (test/security/dashboard-auth.test.ts); a browser holds no function key.
        // Removing a policy's contacts is for operators only: the admin (master) key.
        const level =
          file === 'dashboard.ts'
            ? /authLevel: 'anonymous'/
            : file === 'http-remove.ts'
              ? /authLevel: 'admin'/
              : /authLevel: 'function'/;
        assert.match(m[1]!, level, `${file}: ${m[0].slice(0, 80)}`);
      }
    }
    assert.ok(registrations >= 5);
  });

  it('no secret, key or token appears in the logs of a whole demo run', async () => {
    const logFile = join(mkdtempSync(join(tmpdir(), 'demo-log-')), 'demo.log');
    const code = await new Promise<number | null>((done) => {
      const child = spawn(
        process.execPath,
        [
          join(root, 'dist/dev/demo.js'),
          '--json',
          '--users',
          '60',
          '--mailboxes',
          '8',
          '--latency',
          '2',
          '--log-file',
          logFile,
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      child.on('exit', done);
    });
    assert.equal(code, 0);
    const log = readFileSync(logFile, 'utf8');
    assert.ok(log.split('\n').length > 20, 'the demo logged its work');
    for (const [what, pattern] of [
      ['a JWT (access token)', /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/],
      ['a private key', /PRIVATE KEY/],
      ['a bearer header', /Bearer\s+[A-Za-z0-9]/],
      ['a storage account key', /AccountKey=/i],
      ['a client secret', /client_secret|clientSecret/i],
      ['a client assertion', /client_assertion=/],
    ] as const) {
      assert.ok(!pattern.test(log), `the log holds ${what}`);
    }
  });
});

/** The README's permissions table, as an admin reads it. */
function documentedPermissions(): Map<string, string> {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const rows = [...readme.matchAll(/^\|\s*([A-Z][A-Za-z]+\.[A-Za-z.]+)\s*\|[^|\n]+\|([^|\n]+)\|$/gm)];
  return new Map(rows.map((r) => [r[1]!, r[2]!.trim()]));
}

describe('least privilege: the documented permissions are exactly what the calls need', () => {
  let f: FunctionsFixture;
  const everything = (upn: string) => ({
    id: 'everything',
    name: 'All features',
    connection: 'contoso',
    source: {
      type: 'directory' as const,
      includeOrgContacts: true,
      includeGroups: [] as string[],
      sharedMailboxes: true,
      roomMailboxes: false,
    },
    targets: { type: 'groups' as const, groups: [] as string[] },
    folder: { name: 'Directory' },
    photos: { enabled: true },
    notify: { recipients: ['it@contoso.example'], sender: upn, when: 'always' as const },
  });
  before(async () => {
    f = await functionsFixture({
      sim: {
        seed: { generate: { users: 20, mailboxes: 6, groups: 3, orgContacts: 3 } },
        latency: { meanMs: 0, jitterMs: 0 },
      },
      policies: (sim) => {
        const upn = [...sim.tenant.users.values()].find(
          (u) => u.mailbox === 'user' && u.accountEnabled,
        )!.userPrincipalName;
        const allStaff = [...sim.tenant.groups.values()].find((g) => g.displayName === 'All Staff')!.id;
        const p = everything(upn);
        p.source.includeGroups = [allStaff];
        p.targets.groups = [allStaff];
        return [p];
      },
    });
    // Tokens carry the roles granted when issued: short-lived ones make a permission change bite at once.
    f.sim.identity.tokenLifetimeSeconds = 60;
  });
  after(() => f.close());

  let edits = 0;
  const run = async (): Promise<{ forbidden: number; failed: boolean }> => {
    // A directory change each time, so per-user look-ups (mailbox type) run again, not only the first time.
    const someone = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
    f.sim.tenant.updateUser(someone.id, { jobTitle: `Edited ${++edits}` });
    const since = f.sim.log.lastSeq;
    const res = await runPolicyNow(
      new HttpRequest({
        url: 'http://127.0.0.1/api/policies/everything/runs',
        method: 'POST',
        params: { policyId: 'everything' },
        body: { string: '{}' },
      }),
      new InvocationContext({ invocationId: 'p', functionName: 'p' }),
    );
    assert.equal(res.status, 202);
    await f.runner.drain(60_000);
    const state = await f.app.runStore.getPolicyState('everything');
    const r = (await f.app.runStore.getRun(state.lastRunId!))!;
    return {
      forbidden: f.sim.log.since(since).filter((e) => e.status === 403).length,
      failed: r.status === 'failed' || r.mailboxes.failed > 0 || !r.reportSent,
    };
  };

  it('the documented set suffices for every call the product makes', async () => {
    const documented = documentedPermissions();
    assert.deepEqual([...documented.keys()].sort(), [
      'Contacts.ReadWrite',
      'GroupMember.Read.All',
      'Mail.Send',
      'MailboxSettings.Read',
      'OrgContact.Read.All',
      'User.Read.All',
    ]);
    f.sim.setPermissions([...documented.keys()]);
    const result = await run();
    assert.equal(result.forbidden, 0);
    assert.equal(result.failed, false);
  });

  it('each documented permission is needed by the features its row names', async () => {
    const documented = [...documentedPermissions().keys()];
    for (const p of documented) {
      f.sim.setPermissions(documented.filter((x) => x !== p));
      const result = await run();
      assert.ok(result.forbidden > 0 || result.failed, `without ${p} something must fail`);
    }
    f.sim.setPermissions(documented);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'node:https';
import { createInterface } from 'node:readline';
import { buildTenant, readSeedFile } from '../../doubles/graph-tenant-simulator/seed';

const cli = resolve(__dirname, '../../doubles/graph-tenant-simulator/cli.js');

function startCli(args: string[]): Promise<{ endpoints: any; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolveStart, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      resolveStart({
        endpoints: JSON.parse(line),
        stop: () =>
          new Promise((r) => {
            child.once('exit', (code) => r(code));
            child.kill('SIGINT');
          }),
      });
    });
    child.once('exit', (code) => reject(new Error(`simulator exited with ${code}: ${stderr}`)));
  });
}

function getJson(url: string, ca: string): Promise<{ status: number; body: any }> {
  return new Promise((resolveGet, reject) => {
    request(url, { agent: new Agent({ ca }) }, (res) => {
      let data = '';
      res.on('data', (d: Buffer) => (data += d.toString()));
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body: JSON.parse(data) }));
    })
      .on('error', reject)
      .end();
  });
}

describe('Graph tenant simulator: the `npm run sim` process and seeding', () => {
  it('prints one JSON line with its endpoints, serves HTTPS trusted by its CA, and stops on Ctrl-C', async () => {
    const { endpoints, stop } = await startCli(['--port', '0']);
    try {
      for (const key of [
        'graphUrl',
        'authorityHost',
        'keyVaultUrl',
        'tenantId',
        'clientId',
        'certificatePath',
        'caCertPath',
      ]) {
        assert.ok(endpoints[key], `${key} printed`);
      }
      assert.match(endpoints.graphUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.match(
        readFileSync(endpoints.certificatePath, 'utf8'),
        /BEGIN PRIVATE KEY[\s\S]+BEGIN CERTIFICATE/,
      );
      const ca = readFileSync(endpoints.caCertPath, 'utf8');
      const config = await getJson(
        `${endpoints.authorityHost}/${endpoints.tenantId}/v2.0/.well-known/openid-configuration`,
        ca,
      );
      assert.equal(config.status, 200);
      assert.ok(config.body.token_endpoint);
    } finally {
      assert.equal(await stop(), 0);
    }
  });

  it('exits 2 with a message naming the bad option', async () => {
    await assert.rejects(startCli(['--port', 'abc']), /--port/);
  });

  it('builds a tenant from a seed file: users, manager, nested groups by name, org contacts', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seed-'));
    const file = join(dir, 'tenant.json');
    writeFileSync(
      file,
      JSON.stringify({
        domain: 'fabrikam.example',
        users: [
          { userPrincipalName: 'boss@fabrikam.example', displayName: 'Boss', mailbox: 'user' },
          {
            userPrincipalName: 'dev@fabrikam.example',
            displayName: 'Dev',
            manager: 'boss@fabrikam.example',
            extensionAttributes: { extensionAttribute3: 'NoContactSync' },
          },
          { userPrincipalName: 'guest@fabrikam.example', userType: 'Guest', mailbox: 'none' },
        ],
        groups: [
          { displayName: 'Inner', members: ['dev@fabrikam.example'] },
          { displayName: 'Outer', members: ['boss@fabrikam.example', 'Inner', 'partner@contoso.example'] },
        ],
        orgContacts: [{ displayName: 'Partner', mail: 'partner@contoso.example' }],
      }),
    );
    const tenant = buildTenant(readSeedFile(file));
    assert.equal(tenant.users.size, 3);
    const dev = tenant.user('dev@fabrikam.example')!;
    assert.equal(dev.managerId, tenant.user('boss@fabrikam.example')!.id);
    assert.equal(dev.onPremisesExtensionAttributes.extensionAttribute3, 'NoContactSync');
    assert.equal(tenant.mailbox('guest@fabrikam.example'), undefined);
    const outer = [...tenant.groups.values()].find((g) => g.displayName === 'Outer')!;
    assert.equal(tenant.transitiveMembers(outer.id).length, 4, 'boss, Inner, partner, and dev through Inner');
  });

  it('names the field in a bad seed file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seed-'));
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({ users: [{ userPrincipalName: 'a@b.example', mailbox: 'exchange' }] }),
    );
    assert.throws(() => readSeedFile(file), /users\.0\.mailbox/);
    writeFileSync(file, JSON.stringify({ groups: [{ displayName: 'G', members: ['nobody@b.example'] }] }));
    assert.throws(
      () => buildTenant(readSeedFile(file)),
      /groups\[0\]\.members: no user, group or org contact "nobody@b.example"/,
    );
  });

  it('generates the default tenant with the awkward data real tenants hold, reproducibly', () => {
    const a = buildTenant(undefined);
    const b = buildTenant(undefined);
    assert.deepEqual(
      [...a.users.values()].map((u) => u.userPrincipalName),
      [...b.users.values()].map((u) => u.userPrincipalName),
    );
    const users = [...a.users.values()];
    assert.ok(users.some((u) => u.userType === 'Guest' && u.mailbox === 'none'));
    assert.ok(users.some((u) => !u.accountEnabled && u.mailbox === 'user'));
    assert.ok(users.some((u) => u.mailbox === 'shared'));
    assert.ok(users.some((u) => u.mailbox === 'room'));
    assert.ok(users.some((u) => u.hiddenFromAddressListsEnabled));
    assert.ok(users.some((u) => Object.values(u.onPremisesExtensionAttributes).includes('NoContactSync')));
    assert.ok(users.some((u) => Object.values(u.onPremisesExtensionAttributes).includes('NoMailboxSync')));
    assert.ok(users.some((u) => u.displayName?.includes("'")));
    assert.ok(users.some((u) => u.displayName?.includes('<script>')));
    assert.ok(users.some((u) => /\p{Extended_Pictographic}/u.test(u.displayName ?? '')));
    assert.ok(users.some((u) => (u.displayName?.length ?? 0) >= 256));
    assert.ok(users.some((u) => u.proxyAddresses.length > 3));
    assert.ok(
      [...a.groups.values()].some((g) => [...g.members].some((m) => a.groups.has(m))),
      'a nested group',
    );
    assert.ok(a.orgContacts.size > 0);
  });
});

// Issue 16 item 1: the CLI must not hand the admin's Azure token to a host that merely calls itself a
// Key Vault. A policy file names `https://evil.example` as its vault; that host (a local TLS server
// reached through an HTTPS proxy, so the SDK really talks to "evil.example") answers with a 401
// challenge naming Azure Resource Manager. The SDK's challenge-resource check must refuse it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { GraphTenantSimulator } from '../doubles/graph-tenant-simulator/simulator';
import {
  createCertificateAuthority,
  issueServerCertificate,
} from '../doubles/graph-tenant-simulator/certificates';
import { simulatorConnection, startSimulator } from '../support/clients';

const bin = resolve(__dirname, '../../../bin/m365-contact-sync.js');
const evilHost = 'evil.example';

function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => done({ code, out }));
  });
}

const listen = async (server: Server): Promise<number> => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
};

describe('the CLI and a host posing as a Key Vault', () => {
  let sim: GraphTenantSimulator;
  let dir: string;
  let env: Record<string, string>;
  const seen: { url: string; authorization: string | undefined }[] = [];
  const servers: Server[] = [];

  before(async () => {
    sim = await startSimulator({ seed: { generate: { users: 5, mailboxes: 1 } } });
    dir = mkdtempSync(join(tmpdir(), 'evil-vault-'));
    const ca = await createCertificateAuthority('CN=Evil Vault Test CA');
    const tls = await issueServerCertificate(ca, [evilHost]);
    const vault = createHttpsServer({ key: tls.privateKeyPem, cert: tls.certificatePem }, (req, res) => {
      seen.push({ url: req.url ?? '', authorization: req.headers.authorization });
      res.writeHead(401, {
        'www-authenticate': `Bearer authorization="${sim.authorityHost}/${sim.tenantId}", resource="https://management.azure.com"`,
        'content-type': 'application/json',
      });
      res.end(JSON.stringify({ error: { code: 'Unauthorized', message: 'token please' } }));
    });
    const vaultPort = await listen(vault);
    // An HTTPS proxy that sends evil.example:443 to the fake vault and refuses everything else.
    const proxy = createHttpServer();
    proxy.on('connect', (req, socket) => {
      if (req.url !== `${evilHost}:443`) return socket.destroy();
      const upstream = connect(vaultPort, '127.0.0.1', () => {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.pipe(socket).pipe(upstream);
      });
      upstream.on('error', () => socket.destroy());
      socket.on('error', () => upstream.destroy());
    });
    const proxyPort = await listen(proxy);
    servers.push(vault, proxy);
    const cas = join(dir, 'cas.pem');
    writeFileSync(cas, readFileSync(sim.caCertPath, 'utf8') + ca.cert.certificatePem);
    const vaulted = simulatorConnection(sim, 'vaulted', 'keyVault');
    writeFileSync(
      join(dir, 'evil.json'),
      JSON.stringify({
        connections: [
          { ...vaulted, certificate: { keyVaultUrl: `https://${evilHost}`, name: 'contact-sync' } },
        ],
        policies: [],
      }),
    );
    writeFileSync(join(dir, 'local.json'), JSON.stringify({ connections: [vaulted], policies: [] }));
    env = {
      NODE_EXTRA_CA_CERTS: cas,
      AZURE_TENANT_ID: sim.tenantId,
      AZURE_CLIENT_ID: sim.hostIdentity.clientId,
      AZURE_CLIENT_SECRET: sim.hostIdentity.clientSecret,
      AZURE_AUTHORITY_HOST: sim.authorityHost,
      HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`,
      NO_PROXY: '127.0.0.1,localhost',
      // Even the tests' own switch may not relax the check for a host that is not this machine.
      CONTACTSYNC_LOCAL_KEY_VAULT: 'allow',
    };
  });

  after(async () => {
    for (const s of servers) {
      s.close();
      s.closeAllConnections();
    }
    await sim.close();
  });

  it('doctor and cert show reach the fake vault but send it no token', async () => {
    const doctor = await cli(['doctor', '--config', join(dir, 'evil.json')], env);
    assert.equal(doctor.code, 1, doctor.out);
    assert.match(doctor.out, /FAIL vaulted: certificate from https:\/\/evil\.example/);
    const show = await cli(['cert', 'show', '--vault', `https://${evilHost}`, '--name', 'contact-sync'], env);
    assert.equal(show.code, 1, show.out);
    assert.ok(seen.length >= 2, `the fake vault was asked (${seen.length} requests)`);
    assert.deepEqual(
      seen.filter((r) => r.authorization !== undefined),
      [],
      'no request to the fake vault carried a token',
    );
  });

  it('the loopback Key Vault fake is trusted only with the explicit switch', async () => {
    const { CONTACTSYNC_LOCAL_KEY_VAULT: _allow, ...withoutSwitch } = env;
    const refused = await cli(['doctor', '--config', join(dir, 'local.json')], withoutSwitch);
    assert.match(refused.out, /FAIL vaulted: certificate from https:\/\/127\.0\.0\.1/);
    const allowed = await cli(['doctor', '--config', join(dir, 'local.json')], env);
    assert.match(allowed.out, /OK {3}vaulted: certificate read from https:\/\/127\.0\.0\.1/);
  });
});

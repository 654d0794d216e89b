// The certificate of a connection changes under its rotation row (another Key Vault certificate, a row
// of the first release pinning a version Key Vault lacks, rotation turned off and on with a new key):
// runs keep working on Key Vault's newest version, health says why, and the rotation starts over.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { runPolicyNow } from '../../../src/functions/http-api';
import { rotateCertificates } from '../../../src/app/cert-rotation';
import { doctor } from '../../../src/cli/commands';
import { createSelfSignedCertificate } from '../../doubles/graph-tenant-simulator/certificates';
import type { FunctionsFixture } from '../../support/functions-app';
import {
  certificateExpiryCheck,
  quietLogger,
  rotationFixture,
  rotationState,
  type ExpiryCheck,
} from '../../support/rotation';

const ctx = (): InvocationContext => new InvocationContext({ invocationId: 't', functionName: 'x' });

describe('certificate rotation: the connection certificate changes', () => {
  let f: FunctionsFixture;
  let clockOffset = 0;
  const state = () => rotationState(f);
  const rotate = async () => (await rotateCertificates(f.app, quietLogger))[0]!;
  /** Edits the connection in the policy file; the clock passes the 30 s policy cache. */
  const editConnection = (edit: (c: Record<string, unknown>) => void): void => {
    const file = (f.app.settings as { POLICY_FILE: string }).POLICY_FILE;
    const json = JSON.parse(readFileSync(file, 'utf8')) as { connections: Record<string, unknown>[] };
    edit(json.connections[0]!);
    writeFileSync(file, JSON.stringify(json));
    clockOffset += 60_000;
  };
  /** A run of the policy through the Functions handlers: its status and failed mailboxes. */
  const run = async (): Promise<string> => {
    const started = await runPolicyNow(
      new HttpRequest({
        url: 'http://127.0.0.1:7071/api/policies/gal/runs',
        method: 'POST',
        params: { policyId: 'gal' },
        body: { string: '{}' },
      }),
      ctx(),
    );
    if (started.status !== 202) return `start ${started.status} ${JSON.stringify(started.jsonBody)}`;
    await f.runner.drain();
    const r = (await f.app.runStore.getRun((started.jsonBody as { runId: string }).runId))!;
    return `${r.status} failed=${r.mailboxes.failed} ${r.error ?? ''}`.trim();
  };
  const expiryCheck = (): Promise<ExpiryCheck> => {
    clockOffset += 2 * 60_000; // past the health check's one-minute cache
    return certificateExpiryCheck();
  };
  /** What `doctor` prints, run as the admin against the app's storage. */
  const doctorText = async (): Promise<string> => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      AZURE_TENANT_ID: f.sim.tenantId,
      AZURE_CLIENT_ID: f.sim.hostIdentity.clientId,
      AZURE_CLIENT_SECRET: f.sim.hostIdentity.clientSecret,
      AZURE_AUTHORITY_HOST: f.sim.authorityHost,
      CONTACTSYNC_LOCAL_KEY_VAULT: 'allow',
      CONTACTSYNC_STORAGE: (f.app.settings as { AzureWebJobsStorage: string }).AzureWebJobsStorage,
    });
    const lines: string[] = [];
    try {
      const io = {
        out: (l: string) => lines.push(l),
        err: (l: string) => lines.push(`ERR ${l}`),
        isTTY: false,
      };
      await doctor(io, (f.app.settings as { POLICY_FILE: string }).POLICY_FILE);
    } finally {
      process.env = saved;
    }
    return lines.join('\n');
  };
  /** A new certificate in Key Vault under `name`, its public key uploaded to the app by hand. */
  const uploadNew = async (name: string): Promise<{ keyId: string; version: string }> => {
    const cert = await createSelfSignedCertificate(`CN=${name}`, 12);
    f.sim.vault.addCertificateVersion(name, cert, { subject: `CN=${name}`, validityMonths: 12 });
    const version = f.sim.vault.certificates.get(name)!.at(-1)!.version;
    return { keyId: f.sim.identity.addCertificate(f.sim.clientId, cert.certificatePem).keyId, version };
  };

  before(async () => {
    f = await rotationFixture({ users: 4, mailboxes: 1, now: () => new Date(Date.now() + clockOffset) });
  });
  after(() => f.close());

  it('a connection moved to another Key Vault certificate keeps running and rotation starts over', async () => {
    assert.equal((await rotate()).problem, undefined);
    const first = await state();

    const other = await uploadNew('other-cert');
    editConnection((c) => {
      c.certificate = { keyVaultUrl: f.sim.keyVaultUrl, name: 'other-cert', keyId: other.keyId };
    });
    assert.equal(await run(), 'completed failed=0', 'runs sign with the new certificate');
    assert.equal(first.certificateName, f.sim.certificateName, 'the row names its certificate');
    assert.equal(first.keyVaultUrl, f.sim.keyVaultUrl);
    assert.equal(first.policyKeyId, f.sim.initialKeyId);
    const check = await expiryCheck();
    assert.equal(check.ok, true);
    assert.equal(check.warning, true);
    assert.match(check.detail, /another certificate/);
    const text = await doctorText();
    assert.match(text, /OK +contoso: token issued/, text);
    assert.match(text, /WARN contoso: the rotation state is of another certificate/);

    const outcome = await rotate();
    assert.equal(outcome.problem, undefined, outcome.events.join('\n'));
    assert.match(outcome.events.join('\n'), /started over/);
    const fresh = await state();
    assert.equal(fresh.certificateName, 'other-cert');
    assert.equal(fresh.activeVersion, other.version);
    assert.equal(fresh.activeKeyId, other.keyId, "the connection's keyId is the registered key");
    assert.doesNotMatch((await expiryCheck()).detail, /another certificate/);
    assert.equal(await run(), 'completed failed=0');
  });

  it('a row of the first release pinning a version Key Vault lacks falls back to the newest', async () => {
    const { state: current, etag } = (await f.app.rotationStore.get('contoso'))!;
    // The first release wrote no identity; its version is one of the connection's previous certificate.
    const oldVersion = f.sim.vault.certificates.get(f.sim.certificateName)![0]!.version;
    const { keyVaultUrl: _u, certificateName: _n, policyKeyId: _k, ...oldRow } = current;
    await f.app.rotationStore.put('contoso', { ...oldRow, activeVersion: oldVersion }, etag);
    clockOffset += 60 * 60_000; // past CERTIFICATE_CHECK_MINUTES: workers read the row again

    assert.equal(await run(), 'completed failed=0', 'the missing version fails no run');
    const check = await expiryCheck();
    assert.equal(check.warning, true);
    assert.match(check.detail, new RegExp(`version ${oldVersion} is not in Key Vault`));
    const text = await doctorText();
    assert.match(text, /OK +contoso: token issued/, text);
    assert.match(text, new RegExp(`WARN contoso: the rotation's version ${oldVersion} is not in Key Vault`));
    const outcome = await rotate();
    assert.equal(outcome.problem, undefined, outcome.events.join('\n'));
    assert.match(outcome.events.join('\n'), /started over/);
    assert.equal((await state()).activeVersion, current.activeVersion);
    assert.equal((await state()).certificateName, 'other-cert', 'the row now names its certificate');
  });

  it('rotation turned off, a key uploaded by hand, then on again: the new keyId starts over', async () => {
    const pinned = (await state()).activeVersion;
    const pinnedCert = f.sim.vault.certificates.get('other-cert')!.find((v) => v.version === pinned)!.cert;
    editConnection((c) => {
      delete c.applicationObjectId;
    });
    // The admin renews by hand, uploads the new key, removes the old one and names the new keyId.
    const renewed = await uploadNew('other-cert');
    const app = f.sim.identity.requireApp(f.sim.clientId);
    app.certificates = app.certificates.filter((c) => c.thumbprint !== pinnedCert.thumbprint);
    editConnection((c) => {
      c.applicationObjectId = f.sim.applicationObjectId;
      c.certificate = { keyVaultUrl: f.sim.keyVaultUrl, name: 'other-cert', keyId: renewed.keyId };
    });
    clockOffset += 60 * 60_000;
    assert.equal(await run(), 'completed failed=0', 'workers do not sign with the removed key');
    const outcome = await rotate();
    assert.equal(outcome.problem, undefined, outcome.events.join('\n'));
    assert.match(outcome.events.join('\n'), /started over/);
    assert.equal((await state()).activeVersion, renewed.version);
    assert.equal((await state()).activeKeyId, renewed.keyId);
  });
});

// Findings of the hostile review of issue 20 (certificate rotation), each reproduced end to end.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { healthCheck } from '../../../src/functions/http-api';
import { doctor } from '../../../src/cli/commands';
import { rotateCertificates } from '../../../src/app/cert-rotation';
import { createCredential, loadCertificate, certificateFacts } from '../../../src/adapters/graph/connection';
import type { Connection } from '../../../src/sync/config/schema';
import type { FunctionsFixture } from '../../support/functions-app';
import { quietLogger, rotationFixture, rotationState } from '../../support/rotation';

const day = 86_400_000;

describe('certificate rotation: review findings', () => {
  let f: FunctionsFixture;
  let clockOffset = 0;
  let connection: Connection;
  const state = () => rotationState(f);
  const rotate = () => rotateCertificates(f.app, quietLogger);
  /** A fresh token (no cache) with the version workers sign with. */
  const activeGetsToken = async (): Promise<boolean> => {
    const cert = await loadCertificate(
      connection,
      () => f.app.vaultCredential,
      f.app.vaultOptions(),
      (await state()).activeVersion,
    );
    try {
      await createCredential(connection, cert).getToken(`${f.sim.graphUrl}/.default`);
      return true;
    } catch {
      return false;
    }
  };
  const appThumbprints = (): string[] =>
    f.sim.identity.requireApp(f.sim.clientId).certificates.map((c) => c.thumbprint);

  before(async () => {
    f = await rotationFixture({ users: 4, mailboxes: 1, now: () => new Date(Date.now() + clockOffset) });
    connection = (await f.app.policies()).connections.get('contoso')!;
  });
  after(() => f.close());

  it('never removes the key of the version it switches to (the previous certificate re-imported)', async () => {
    assert.equal((await rotate())[0]!.problem, undefined);
    await f.sim.renewInKeyVault();
    assert.equal((await rotate())[0]!.problem, undefined);
    const rolled = await state();
    assert.ok(rolled.retiredVersion, 'rolled once: the first key waits for its overlap');
    // The admin re-imports the first certificate: Key Vault's newest now has the retired key.
    const first = f.sim.vault.certificates.get(f.sim.certificateName)![0]!.cert;
    f.sim.vault.addCertificateVersion(f.sim.certificateName, first);
    const outcome = (await rotate())[0]!;
    assert.equal(outcome.problem, undefined, outcome.events.join('\n'));
    assert.ok(
      appThumbprints().includes(certificateFacts(first.certificatePem).thumbprint),
      'the key being switched to is still on the application',
    );
    assert.ok(await activeGetsToken(), 'workers are not locked out');
    clockOffset += 8 * day;
    assert.equal((await rotate())[0]!.problem, undefined);
    assert.ok(await activeGetsToken(), 'not locked out after the overlap either');
    assert.equal((await state()).retiredVersion, undefined);
  });

  it('two rotation checks at once: one rolls, the other stands aside, and the new key id is kept', async () => {
    await f.sim.renewInKeyVault();
    const [a, b] = await Promise.all([rotate(), rotate()]);
    const problems = [a[0]!.problem, b[0]!.problem].filter(Boolean);
    assert.deepEqual(problems, [], 'neither check fails');
    const s = await state();
    assert.equal(s.problem, undefined);
    assert.ok(s.activeKeyId, 'the key id addKey returned is saved');
    assert.ok(f.sim.applicationKeyIds().includes(s.activeKeyId));
    assert.equal(f.sim.applicationKeyIds().length, 2);
    clockOffset += 8 * day;
    assert.equal((await rotate())[0]!.problem, undefined);
    assert.deepEqual(f.sim.applicationKeyIds(), [s.activeKeyId], 'the old key removed, the new one kept');
  });

  it('a failed removal of the old key does not block the next switch, and is reported', async () => {
    await f.sim.renewInKeyVault();
    assert.equal((await rotate())[0]!.problem, undefined);
    const rolled = await state();
    assert.ok(rolled.retiredKeyId, 'an old key waits for its overlap');
    // Within the overlap Key Vault renews again; removing the waiting old key keeps failing.
    await f.sim.renewInKeyVault();
    f.sim.faults.add({
      kind: 'status',
      status: 500,
      match: { operation: 'applications.removeKey' },
      times: 50,
    });
    const outcome = (await rotate())[0]!;
    f.sim.faults.clear();
    const s = await state();
    assert.notEqual(s.activeVersion, rolled.activeVersion, 'switched to the newer version all the same');
    assert.ok(await activeGetsToken());
    assert.match(outcome.problem ?? '', new RegExp(`could not remove the old key ${rolled.retiredKeyId}`));
    assert.match(s.problem ?? '', /Certificates & secrets/, 'kept on the row for health and doctor');
  });

  it('a wrong applicationObjectId: health names that field as the fix, not a Key Vault renewal', async () => {
    clockOffset += 8 * day;
    assert.equal((await rotate())[0]!.problem, undefined, 'a clean check first');
    const file = (f.app.settings as { POLICY_FILE: string }).POLICY_FILE;
    const original = readFileSync(file, 'utf8');
    const edited = JSON.parse(original) as { connections: Record<string, unknown>[] };
    edited.connections[0]!.applicationObjectId = '0f0f0f0f-1111-2222-3333-444444444444';
    writeFileSync(file, JSON.stringify(edited));
    try {
      clockOffset += 60_000; // past the policy cache
      await f.sim.renewInKeyVault();
      assert.match((await rotate())[0]!.problem ?? '', /401|malformed/i);
      clockOffset += 60_000; // past the health answer cache
      const health = await healthCheck(
        new HttpRequest({ url: 'http://127.0.0.1/api/health', method: 'GET' }),
        new InvocationContext({ invocationId: 't', functionName: 'health' }),
      );
      const body = health.jsonBody as { connections: { checks: { name: string; fix?: string }[] }[] };
      const fix = body.connections[0]!.checks.find((c) => c.name === 'certificate expiry')!.fix ?? '';
      assert.match(fix, /applicationObjectId/);
      assert.match(fix, /Object ID/);
      assert.doesNotMatch(fix, /Key Vault has not renewed/);
    } finally {
      writeFileSync(file, original);
      clockOffset += 60_000;
    }
    assert.equal((await rotate())[0]!.problem, undefined, 'the right object id rolls the renewal on');
  });

  it('doctor checks the pinned active version: a renewal not yet rolled is no upload to do', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      AZURE_TENANT_ID: f.sim.tenantId,
      AZURE_CLIENT_ID: f.sim.hostIdentity.clientId,
      AZURE_CLIENT_SECRET: f.sim.hostIdentity.clientSecret,
      AZURE_AUTHORITY_HOST: f.sim.authorityHost,
      CONTACTSYNC_LOCAL_KEY_VAULT: 'allow',
      CONTACTSYNC_STORAGE: (f.app.settings as { AzureWebJobsStorage: string }).AzureWebJobsStorage,
    });
    try {
      const active = (await state()).activeVersion;
      const renewed = await f.sim.renewInKeyVault();
      const lines: string[] = [];
      const io = {
        out: (l: string) => lines.push(l),
        err: (l: string) => lines.push(`ERR ${l}`),
        isTTY: false,
      };
      await doctor(io, (f.app.settings as { POLICY_FILE: string }).POLICY_FILE);
      const text = lines.join('\n');
      assert.match(text, /OK +contoso: token issued/, text);
      assert.match(text, /renewed, not yet rolled/);
      assert.match(text, new RegExp(active));
      assert.doesNotMatch(text, /upload the certificate/);
      assert.ok(renewed.thumbprint);
    } finally {
      process.env = saved;
    }
  });
});

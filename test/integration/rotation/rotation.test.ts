import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRequest, InvocationContext, type Timer } from '@azure/functions';
import type { TableClient } from '@azure/data-tables';
import { healthCheck, runPolicyNow } from '../../../src/functions/http-api';
import { certificateRotationTick } from '../../../src/functions/cert-rotation';
import { certificateStatus } from '../../../src/app/cert-rotation';
import { createCredential, loadCertificate } from '../../../src/adapters/graph/connection';
import type { Connection } from '../../../src/sync/config/schema';
import type { FunctionsFixture } from '../../support/functions-app';
import { certificateExpiryCheck, rotationFixture, rotationState } from '../../support/rotation';
import { decodeParts } from '../../support/mime';

const day = 86_400_000;
const ctx = (name = 'http'): InvocationContext =>
  new InvocationContext({ invocationId: 't', functionName: name });
const timer = { isPastDue: false, scheduleStatus: { last: '', next: '', lastUpdated: '' } } as Timer;

/** Storage failing once at a chosen write: the process "crashes" between two rotation steps. */
function failWriteOnce(table: TableClient, when: (data: Record<string, unknown>) => boolean): () => boolean {
  const original = table.updateEntity.bind(table);
  let fired = false;
  table.updateEntity = ((entity: { data?: string }, ...rest: unknown[]) => {
    if (!fired && entity.data && when(JSON.parse(entity.data) as Record<string, unknown>)) {
      fired = true;
      return Promise.reject(Object.assign(new Error('storage unavailable (injected)'), { statusCode: 503 }));
    }
    return (original as (...a: unknown[]) => unknown)(entity, ...rest);
  }) as TableClient['updateEntity'];
  return () => fired;
}

describe('zero-touch certificate rotation through the Functions handlers', () => {
  let f: FunctionsFixture;
  let clockOffset = 0;
  let connection: Connection;
  let admin: string;
  /** The text part of the last run report mail. */
  const lastReport = (): string => {
    const mail = f.sim.tenant.mailbox(admin)!.sentMail.at(-1);
    return mail ? decodeParts(String(mail.message.mime)).text : '';
  };

  /** A run started over the HTTP API and drained; it must not fail a mailbox. */
  const runClean = async (label: string): Promise<void> => {
    const started = await runPolicyNow(
      new HttpRequest({
        url: 'http://127.0.0.1:7071/api/policies/gal/runs',
        method: 'POST',
        params: { policyId: 'gal' },
        body: { string: '{}' },
      }),
      ctx(),
    );
    assert.equal(started.status, 202, `${label}: ${JSON.stringify(started.jsonBody)}`);
    await f.runner.drain();
    const run = (await f.app.runStore.getRun((started.jsonBody as { runId: string }).runId))!;
    assert.equal(run.status, 'completed', `${label}: ${run.error ?? ''}`);
    assert.equal(
      run.mailboxes.failed,
      0,
      `${label}: ${f.logs.filter((l) => l.startsWith('error')).join('\n')}`,
    );
  };
  const rotate = async (): Promise<Error | undefined> => {
    try {
      await certificateRotationTick(timer, ctx('certificate-rotation'));
      return undefined;
    } catch (e) {
      return e as Error;
    }
  };
  const state = () => rotationState(f);
  const addKeyCalls = (): number =>
    f.sim.log.since(0).filter((e) => e.operation === 'applications.addKey').length;

  before(async () => {
    f = await rotationFixture({
      users: 12,
      mailboxes: 3,
      now: () => new Date(Date.now() + clockOffset),
      policy: (sim) => {
        admin = [...sim.tenant.users.values()].find(
          (u) => u.mailbox === 'user' && u.accountEnabled,
        )!.userPrincipalName;
        return { notify: { recipients: ['it-admins@contoso.example'], sender: admin, when: 'always' } };
      },
    });
    connection = (await f.app.policies()).connections.get('contoso')!;
  });
  after(() => f.close());

  it('rolls a Key Vault renewal onto the application with no failed run before, during or after', async () => {
    await runClean('before');
    assert.match(
      lastReport(),
      /Certificate: expires in 3\d\d days \(/,
      'the run report states days to expiry',
    );
    assert.equal(await rotate(), undefined, 'nothing to roll is no error');
    const registered = (await state()).activeVersion;

    const renewed = await f.sim.renewInKeyVault();
    // Key Vault now serves a version the application does not know: workers must keep the registered one.
    await runClean('renewed in Key Vault, not yet rolled');
    assert.equal((await f.app.graph(connection)).certificateVersion, registered);

    assert.equal(await rotate(), undefined);
    const rolled = await state();
    assert.notEqual(rolled.activeVersion, registered, 'switched to the renewed version');
    assert.equal(rolled.retiredVersion, registered);
    assert.equal(f.sim.applicationKeyIds().length, 2, 'both keys on the application during the overlap');
    await runClean('after the switch');
    assert.match(lastReport(), /Certificate: expires in \d+ days .*; key rolled \d{4}-\d\d-\d\d/);
    const clients = await f.app.graph(connection);
    assert.equal(clients.certificateVersion, rolled.activeVersion);

    // Either key works during the overlap: a worker still holding the old version gets a token too.
    const old = await loadCertificate(
      connection,
      () => f.app.vaultCredential,
      f.app.vaultOptions(),
      registered,
    );
    assert.ok(await createCredential(connection, old).getToken(`${f.sim.graphUrl}/.default`));

    assert.equal(await rotate(), undefined, 'within the overlap nothing is removed');
    assert.equal(f.sim.applicationKeyIds().length, 2);
    clockOffset = 8 * day;
    assert.equal(await rotate(), undefined);
    assert.deepEqual(f.sim.applicationKeyIds(), [rolled.activeKeyId], 'the old key removed after 7 days');
    assert.ok(!f.sim.applicationKeyIds().includes(f.sim.initialKeyId));
    assert.ok((await state()).lastRemovedAt);
    await runClean('after removal');
    assert.match(lastReport(), /old key removed \d{4}-\d\d-\d\d/);

    const health = await healthCheck(
      new HttpRequest({ url: 'http://127.0.0.1/api/health', method: 'GET' }),
      ctx(),
    );
    const text = JSON.stringify(health.jsonBody);
    assert.match(text, /certificate expiry/);
    assert.match(
      text,
      new RegExp(`key rolled ${new Date(Date.now() + clockOffset).toISOString().slice(0, 4)}`),
    );
    assert.ok(renewed.thumbprint);
  });

  it('a crash between addKey and the switch converges without a second addKey', async () => {
    const before = await state();
    await f.sim.renewInKeyVault();
    const calls = addKeyCalls();
    const fired = failWriteOnce(f.app.tables.policies, (d) => d.activeVersion !== before.activeVersion);
    const crashed = await rotate();
    assert.ok(fired() && crashed, 'the switch write failed');
    const mid = await state();
    assert.equal(mid.activeVersion, before.activeVersion, 'not switched yet');
    assert.ok(mid.pendingAdded && mid.pendingKeyId, 'addKey recorded');
    await runClean('after the crash, before the switch');
    assert.equal(await rotate(), undefined);
    const after = await state();
    assert.equal(after.activeVersion, mid.pendingVersion);
    assert.equal(addKeyCalls(), calls + 1, 'addKey was not repeated');
    await runClean('after convergence');
  });

  it('a lost addKey reply converges: the next check finds the key on the application', async () => {
    const before = await state();
    clockOffset += 8 * day;
    assert.equal(await rotate(), undefined, 'the previous roll finishes its overlap');
    await f.sim.renewInKeyVault();
    f.sim.faults.add({ kind: 'lostReply', match: { operation: 'applications.addKey' }, times: 1 });
    assert.ok(await rotate(), 'the lost reply is reported');
    assert.equal((await state()).activeVersion, before.activeVersion);
    assert.equal(await rotate(), undefined);
    const after = await state();
    assert.notEqual(after.activeVersion, before.activeVersion);
    assert.equal(f.sim.applicationKeyIds().length, 2, 'no duplicate key');
    await runClean('after the lost reply');
  });

  it('a crash between the switch and removeKey converges after the overlap', async () => {
    clockOffset += 8 * day;
    // The removal's reply is lost: the key went, the app did not hear it.
    f.sim.faults.add({ kind: 'lostReply', match: { operation: 'applications.removeKey' }, times: 1 });
    const crashed = await rotate();
    const mid = await state();
    assert.ok(mid.retiredVersion, 'the crash left the retired key recorded');
    assert.ok(crashed, 'reported');
    assert.equal(f.sim.applicationKeyIds().length, 1, 'the key went even though the reply was lost');
    assert.equal(await rotate(), undefined);
    const after = await state();
    assert.equal(after.retiredVersion, undefined, 'retired key settled');
    assert.equal(f.sim.applicationKeyIds().length, 1);
    await runClean('after removal');
  });

  it('a proof signed by a key not on the application is refused and reported', async () => {
    await runClean('token cached');
    const app = f.sim.identity.requireApp(f.sim.clientId);
    // An admin deletes the registered key by hand; cached tokens still work for a while.
    const removed = app.certificates.splice(0, app.certificates.length);
    try {
      await f.sim.renewInKeyVault();
      const error = await rotate();
      assert.ok(error, 'the handler fails the tick');
      assert.match(error.message, /contoso/);
      const s = await state();
      assert.match(
        s.problem ?? '',
        /Access Token missing or malformed|Authentication_MissingOrMalformed|401/i,
      );
      assert.equal(s.pendingAdded, undefined, 'nothing added');
      const health = await healthCheck(
        new HttpRequest({ url: 'http://127.0.0.1/api/health', method: 'GET' }),
        ctx(),
      );
      assert.match(JSON.stringify(health.jsonBody), /Last rotation problem/);
    } finally {
      app.certificates.push(...removed);
    }
    assert.equal(await rotate(), undefined, 'with its key back on the application the roll goes through');
    assert.equal((await state()).problem, undefined, 'a clean check clears the problem');
  });

  it('expiry: a warning within 30 days, an error within 7, and what to do when Key Vault does not renew', async () => {
    const expiry = certificateExpiryCheck;
    const status = await certificateStatus(f.app, connection);
    const notAfter = new Date(status.notAfter).getTime();
    const at = (daysLeft: number): void => {
      clockOffset = notAfter - daysLeft * day - 3_600_000 - Date.now();
    };
    at(45);
    assert.deepEqual([(await expiry()).ok, (await expiry()).warning], [true, undefined]);
    at(20);
    const warning = await expiry();
    assert.equal(warning.ok, true);
    assert.equal(warning.warning, true);
    assert.match(warning.detail, /^warning: expires in 20 days/);
    assert.match(warning.fix ?? '', /Key Vault has not renewed/);
    at(5);
    const error = await expiry();
    assert.equal(error.ok, false);
    assert.match(error.detail, /^error: expires in 5 days/);
    assert.match(error.fix ?? '', /issuer/);
  });

  it('turned on after Key Vault already renewed: finds the registered version, then rolls', async () => {
    clockOffset = 0;
    const registered = (await state()).activeVersion;
    await f.app.tables.policies.deleteEntity('certificate-rotation', 'contoso');
    await f.sim.renewInKeyVault();
    const calls = addKeyCalls();
    assert.equal(await rotate(), undefined);
    const after = await state();
    assert.equal(
      after.retiredVersion,
      registered,
      'the version on the application was found among older ones',
    );
    assert.notEqual(after.activeVersion, registered);
    assert.equal(addKeyCalls(), calls + 1);
    await runClean('after a late start');
  });
});

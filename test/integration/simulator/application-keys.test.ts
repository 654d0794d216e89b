import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import { ClientCertificateCredential } from '@azure/identity';
import { createSelfSignedCertificate } from '../../doubles/graph-tenant-simulator/certificates';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import { GraphApplicationKeys, proofAudience, signProof } from '../../../src/adapters/graph/application-keys';
import { graphClient, rawGraph, startSimulator } from '../../support/clients';
import { GraphSchemas } from '../../support/graph-schemas';
import { applicationsExtract } from '../../support/conformance';

describe('the simulator: application addKey / removeKey, checked against the documented contract', () => {
  let sim: GraphTenantSimulator;
  let appPem: string;
  const violations: string[] = [];
  const seen: string[] = [];
  // Microsoft's own description (Applications.yml extract), normalised as ../shared/graph-openapi's are.
  const schemas = new GraphSchemas();
  const defs = {
    addKeyRequest: 'action.addKey.request',
    addKeyResponse: 'microsoft.graph.keyCredential',
    removeKeyRequest: 'action.removeKey.request',
  } as const;
  const check = (label: string, def: keyof typeof defs, value: unknown): void => {
    const v = schemas.component(defs[def], true, applicationsExtract);
    if (!v(value)) violations.push(`${label} ${def}: ${JSON.stringify(v.errors?.slice(0, 3))}`);
  };
  const proofWith = (
    pem: string,
    claims: { aud?: string; iss?: string; nbf?: number; exp?: number },
    header: Record<string, unknown> = {},
  ): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({}).setProtectedHeader({ alg: 'RS256', typ: 'JWT', ...header });
    jwt.setAudience(claims.aud ?? proofAudience).setIssuer(claims.iss ?? sim.applicationObjectId);
    jwt.setNotBefore(claims.nbf ?? now).setExpirationTime(claims.exp ?? now + 600);
    return jwt.sign(createPrivateKey(pem));
  };
  const der = (pem: string): string =>
    pem
      .replace(/-----[A-Z ]+-----/g, '')
      .replace(/\s/g, '')
      .trim();
  const addBody = async (proof: string): Promise<unknown> => {
    const fresh = await createSelfSignedCertificate('CN=next');
    return {
      keyCredential: { type: 'AsymmetricX509Cert', usage: 'Verify', key: der(fresh.certificatePem) },
      passwordCredential: null,
      proof,
    };
  };

  before(async () => {
    sim = await startSimulator({ seed: { generate: { users: 2, mailboxes: 1, awkward: false } } });
    appPem = readFileSync(sim.certificatePath, 'utf8');
    sim.graph.observer = (operation, req, res) => {
      if (!operation.startsWith('applications.')) return;
      seen.push(`${operation} ${res.status}`);
      const label = `${req.method} ${req.path} → ${res.status}`;
      if (res.status < 300 && operation === 'applications.addKey') {
        check(label, 'addKeyRequest', req.body);
        check(label, 'addKeyResponse', res.body);
      }
      if (res.status < 300 && operation === 'applications.removeKey')
        check(label, 'removeKeyRequest', req.body);
      if (res.status >= 300) {
        const err = (res.body as { error?: { code?: unknown; message?: unknown } }).error;
        if (typeof err?.code !== 'string' || typeof err.message !== 'string')
          violations.push(`${label}: not an OData error`);
      }
    };
  });
  after(() => sim.close());

  it('the schemas reject what Graph would not accept', () => {
    const before = violations.length;
    check('probe', 'addKeyRequest', {
      keyCredential: { type: 'AsymmetricX509Cert', usage: 'Verify', thumbprint: 'x' },
      proof: 'x',
    });
    check('probe', 'removeKeyRequest', { keyId: 'not-a-guid', proof: 'x' });
    check('probe', 'addKeyResponse', { keyId: '0f9785d7-5b43-4adb-8022-dd37cadd20a1', thumbprint: 'x' });
    assert.equal(violations.splice(before).length, 3);
  });

  it("the product's addKey and removeKey, by appId and by object id, keep keyCredentials; tokens work with either key", async () => {
    const client = graphClient(sim);
    const keys = new GraphApplicationKeys(client, sim.clientId);
    const next = await createSelfSignedCertificate('CN=contact-sync');
    const nextPem = next.privateKeyPem + next.certificatePem;
    const added = await keys.addKey(nextPem, await signProof(appPem, sim.applicationObjectId));
    assert.deepEqual(sim.applicationKeyIds(), [sim.initialKeyId, added.keyId]);
    for (const pem of [appPem, nextPem]) {
      const credential = new ClientCertificateCredential(
        sim.tenantId,
        sim.clientId,
        { certificate: pem },
        { authorityHost: sim.authorityHost, disableInstanceDiscovery: true },
      );
      assert.ok(await credential.getToken(`${sim.graphUrl}/.default`), 'token with either key');
    }
    // The object-id form, proof signed by the NEW key, removes the old one.
    const byObjectId = await rawGraph(sim, 'POST', `/applications/${sim.applicationObjectId}/removeKey`, {
      keyId: sim.initialKeyId,
      proof: await signProof(nextPem, sim.applicationObjectId),
    });
    assert.equal(byObjectId.status, 204);
    assert.deepEqual(sim.applicationKeyIds(), [added.keyId]);
    assert.equal(
      await keys.removeKey(sim.initialKeyId, await signProof(nextPem, sim.applicationObjectId)),
      false,
    );
    // The last valid key cannot go (the client's cached token still works: the key is gone, not the token).
    const last = await client
      .api(`/applications(appId='${sim.clientId}')/removeKey`)
      .post({ keyId: added.keyId, proof: await signProof(nextPem, sim.applicationObjectId) })
      .then(
        () => undefined,
        (e: { statusCode?: number; message?: string }) => e,
      );
    assert.equal(last?.statusCode, 400);
    assert.match(last?.message ?? '', /last valid key/);
    // Put the simulator's own certificate back for the other tests.
    await keys.addKey(appPem, await signProof(nextPem, sim.applicationObjectId));
    assert.equal(sim.applicationKeyIds().length, 2);
    assert.deepEqual(violations, []);
    assert.ok(seen.includes('applications.addKey 200') && seen.includes('applications.removeKey 204'));
  });

  it('refuses proofs that break the documented rules', async () => {
    const stranger = await createSelfSignedCertificate('CN=stranger');
    const strangerPem = stranger.privateKeyPem + stranger.certificatePem;
    const now = Math.floor(Date.now() / 1000);
    const keysBefore = sim.applicationKeyIds();
    const cases: [string, Promise<string>][] = [
      ['signed by a key not on the application', proofWith(strangerPem, {})],
      [
        'audience is Microsoft Graph, not 00000002-…',
        proofWith(appPem, { aud: '00000003-0000-0000-c000-000000000000' }),
      ],
      ['issuer is the client id, not the object id', proofWith(appPem, { iss: sim.clientId })],
      ['lives longer than 10 minutes', proofWith(appPem, { nbf: now, exp: now + 3600 })],
      ['expired', proofWith(appPem, { nbf: now - 7200, exp: now - 6600 })],
      // No clock leeway is documented for the proof, so none is given.
      ['not valid for another minute', proofWith(appPem, { nbf: now + 60, exp: now + 600 })],
      ['expired a minute ago', proofWith(appPem, { nbf: now - 540, exp: now - 60 })],
    ];
    for (const [why, proof] of cases) {
      const r = await rawGraph(
        sim,
        'POST',
        `/applications(appId='${sim.clientId}')/addKey`,
        await addBody(await proof),
      );
      assert.equal(r.status, 401, why);
      assert.equal(r.body.error.code, 'Authentication_MissingOrMalformed', why);
    }
    const padded = `${(await proofWith(appPem, {})).split('.').slice(0, 2).join('.')}=.sig`;
    assert.equal(
      (await rawGraph(sim, 'POST', `/applications/${sim.applicationObjectId}/addKey`, await addBody(padded)))
        .status,
      401,
    );
    const noProof = await rawGraph(sim, 'POST', `/applications/${sim.applicationObjectId}/addKey`, {
      keyCredential: { type: 'AsymmetricX509Cert', usage: 'Verify', key: 'AAAA' },
    });
    assert.equal(noProof.status, 400);
    assert.match(noProof.body.error.message, /proof/);
    assert.deepEqual(sim.applicationKeyIds(), keysBefore, 'nothing was added');
    assert.deepEqual(violations, []);
  });

  it("only the application itself rolls its keys (another app's token is refused)", async () => {
    const other = sim.identity.registerApp({
      clientId: '11111111-2222-3333-4444-555555555555',
      roles: new Set(['User.Read.All']),
    });
    const r = await rawGraph(
      sim,
      'POST',
      `/applications/${other.objectId}/addKey`,
      await addBody(await proofWith(appPem, { iss: other.objectId })),
    );
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, 'Authorization_RequestDenied');
  });

  it("the token endpoint judges a key's expiry by the simulator's clock", async () => {
    const tokenWith = (pem: string) =>
      new ClientCertificateCredential(
        sim.tenantId,
        sim.clientId,
        { certificate: pem },
        { authorityHost: sim.authorityHost, disableInstanceDiscovery: true },
      ).getToken(`${sim.graphUrl}/.default`);
    const fresh = await createSelfSignedCertificate('CN=expiry-clock', 12);
    sim.identity.addCertificate(sim.clientId, fresh.certificatePem);
    const pem = fresh.privateKeyPem + fresh.certificatePem;
    assert.ok(await tokenWith(pem), 'valid today');
    sim.identity.now = () => Date.now() + 400 * 86_400_000;
    try {
      await assert.rejects(tokenWith(pem), /AADSTS700027[\s\S]*expired/);
    } finally {
      sim.identity.now = Date.now;
    }
  });
});

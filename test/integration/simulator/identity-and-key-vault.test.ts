import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID, X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import {
  appCredential,
  certificateClient,
  graphClient,
  rawGraph,
  secretClient,
  startSimulator,
} from '../../support/clients';

async function assertion(
  sim: GraphTenantSimulator,
  options: { alg: 'RS256' | 'PS256'; header: 'x5t' | 'x5t#S256'; aud?: string; exp?: number; pem?: string },
): Promise<string> {
  const pem = options.pem ?? readFileSync(sim.certificatePath, 'utf8');
  const cert = new X509Certificate(pem);
  const key = createPrivateKey(pem);
  const thumb = createHash(options.header === 'x5t' ? 'sha1' : 'sha256')
    .update(cert.raw)
    .digest('base64url');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: options.alg, typ: 'JWT', [options.header]: thumb })
    .setAudience(options.aud ?? `${sim.authorityHost}/${sim.tenantId}/oauth2/v2.0/token`)
    .setIssuer(sim.clientId)
    .setSubject(sim.clientId)
    .setJti(randomUUID())
    .setNotBefore(now - 10)
    .setExpirationTime(options.exp ?? now + 600)
    .sign(key);
}

async function requestToken(
  sim: GraphTenantSimulator,
  clientAssertion: string,
  scope = `${sim.graphUrl}/.default`,
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${sim.authorityHost}/${sim.tenantId}/oauth2/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: sim.clientId,
      scope,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: clientAssertion,
    }),
  });
  return { status: res.status, body: await res.json() };
}

describe('Graph tenant simulator: Entra ID token endpoint', () => {
  let sim: GraphTenantSimulator;
  before(async () => {
    sim = await startSimulator();
  });
  after(() => sim.close());

  it('issues a token to ClientCertificateCredential (PS256, x5t#S256) that Graph accepts', async () => {
    const token = await appCredential(sim).getToken(`${sim.graphUrl}/.default`);
    assert.ok(token.token.split('.').length === 3);
    const payload = JSON.parse(Buffer.from(token.token.split('.')[1]!, 'base64url').toString());
    assert.deepEqual([...payload.roles].sort(), [
      'Contacts.ReadWrite',
      'GroupMember.Read.All',
      'Mail.Send',
      'OrgContact.Read.All',
      'User.Read.All',
    ]);
    const me = await graphClient(sim).api('/users').top(1).get();
    assert.equal(me.value.length, 1);
  });

  for (const [alg, header] of [
    ['RS256', 'x5t'],
    ['PS256', 'x5t'],
    ['RS256', 'x5t#S256'],
  ] as const) {
    it(`accepts an assertion signed ${alg} with ${header}`, async () => {
      const res = await requestToken(sim, await assertion(sim, { alg, header }));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.token_type, 'Bearer');
    });
  }

  it('rejects an assertion signed by a certificate the app does not have (AADSTS700027)', async () => {
    const { createSelfSignedCertificate } = await import('../../doubles/graph-tenant-simulator/certificates');
    const other = await createSelfSignedCertificate('CN=intruder');
    const res = await requestToken(
      sim,
      await assertion(sim, {
        alg: 'PS256',
        header: 'x5t#S256',
        pem: other.privateKeyPem + other.certificatePem,
      }),
    );
    assert.equal(res.status, 401);
    assert.equal(res.body.error, 'invalid_client');
    assert.deepEqual(res.body.error_codes, [700027]);
  });

  it('rejects a wrong audience and an expired assertion', async () => {
    const wrongAud = await requestToken(
      sim,
      await assertion(sim, { alg: 'PS256', header: 'x5t#S256', aud: 'https://elsewhere.example/token' }),
    );
    assert.equal(wrongAud.status, 400);
    assert.match(wrongAud.body.error_description, /audience/);
    const expired = await requestToken(
      sim,
      await assertion(sim, { alg: 'PS256', header: 'x5t#S256', exp: Math.floor(Date.now() / 1000) - 3600 }),
    );
    assert.equal(expired.status, 400);
    assert.deepEqual(expired.body.error_codes, [700024]);
  });

  it('rejects a scope without /.default, as the client credentials flow requires', async () => {
    const res = await requestToken(
      sim,
      await assertion(sim, { alg: 'PS256', header: 'x5t#S256' }),
      'User.Read.All',
    );
    assert.equal(res.status, 400);
    assert.deepEqual(res.body.error_codes, [1002012]);
  });

  it('serves the OpenID configuration MSAL reads', async () => {
    const res = await fetch(`${sim.authorityHost}/${sim.tenantId}/v2.0/.well-known/openid-configuration`);
    const body = (await res.json()) as Record<string, string>;
    for (const key of ['token_endpoint', 'authorization_endpoint', 'issuer', 'jwks_uri'])
      assert.ok(body[key], key);
    assert.equal(body.token_endpoint, `${sim.authorityHost}/${sim.tenantId}/oauth2/v2.0/token`);
  });

  it("answers 401 InvalidAuthenticationToken without a token, in Graph's error shape", async () => {
    const res = await fetch(`${sim.graphUrl}/v1.0/users`);
    assert.equal(res.status, 401);
    const body = (await res.json()) as any;
    assert.equal(body.error.code, 'InvalidAuthenticationToken');
    assert.ok(body.error.innerError['request-id']);
    assert.ok(body.error.innerError.date);
  });

  it('answers 403 as Graph words it when the app lacks a permission', async () => {
    sim.setPermissions(['Contacts.ReadWrite']);
    try {
      const users = await rawGraph(sim, 'GET', '/users');
      assert.equal(users.status, 403);
      assert.equal(users.body.error.code, 'Authorization_RequestDenied');
      assert.equal(users.body.error.message, 'Insufficient privileges to complete the operation.');
      const upn = [...sim.tenant.users.values()].find((u) => u.mailbox === 'user')!.userPrincipalName;
      const mail = await rawGraph(sim, 'POST', `/users/${upn}/sendMail`, {
        message: { subject: 'x', toRecipients: [{ emailAddress: { address: upn } }] },
      });
      assert.equal(mail.status, 403);
      assert.equal(mail.body.error.code, 'ErrorAccessDenied');
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

  it('rejects a Key Vault token at Graph (wrong audience)', async () => {
    const { hostCredential } = await import('../../support/clients');
    const kvToken = await hostCredential(sim).getToken('https://vault.azure.net/.default');
    const res = await fetch(`${sim.graphUrl}/v1.0/users`, {
      headers: { authorization: `Bearer ${kvToken.token}` },
    });
    assert.equal(res.status, 401);
  });
});

describe('Graph tenant simulator: Key Vault', () => {
  let sim: GraphTenantSimulator;
  before(async () => {
    sim = await startSimulator();
  });
  after(() => sim.close());

  it('answers the first call with a bearer challenge, then serves the certificate as a PEM secret', async () => {
    const since = sim.log.lastSeq;
    const secret = await secretClient(sim).getSecret(sim.certificateName);
    assert.equal(secret.properties.contentType, 'application/x-pem-file');
    assert.match(secret.value ?? '', /-----BEGIN PRIVATE KEY-----[\s\S]+-----BEGIN CERTIFICATE-----/);
    const vaultCalls = sim.log.since(since).filter((e) => e.service === 'vault');
    assert.equal(vaultCalls[0]?.status, 401, 'first call is challenged');
    assert.equal(vaultCalls.at(-1)?.status, 200);
  });

  it('serves the certificate with thumbprint, and a new version after rotation', async () => {
    const certs = certificateClient(sim);
    const before = await certs.getCertificate(sim.certificateName);
    const rotated = await sim.rotateCertificate();
    const after = await certs.getCertificate(sim.certificateName);
    assert.notEqual(before.properties.version, after.properties.version);
    assert.equal(Buffer.from(after.properties.x509Thumbprint!).toString('base64url'), rotated.x5t);
    const secret = await secretClient(sim).getSecret(sim.certificateName);
    assert.equal(secret.properties.version, after.properties.version);
    assert.ok(secret.value?.includes(rotated.certificatePem.trim().split('\n')[1]!));
    const versions: string[] = [];
    for await (const v of certs.listPropertiesOfCertificateVersions(sim.certificateName))
      versions.push(v.version!);
    assert.equal(versions.length, 2);
  });

  it('lets a rotated certificate authenticate, and rejects the old one once revoked', async () => {
    const { ClientCertificateCredential } = await import('@azure/identity');
    const oldPem = readFileSync(sim.certificatePath, 'utf8');
    const rotated = await sim.rotateCertificate({ revokePrevious: true });
    const fresh = new ClientCertificateCredential(
      sim.tenantId,
      sim.clientId,
      { certificate: rotated.privateKeyPem + rotated.certificatePem },
      { authorityHost: sim.authorityHost, disableInstanceDiscovery: true },
    );
    assert.ok((await fresh.getToken(`${sim.graphUrl}/.default`)).token);
    const stale = new ClientCertificateCredential(
      sim.tenantId,
      sim.clientId,
      { certificate: oldPem },
      { authorityHost: sim.authorityHost, disableInstanceDiscovery: true },
    );
    await assert.rejects(stale.getToken(`${sim.graphUrl}/.default`), /700027/);
  });

  it('creates a certificate with a PEM policy (what `cert create` will call)', async () => {
    const certs = certificateClient(sim);
    const poller = await certs.beginCreateCertificate(
      'new-cert',
      {
        subject: 'CN=m365-contact-sync',
        contentType: 'application/x-pem-file',
        validityInMonths: 12,
        exportable: true,
        lifetimeActions: [{ action: 'AutoRenew', lifetimePercentage: 80 }],
      },
      { intervalInMs: 10 },
    );
    const created = await poller.pollUntilDone();
    assert.ok(created.cer && created.cer.length > 100);
    const secret = await secretClient(sim).getSecret('new-cert');
    assert.match(secret.value ?? '', /BEGIN PRIVATE KEY/);
  });

  it('answers 404 SecretNotFound for a missing secret and 403 ForbiddenByRbac for an app without access', async () => {
    await assert.rejects(
      secretClient(sim).getSecret('nope'),
      (e: any) => e.statusCode === 404 && e.code === 'SecretNotFound',
    );
    const { SecretClient } = await import('@azure/keyvault-secrets');
    const { ClientSecretCredential } = await import('@azure/identity');
    const outsider = sim.identity.registerApp({ clientId: randomUUID(), secrets: ['s3cret-outsider'] });
    const credential = new ClientSecretCredential(sim.tenantId, outsider.clientId, 's3cret-outsider', {
      authorityHost: sim.authorityHost,
      disableInstanceDiscovery: true,
    });
    const asApp = new SecretClient(sim.keyVaultUrl, credential, {
      disableChallengeResourceVerification: true,
    });
    await assert.rejects(asApp.getSecret(sim.certificateName), (e: any) => e.statusCode === 403);
  });
});

// The simulator's app registrations and device code sign-in, as an admin's client meets them:
// every application, service principal, app role assignment and addKey body checked against
// Microsoft's OpenAPI (the simulator's extract of Applications.yml), and the rules setup depends on (owners, the consent role, duplicates, the service principal).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ClientCertificateCredential, ClientSecretCredential, DeviceCodeCredential } from '@azure/identity';
import { Client } from '@microsoft/microsoft-graph-client';
import { TokenCredentialAuthenticationProvider } from '@microsoft/microsoft-graph-client/authProviders/azureTokenCredentials';
import { createSelfSignedCertificate } from '../../doubles/graph-tenant-simulator/certificates';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import { GraphSchemas } from '../../support/graph-schemas';
import { applicationsExtract, watchApplicationConformance } from '../../support/conformance';
import { signProof } from '../../../src/adapters/graph/application-keys';
import { startSimulator } from '../../support/clients';

const application = 'microsoft.graph.application';
const principal = 'microsoft.graph.servicePrincipal';

describe('the simulator: app registrations for an admin signed in with a device code', () => {
  let sim: GraphTenantSimulator;
  const schemas = new GraphSchemas();
  let violations: string[] = [];
  let checked = new Set<string>();
  let admin: string;
  let plain: string;

  function signedIn(user: string): Client {
    const credential = new DeviceCodeCredential({
      tenantId: sim.tenantId,
      clientId: '14d82eec-204b-4c2f-b7e8-296a70dab67e',
      authorityHost: sim.authorityHost,
      disableInstanceDiscovery: true,
      userPromptCallback: (info) => sim.approveDeviceCode(info.userCode, user),
    });
    return Client.initWithMiddleware({
      authProvider: new TokenCredentialAuthenticationProvider(credential, {
        scopes: [
          `${sim.graphUrl}/Application.ReadWrite.All`,
          `${sim.graphUrl}/AppRoleAssignment.ReadWrite.All`,
        ],
      }),
      baseUrl: sim.graphUrl,
      defaultVersion: 'v1.0',
      customHosts: new Set(['127.0.0.1']),
    });
  }

  const status = async (call: Promise<unknown>): Promise<{ status: number; code?: string }> => {
    try {
      await call;
      return { status: 200 };
    } catch (e) {
      const err = e as { statusCode: number; code?: string };
      return { status: err.statusCode, ...(err.code ? { code: err.code } : {}) };
    }
  };

  before(async () => {
    sim = await startSimulator({
      registerApp: false,
      deviceCodeIntervalSeconds: 1,
      seed: { generate: { users: 4, mailboxes: 1, awkward: false } },
    });
    sim.trustInProcess();
    const users = [...sim.tenant.users.values()].filter((u) => u.accountEnabled);
    admin = users[0]!.userPrincipalName;
    plain = users[1]!.userPrincipalName;
    sim.assignDirectoryRole(admin, 'Privileged Role Administrator');
    ({ violations, checked } = watchApplicationConformance(sim, schemas));
  });
  after(() => sim.close());

  it('creates an app and its service principal, grants Graph roles looked up by value; the app then gets a token with them', async () => {
    const graph = signedIn(admin);
    const app = (await graph
      .api('/applications')
      .post({ displayName: 'probe', signInAudience: 'AzureADMyOrg' })) as {
      id: string;
      appId: string;
    };
    const cert = await createSelfSignedCertificate('CN=probe');
    const key = cert.certificatePem.replace(/-----[A-Z ]+-----|\s/g, '');
    await graph
      .api(`/applications/${app.id}`)
      .patch({ keyCredentials: [{ type: 'AsymmetricX509Cert', usage: 'Verify', key }] });
    const listed = (await graph.api('/applications').query({ $filter: "displayName eq 'probe'" }).get()) as {
      value: { id: string }[];
    };
    assert.deepEqual(
      listed.value.map((a) => a.id),
      [app.id],
    );
    await graph.api(`/applications/${app.id}`).get();
    const appCredential = new ClientCertificateCredential(
      sim.tenantId,
      app.appId,
      { certificate: cert.privateKeyPem + cert.certificatePem },
      {
        authorityHost: sim.authorityHost,
        disableInstanceDiscovery: true,
      },
    );
    await assert.rejects(
      appCredential.getToken(`${sim.graphUrl}/.default`),
      /AADSTS7000229/,
      'no service principal, no token',
    );
    const sp = (await graph.api('/servicePrincipals').post({ appId: app.appId })) as { id: string };
    assert.equal((await status(graph.api('/servicePrincipals').post({ appId: app.appId }))).status, 409);
    const msGraph = (
      (await graph
        .api('/servicePrincipals')
        .query({ $filter: "appId eq '00000003-0000-0000-c000-000000000000'" })
        .get()) as {
        value: { id: string; appRoles: { id: string; value: string }[] }[];
      }
    ).value[0]!;
    const roleId = msGraph.appRoles.find((r) => r.value === 'User.Read.All')!.id;
    const grant = { principalId: sp.id, resourceId: msGraph.id, appRoleId: roleId };
    await graph.api(`/servicePrincipals/${msGraph.id}/appRoleAssignedTo`).post(grant);
    const again = await status(graph.api(`/servicePrincipals/${msGraph.id}/appRoleAssignedTo`).post(grant));
    assert.equal(again.status, 400, 'a duplicate assignment is refused');
    const unknown = await status(
      graph
        .api(`/servicePrincipals/${msGraph.id}/appRoleAssignedTo`)
        .post({ ...grant, appRoleId: '00000000-0000-4000-8000-000000000001' }),
    );
    assert.equal(unknown.status, 400, 'an app role Graph does not define is refused');
    const held = (await graph.api(`/servicePrincipals/${sp.id}/appRoleAssignments`).get()) as {
      value: { appRoleId: string }[];
    };
    assert.deepEqual(
      held.value.map((a) => a.appRoleId),
      [roleId],
    );
    const token = await appCredential.getToken(`${sim.graphUrl}/.default`);
    const roles = JSON.parse(Buffer.from(token.token.split('.')[1]!, 'base64url').toString()) as {
      roles: string[];
    };
    assert.deepEqual(roles.roles, ['User.Read.All']);
  });

  it('a user without Privileged Role Administrator may create an app (and, as its owner, update it) but not grant Graph roles; a non-owner may not update it', async () => {
    const graph = signedIn(plain);
    const app = (await graph.api('/applications').post({ displayName: 'mine' })) as {
      id: string;
      appId: string;
    };
    await graph.api(`/applications/${app.id}`).patch({ requiredResourceAccess: [] });
    const sp = (await graph.api('/servicePrincipals').post({ appId: app.appId })) as { id: string };
    const msGraph = (
      (await graph
        .api('/servicePrincipals')
        .query({ $filter: "appId eq '00000003-0000-0000-c000-000000000000'" })
        .get()) as {
        value: { id: string; appRoles: { id: string }[] }[];
      }
    ).value[0]!;
    const denied = await status(
      graph.api(`/servicePrincipals/${msGraph.id}/appRoleAssignedTo`).post({
        principalId: sp.id,
        resourceId: msGraph.id,
        appRoleId: msGraph.appRoles[0]!.id,
      }),
    );
    assert.equal(denied.status, 403);
    const other = signedIn(admin);
    const notOwner = await status(other.api(`/applications/${app.id}`).patch({ requiredResourceAccess: [] }));
    assert.equal(notOwner.status, 403, 'Privileged Role Administrator alone does not make one an app owner');
    const noKey = await status(
      graph
        .api(`/applications/${app.id}`)
        .patch({ keyCredentials: [{ type: 'AsymmetricX509Cert', usage: 'Verify' }] }),
    );
    assert.equal(noKey.status, 400, 'keyCredentials entries need their key');
  });

  it('addKey for a signed-in user: its owner may, with a proof; a user neither owner nor application administrator may not', async () => {
    const owner = signedIn(plain);
    const app = (await owner.api('/applications').post({ displayName: 'rolled' })) as { id: string };
    const der = (pem: string): string => pem.replace(/-----[A-Z ]+-----|\s/g, '');
    const first = await createSelfSignedCertificate('CN=first');
    await owner.api(`/applications/${app.id}`).patch({
      keyCredentials: [{ type: 'AsymmetricX509Cert', usage: 'Verify', key: der(first.certificatePem) }],
    });
    // keyCredential.key: only for one application read with $select=keyCredentials, else null.
    type Keys = { keyCredentials: { key: string | null }[] };
    const selected = (await owner.api(`/applications/${app.id}`).select('keyCredentials').get()) as Keys;
    assert.equal(selected.keyCredentials[0]!.key, der(first.certificatePem));
    const whole = (await owner.api(`/applications/${app.id}`).get()) as Keys;
    assert.equal(whole.keyCredentials[0]!.key, null);
    const listed = (await owner
      .api('/applications')
      .filter(`id eq '${app.id}'`)
      .select('keyCredentials')
      .get()) as { value: Keys[] };
    assert.equal(listed.value[0]!.keyCredentials[0]!.key, null, 'never in a list');
    const next = await createSelfSignedCertificate('CN=next');
    const body = async (): Promise<unknown> => ({
      keyCredential: { type: 'AsymmetricX509Cert', usage: 'Verify', key: der(next.certificatePem) },
      passwordCredential: null,
      proof: await signProof(first.privateKeyPem + first.certificatePem, app.id),
    });
    const stranger = await status(
      signedIn(admin)
        .api(`/applications/${app.id}/addKey`)
        .post(await body()),
    );
    assert.equal(stranger.status, 403, 'Privileged Role Administrator is not an application administrator');
    const added = (await owner.api(`/applications/${app.id}/addKey`).post(await body())) as { keyId: string };
    assert.match(added.keyId, /^[0-9a-f-]{36}$/);
  });

  it('an app token cannot manage app registrations, and the device code is redeemed once', async () => {
    const host = new ClientSecretCredential(
      sim.tenantId,
      sim.hostIdentity.clientId,
      sim.hostIdentity.clientSecret,
      {
        authorityHost: sim.authorityHost,
        disableInstanceDiscovery: true,
      },
    );
    const graph = Client.initWithMiddleware({
      authProvider: new TokenCredentialAuthenticationProvider(host, { scopes: [`${sim.graphUrl}/.default`] }),
      baseUrl: sim.graphUrl,
      defaultVersion: 'v1.0',
      customHosts: new Set(['127.0.0.1']),
    });
    assert.equal((await status(graph.api('/applications').post({ displayName: 'x' }))).status, 403);
    const start = await fetch(`${sim.authorityHost}/${sim.tenantId}/oauth2/v2.0/devicecode`, {
      method: 'POST',
      body: new URLSearchParams({
        client_id: '14d82eec-204b-4c2f-b7e8-296a70dab67e',
        scope: `${sim.graphUrl}/Application.Read.All`,
      }),
    });
    const code = (await start.json()) as { device_code: string; user_code: string; interval: number };
    const poll = () =>
      fetch(`${sim.authorityHost}/${sim.tenantId}/oauth2/v2.0/token`, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
          client_id: '14d82eec-204b-4c2f-b7e8-296a70dab67e',
          device_code: code.device_code,
        }),
      }).then(async (r) => ({
        status: r.status,
        body: (await r.json()) as { error?: string; access_token?: string },
      }));
    assert.equal((await poll()).body.error, 'authorization_pending');
    sim.approveDeviceCode(code.user_code, admin);
    assert.ok((await poll()).body.access_token);
    assert.equal((await poll()).body.error, 'invalid_grant', 'a device code is redeemed once');
    const stranger = await fetch(`${sim.authorityHost}/${sim.tenantId}/oauth2/v2.0/devicecode`, {
      method: 'POST',
      body: new URLSearchParams({
        client_id: '11111111-1111-4111-8111-111111111111',
        scope: `${sim.graphUrl}/User.Read`,
      }),
    });
    assert.equal(stranger.status, 400, 'only known public clients');
  });
  it('a first-party public client gets tokens only for what it is preauthorized for (AADSTS65002 otherwise)', async () => {
    const token = async (clientId: string, scope: string) => {
      const started = (await (
        await fetch(`${sim.authorityHost}/${sim.tenantId}/oauth2/v2.0/devicecode`, {
          method: 'POST',
          body: new URLSearchParams({ client_id: clientId, scope }),
        })
      ).json()) as { device_code: string; user_code: string };
      sim.approveDeviceCode(started.user_code, admin);
      const r = await fetch(`${sim.authorityHost}/${sim.tenantId}/oauth2/v2.0/token`, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'device_code',
          client_id: clientId,
          device_code: started.device_code,
        }),
      });
      const body = (await r.json()) as { access_token?: string; error_codes?: number[] };
      const claims = body.access_token
        ? (JSON.parse(Buffer.from(body.access_token.split('.')[1]!, 'base64url').toString()) as {
            aud: string;
            scp: string;
          })
        : undefined;
      return { status: r.status, codes: body.error_codes ?? [], claims };
    };
    const graphTools = '14d82eec-204b-4c2f-b7e8-296a70dab67e';
    const azureCli = '04b07795-8ddb-461a-bbee-02f9e1bf7b46';
    const refused = await token(graphTools, 'https://storage.azure.com/.default');
    assert.deepEqual([refused.status, refused.codes], [400, [65002]], 'Graph Command Line Tools: Graph only');
    const storage = await token(azureCli, 'https://storage.azure.com/.default');
    assert.equal(storage.claims?.aud, 'https://storage.azure.com');
    assert.equal(storage.claims?.scp, 'user_impersonation');
    const graph = await token(azureCli, `${sim.graphUrl}/.default`);
    assert.match(graph.claims!.scp, /\bApplication\.ReadWrite\.All\b.*\bAppRoleAssignment\.ReadWrite\.All\b/);
    // Azure CLI's client takes .default only: a named scope, even one it is preauthorized for, is refused.
    const named = await token(azureCli, `${sim.graphUrl}/Application.ReadWrite.All`);
    assert.deepEqual(named.codes, [65002], 'a named Graph scope for Azure CLI');
    const outside = await token(azureCli, `${sim.graphUrl}/Sites.Read.All`);
    assert.deepEqual(outside.codes, [65002], "a Graph scope outside Azure CLI's preauthorized set");
    const vaultNamed = await token(azureCli, 'https://vault.azure.net/user_impersonation');
    assert.deepEqual(vaultNamed.codes, [65002], 'a named Key Vault scope for Azure CLI');
  });

  it('the schemas reject what Graph would not send', () => {
    const bad: [string, unknown][] = [
      [application, { id: 'x', appId: 'y', displayName: 'z', createdAt: '2026-01-01T00:00:00Z' }],
      [application, { id: 'x', keyCredentials: [{ keyId: 'not-a-guid' }] }],
      [principal, { id: 'x', appId: 'y', createdDateTime: '2026-01-01T00:00:00Z' }],
      [principal, { id: 'x', appRoles: [{ id: 'x', value: 'User.Read.All' }] }],
      ['action.addKey.request', { keyCredential: { type: 'AsymmetricX509Cert', key: 42 }, proof: 'p' }],
      ['microsoft.graph.keyCredential', { keyId: 'x', thumbprint: 'y' }],
    ];
    for (const [schema, value] of bad)
      assert.equal(
        schemas.component(schema, true, applicationsExtract)(value),
        false,
        `${schema}: ${JSON.stringify(value)}`,
      );
  });

  it("every application, service principal, app role assignment and addKey body matched Microsoft's OpenAPI", () => {
    for (const op of [
      'applications.create',
      'applications.list',
      'applications.update',
      'servicePrincipals.create',
      'servicePrincipals.list',
      'servicePrincipals.appRoleAssignedTo.create',
      'servicePrincipals.appRoleAssignments.list',
      'applications.addKey',
    ])
      assert.ok(checked.has(op), `${op} was exercised and checked`);
    assert.deepEqual(violations, []);
  });
});

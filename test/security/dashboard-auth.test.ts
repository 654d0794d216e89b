// The dashboard's sign-in and authorisation, on the server: Entra ID tokens checked against the
// tenant's published keys, app roles enforced per request, writes refused cross-site, and the local
// sign-in stand-in impossible to enable in Azure.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import { DefaultAzureCredential } from '@azure/identity';
import { App } from '../../src/app/composition';
import { parseSettings } from '../../src/app/settings';
import { handleApi, type ApiRequest } from '../../src/dashboard/api';
import { authMode, authenticate, localSignInRefusal } from '../../src/dashboard/auth';
import { asset, securityHeaders } from '../../src/dashboard/assets';

const tenantId = '11111111-2222-3333-4444-555555555555';
const clientId = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
const azurite =
  'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1';

function request(
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): ApiRequest {
  const headers = new Headers(init.headers ?? {});
  return {
    method: init.method ?? 'GET',
    path: path.split('?')[0]!,
    query: new URLSearchParams(path.split('?')[1] ?? ''),
    header: (n) => headers.get(n),
    body: () => Promise.resolve(init.body ?? ''),
    origin: 'https://contact-sync.example',
  };
}

/** An App that never reaches storage: these requests must be refused before any data is read. */
function appWith(env: Record<string, string>): App {
  return new App({
    settings: parseSettings({ POLICY_FILE: '/nonexistent/policies.json', ...env }),
    credential: new DefaultAzureCredential(),
  });
}

describe('dashboard sign-in (Entra ID tokens checked by the app)', () => {
  let server: Server;
  let authority: string;
  let sign: (
    claims: Record<string, unknown>,
    opts?: { audience?: string; issuer?: string; expires?: string },
  ) => Promise<string>;
  let otherKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  let signingKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

  before(async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    signingKey = privateKey;
    otherKey = (await generateKeyPair('RS256')).privateKey;
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    // The tenant's published signing keys, as Entra ID serves them.
    server = createServer((req, res) => {
      if (req.url === `/${tenantId}/discovery/v2.0/keys`)
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    authority = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    sign = (claims, opts = {}) =>
      new SignJWT({
        tid: tenantId,
        scp: 'access_as_user',
        preferred_username: 'anna@contoso.example',
        ...claims,
      })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(opts.issuer ?? `${authority}/${tenantId}/v2.0`)
        .setAudience(opts.audience ?? clientId)
        .setIssuedAt()
        .setExpirationTime(opts.expires ?? '1h')
        .sign(privateKey);
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const entraApp = (): App =>
    appWith({
      AzureWebJobsStorage: azurite,
      DASHBOARD_TENANT_ID: tenantId,
      DASHBOARD_CLIENT_ID: clientId,
      DASHBOARD_AUTHORITY_HOST: authority,
    });

  it('accepts a token from the tenant for this app and reads the app roles from it', async () => {
    const mode = authMode(entraApp().settings, {});
    const principal = await authenticate(mode, `Bearer ${await sign({ roles: ['ContactSync.Reader'] })}`);
    assert.deepEqual(principal, { name: 'anna@contoso.example', roles: ['ContactSync.Reader'] });
  });

  it('accepts the v1.0 tokens a default app registration gets (sts.windows.net issuer, api:// audience)', async () => {
    const mode = authMode(entraApp().settings, {});
    const v1 = `https://sts.windows.net/${tenantId}/`;
    for (const audience of [`api://${clientId}`, clientId]) {
      const token = await sign({ roles: ['ContactSync.Operator'], ver: '1.0' }, { issuer: v1, audience });
      const principal = await authenticate(mode, `Bearer ${token}`);
      assert.deepEqual(principal.roles, ['ContactSync.Operator'], audience);
    }
  });

  it('refuses a v1.0 token of another tenant, and a v2.0 token whose audience is not the client id', async () => {
    const mode = authMode(entraApp().settings, {});
    const other = '99999999-2222-3333-4444-555555555555';
    const bad = {
      'v1, other tenant': await sign(
        { roles: ['ContactSync.Operator'], tid: other, ver: '1.0' },
        { issuer: `https://sts.windows.net/${other}/`, audience: `api://${clientId}` },
      ),
      'v1, other tenant, our tid claim': await sign(
        { roles: ['ContactSync.Operator'], ver: '1.0' },
        { issuer: `https://sts.windows.net/${other}/`, audience: `api://${clientId}` },
      ),
      'v2, api:// audience': await sign(
        { roles: ['ContactSync.Operator'] },
        { audience: `api://${clientId}` },
      ),
    };
    for (const [label, token] of Object.entries(bad))
      await assert.rejects(
        authenticate(mode, `Bearer ${token}`),
        (e: { status?: number }) => e.status === 401,
        label,
      );
  });

  it('refuses a token without exp, an app-only token and an ID token (no access_as_user scope)', async () => {
    const mode = authMode(entraApp().settings, {});
    const roles = ['ContactSync.Operator'];
    const noExp = await new SignJWT({ tid: tenantId, scp: 'access_as_user', roles })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(`${authority}/${tenantId}/v2.0`)
      .setAudience(clientId)
      .setIssuedAt()
      .sign(signingKey);
    const bad = {
      'no exp': noExp,
      'app-only (idtyp=app)': await sign({ roles, idtyp: 'app' }),
      'app-only (no scp)': await sign({ roles, scp: undefined }),
      'ID token (nonce, no scp)': await sign({ roles, scp: undefined, nonce: 'n', ver: '2.0' }),
      'another scope': await sign({ roles, scp: 'User.Read' }),
    };
    for (const [label, token] of Object.entries(bad))
      await assert.rejects(
        authenticate(mode, `Bearer ${token}`),
        (e: { status?: number }) => e.status === 401,
        label,
      );
  });

  it('refuses tokens for another app, from another issuer, expired, or signed with another key (401)', async () => {
    const mode = authMode(entraApp().settings, {});
    const bad = [
      await sign({ roles: ['ContactSync.Operator'] }, { audience: 'api://someone-else' }),
      await sign(
        { roles: ['ContactSync.Operator'] },
        { issuer: 'https://login.microsoftonline.com/other/v2.0' },
      ),
      await sign({ roles: ['ContactSync.Operator'] }, { expires: '-1m' }),
      await new SignJWT({ roles: ['ContactSync.Operator'] })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(`${authority}/${tenantId}/v2.0`)
        .setAudience(clientId)
        .setExpirationTime('1h')
        .sign(otherKey),
    ];
    for (const token of bad)
      await assert.rejects(
        authenticate(mode, `Bearer ${token}`),
        (e: { status?: number }) => e.status === 401,
      );
    await assert.rejects(authenticate(mode, null), (e: { status?: number }) => e.status === 401);
  });

  it('answers 403 with no data to a signed-in user without a role, and to a reader who starts a run', async () => {
    const app = entraApp();
    const none = await sign({});
    for (const path of [
      'policies',
      'health',
      'mailboxes?q=anna@contoso.example',
      `runs/${crypto.randomUUID()}`,
    ]) {
      const res = await handleApi(app, request(path, { headers: { authorization: `Bearer ${none}` } }), {});
      assert.equal(res.status, 403, path);
      assert.deepEqual(Object.keys(res.body as object).sort(), ['detail', 'status', 'title', 'type']);
    }
    const me = await handleApi(app, request('me', { headers: { authorization: `Bearer ${none}` } }), {});
    assert.deepEqual(me.body, { name: 'anna@contoso.example', roles: [], canRead: false, canOperate: false });
    const reader = await sign({ roles: ['ContactSync.Reader'] });
    const run = await handleApi(
      app,
      request('policies/company-directory/runs', {
        method: 'POST',
        headers: { authorization: `Bearer ${reader}`, 'content-type': 'application/json' },
        body: '{}',
      }),
      {},
    );
    assert.equal(run.status, 403);
    assert.match((run.body as { detail: string }).detail, /ContactSync\.Operator/);
  });

  it('refuses a cross-site or form-encoded run-now even from an operator (CSRF)', async () => {
    const app = entraApp();
    const operator = `Bearer ${await sign({ roles: ['ContactSync.Operator'] })}`;
    const attempts: Record<string, string>[] = [
      { 'content-type': 'application/x-www-form-urlencoded' },
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/json', origin: 'https://evil.example' },
      { 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' },
    ];
    for (const headers of attempts) {
      const res = await handleApi(
        app,
        request('policies/company-directory/runs', {
          method: 'POST',
          headers: { authorization: operator, ...headers },
          body: '{}',
        }),
        {},
      );
      assert.equal(res.status, 403, JSON.stringify(headers));
      assert.equal((res.body as { title: string }).title, 'Cross-site request refused');
    }
  });

  it('answers 400, not 500, to a malformed percent-escape in the path', async () => {
    const reader = `Bearer ${await sign({ roles: ['ContactSync.Reader'] })}`;
    for (const path of ['runs/%E0%A4%A', 'policies/%/preview']) {
      const res = await handleApi(entraApp(), request(path, { headers: { authorization: reader } }), {});
      assert.equal(res.status, 400, path);
      assert.deepEqual((res.body as { errors: unknown }).errors, [
        { field: 'path', message: 'the path has a malformed percent-escape' },
      ]);
    }
  });

  it("serves only the listed files, never a name from the object's prototype chain", () => {
    assert.equal(asset('index.html')?.contentType, 'text/html; charset=utf-8');
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', '../package.json'])
      assert.equal(asset(name), undefined, name);
  });

  it('serves a strict Content-Security-Policy: no inline script, no framing (clickjacking)', () => {
    const csp = securityHeaders(['https://login.microsoftonline.com'])['content-security-policy']!;
    const directives = Object.fromEntries(
      csp
        .split(';')
        .map((d) => d.trim().split(/\s+/))
        .map(([k, ...v]) => [k, v]),
    );
    assert.deepEqual(directives['script-src'], ["'self'"]);
    assert.deepEqual(directives['style-src'], ["'self'"]);
    assert.deepEqual(directives['frame-ancestors'], ["'none'"]);
    assert.deepEqual(directives['default-src'], ["'none'"]);
    assert.equal(securityHeaders()['x-frame-options'], 'DENY');
    const html = readFileSync(resolve(__dirname, '../../../src/dashboard/static/index.html'), 'utf8');
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script in the page');
    assert.doesNotMatch(html, /\son[a-z]+=/i, 'no inline event handlers');
    // Values reach the page as text: the script never parses strings as markup.
    const script = readFileSync(resolve(__dirname, '../../../src/dashboard/static/app.js'), 'utf8');
    assert.doesNotMatch(script, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|eval\(/);
  });
});

describe('the local sign-in stand-in cannot be enabled in Azure', () => {
  const local = { AzureWebJobsStorage: azurite, DASHBOARD_LOCAL_SIGN_IN: 'true' };

  it('works on a developer machine with Azurite', async () => {
    const app = appWith(local);
    assert.equal(localSignInRefusal(app.settings, {}), undefined);
    const res = await handleApi(app, request('local-sign-in?role=none'), {});
    assert.equal(res.status, 200);
    const token = (res.body as { token: string }).token;
    const me = await handleApi(app, request('me', { headers: { authorization: `Bearer ${token}` } }), {});
    assert.deepEqual((me.body as { roles: string[] }).roles, []);
  });

  it('is refused when the App Service platform variables are present, or storage is not local', async () => {
    const inAzure = { WEBSITE_SITE_NAME: 'contact-sync-prod', WEBSITE_INSTANCE_ID: 'abc' };
    const cases: { env: Record<string, string>; platform: Record<string, string> }[] = [
      { env: local, platform: inAzure },
      { env: local, platform: { WEBSITE_SKU: 'FlexConsumption' } },
      {
        env: {
          DASHBOARD_LOCAL_SIGN_IN: 'true',
          AzureWebJobsStorage__queueServiceUri: 'https://prod.queue.core.windows.net',
          AzureWebJobsStorage__tableServiceUri: 'https://prod.table.core.windows.net',
        },
        platform: {},
      },
      {
        env: { ...local, AzureWebJobsStorage: azurite.replace(/127\.0\.0\.1:1/g, 'prod.example.net') },
        platform: {},
      },
    ];
    for (const { env, platform } of cases) {
      const app = appWith(env);
      assert.ok(localSignInRefusal(app.settings, platform), JSON.stringify(platform));
      assert.equal(authMode(app.settings, platform).mode, 'off');
      // No token can be had, and no token opens the API: it fails closed, not over to another mode.
      const signIn = await handleApi(app, request('local-sign-in?role=operator'), platform);
      assert.equal(signIn.status, 404);
      const forged = await handleApi(
        app,
        request('policies', { headers: { authorization: 'Bearer x.y.z' } }),
        platform,
      );
      assert.equal(forged.status, 500);
      assert.match((forged.body as { detail: string }).detail, /not configured/);
    }
  });

  it('is never set by the infrastructure', () => {
    const dir = resolve(__dirname, '../../../infra');
    const files = [
      ...readdirSync(dir),
      ...readdirSync(resolve(dir, 'modules')).map((f) => `modules/${f}`),
    ].filter((f) => /\.(bicep|json)$/.test(f));
    assert.ok(files.length > 3);
    for (const f of files) {
      const text = readFileSync(resolve(dir, f), 'utf8');
      assert.doesNotMatch(text, /DASHBOARD_LOCAL_SIGN_IN\s*:/, f);
    }
  });
});

// The admin dashboard, served by the Function App itself: static pages at /api/dashboard/ and their
// JSON at /api/dashboard-api/. Anonymous at the Functions level (no function key in a browser); the
// API authenticates each request with an Entra ID token and checks the app role (src/dashboard/auth.ts).
import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getApp } from '../app/composition';
import { handleApi } from '../dashboard/api';
import { asset, securityHeaders } from '../dashboard/assets';
import { authMode } from '../dashboard/auth';

function connectSources(): string[] {
  try {
    const mode = authMode(getApp().settings, process.env);
    return mode.mode === 'entra' ? [mode.authority] : [];
  } catch {
    return [];
  }
}

/** GET /api/dashboard/{file}: index.html, app.js or app.css; anything else 404. */
export function dashboardAssets(request: HttpRequest): Promise<HttpResponseInit> {
  const name = request.params.path || 'index.html';
  const found = asset(name);
  const headers = securityHeaders(connectSources());
  if (!found)
    return Promise.resolve({
      status: 404,
      headers: { ...headers, 'content-type': 'text/plain' },
      body: 'not found',
    });
  return Promise.resolve({
    status: 200,
    headers: { ...headers, 'content-type': found.contentType, 'cache-control': 'no-cache' },
    body: found.body,
  });
}

/** /api/dashboard-api/{path}: the pages' JSON, each request signed in and authorised. */
export async function dashboardApi(
  request: HttpRequest,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  const url = new URL(request.url);
  const headers = { ...securityHeaders(), 'cache-control': 'no-store' };
  try {
    const res = await handleApi(getApp(), {
      method: request.method,
      path: request.params.path ?? '',
      query: url.searchParams,
      header: (n) => request.headers.get(n),
      body: () => request.text(),
      origin: url.origin,
    });
    const type = res.status >= 400 ? 'application/problem+json' : 'application/json';
    return { status: res.status, headers: { ...headers, 'content-type': type }, jsonBody: res.body };
  } catch (e) {
    context.error(`dashboard request failed: ${e instanceof Error ? e.message : String(e)}`);
    return {
      status: 500,
      headers: { ...headers, 'content-type': 'application/problem+json' },
      jsonBody: { title: 'Internal error', status: 500, detail: 'the request failed; see the function logs' },
    };
  }
}

app.http('dashboard', {
  methods: ['GET'],
  authLevel: 'anonymous',
  route: 'dashboard/{*path}',
  handler: dashboardAssets,
});
app.http('dashboardApi', {
  methods: ['GET', 'POST'],
  authLevel: 'anonymous',
  route: 'dashboard-api/{*path}',
  handler: dashboardApi,
});

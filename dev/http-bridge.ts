// DEV TOOL: serves the registered HTTP functions on 127.0.0.1 (what the Functions host does), so the
// demo can call the API as an admin would. No function keys here: it is local only.
// First: the functions' registrations reach this stand-in host, not @azure/functions' test mode.
import './functions-host';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpRequest, InvocationContext, type HttpResponseInit } from '@azure/functions';
import {
  getRunStatus,
  healthCheck,
  listPolicies,
  previewPolicy,
  runPolicyNow,
} from '../src/functions/http-api';
import { dashboardApi, dashboardAssets } from '../src/functions/dashboard';
import { removePolicyContacts } from '../src/functions/http-remove';

type Handler = (req: HttpRequest, ctx: InvocationContext) => Promise<HttpResponseInit>;
const routes: { method: string; pattern: RegExp; names: string[]; handler: Handler }[] = [
  { method: 'POST', pattern: /^\/api\/policies\/([^/]+)\/runs$/, names: ['policyId'], handler: runPolicyNow },
  { method: 'GET', pattern: /^\/api\/runs\/([^/]+)$/, names: ['runId'], handler: getRunStatus },
  { method: 'GET', pattern: /^\/api\/policies$/, names: [], handler: listPolicies },
  {
    method: 'GET',
    pattern: /^\/api\/policies\/([^/]+)\/preview$/,
    names: ['policyId'],
    handler: previewPolicy,
  },
  { method: 'GET', pattern: /^\/api\/health$/, names: [], handler: healthCheck },
  { method: 'GET', pattern: /^\/api\/dashboard(?:\/(.*))?$/, names: ['path'], handler: dashboardAssets },
  { method: 'GET', pattern: /^\/api\/dashboard-api\/(.*)$/, names: ['path'], handler: dashboardApi },
  { method: 'POST', pattern: /^\/api\/dashboard-api\/(.*)$/, names: ['path'], handler: dashboardApi },
  {
    method: 'POST',
    pattern: /^\/api\/policies\/([^/]+)\/removal$/,
    names: ['policyId'],
    handler: removePolicyContacts,
  },
];

export async function startHttpBridge(): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const route = routes.find((r) => r.method === req.method && r.pattern.test(url.pathname));
      if (!route) {
        res.writeHead(404).end();
        return;
      }
      const m = route.pattern.exec(url.pathname)!;
      const params = Object.fromEntries(route.names.map((n, i) => [n, decodeURIComponent(m[i + 1] ?? '')]));
      const address = server.address() as AddressInfo;
      const request = new HttpRequest({
        url: `http://127.0.0.1:${address.port}${req.url ?? ''}`,
        method: req.method ?? 'GET',
        params,
        headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
        body: { string: Buffer.concat(chunks).toString('utf8') },
      });
      const response = await route.handler(
        request,
        new InvocationContext({ functionName: 'http', invocationId: `http-${Date.now()}` }),
      );
      const headers = {
        'content-type': 'application/json',
        ...((response.headers as Record<string, string> | undefined) ?? {}),
      };
      const body = response.jsonBody !== undefined ? JSON.stringify(response.jsonBody) : response.body;
      res
        .writeHead(response.status ?? 200, headers)
        .end(typeof body === 'string' || Buffer.isBuffer(body) ? body : undefined);
    })().catch((e: unknown) => res.writeHead(500).end(String(e)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}

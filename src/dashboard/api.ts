// The dashboard's JSON API: read-only except run-now. Each route names the permission it needs; the
// caller is authenticated and authorised before any data is read.
import { z } from 'zod';
import type { App } from '../app/composition';
import { health, preview } from '../app/diagnostics';
import { startRun } from '../app/use-cases';
import { runOptionsSchema } from '../sync/messages';
import {
  AuthError,
  authMode,
  authenticate,
  can,
  dashboardScope,
  localToken,
  type AuthMode,
  type Permission,
} from './auth';
import { RunHistory } from './history';
import { policiesView, runView } from './views';

export interface ApiRequest {
  method: string;
  /** The path after `dashboard-api/`. */
  path: string;
  query: URLSearchParams;
  header: (name: string) => string | null;
  body: () => Promise<string>;
  /** The origin the request was sent to (for the same-origin check on writes). */
  origin: string;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

const policyId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'not a policy id');
const runId = z.uuid({ error: 'must be a run id (GUID)' });
/** The dashboard starts dry runs unless the operator confirms a full one. */
const dashboardRunOptions = runOptionsSchema.extend({ dryRun: z.boolean().default(true) });

const fail = (status: number, title: string, detail: string, field?: string): ApiResponse => ({
  status,
  body: {
    type: 'about:blank',
    title,
    status,
    detail,
    ...(field ? { errors: [{ field, message: detail }] } : {}),
  },
});

type Handler = (app: App, history: RunHistory, req: ApiRequest, params: string[]) => Promise<ApiResponse>;
interface Route {
  method: 'GET' | 'POST';
  pattern: RegExp;
  permission: Permission;
  handler: Handler;
}

const routes: Route[] = [
  {
    method: 'GET',
    pattern: /^policies$/,
    permission: 'read',
    handler: async (app, history) => ({ status: 200, body: await policiesView(app, history) }),
  },
  {
    method: 'GET',
    pattern: /^runs\/([^/]+)$/,
    permission: 'read',
    handler: async (app, history, _req, [id]) => {
      const parsed = runId.safeParse(id);
      if (!parsed.success) return fail(400, 'Invalid request', 'must be a run id (GUID)', 'runId');
      const view = await runView(app, history, parsed.data);
      return view
        ? { status: 200, body: view }
        : fail(404, 'Run not found', `no run ${parsed.data}`, 'runId');
    },
  },
  {
    method: 'GET',
    pattern: /^mailboxes$/,
    permission: 'read',
    handler: async (app, history, req) => {
      const q = (req.query.get('q') ?? '').trim();
      if (!q || q.length > 320)
        return fail(400, 'Invalid request', 'give a user principal name or mailbox id', 'q');
      await app.ensureStorage();
      return { status: 200, body: { query: q, entries: await history.mailbox(q) } };
    },
  },
  {
    method: 'GET',
    pattern: /^policies\/([^/]+)\/preview$/,
    permission: 'read',
    handler: async (app, _h, _req, [id]) => {
      const found = await findPolicy(app, id);
      if ('status' in found) return found;
      await app.ensureStorage();
      const body = await app.answerRecent(`preview:${found.policy.id}`, () =>
        preview(app, found.policy, found.connection),
      );
      // The page offers a full resync only where the policy allows one on request.
      return {
        status: 200,
        body: { ...body, fullResyncAllowed: found.policy.options.allowOnDemandFullResync },
      };
    },
  },
  {
    method: 'POST',
    pattern: /^policies\/([^/]+)\/runs$/,
    permission: 'operate',
    handler: async (app, _h, req, [id]) => {
      const found = await findPolicy(app, id);
      if ('status' in found) return found;
      let raw: unknown;
      try {
        const text = await req.body();
        raw = text.trim() ? JSON.parse(text) : {};
      } catch {
        return fail(400, 'Invalid request', 'the body is not JSON', '(body)');
      }
      const options = dashboardRunOptions.safeParse(raw);
      if (!options.success) {
        const issue = options.error.issues[0]!;
        return fail(400, 'Invalid request', issue.message, issue.path.map(String).join('.') || '(body)');
      }
      const result = await startRun(app, found.policy, 'http', options.data);
      if (result.started) return { status: 202, body: { runId: result.runId } };
      if (result.reason === 'fullResyncNotAllowed')
        return fail(403, 'Full resync not allowed', result.detail, 'fullResync');
      return result.reason === 'disabled'
        ? fail(409, 'Policy is disabled', `policy "${found.policy.id}" is disabled`, 'policyId')
        : fail(409, 'Policy is running', `run ${result.heldBy} of this policy is still running`, 'policyId');
    },
  },
  {
    method: 'GET',
    pattern: /^health$/,
    permission: 'read',
    handler: async (app) => ({ status: 200, body: await app.answerRecent('health', () => health(app)) }),
  },
];

async function findPolicy(app: App, id: string | undefined) {
  const parsed = policyId.safeParse(id);
  if (!parsed.success) return fail(400, 'Invalid request', 'not a policy id', 'policyId');
  const found = await app.policy(parsed.data);
  return found ?? fail(404, 'Policy not found', `no valid policy "${parsed.data}"`, 'policyId');
}

/**
 * A write must come from the dashboard's own page: JSON, and (when the browser says) same-origin. The
 * bearer token already keeps other sites out; this refuses a forged form post outright.
 */
function crossSiteRefusal(req: ApiRequest): string | undefined {
  if (!/^application\/json\b/i.test(req.header('content-type') ?? ''))
    return 'content-type must be application/json';
  const origin = req.header('origin');
  if (origin && origin !== req.origin) return `origin ${origin} is not this dashboard's`;
  const site = req.header('sec-fetch-site');
  if (site && site !== 'same-origin') return `a ${site} request may not write`;
  return undefined;
}

/** Answers one dashboard API request. */
export async function handleApi(app: App, req: ApiRequest, env = process.env): Promise<ApiResponse> {
  const mode = authMode(app.settings, env);
  if (req.method === 'GET' && req.path === 'config') return { status: 200, body: publicConfig(mode) };
  if (req.method === 'GET' && req.path === 'local-sign-in') return localSignIn(mode, req);
  const matched = routes.map((r) => ({ r, m: r.pattern.exec(req.path) })).find((x) => x.m !== null);
  const me = req.method === 'GET' && req.path === 'me';
  if (!matched && !me) return fail(404, 'Not found', `no dashboard API at ${req.path}`);
  if (matched && matched.r.method !== req.method)
    return fail(405, 'Method not allowed', `${req.method} is not allowed here`);
  let principal;
  try {
    principal = await authenticate(mode, req.header('authorization'));
  } catch (e) {
    if (e instanceof AuthError)
      return fail(e.status, e.status === 500 ? 'Not configured' : 'Sign-in required', e.message);
    throw e;
  }
  if (me)
    return {
      status: 200,
      body: {
        name: principal.name,
        roles: principal.roles,
        canRead: can(principal, 'read'),
        canOperate: can(principal, 'operate'),
      },
    };
  const { r, m } = matched!;
  if (!can(principal, r.permission))
    return fail(
      403,
      'Forbidden',
      `${principal.name} lacks the ${r.permission === 'operate' ? 'ContactSync.Operator' : 'ContactSync.Reader'} app role`,
    );
  if (r.method === 'POST') {
    const refusal = crossSiteRefusal(req);
    if (refusal) return fail(403, 'Cross-site request refused', refusal);
  }
  const params = decodeParams(m!.slice(1));
  if (!params) return fail(400, 'Invalid request', 'the path has a malformed percent-escape', 'path');
  return r.handler(app, new RunHistory(app.tables.runs), req, params);
}

/** The path's parts decoded, or undefined when one is not valid percent-encoding (`%E0%A4%A`). */
function decodeParams(parts: string[]): string[] | undefined {
  try {
    return parts.map((s) => decodeURIComponent(s));
  } catch (e) {
    if (e instanceof URIError) return undefined;
    throw e;
  }
}

function publicConfig(mode: AuthMode) {
  if (mode.mode === 'entra')
    return {
      signIn: 'entra',
      authority: `${mode.authority}/${mode.tenantId}`,
      clientId: mode.clientId,
      scope: `api://${mode.clientId}/${dashboardScope}`,
    };
  if (mode.mode === 'local') return { signIn: 'local' };
  return { signIn: 'off', reason: mode.reason };
}

async function localSignIn(mode: AuthMode, req: ApiRequest): Promise<ApiResponse> {
  if (mode.mode !== 'local') return fail(404, 'Not found', 'local sign-in is not enabled here');
  const role = req.query.get('role');
  if (role !== 'operator' && role !== 'reader' && role !== 'none')
    return fail(400, 'Invalid request', 'role must be operator, reader or none', 'role');
  return { status: 200, body: { token: await localToken(role) } };
}

import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { z } from 'zod';
import { getApp } from '../app/composition';
import { health, preview } from '../app/diagnostics';
import { startRun } from '../app/use-cases';
import { PolicyFileError } from '../sync/config/policy-file';
import { runOptionsSchema } from '../sync/messages';
import { json, problem, validationProblem } from './http-problem';

const policyIdParam = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'not a policy id');
const runIdParam = z.uuid({ error: 'must be a run id (GUID)' });

async function policyOr404(
  policyId: string | undefined,
): Promise<HttpResponseInit | Awaited<ReturnType<ReturnType<typeof getApp>['policy']>>> {
  const id = policyIdParam.safeParse(policyId);
  if (!id.success) return validationProblem(id.error, 'policyId');
  const found = await getApp().policy(id.data);
  if (!found)
    return problem(404, 'Policy not found', `no valid policy "${id.data}" in the policy file`, [
      { field: 'policyId', message: 'no such policy' },
    ]);
  return found;
}

const isResponse = (x: unknown): x is HttpResponseInit =>
  typeof x === 'object' && x !== null && 'status' in x;

async function guarded(
  run: () => Promise<HttpResponseInit>,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof PolicyFileError)
      return problem(
        500,
        'Policy file is invalid',
        e.message,
        e.issues.map((i) => ({ field: i.path, message: i.message })),
      );
    context.error(`request failed: ${e instanceof Error ? e.message : String(e)}`);
    return problem(500, 'Internal error', 'the request failed; see the function logs');
  }
}

/**
 * POST /api/policies/{policyId}/runs {dryRun?, mailboxes?, fullResync?} → 202 with the run id. The
 * policy's own `dryRun: true` holds whatever the body asks; a disabled policy is answered 409; a
 * full resync is refused (403) unless the policy sets `options.allowOnDemandFullResync`.
 */
export async function runPolicyNow(
  request: HttpRequest,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  return guarded(async () => {
    const found = await policyOr404(request.params.policyId);
    if (isResponse(found)) return found;
    const text = await request.text();
    let body: unknown = {};
    if (text.trim()) {
      try {
        body = JSON.parse(text);
      } catch {
        return problem(400, 'Invalid request', 'the body is not JSON', [
          { field: '(body)', message: 'not JSON' },
        ]);
      }
    }
    const options = runOptionsSchema.safeParse(body);
    if (!options.success) return validationProblem(options.error);
    const result = await startRun(getApp(), found!.policy, 'http', options.data);
    if (!result.started && result.reason === 'fullResyncNotAllowed')
      return problem(403, 'Full resync not allowed', result.detail, [
        { field: 'fullResync', message: 'not allowed by options.allowOnDemandFullResync' },
      ]);
    if (!result.started && result.reason === 'disabled')
      return problem(
        409,
        'Policy is disabled',
        `policy "${found!.policy.id}" is disabled ("enabled": false in the policy file); it does not run`,
        [{ field: 'policyId', message: 'disabled' }],
      );
    if (!result.started)
      return problem(
        409,
        'Policy is running',
        `run ${result.heldBy} of this policy is still running; overlapping runs are refused`,
        [{ field: 'policyId', message: 'already running' }],
      );
    const statusUrl = `${new URL(request.url).origin}/api/runs/${result.runId}`;
    return json(202, { runId: result.runId, statusUrl }, { location: statusUrl });
  }, context);
}

/** GET /api/runs/{runId}: status, progress and per-mailbox outcomes. */
export async function getRunStatus(
  request: HttpRequest,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  return guarded(async () => {
    const id = runIdParam.safeParse(request.params.runId);
    if (!id.success) return validationProblem(id.error, 'runId');
    const a = getApp();
    await a.ensureStorage();
    const run = await a.runStore.getRun(id.data);
    if (!run)
      return problem(404, 'Run not found', `no run ${id.data}`, [{ field: 'runId', message: 'no such run' }]);
    const outcomes = await a.runStore.listOutcomes(id.data);
    return json(200, {
      ...run,
      progress: run.expected === 0 ? (run.status === 'completed' ? 1 : 0) : run.done / run.expected,
      outcomes,
    });
  }, context);
}

/** GET /api/policies: each policy with its last run, and the policies that failed validation. */
export async function listPolicies(
  _request: HttpRequest,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  return guarded(async () => {
    const a = getApp();
    await a.ensureStorage();
    const loaded = await a.policies();
    const policies = await Promise.all(
      loaded.policies.map(async (p) => {
        const state = await a.runStore.getPolicyState(p.id);
        const lastRun = state.lastRunId ? await a.runStore.getRun(state.lastRunId) : undefined;
        return {
          id: p.id,
          name: p.name,
          enabled: p.enabled,
          schedule: p.schedule,
          running: state.leaseRunId,
          lastRun: lastRun ?? null,
        };
      }),
    );
    return json(200, { policies, invalidPolicies: loaded.invalidPolicies });
  }, context);
}

/**
 * GET /api/policies/{policyId}/preview: counts and samples of source objects and target mailboxes.
 * Changes nothing; a second call within a minute is answered from the first.
 */
export async function previewPolicy(
  request: HttpRequest,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  return guarded(async () => {
    const found = await policyOr404(request.params.policyId);
    if (isResponse(found)) return found;
    const a = getApp();
    await a.ensureStorage();
    const { policy, connection } = found!;
    return json(200, await a.answerRecent(`preview:${policy.id}`, () => preview(a, policy, connection)));
  }, context);
}

/** GET /api/health: per connection, Key Vault, token, each needed permission, Graph (cached a minute). */
export async function healthCheck(
  _request: HttpRequest,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  return guarded(async () => {
    const a = getApp();
    const result = await a.answerRecent('health', () => health(a));
    return json(result.ok ? 200 : 503, result);
  }, context);
}

app.http('runPolicyNow', {
  methods: ['POST'],
  authLevel: 'function',
  route: 'policies/{policyId}/runs',
  handler: runPolicyNow,
});
app.http('getRunStatus', {
  methods: ['GET'],
  authLevel: 'function',
  route: 'runs/{runId}',
  handler: getRunStatus,
});
app.http('listPolicies', {
  methods: ['GET'],
  authLevel: 'function',
  route: 'policies',
  handler: listPolicies,
});
app.http('previewPolicy', {
  methods: ['GET'],
  authLevel: 'function',
  route: 'policies/{policyId}/preview',
  handler: previewPolicy,
});
app.http('health', { methods: ['GET'], authLevel: 'function', route: 'health', handler: healthCheck });

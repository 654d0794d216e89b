// POST /api/policies/{policyId}/removal {dryRun?, mailboxes?, confirm?}: the CLI's `remove` for
// operators, queued as a run: 202 with its run id; GET /api/runs/{runId} (or `run-status`) shows each
// mailbox. A dry run (the default) counts what would go; deleting needs `confirm` set to the policy
// id. Admin level (the host's master key): removing every contact of a policy is an operator's act,
// not something the function key that starts runs should allow.
import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { z } from 'zod';
import { getApp } from '../app/composition';
import { startRemoval } from '../app/removal-runs';
import { removalWarnings, RemoveError } from '../app/remove-policy';
import { runOptionsSchema } from '../sync/messages';
import { json, problem, validationProblem } from './http-problem';

const policyIdParam = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'not a policy id');
const removalBody = z.strictObject({
  dryRun: z.boolean().default(true),
  mailboxes: runOptionsSchema.shape.mailboxes,
  confirm: z.string().optional(),
});

export async function removePolicyContacts(
  request: HttpRequest,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  const id = policyIdParam.safeParse(request.params.policyId);
  if (!id.success) return validationProblem(id.error, 'policyId');
  let raw: unknown = {};
  const text = await request.text();
  try {
    raw = text.trim() ? JSON.parse(text) : {};
  } catch {
    return problem(400, 'Invalid request', 'the body is not JSON', [
      { field: '(body)', message: 'not JSON' },
    ]);
  }
  const body = removalBody.safeParse(raw);
  if (!body.success) return validationProblem(body.error);
  if (!body.data.dryRun && body.data.confirm !== id.data)
    return problem(
      400,
      'Confirmation needed',
      `deleting every contact of policy "${id.data}" needs "confirm": "${id.data}" (look at the dry run first)`,
      [{ field: 'confirm', message: 'must be the policy id' }],
    );
  try {
    // Queued, as a run is: a policy with many mailboxes takes longer than the front end waits (230 s).
    const contactSync = getApp();
    const started = await startRemoval(
      contactSync,
      { policyId: id.data, mailboxes: body.data.mailboxes, dryRun: body.data.dryRun },
      'http',
    );
    if (!started.started)
      return started.reason === 'running'
        ? problem(
            409,
            'Policy busy',
            `policy "${id.data}" is running (run ${started.heldBy}); try again when it has finished`,
          )
        : problem(409, 'Not started', `the removal of policy "${id.data}" was not started`);
    const statusUrl = `${new URL(request.url).origin}/api/runs/${started.runId}`;
    // What the run record's notes say too, told at once: a policy still enabled writes its contacts again.
    const warnings = removalWarnings(id.data, (await contactSync.policy(id.data))?.policy);
    return json(
      202,
      { runId: started.runId, dryRun: body.data.dryRun, statusUrl, warnings },
      { location: statusUrl },
    );
  } catch (e) {
    if (e instanceof RemoveError)
      return problem(404, 'Policy not found', e.message, [{ field: 'policyId', message: e.message }]);
    context.error(`removal failed: ${e instanceof Error ? e.message : String(e)}`);
    return problem(500, 'Internal error', 'the removal could not be started; see the function logs');
  }
}

app.http('removePolicyContacts', {
  methods: ['POST'],
  authLevel: 'admin',
  route: 'policies/{policyId}/removal',
  handler: removePolicyContacts,
});

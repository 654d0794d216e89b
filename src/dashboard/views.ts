// The JSON each dashboard page shows, built from the policy file and the run records.
import type { App } from '../app/composition';
import type { Policy } from '../sync/config/schema';
import { failedMailboxes, type RunSummary } from '../sync/runs';
import { nextOccurrence } from '../sync/schedule';
import type { RunHistory } from './history';

export type PolicyState = 'idle' | 'running' | 'disabled' | 'invalid';

const durationSeconds = (r: RunSummary): number | null =>
  r.finishedAt ? Math.round((Date.parse(r.finishedAt) - Date.parse(r.startedAt)) / 1000) : null;

const bar = (r: RunSummary) => ({
  runId: r.runId,
  startedAt: r.startedAt,
  status: r.status,
  dryRun: r.options.dryRun,
  created: r.contacts.created,
  updated: r.contacts.updated,
  deleted: r.contacts.deleted,
  failed: r.contacts.failed + failedMailboxes(r),
});

function nextRun(policy: Policy, now: Date): string | null {
  try {
    return policy.enabled ? nextOccurrence(policy.schedule, now).toISOString() : null;
  } catch {
    return null;
  }
}

/** Policies page: each policy's schedule, state, last run and its last 30 runs; the invalid ones. */
export async function policiesView(app: App, history: RunHistory) {
  await app.ensureStorage();
  const loaded = await app.policies();
  const now = app.now();
  const policies = await Promise.all(
    loaded.policies.map(async (p) => {
      const [state, runs] = await Promise.all([app.runStore.getPolicyState(p.id), history.recentRuns(p.id)]);
      const live = runs.find(
        (r) => r.runId === state.leaseRunId && (r.status === 'running' || r.status === 'starting'),
      );
      const last = runs[0] ?? null;
      const status: PolicyState = !p.enabled ? 'disabled' : live ? 'running' : 'idle';
      return {
        id: p.id,
        name: p.name ?? p.id,
        schedule: p.schedule,
        nextRun: nextRun(p, now),
        state: status,
        progress: live ? { runId: live.runId, done: live.done, expected: live.expected } : null,
        lastRun: last && {
          runId: last.runId,
          status: last.status,
          startedAt: last.startedAt,
          durationSeconds: durationSeconds(last),
          dryRun: last.options.dryRun,
          mailboxes: last.mailboxes,
          contacts: last.contacts,
        },
        recentRuns: runs.map(bar).reverse(),
      };
    }),
  );
  const invalid = loaded.invalidPolicies.map((i) => ({
    id: i.policyId ?? `policies[${i.index}]`,
    state: 'invalid' as const,
    errors: i.issues.map((x) => ({ field: x.path, message: x.message })),
  }));
  return { policies, invalidPolicies: invalid };
}

/** Run page: totals, timeline and every mailbox with its outcome; undefined when no such run. */
export async function runView(app: App, history: RunHistory, runId: string) {
  await app.ensureStorage();
  const run = await app.runStore.getRun(runId);
  if (!run) return undefined;
  const [outcomes, fannedOutAt] = await Promise.all([history.outcomes(runId), history.fannedOutAt(runId)]);
  const done = outcomes
    .filter((o) => o.status !== 'retrying' && o.recordedAt)
    .map((o) => o.recordedAt!)
    .sort();
  const heldBack = outcomes.flatMap((o) =>
    o.result?.deletionsBlocked ? [{ mailbox: o.userPrincipalName, ...o.result.deletionsBlocked }] : [],
  );
  return {
    run: { ...run, durationSeconds: durationSeconds(run) },
    timeline: {
      startedAt: run.startedAt,
      fannedOutAt,
      firstMailboxAt: done[0] ?? null,
      lastMailboxAt: done.at(-1) ?? null,
      finishedAt: run.finishedAt,
      mailboxesDone: done,
    },
    outcomes: outcomes.map((o) => ({
      mailboxId: o.mailboxId,
      userPrincipalName: o.userPrincipalName,
      status: o.status,
      departed: o.departed === true,
      attempts: o.attempts,
      recordedAt: o.recordedAt,
      lastError: o.lastError,
      skipReason: o.result?.skipReason ?? null,
      counts: o.result && {
        created: o.result.created,
        updated: o.result.updated,
        deleted: o.result.deleted,
        unchanged: o.result.unchanged,
        failed: o.result.failed,
      },
      errors: o.result?.errors ?? [],
      errorsLeftOut: o.errorsLeftOut ?? 0,
      // Absent on an outcome recorded before Graph traffic was counted: the page says so.
      graph: o.graph ?? null,
    })),
    heldBackDeletions: heldBack,
    // The run's Graph requests and 429s (start and mailboxes); null for a run from before they were counted.
    graph: run.graph ?? null,
  };
}

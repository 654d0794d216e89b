// Cleanup use-cases: remove what a policy wrote (the CLI's `remove` and the operators' HTTP route),
// from mailboxes that left its targets (options.onTargetRemoval), and for a policy deleted from the
// file once its grace period is over. Each mailbox is cleaned under its lock, so never beside a sync.
import { randomUUID } from 'node:crypto';
import type { Connection, Policy } from '../sync/config/schema';
import type { DepartedHeldBack, RunSummary } from '../sync/runs';
import { count } from '../sync/plural';
import { cleanMailbox, type CleanupResult } from '../sync/mailbox-pass/cleanup';
import { GraphRequestError } from '../sync/ports';
import { pathSegment } from '../adapters/graph/path-segment';
import type { App } from './composition';
import { startRemoval } from './removal-runs';
import { failRun } from './use-cases';
import type { KnownPolicy, RemovalAttempts } from '../adapters/tables/policy-registry';
import type { Logger } from './logging';

export interface RemoveRequest {
  policyId: string;
  /** Only these mailboxes (UPNs); empty: every mailbox holding the policy's state. */
  mailboxes: readonly string[];
  dryRun: boolean;
}

export interface MailboxRemoval extends CleanupResult {
  userPrincipalName: string;
}

export interface RemoveSummary {
  policyId: string;
  dryRun: boolean;
  mailboxes: MailboxRemoval[];
  totals: { mailboxes: number; contacts: number; folders: number; failed: number };
  /** UPNs asked for that the directory does not know. */
  notFound: string[];
  /** What the operator should know (a policy still enabled writes its contacts again). */
  warnings: string[];
}

export class RemoveError extends Error {}

/** The connection and folder of a policy: from the file, else from what the app remembers of it. */
export async function policyTarget(
  app: App,
  policyId: string,
): Promise<{ connection: Connection; folderName: string | null | undefined; policy?: Policy }> {
  const found = await app.policy(policyId);
  if (found) return { ...found, folderName: found.policy.folder.name };
  const known = await app.policyRegistry.get(policyId);
  const connections = (await app.policies()).connections;
  const connection = known
    ? connections.get(known.connectionId)
    : connections.size === 1
      ? [...connections.values()][0]
      : undefined;
  if (!connection)
    throw new RemoveError(
      known
        ? `policy "${policyId}" used connection "${known.connectionId}", which is no longer in the policy file`
        : `policy "${policyId}" is neither in the policy file nor known from an earlier run`,
    );
  return { connection, folderName: known ? known.folderName : undefined };
}

export async function userOf(
  app: App,
  connection: Connection,
  idOrUpn: string,
): Promise<{ id: string; upn: string }> {
  const graph = await app.graph(connection);
  const u = (await graph.client
    .api(`/users/${pathSegment(idOrUpn)}`)
    .select('id,userPrincipalName')
    .get()) as { id: string; userPrincipalName: string };
  return { id: u.id, upn: u.userPrincipalName };
}

export const isNotFound = (e: unknown): boolean =>
  (e as { statusCode?: number }).statusCode === 404 || (e instanceof GraphRequestError && e.status === 404);

export async function removePolicy(app: App, req: RemoveRequest, log: Logger): Promise<RemoveSummary> {
  await app.ensureStorage();
  const { connection, folderName, policy } = await policyTarget(app, req.policyId);
  const summary: RemoveSummary = {
    policyId: req.policyId,
    dryRun: req.dryRun,
    mailboxes: [],
    totals: { mailboxes: 0, contacts: 0, folders: 0, failed: 0 },
    notFound: [],
    warnings: [],
  };
  summary.warnings.push(...removalWarnings(req.policyId, policy));
  const targets: { id: string; upn: string }[] = [];
  if (req.mailboxes.length > 0) {
    for (const upn of req.mailboxes) {
      try {
        targets.push(await userOf(app, connection, upn));
      } catch (e) {
        if (!isNotFound(e)) throw e;
        summary.notFound.push(upn);
      }
    }
  } else {
    for (const id of await app.mailboxStore.listMailboxes(req.policyId)) {
      const upn = await userOf(app, connection, id).then(
        (u) => u.upn,
        () => id, // a deleted user: named by id
      );
      targets.push({ id, upn });
    }
  }
  for (const t of targets) {
    const r = await cleanUnderLock(app, connection, req.policyId, t, folderName, req.dryRun);
    summary.mailboxes.push(r);
    summary.totals.mailboxes++;
    summary.totals.contacts += r.contacts;
    if (r.folderRemoved) summary.totals.folders++;
    if (r.status === 'failed') summary.totals.failed++;
    log.info(
      `${req.dryRun ? 'would remove' : 'removed'} ${r.contacts} contacts${r.folderRemoved ? ' and the folder' : ''}${r.errors.length ? `; ${r.errors.length} failed` : ''}`,
      { policy: req.policyId, mailbox: t.upn },
    );
  }
  // The whole policy is gone: nothing is left to notice or clean later.
  if (!req.dryRun && req.mailboxes.length === 0 && summary.totals.failed === 0 && !policy)
    await app.policyRegistry.forget(req.policyId);
  return summary;
}

/** What the operator should know before removing (a policy still enabled writes its contacts again). */
export const removalWarnings = (policyId: string, policy: Policy | undefined): string[] =>
  policy?.enabled
    ? [
        `policy "${policyId}" is still enabled in the policy file: its next run writes the contacts again (set "enabled": false or delete it first)`,
      ]
    : [];

/** Cleans one mailbox while holding its lock (a sync of it waits, and a cleanup waits for a sync). */
export async function cleanUnderLock(
  app: App,
  connection: Connection,
  policyId: string,
  target: { id: string; upn: string },
  folderName: string | null | undefined,
  dryRun: boolean,
): Promise<MailboxRemoval> {
  return (
    (await tryCleanUnderLock(app, connection, policyId, target, folderName, dryRun)) ?? {
      mailboxId: target.id,
      userPrincipalName: target.upn,
      status: 'failed',
      contacts: 0,
      folderRemoved: false,
      othersLeft: 0,
      errors: [
        {
          status: 0,
          code: 'MailboxBusy',
          message: 'the mailbox is being synced; try again when the run has finished',
        },
      ],
    }
  );
}

/** As cleanUnderLock; undefined when another worker holds the mailbox (nothing was done). */
export async function tryCleanUnderLock(
  app: App,
  connection: Connection,
  policyId: string,
  target: { id: string; upn: string },
  folderName: string | null | undefined,
  dryRun: boolean,
): Promise<MailboxRemoval | undefined> {
  const owner = `cleanup-${randomUUID()}`;
  const now = app.now();
  const budgetMs = app.settings.MAILBOX_TIME_BUDGET_SECONDS * 1000;
  if (
    !dryRun &&
    !(await app.locks.tryLock(policyId, target.id, owner, new Date(now.getTime() + budgetMs + 60_000), now))
  )
    return undefined;
  try {
    const graph = await app.graph(connection);
    const r = await cleanMailbox(policyId, target.id, graph.mailboxes, app.mailboxStore, {
      dryRun,
      ...(folderName !== undefined ? { folderName } : {}),
      deadline: now.getTime() + budgetMs,
    });
    return { ...r, userPrincipalName: target.upn };
  } finally {
    if (!dryRun) await app.locks.unlock(policyId, target.id, owner);
  }
}

/**
 * How many mailboxes may leave the targets in one run before it looks like a directory glitch: the
 * threshold's percentage of the mailboxes synced before, but at least one (the contact minimum is a
 * count of contacts, not of mailboxes).
 */
export const departedMailboxLimit = (known: number, percent: number): number =>
  Math.max(1, Math.floor((known * percent) / 100));

/**
 * Mailboxes holding the policy's state that are no longer among its targets (options.onTargetRemoval):
 * the run takes them as targets marked `departed`, and each one's worker removes the policy's contacts
 * (one mailbox-syncs message each, retried and poisoned like any mailbox). None are taken when more
 * left than `departedMailboxLimit` (a forced run takes them) or no target is left at all (never taken
 * by a run, forced or not: `remove --policy` does). Returns them, the run's notes, and what was held back.
 */
export async function departedMailboxes(
  app: App,
  policy: Policy,
  targetIds: ReadonlySet<string>,
  run: { dryRun: boolean; fullResync: boolean },
): Promise<{ departed: string[]; notes: string[]; heldBack?: DepartedHeldBack }> {
  if (policy.options.onTargetRemoval === 'keep') return { departed: [], notes: [] };
  const known = await app.mailboxStore.listMailboxes(policy.id);
  const departed = known.filter((id) => !targetIds.has(id));
  if (departed.length === 0) return { departed: [], notes: [] };
  const limit = departedMailboxLimit(known.length, policy.options.deletionThreshold.percent);
  const noTarget = targetIds.size === 0;
  if (noTarget || (!run.fullResync && departed.length > limit))
    return {
      departed: [],
      heldBack: { mailboxes: departed.length, known: known.length, limit, noTarget },
      notes: [
        `held back: ${departed.length} of ${count(known.length, 'mailbox')} left the policy's targets${noTarget ? ` and no target is left; their contacts stay, even in a forced run (to remove them: remove --policy ${policy.id})` : ` (more than ${limit} at once); their contacts stay until a forced run (run --force, or a full resync) removes them`}`,
      ],
    };
  return {
    departed,
    notes: [
      `${count(departed.length, 'mailbox')} left the policy's targets: their contacts ${run.dryRun ? 'would be' : 'are'} removed in this run, one mailbox at a time (counted apart from its targets; a failed one is tried again next run)`,
    ],
  };
}

const dayMs = 86_400_000;

/**
 * Policies the app has run that the file no longer holds: marked missing when first noticed, and
 * cleaned up once the grace period has passed. An invalid policy is not a deleted one.
 */
export async function sweepDeletedPolicies(app: App, log: Logger): Promise<string[]> {
  const loaded = await app.policies();
  const present = presentIds(loaded);
  const graceDays = loaded.deletedPolicyGraceDays ?? 7;
  const now = app.now();
  const cleaned: string[] = [];
  for (const known of await app.policyRegistry.list()) {
    if (present.has(known.policyId)) {
      // Put back (perhaps disabled, so no run marks it seen): a later deletion starts a new grace period.
      if (known.missingSince) await app.policyRegistry.markPresent(known.policyId);
      continue;
    }
    if (!known.missingSince) {
      await app.policyRegistry.markMissing(known.policyId, now);
      log.warn(
        `policy is no longer in the policy file: its contacts are removed in ${graceDays} days unless it comes back`,
        { policy: known.policyId },
      );
      continue;
    }
    if (now.getTime() - new Date(known.missingSince).getTime() < graceDays * dayMs) continue;
    if (known.removal) {
      // An earlier removal left something behind (a mailbox that keeps failing): say so, and wait.
      if ((await lookAtLastRemoval(app, known, log)) === 'done') continue;
      if (now.getTime() < nextRemovalAt(known.removal)) continue;
    }
    // Queued (a timer run is short); the lease refuses a second while one is running.
    let started;
    try {
      started = await startRemoval(
        app,
        { policyId: known.policyId, mailboxes: [], dryRun: false },
        'schedule',
      );
    } catch (e) {
      if (!(e instanceof RemoveError)) throw e;
      log.error(`deleted policy cannot be cleaned up: ${e.message}`, { policy: known.policyId });
      continue; // one policy whose connection is gone holds none of the others up
    }
    if (!started.started) continue;
    await app.policyRegistry.removalStarted(
      known.policyId,
      started.runId,
      now,
      (known.removal?.attempts ?? 0) + 1,
    );
    log.info(`deleted policy: removal of its contacts queued (run ${started.runId})`, {
      policy: known.policyId,
    });
    cleaned.push(known.policyId);
  }
  return cleaned;
}

const hourMs = 3_600_000;

/**
 * How long the sweep waits after the n-th removal of a deleted policy before the next: an hour,
 * doubling, at most a day. A mailbox that keeps failing costs one removal run a day, not one a tick.
 */
export const removalRetryDelayMs = (attempts: number): number =>
  Math.min(dayMs, hourMs * 2 ** Math.max(0, attempts - 1));

const nextRemovalAt = (r: RemovalAttempts): number =>
  new Date(r.startedAt).getTime() + removalRetryDelayMs(r.attempts);

/**
 * Reads the outcome of a deleted policy's last removal run once it is over: a clean one means the
 * policy is forgotten ('done'); what one left behind is kept on the policy's row and logged as an error.
 */
async function lookAtLastRemoval(app: App, known: KnownPolicy, log: Logger): Promise<'done' | 'wait'> {
  const r = known.removal!;
  if (r.failure?.runId === r.runId) return 'wait';
  let run = await app.runStore.getRun(r.runId);
  if (run && (run.status === 'running' || run.status === 'starting'))
    run = await failIfLeaseLapsed(app, run, log);
  if (!run || (run.status !== 'completed' && run.status !== 'failed')) return 'wait';
  if (run.status === 'completed' && run.mailboxes.failed === 0) {
    await app.policyRegistry.forget(known.policyId);
    return 'done';
  }
  const text = await removalFailureText(app, run);
  await app.policyRegistry.removalFailed(known.policyId, r.runId, text);
  log.error(
    `deleted policy: removing its contacts keeps failing (attempt ${r.attempts}): ${text}; the next attempt is after ${new Date(nextRemovalAt(r)).toISOString()}`,
    { policy: known.policyId, run: run.runId },
  );
  return 'wait';
}

/**
 * A removal run still "running" whose lease lapsed (or went to another run) makes no progress: its
 * workers stopped (a host recycled, messages lost). It is failed, so the back-off starts the next.
 */
async function failIfLeaseLapsed(app: App, run: RunSummary, log: Logger): Promise<RunSummary> {
  const lease = await app.runStore.getPolicyState(run.policyId);
  const now = app.now().getTime();
  const held =
    lease.leaseRunId === run.runId &&
    lease.leaseExpiresAt !== null &&
    new Date(lease.leaseExpiresAt).getTime() > now;
  if (held) return run;
  const error = `it stopped while ${run.status}: its policy lease ${lease.leaseRunId === run.runId ? `lapsed at ${lease.leaseExpiresAt}` : 'went to another run'} after ${run.done} of ${count(run.expected, 'mailbox')}`;
  await failRun(app, run.runId, run.policyId, error, log);
  return (await app.runStore.getRun(run.runId)) ?? run;
}

/** The first failed mailbox of a run and its error, as ", e.g. UPN: error". */
async function firstFailure(app: App, runId: string): Promise<string> {
  const failed = (await app.runStore.listOutcomes(runId)).find((o) => o.status === 'failed');
  return failed
    ? `, e.g. mailbox ${failed.userPrincipalName}: ${failed.lastError ?? 'no error was recorded'}`
    : '';
}

/** The policy ids the file holds, an invalid policy's too (an invalid policy is not a deleted one). */
function presentIds(loaded: Awaited<ReturnType<App['policies']>>): Set<string> {
  return new Set([
    ...loaded.policies.map((p) => p.id),
    ...loaded.invalidPolicies.flatMap((p) => (p.policyId ? [p.policyId] : [])),
  ]);
}

/** The notes each run carries while a deleted policy waits for its grace period to end. */
export async function deletedPolicyNotes(app: App): Promise<string[]> {
  const loaded = await app.policies();
  const graceDays = loaded.deletedPolicyGraceDays ?? 7;
  const present = presentIds(loaded);
  const now = app.now().getTime();
  const missing = (await app.policyRegistry.list()).filter((k) => k.missingSince && !present.has(k.policyId));
  return Promise.all(
    missing.map(async (k) => {
      const deleted = `policy "${k.policyId}" was deleted from the policy file (noticed ${k.missingSince})`;
      const r = k.removal;
      if (r) return `${deleted}; removing its contacts: ${await removalAttemptsText(app, r, now)}`;
      return `${deleted}; its contacts are removed after ${new Date(new Date(k.missingSince!).getTime() + graceDays * dayMs).toISOString()} unless it comes back`;
    }),
  );
}

/**
 * "2 attempts, the last one failed (...)" or "..., the last one running (...)": the last removal run as
 * it is now (the sweep looks at a finished one on its next tick), and the failure before it.
 */
async function removalAttemptsText(app: App, r: RemovalAttempts, now: number): Promise<string> {
  const attempts = `${count(r.attempts, 'attempt')}, the last one`;
  const next = `the next attempt is after ${new Date(Math.max(now, nextRemovalAt(r))).toISOString()}`;
  if (r.failure?.runId === r.runId) return `${attempts} failed (${r.failure.text}); ${next}`;
  const last = await app.runStore.getRun(r.runId);
  const before = r.failure ? `; the one before failed (${r.failure.text})` : '';
  if (!last || last.status === 'running' || last.status === 'starting')
    return `${attempts} running (run ${r.runId}, started ${r.startedAt})${before}`;
  if (last.status === 'completed' && last.mailboxes.failed === 0)
    return `${attempts} completed (run ${r.runId}); the policy is forgotten on the next check`;
  return `${attempts} failed (${await removalFailureText(app, last)}); ${next}`;
}

/** What went wrong in a finished removal run: its error, or its failed mailboxes and the first one. */
async function removalFailureText(app: App, run: RunSummary): Promise<string> {
  return run.status === 'failed'
    ? `run ${run.runId} failed: ${run.error ?? 'no error was recorded'}`
    : `${run.mailboxes.failed} of ${count(run.expected, 'mailbox')} failed in run ${run.runId}${await firstFailure(app, run.runId)}`;
}

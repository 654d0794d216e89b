// Removal as a queued run, so an operator's request answers at once (the front end gives up after
// 230 s) however many mailboxes a policy has: the HTTP route and the deleted-policy sweep record a run
// marked `removal` under the policy's lease; the policy-runs worker makes the mailboxes holding the
// policy's state (or those asked for) the run's targets; each mailbox-syncs message cleans one mailbox
// under its lock. Messages carry ids only and pass the sync's checks (a recorded, running run of that
// policy, a mailbox among its targets): a forged one removes nothing the run record does not say.
import { randomUUID } from 'node:crypto';
import { maxContinuations, type MailboxSyncMessage } from '../sync/messages';
import type { MailboxResult } from '../sync/mailbox-pass/pass';
import type { Policy } from '../sync/config/schema';
import {
  emptySummary,
  failedMailboxes,
  isFinal,
  sumTraffic,
  type MailboxOutcome,
  type RunSummary,
  type RunTarget,
} from '../sync/runs';
import { queueNames, type App } from './composition';
import type { Logger } from './logging';
import {
  isNotFound,
  policyTarget,
  removalWarnings,
  RemoveError,
  tryCleanUnderLock,
  userOf,
  type RemoveRequest,
} from './remove-policy';
import {
  failRun,
  finishRun,
  keepLease,
  queueRun,
  recordAndMaybeFinish,
  trafficOf,
  type StartResult,
} from './use-cases';
import { graphTrafficSoFar } from '../adapters/graph/connection';

/** Records and queues a removal; an unknown policy throws RemoveError before anything is recorded. */
export async function startRemoval(
  app: App,
  req: RemoveRequest,
  trigger: RunSummary['trigger'],
): Promise<StartResult> {
  await app.ensureStorage();
  await policyTarget(app, req.policyId);
  const summary = emptySummary(
    randomUUID(),
    req.policyId,
    trigger,
    { dryRun: req.dryRun, fullResync: false, mailboxes: req.mailboxes },
    app.now(),
  );
  summary.options.removal = true;
  return queueRun(app, summary, req.mailboxes);
}

/** The policy-run message of a removal: its targets, then one mailbox-syncs message each. */
export async function fanOutRemoval(app: App, run: RunSummary, log: Logger): Promise<void> {
  let where;
  try {
    where = await policyTarget(app, run.policyId);
  } catch (e) {
    if (e instanceof RemoveError) return failRun(app, run.runId, run.policyId, e.message, log);
    throw e;
  }
  const lost = await keepLease(app, run);
  if (lost) return failRun(app, run.runId, run.policyId, lost, log);
  const requested = run.options.mailboxCount > 0 ? await app.runStore.requestedMailboxes(run.runId) : [];
  const targets: RunTarget[] = [];
  const skipped: RunSummary['skippedTargets'] = [];
  if (requested.length > 0) {
    for (const upn of requested) {
      try {
        const u = await userOf(app, where.connection, upn);
        targets.push({ mailboxId: u.id, userPrincipalName: u.upn });
      } catch (e) {
        if (!isNotFound(e)) throw e;
        skipped.push({ user: upn, reason: 'notFound' });
      }
    }
  } else {
    // Named by id here (a look-up each would hold the fan-out up); the mailbox's worker finds the UPN.
    for (const id of await app.mailboxStore.listMailboxes(run.policyId))
      targets.push({ mailboxId: id, userPrincipalName: id });
  }
  const started = await app.runStore.startRun(
    run.runId,
    targets,
    skipped,
    removalWarnings(run.policyId, where.policy),
  );
  let pending = targets;
  if (!started.wrote) {
    if (started.run.status === 'starting') throw new Error('another delivery is storing the run targets');
    pending = await app.runStore.listTargets(run.runId);
  }
  const done = new Set(
    (await app.runStore.listOutcomes(run.runId)).filter((o) => isFinal(o.status)).map((o) => o.mailboxId),
  );
  pending = pending.filter((t) => !done.has(t.mailboxId));
  for (let i = 0; i < pending.length; i += 32)
    await Promise.all(
      pending.slice(i, i + 32).map((t) => {
        const m: MailboxSyncMessage = {
          kind: 'mailbox-sync',
          policyId: run.policyId,
          runId: run.runId,
          mailboxId: t.mailboxId,
        };
        return app.send(queueNames.mailboxSyncs, m);
      }),
    );
  if (targets.length === 0) await finish(app, run.runId, log);
}

/** One mailbox of a removal run, under the mailbox's lock; a busy mailbox is tried again later. */
export async function removeFromMailbox(
  app: App,
  msg: MailboxSyncMessage,
  run: RunSummary,
  target: RunTarget,
  log: Logger,
): Promise<'done' | 'continued' | 'deferred'> {
  const outcome = (o: Omit<MailboxOutcome, 'mailboxId' | 'attempts'>): MailboxOutcome => ({
    mailboxId: msg.mailboxId,
    attempts: 1,
    ...o,
    // A sync run's mailbox that left its targets: counted apart from the targets it synced.
    ...(target.departed ? { departed: true } : {}),
  });
  let where;
  try {
    where = await policyTarget(app, run.policyId);
  } catch (e) {
    if (!(e instanceof RemoveError)) throw e;
    await record(app, run.runId, outcome({ ...failed(target, e.message) }), log);
    return 'done';
  }
  if (!run.options.removal && !where.policy?.enabled) {
    // A sync run's departed mailbox: a policy disabled (or deleted) since the run started removes nothing.
    const why = `policy "${run.policyId}" was disabled or deleted during the run; nothing was removed from this mailbox`;
    await record(app, run.runId, outcome({ ...failed(target, why) }), log);
    return 'done';
  }
  const lost = await keepLease(app, run);
  if (lost) {
    await record(app, run.runId, outcome({ ...failed(target, lost) }), log);
    return 'done';
  }
  const upn =
    target.userPrincipalName !== target.mailboxId
      ? target.userPrincipalName
      : await userOf(app, where.connection, target.mailboxId).then(
          (u) => u.upn,
          () => target.mailboxId, // a deleted user: named by id
        );
  if (upn !== target.userPrincipalName)
    // Named by id at the fan-out: indexed by its UPN too, so `mailbox UPN` finds this run.
    await app.runStore
      .indexTarget(run.runId, { mailboxId: msg.mailboxId, userPrincipalName: upn })
      .catch((e: unknown) =>
        log.warn(`run not indexed by UPN: ${String(e)}`, { run: run.runId, mailbox: upn }),
      );
  // A sync run's departed mailbox follows the policy as it is now (minutes or hours after the fan-out).
  const stays = run.options.removal ? null : departedStays(where.policy!, upn);
  if (stays) {
    await record(
      app,
      run.runId,
      outcome({ userPrincipalName: upn, status: 'skipped', result: null, lastError: stays }),
      log,
    );
    return 'done';
  }
  const dryRun = run.options.dryRun || (where.policy?.options.dryRun ?? false);
  const progress = await app.runStore.mailboxProgress(run.runId, msg.mailboxId);
  const carried = progress?.carried.deleted ?? 0;
  const r = await tryCleanUnderLock(
    app,
    where.connection,
    run.policyId,
    { id: msg.mailboxId, upn },
    where.folderName,
    dryRun,
  ).catch(async (e: unknown) => {
    // The queue retries it; the poison handler reports this error if every attempt fails.
    const error = e instanceof Error ? e.message : String(e);
    await app.runStore
      .noteAttempt(run.runId, msg.mailboxId, upn, error, graphTrafficSoFar())
      .catch(() => undefined);
    log.error(`removal failed (the queue retries it): ${error}`, {
      policy: run.policyId,
      run: run.runId,
      mailbox: upn,
    });
    throw e;
  });
  if (!r) {
    await app.send(queueNames.mailboxSyncs, msg, 30);
    log.info('mailbox is being synced; removal deferred', { policy: run.policyId, run: run.runId });
    return 'deferred';
  }
  // Only the time budget stopped it: the rest is removed by a continuation, as a sync's is.
  const continuation = (progress?.continuation ?? 0) + 1;
  if (
    r.status === 'failed' &&
    r.errors.every((e) => e.code === 'notAttempted') &&
    continuation <= maxContinuations
  ) {
    await app.runStore.saveMailboxProgress(run.runId, msg.mailboxId, {
      continuation,
      carried: { created: 0, updated: 0, deleted: carried + r.contacts, restored: 0, failed: 0 },
      ...trafficOf(sumTraffic(progress?.graph, graphTrafficSoFar())),
    });
    await app.send(queueNames.mailboxSyncs, msg);
    return 'continued';
  }
  const result: MailboxResult = {
    mailbox: upn,
    userId: msg.mailboxId,
    status: r.status === 'removed' ? 'succeeded' : r.status,
    created: 0,
    updated: 0,
    deleted: carried + r.contacts,
    unchanged: 0,
    restored: 0,
    failed: r.errors.length,
    errors: r.errors,
    duplicatesRemoved: 0,
    removal: { folderRemoved: r.folderRemoved, othersLeft: r.othersLeft },
  };
  await record(
    app,
    run.runId,
    outcome({
      userPrincipalName: upn,
      status: result.status === 'planned' ? 'planned' : result.status === 'failed' ? 'failed' : 'succeeded',
      result,
      lastError: r.errors[0]?.message ?? null,
      ...trafficOf(progress?.graph),
    }),
    log,
  );
  log.info(
    `${dryRun ? 'would remove' : 'removed'} ${result.deleted} contacts${r.folderRemoved ? ' and the folder' : ''}`,
    { policy: run.policyId, run: run.runId, mailbox: upn },
  );
  return 'done';
}

/** Why a mailbox that left the targets keeps its contacts after all, by the policy file as it is now. */
function departedStays(policy: Policy, upn: string): string | null {
  if (policy.options.onTargetRemoval === 'keep')
    return 'the policy\'s options.onTargetRemoval is "keep" now: nothing was removed from this mailbox';
  const t = policy.targets;
  const named = (list: readonly string[]): boolean => list.some((u) => u.toLowerCase() === upn.toLowerCase());
  if (t.type === 'users' && named(t.users) && !named(t.excludeUsers))
    return `${upn} is in the policy's targets.users again: nothing was removed from this mailbox (the next run syncs it)`;
  return null;
}

const failed = (target: RunTarget, error: string): Omit<MailboxOutcome, 'mailboxId' | 'attempts'> => ({
  userPrincipalName: target.userPrincipalName,
  status: 'failed',
  result: null,
  lastError: error,
});

async function record(app: App, runId: string, outcome: MailboxOutcome, log: Logger): Promise<void> {
  await recordAndMaybeFinish(app, runId, outcome, log);
  await forgetIfGone(app, runId);
}

async function finish(app: App, runId: string, log: Logger): Promise<void> {
  await finishRun(app, runId, log);
  await forgetIfGone(app, runId);
}

/** A completed removal of every mailbox of a policy no longer in the file: nothing is left to notice. */
async function forgetIfGone(app: App, runId: string): Promise<void> {
  const run = await app.runStore.getRun(runId);
  if (
    !run?.options.removal ||
    run.status !== 'completed' ||
    run.options.dryRun ||
    run.options.mailboxCount > 0
  )
    return;
  if (failedMailboxes(run) > 0 || (await app.policy(run.policyId))) return;
  await app.policyRegistry.forget(run.policyId);
}

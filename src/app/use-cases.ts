// What the Functions do, one use-case each: schedule due policies, start a run, fan a run out to
// mailboxes, sync one mailbox within a time budget, record poison messages, and finish a run.
import { randomUUID } from 'node:crypto';
import type { Connection, Policy } from '../sync/config/schema';
import {
  policyRunMessage,
  mailboxSyncMessage,
  maxContinuations,
  parseMessage,
  type MailboxSyncMessage,
  type PolicyRunMessage,
  type RunOptions,
} from '../sync/messages';
import { refreshSource, type SourceRefresh } from '../sync/refresh-source';
import { buildReport, hasErrors, reportMime } from '../sync/report';
import { certificateStatus } from './cert-rotation';
import {
  emptySummary,
  isFinal,
  sumTraffic,
  type GraphTraffic,
  maxPreReadDriftChars,
  maxPreReadDriftItems,
  RunGoneError,
  type MailboxOutcome,
  type PreReadDrift,
  type RunSummary,
  type RunTarget,
} from '../sync/runs';
import { isDue } from '../sync/schedule';
import { syncMailbox } from '../sync/sync-mailbox';
import { folderNameCheckDue } from '../sync/mailbox-pass/folder-name-check';
import type { FolderNameCheck } from '../sync/mailbox-pass/pass';
import { GraphRequestError, UnknownGroupError } from '../sync/ports';
import { policyPath } from '../sync/config/policy-file';
import type { TargetMailbox } from '../sync/directory';
import { queueNames, type App } from './composition';
import type { Logger } from './logging';
import { pathSegment } from '../adapters/graph/path-segment';
import { countGraphTraffic, graphTrafficSoFar } from '../adapters/graph/connection';
import { departedMailboxes, deletedPolicyNotes, sweepDeletedPolicies } from './remove-policy';
import { fanOutRemoval, removeFromMailbox } from './removal-runs';
import { keepRunHistory } from './run-retention';

export type StartResult =
  | { started: true; runId: string }
  | { started: false; reason: 'running'; heldBy: string }
  | { started: false; reason: 'disabled' }
  | { started: false; reason: 'fullResyncNotAllowed'; detail: string };

/** Why an on-demand run may not ask for a full resync (it lifts the deletion threshold), or null. */
export const fullResyncRefusal = (policy: Policy): string =>
  `policy "${policy.id}" does not allow a full resync on request ("options.allowOnDemandFullResync" is false in the policy file)`;

/** A request or flag may ask for a dry run; it can never lift a policy's own `dryRun: true`. */
export const effectiveOptions = (policy: Policy, requested: RunOptions): RunOptions => ({
  ...requested,
  dryRun: requested.dryRun || policy.options.dryRun,
});

/**
 * Records the run (its options and requested mailboxes), takes the policy's lease for it and queues
 * a policy-run message. An overlapping run is refused; a start that fails halfway releases the lease
 * (and a lease whose run record is missing or finished is free anyway).
 */
export async function startRun(
  app: App,
  policy: Policy,
  trigger: RunSummary['trigger'],
  requested: RunOptions,
  scheduledAt?: Date,
): Promise<StartResult> {
  if (!policy.enabled) return { started: false, reason: 'disabled' };
  // One rule for every caller over HTTP (the API and the dashboard): the policy's owner decides.
  if (trigger === 'http' && requested.fullResync && !policy.options.allowOnDemandFullResync)
    return { started: false, reason: 'fullResyncNotAllowed', detail: fullResyncRefusal(policy) };
  await app.ensureStorage();
  const options = effectiveOptions(policy, requested);
  const summary = emptySummary(randomUUID(), policy.id, trigger, options, app.now());
  return queueRun(app, summary, options.mailboxes, scheduledAt);
}

/** Records a run, takes its policy's lease and queues its policy-run message (a removal's too). */
export async function queueRun(
  app: App,
  summary: RunSummary,
  mailboxes: readonly string[],
  scheduledAt?: Date,
): Promise<StartResult> {
  const { runId, policyId } = summary;
  const now = app.now();
  await app.runStore.createRun(summary, mailboxes);
  let lease;
  try {
    lease = await app.runStore.acquireLease(
      policyId,
      runId,
      new Date(now.getTime() + app.settings.POLICY_LEASE_MINUTES * 60_000),
      now,
      scheduledAt,
    );
  } catch (e) {
    await app.runStore
      .failRun(runId, `the policy lease could not be taken: ${String(e)}`)
      .catch(() => undefined);
    throw e;
  }
  if (!lease.acquired) {
    await app.runStore.deleteRun(runId);
    return { started: false, reason: 'running', heldBy: lease.heldBy };
  }
  try {
    const message: PolicyRunMessage = { kind: 'policy-run', policyId, runId };
    await app.send(queueNames.policyRuns, message);
  } catch (e) {
    try {
      await app.runStore.failRun(
        runId,
        `the run could not be queued: ${e instanceof Error ? e.message : String(e)}`,
      );
    } finally {
      await app.runStore.releaseLease(policyId, runId);
    }
    throw e;
  }
  return { started: true, runId };
}

/** The timer: every enabled policy whose NCRONTAB schedule is due gets a run, unless one is running. */
export async function scheduleDuePolicies(
  app: App,
  log: Logger,
): Promise<{ started: string[]; refused: string[]; invalid: number }> {
  const loaded = await app.policies();
  for (const bad of loaded.invalidPolicies) {
    log.error(
      `policy is invalid and was skipped: ${bad.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      { policy: bad.policyId ?? `#${bad.index}` },
    );
  }
  const started: string[] = [];
  const refused: string[] = [];
  const now = app.now();
  for (const policy of loaded.policies.filter((p) => p.enabled)) {
    const state = await app.runStore.getPolicyState(policy.id);
    if (!isDue(policy.schedule, state.lastScheduledAt ? new Date(state.lastScheduledAt) : null, now))
      continue;
    const result = await startRun(
      app,
      policy,
      'schedule',
      { dryRun: false, fullResync: false, mailboxes: [] },
      now,
    );
    if (result.started) {
      started.push(policy.id);
      log.info('scheduled run started', { policy: policy.id, run: result.runId });
    } else if (result.reason === 'running') {
      // The occurrence is used up: an overlapping run is refused, not queued behind.
      await app.runStore.markScheduled(policy.id, now);
      refused.push(policy.id);
      log.warn(`scheduled run refused: run ${result.heldBy} is still running`, {
        policy: policy.id,
        run: result.heldBy,
      });
    }
  }
  try {
    await sweepDeletedPolicies(app, log);
  } catch (e) {
    log.error(`deleted policies could not be cleaned up: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    await keepRunHistory(app, log);
  } catch (e) {
    log.error(
      `run history upkeep failed (the next tick goes on): ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  return { started, refused, invalid: loaded.invalidPolicies.length };
}

/** The token endpoint rejected the key (revoked, expired or replaced certificate), or Graph the token. */
const isCredentialRejected = (e: unknown): boolean =>
  /AADSTS(700027|700024|7000215|50173)|invalid_client|InvalidAuthenticationToken/i.test(
    e instanceof Error ? e.message : String(e),
  );

/** Runs `work`; when the token endpoint rejected the key, rebuilds the credential from Key Vault once. */
async function withFreshCredential<T>(app: App, connection: Connection, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (!isCredentialRejected(e)) throw e;
    await app.rebuild(connection);
    return work();
  }
}

/**
 * Renews the run's policy lease (a run making progress keeps its policy however long it takes).
 * Returns why the run must stop when another run holds the lease now.
 */
export async function keepLease(app: App, run: RunSummary): Promise<string | null> {
  const now = app.now();
  const held = await app.runStore.renewLease(
    run.policyId,
    run.runId,
    new Date(now.getTime() + app.settings.POLICY_LEASE_MINUTES * 60_000),
    now,
  );
  return held.held
    ? null
    : `the run lost the policy's lease${held.heldBy ? ` to run ${held.heldBy}` : ''} (no progress for ${app.settings.POLICY_LEASE_MINUTES} minutes); nothing more was written`;
}

/** The run's policy lease went to another run: it must write no more. */
class LeaseLostError extends Error {}

const isPermanent = (e: unknown): boolean =>
  e instanceof GraphRequestError && e.status >= 400 && e.status < 500 && e.status !== 429 && e.status !== 408;

/** A policy-run message: refresh the source, resolve targets, queue one message per mailbox. */
/** A policy-run message: the run's start, its Graph traffic counted into the run's totals. */
export async function processPolicyRun(app: App, raw: unknown, log: Logger): Promise<void> {
  await countGraphTraffic(() => startPolicyRun(app, raw, log));
}

async function startPolicyRun(app: App, raw: unknown, log: Logger): Promise<void> {
  await app.ensureStorage();
  const msg = parseMessage(policyRunMessage, raw, queueNames.policyRuns);
  const fields = { policy: msg.policyId, run: msg.runId };
  // Only a run recorded by startRun (under the lease) is run; a forged or stale message writes nothing.
  let run = await app.runStore.getRun(msg.runId);
  if (!run || run.policyId !== msg.policyId) {
    log.warn(
      run ? `run belongs to policy "${run.policyId}"; message dropped` : 'no such run; message dropped',
      fields,
    );
    return;
  }
  if (run.status === 'completed' || run.status === 'failed') return;
  if (run.options.removal) return fanOutRemoval(app, run, log);
  const found = await app.policy(msg.policyId);
  if (!found || !found.policy.enabled) {
    await failRun(
      app,
      msg.runId,
      msg.policyId,
      found
        ? `policy "${msg.policyId}" is disabled`
        : `policy "${msg.policyId}" is not in the policy file (or is invalid)`,
      log,
    );
    return;
  }
  const { policy, connection } = found;
  const lost = await keepLease(app, run);
  if (lost) {
    await failRun(app, msg.runId, msg.policyId, lost, log);
    return;
  }
  // Best effort: cleanup bookkeeping never holds a run up (a failed write is made at the next run).
  // A CLI run may come from a workstation's own policy file, which the deployed app never reads: it
  // must not register the policy, or the app's timer would take it for deleted and clean it.
  if (run.trigger !== 'cli')
    await app.policyRegistry
      .seen({ policyId: policy.id, connectionId: policy.connection, folderName: policy.folder.name })
      .catch((e: unknown) => log.warn(`policy registry not updated: ${String(e)}`, { policy: policy.id }));
  const fullRead = run.options.fullResync;
  let refreshed;
  try {
    refreshed = await withFreshCredential(app, connection, async () => {
      const graph = await app.graph(connection);
      return refreshSource(
        policy,
        graph.directory,
        app.sourceStore,
        app.now(),
        graph.mailboxes,
        app.photoStore,
        { fullRead, ...(graph.recipients ? { recipients: graph.recipients } : {}) },
      );
    });
  } catch (e) {
    if (isPermanent(e)) {
      const what =
        e instanceof UnknownGroupError
          ? `${policyPath(await app.policies(), policy.id, e.field)}: no group ${e.groupId} in the directory${e.requestId ? ` (request-id ${e.requestId})` : ''}`
          : (e as Error).message;
      await failRun(app, msg.runId, policy.id, `reading the directory failed: ${what}`, log);
      return;
    }
    throw e; // transient: the queue retries
  }
  const lostDuringRefresh = await keepLease(app, run);
  if (lostDuringRefresh) {
    await failRun(app, msg.runId, msg.policyId, lostDuringRefresh, log);
    return;
  }
  let targets = refreshed.targets.mailboxes;
  const skipped = [...refreshed.targets.skipped];
  const requested = run.options.mailboxCount > 0 ? await app.runStore.requestedMailboxes(msg.runId) : [];
  if (requested.length > 0) {
    const wanted = new Set(requested.map((m) => m.toLowerCase()));
    const found = new Set(targets.map((t) => t.userPrincipalName.toLowerCase()));
    targets = targets.filter((t) => wanted.has(t.userPrincipalName.toLowerCase()));
    for (const m of requested) if (!found.has(m.toLowerCase())) skipped.push({ user: m, reason: 'notFound' });
  }
  const notes = [...refreshed.stats.notes];
  let departedHeldBack: RunSummary['departedHeldBack'];
  let departed: RunTarget[] = [];
  if (run.status === 'starting') {
    notes.push(...(await deletedPolicyNotes(app).catch(() => [])));
    if (refreshed.desired.size === 0)
      notes.push('the policy selects no source objects: no contact is deleted unless a run is forced');
    if (targets.length === 0) notes.push('the policy selects no target mailboxes');
    if (requested.length === 0) {
      const left = await departedMailboxes(
        app,
        policy,
        new Set(targets.map((t) => t.userId)),
        run.options,
      ).catch((e: unknown) => ({
        departed: [],
        notes: [
          `mailboxes that left the targets could not be looked up this run (the next run tries again): ${e instanceof Error ? e.message : String(e)}`,
        ],
        heldBack: undefined,
      }));
      notes.push(...left.notes);
      departedHeldBack = left.heldBack;
      // Named by id (a look-up each would hold the fan-out up); each worker finds its UPN.
      departed = left.departed.map((id) => ({ mailboxId: id, userPrincipalName: id, departed: true }));
    }
  }
  const leaseHolder = run;
  let started: Awaited<ReturnType<typeof app.runStore.startRun>>;
  try {
    started = await app.runStore.startRun(
      msg.runId,
      [...targets.map((t) => ({ mailboxId: t.userId, userPrincipalName: t.userPrincipalName })), ...departed],
      skipped,
      notes,
      departedHeldBack,
      // Storing 20,000 targets takes a while: it is progress and renews the lease; a run that lost the
      // lease (to a run started after it lapsed) stops storing, and queues nothing.
      async () => {
        const lost = await keepLease(app, leaseHolder);
        if (lost) throw new LeaseLostError(lost);
      },
    );
  } catch (e) {
    if (!(e instanceof LeaseLostError)) throw e;
    await failRun(app, msg.runId, policy.id, e.message, log);
    return;
  }
  run = started.run;
  if (!started.wrote) {
    // Another delivery of this message stored the run's targets (or is storing them: retry later).
    if (run.status === 'starting') throw new Error('another delivery is storing the run targets');
    const storedTargets = await app.runStore.listTargets(msg.runId);
    const stored = new Set(storedTargets.map((t) => t.mailboxId));
    targets = targets.filter((t) => stored.has(t.userId));
    departed = storedTargets.filter((t) => t.departed);
  }
  for (const note of refreshed.stats.notes) log.warn(note, fields);
  log.info(
    `source refreshed: ${refreshed.stats.inSource} contacts for ${targets.length} mailboxes${refreshed.stats.fullRead ? ' (full directory read)' : ''}${photoSummary(refreshed.stats.photos)}${typeSummary(refreshed.stats.mailboxTypes)}`,
    fields,
  );
  // A redelivered message re-queues only mailboxes without a final outcome (duplicates are harmless).
  const done = new Set(
    (await app.runStore.listOutcomes(msg.runId)).filter((o) => isFinal(o.status)).map((o) => o.mailboxId),
  );
  const pending = targets.filter((t) => !done.has(t.userId));
  const pendingIds = [
    ...pending.map((t) => t.userId),
    ...departed.filter((t) => !done.has(t.mailboxId)).map((t) => t.mailboxId),
  ];
  if (!run.options.dryRun && !run.options.fullResync)
    await app.runStore.savePreReadDrifts(
      msg.runId,
      await preReadDrifts(app, connection, policy, pending, log, fields),
    );
  // Before the fan-out, so the run cannot finish without it (each delivery counts what it sent).
  const startTraffic = graphTrafficSoFar();
  if (startTraffic) await app.runStore.addRunTraffic(msg.runId, startTraffic);
  const renewEveryMs = (app.settings.POLICY_LEASE_MINUTES * 60_000) / 3;
  // The first chunk checks the lease too: the source read and the pre-read may have outlasted it.
  let renewedAt = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < pendingIds.length; i += 32) {
    if (app.now().getTime() - renewedAt >= renewEveryMs) {
      // A long fan-out is progress too; one that lost its lease queues no more (the rest would be refused).
      const lost = await keepLease(app, run);
      if (lost) {
        log.warn(`fan-out stopped after ${i} of ${pendingIds.length} mailboxes: ${lost}`, fields);
        await failRun(app, msg.runId, policy.id, lost, log);
        return;
      }
      renewedAt = app.now().getTime();
    }
    await Promise.all(
      pendingIds.slice(i, i + 32).map((mailboxId) => {
        const m: MailboxSyncMessage = {
          kind: 'mailbox-sync',
          policyId: policy.id,
          runId: msg.runId,
          mailboxId,
        };
        return app.send(queueNames.mailboxSyncs, m);
      }),
    );
  }
  if (targets.length + departed.length === 0) await finishRun(app, msg.runId, log);
}

/**
 * Checks a mailbox-sync message against its run record: the run exists, belongs to the policy and is
 * running, and the mailbox is one of its targets. Returns the reason to drop it otherwise.
 */
async function admit(
  app: App,
  msg: MailboxSyncMessage,
): Promise<{ run: RunSummary; target: RunTarget } | { drop: string }> {
  const run = await app.runStore.getRun(msg.runId);
  if (!run) return { drop: 'no such run' };
  if (run.policyId !== msg.policyId) return { drop: `run belongs to policy "${run.policyId}"` };
  if (run.status !== 'running') return { drop: `run is ${run.status}` };
  const target = await app.runStore.getTarget(msg.runId, msg.mailboxId);
  if (!target) return { drop: 'mailbox is not a target of the run' };
  return { run, target };
}

type MailboxSyncEnd = 'done' | 'continued' | 'deferred' | 'duplicate' | 'dropped';

/**
 * A mailbox-sync message: one mailbox, within the time budget; a continuation when it runs out. Its
 * Graph traffic goes on the mailbox's outcome (carried across continuations and retries).
 */
export async function processMailboxSync(
  app: App,
  raw: unknown,
  log: Logger,
  invocationId: string,
): Promise<MailboxSyncEnd> {
  return (await countGraphTraffic(() => syncOneMailbox(app, raw, log, invocationId))).value;
}

async function syncOneMailbox(
  app: App,
  raw: unknown,
  log: Logger,
  invocationId: string,
): Promise<MailboxSyncEnd> {
  await app.ensureStorage();
  const msg = parseMessage(mailboxSyncMessage, raw, queueNames.mailboxSyncs);
  const admitted = await admit(app, msg);
  if ('drop' in admitted) {
    log.warn(`${admitted.drop}; message dropped`, {
      policy: msg.policyId,
      run: msg.runId,
      mailbox: msg.mailboxId,
    });
    return 'dropped';
  }
  const { run, target } = admitted;
  const fields = { policy: msg.policyId, run: msg.runId, mailbox: target.userPrincipalName };
  const existing = await app.runStore.getOutcome(msg.runId, msg.mailboxId);
  if (existing && isFinal(existing.status)) return 'duplicate';
  // A removal run's mailbox, or one that left a sync run's targets: the policy's contacts are removed.
  if (run.options.removal || target.departed) return removeFromMailbox(app, msg, run, target, log);
  const now = app.now();
  const budgetMs = app.settings.MAILBOX_TIME_BUDGET_SECONDS * 1000;
  const owner = invocationId;
  if (
    !(await app.locks.tryLock(
      msg.policyId,
      msg.mailboxId,
      owner,
      new Date(now.getTime() + budgetMs + 60_000),
      now,
    ))
  ) {
    // Another worker has this mailbox: come back later rather than interleave writes.
    await app.send(queueNames.mailboxSyncs, msg, 30);
    log.info('mailbox is being synced by another worker; deferred', fields);
    return 'deferred';
  }
  // Renewed while the pass runs (throttling can stretch it past the budget); released in finally.
  const lockTtlMs = budgetMs + 60_000;
  const renewal = app.locks.keepLocked(msg.policyId, msg.mailboxId, owner, lockTtlMs, lockTtlMs / 3, () =>
    app.now(),
  );
  try {
    const found = await app.policy(msg.policyId);
    if (!found) {
      await recordAndMaybeFinish(
        app,
        msg.runId,
        failedOutcome(target, `policy "${msg.policyId}" is no longer in the policy file`, 1),
        log,
      );
      return 'done';
    }
    const { policy, connection } = found;
    // The policy as it is now: disabled since the run started → nothing written; dryRun → plan only.
    if (!policy.enabled) {
      await recordAndMaybeFinish(
        app,
        msg.runId,
        failedOutcome(
          target,
          `policy "${policy.id}" was disabled during the run; nothing was written to this mailbox`,
          1,
        ),
        log,
      );
      return 'done';
    }
    const left = leftTargets(policy, target);
    if (left) {
      await recordAndMaybeFinish(
        app,
        msg.runId,
        {
          mailboxId: target.mailboxId,
          userPrincipalName: target.userPrincipalName,
          status: 'skipped',
          result: null,
          lastError: `${left} during the run; nothing was written to this mailbox`,
          attempts: 1,
        },
        log,
      );
      return 'done';
    }
    const lost = await keepLease(app, run);
    if (lost) {
      await recordAndMaybeFinish(app, msg.runId, failedOutcome(target, lost, 1), log);
      return 'done';
    }
    const desired = await app.sourceStore.loadDesired(policy.id);
    // Both are the run's rows (the fan-out's Graph reads, earlier passes); a message carries ids only.
    const { continuation, carried, graph } = (await app.runStore.mailboxProgress(
      msg.runId,
      msg.mailboxId,
    )) ?? {
      continuation: 0,
      carried: { created: 0, updated: 0, deleted: 0, restored: 0, failed: 0 },
    };
    const preReadDrift =
      continuation === 0 ? await app.runStore.preReadDrift(msg.runId, msg.mailboxId) : undefined;
    const result = await withFreshCredential(app, connection, async () =>
      syncMailbox(
        policy,
        { userId: msg.mailboxId, userPrincipalName: target.userPrincipalName },
        desired,
        (await app.graph(connection)).mailboxes,
        app.mailboxStore,
        {
          dryRun: run.options.dryRun || policy.options.dryRun,
          force: run.options.fullResync,
          deadline: now.getTime() + budgetMs,
          ...(preReadDrift ? { preReadDrift } : {}),
          folderNameCheck: folderNameCheck(app),
        },
        app.photoStore,
        app.sourceStore,
      ),
    );
    // The first pass has read it (a retry of a pass that threw still finds it); no row outlives its use.
    if (preReadDrift) await app.runStore.deletePreReadDrift(msg.runId, msg.mailboxId);
    // Counts of earlier continuations are carried, so the outcome covers the whole mailbox.
    for (const k of ['created', 'updated', 'deleted', 'restored', 'failed'] as const) result[k] += carried[k];
    // What earlier passes wrote shows up as unchanged in this one: count it once.
    result.unchanged = Math.max(0, result.unchanged - carried.created - carried.restored - carried.updated);
    if (result.status === 'partial' && continuation >= maxContinuations) {
      // Never dropped: a mailbox that makes no headway is failed and reported (the lease is freed).
      result.status = 'failed';
      result.errors.push({
        status: 0,
        code: 'ContinuationLimit',
        message: `the mailbox was still unfinished after ${maxContinuations} continuations of the time budget; the next run starts it again`,
      });
    }
    if (result.status === 'partial') {
      await app.runStore.saveMailboxProgress(msg.runId, msg.mailboxId, {
        continuation: continuation + 1,
        carried: {
          created: result.created,
          updated: result.updated,
          deleted: result.deleted,
          restored: result.restored,
          failed: result.failed,
        },
        ...trafficOf(sumTraffic(graph, graphTrafficSoFar())),
      });
      await app.send(queueNames.mailboxSyncs, msg);
      log.info(
        `time budget used; continuation ${continuation + 1} queued (${result.created} created so far)`,
        fields,
      );
      return 'continued';
    }
    const status = result.status === 'planned' ? 'planned' : result.status;
    await recordAndMaybeFinish(
      app,
      msg.runId,
      {
        mailboxId: msg.mailboxId,
        userPrincipalName: target.userPrincipalName,
        status,
        result,
        lastError: result.errors[0]?.message ?? null,
        attempts: 1,
        ...trafficOf(graph),
      },
      log,
    );
    log.info(
      `mailbox ${status}: ${result.created} created, ${result.updated} updated, ${result.deleted} deleted, ${result.restored} restored, ${result.unchanged} unchanged`,
      fields,
    );
    return 'done';
  } catch (e) {
    await app.runStore
      .noteAttempt(
        msg.runId,
        msg.mailboxId,
        target.userPrincipalName,
        e instanceof Error ? e.message : String(e),
        graphTrafficSoFar(),
      )
      .catch(() => undefined);
    log.error(
      `mailbox sync failed (the queue retries it): ${e instanceof Error ? e.message : String(e)}`,
      fields,
    );
    throw e;
  } finally {
    await renewal.stop();
    await app.locks.unlock(msg.policyId, msg.mailboxId, owner);
  }
}

/**
 * Why a run's target is no longer one of the policy's targets as the policy file says now, or null.
 * Only what the file itself decides is checked (excludeUsers, a users list): group membership needs
 * a directory read per mailbox, so a group change takes effect at the next run's target resolution.
 */
function leftTargets(policy: Policy, target: RunTarget): string | null {
  const upn = target.userPrincipalName.toLowerCase();
  if (policy.targets.excludeUsers.some((u) => u.toLowerCase() === upn))
    return `${target.userPrincipalName} was added to the policy's targets.excludeUsers`;
  if (policy.targets.type === 'users' && !policy.targets.users.some((u) => u.toLowerCase() === upn))
    return `${target.userPrincipalName} was removed from the policy's targets.users`;
  return null;
}

export function trafficOf(graph: GraphTraffic | undefined): { graph?: GraphTraffic } {
  return graph ? { graph } : {};
}

function failedOutcome(target: RunTarget, error: string, attempts: number): MailboxOutcome {
  return {
    mailboxId: target.mailboxId,
    userPrincipalName: target.userPrincipalName,
    status: 'failed',
    result: null,
    lastError: error,
    attempts,
    ...(target.departed ? { departed: true } : {}),
  };
}

export async function recordAndMaybeFinish(
  app: App,
  runId: string,
  outcome: MailboxOutcome,
  log: Logger,
): Promise<void> {
  let run: RunSummary;
  // This invocation's Graph traffic joins what earlier continuations carried (outcome.graph).
  const counted = { ...outcome, ...trafficOf(sumTraffic(outcome.graph, graphTrafficSoFar())) };
  try {
    ({ run } = await app.runStore.recordOutcome(runId, counted));
  } catch (e) {
    if (!(e instanceof RunGoneError)) throw e;
    // Retrying could never record it (the queue would end in poison, and poison drops it anyway).
    log.warn(
      `run ${runId} was deleted (older than RUN_HISTORY_DAYS) before this mailbox's ${outcome.status} outcome was recorded; outcome dropped`,
      { run: runId, mailbox: outcome.userPrincipalName },
    );
    return;
  }
  if (run.status !== 'starting' && run.done >= run.expected) await finishRun(app, runId, log);
}

/** A message that failed 5 times: record the mailbox (or the run) as failed. Nothing disappears. */
export async function processPoison(
  app: App,
  raw: unknown,
  queue: 'policy-runs' | 'mailbox-syncs',
  log: Logger,
): Promise<void> {
  await app.ensureStorage();
  if (queue === 'mailbox-syncs') {
    let msg: MailboxSyncMessage;
    try {
      msg = parseMessage(mailboxSyncMessage, raw, `${queue}-poison`);
    } catch (e) {
      log.error(`unreadable poison message dropped: ${(e as Error).message}`);
      return;
    }
    const admitted = await admit(app, msg);
    if ('drop' in admitted) {
      log.warn(`${admitted.drop}; poison message dropped`, { policy: msg.policyId, run: msg.runId });
      return;
    }
    const last = await app.runStore.getOutcome(msg.runId, msg.mailboxId);
    if (last && isFinal(last.status)) return;
    const error = `gave up after repeated failures: ${last?.lastError ?? 'no error was recorded'}`;
    log.error(error, { policy: msg.policyId, run: msg.runId, mailbox: admitted.target.userPrincipalName });
    // A removal's target may be named by id; its attempts recorded the UPN the worker looked up.
    const upn = last?.userPrincipalName || admitted.target.userPrincipalName;
    await recordAndMaybeFinish(
      app,
      msg.runId,
      failedOutcome({ ...admitted.target, userPrincipalName: upn }, error, last?.attempts ?? 0),
      log,
    );
    return;
  }
  let msg: PolicyRunMessage;
  try {
    msg = parseMessage(policyRunMessage, raw, `${queue}-poison`);
  } catch (e) {
    log.error(`unreadable poison message dropped: ${(e as Error).message}`);
    return;
  }
  const run = await app.runStore.getRun(msg.runId);
  if (!run || run.policyId !== msg.policyId) {
    log.warn('no such run; poison message dropped', { policy: msg.policyId, run: msg.runId });
    return;
  }
  await failRun(
    app,
    msg.runId,
    msg.policyId,
    'the policy run failed repeatedly (directory read or fan-out); see the function logs',
    log,
  );
}

export async function failRun(
  app: App,
  runId: string,
  policyId: string,
  error: string,
  log: Logger,
): Promise<void> {
  log.error(`run failed: ${error}`, { policy: policyId, run: runId });
  const run = await app.runStore.failRun(runId, error);
  await app.runStore.releaseLease(policyId, runId);
  if (run) await sendReportIfWanted(app, run, log);
}

/** The last mailbox finishes the run: totals, lease released, report mail. Only one caller wins. */
export async function finishRun(app: App, runId: string, log: Logger): Promise<void> {
  const won = await app.runStore.completeRun(runId, app.now().toISOString());
  if (!won) return;
  const run = await app.runStore.getRun(runId);
  if (!run) {
    log.warn(`run ${runId} was deleted (older than RUN_HISTORY_DAYS) as it completed; no report`, {
      run: runId,
    });
    return;
  }
  await app.runStore.releaseLease(run.policyId, runId);
  log.info(
    `run completed: ${run.mailboxes.succeeded} succeeded, ${run.mailboxes.failed} failed, ${run.mailboxes.skipped} skipped${run.departed ? `; departed ${run.departed.succeeded} emptied, ${run.departed.failed} failed` : ''}`,
    { policy: run.policyId, run: runId },
  );
  await sendReportIfWanted(app, run, log);
}

async function sendReportIfWanted(app: App, run: RunSummary, log: Logger): Promise<void> {
  const found = await app.policy(run.policyId);
  // A removal answers its operator (run-status, the HTTP route); the report mail is about syncs.
  if (!found || run.reportSent || run.options.removal) return;
  const { policy, connection } = found;
  const notify = policy.notify;
  if (notify.when === 'never' || notify.recipients.length === 0 || !notify.sender) return;
  const outcomes = await app.runStore.listOutcomes(run.runId);
  const certificate = await certificateStatus(app, connection).catch(() => undefined);
  if (notify.when === 'onErrors' && !hasErrors(run, outcomes) && certificate?.level !== 'error') return;
  try {
    const report = buildReport(policy, run, outcomes, certificate);
    const mime = await reportMime(report, notify.sender, notify.recipients);
    const graph = await app.graph(connection);
    await graph.client
      .api(`/users/${pathSegment(notify.sender)}/sendMail`)
      .header('Content-Type', 'text/plain')
      .post(mime);
    await app.runStore.markReportSent(run.runId);
  } catch (e) {
    // The run's outcome stands; a report that cannot be sent is logged, not retried forever.
    log.error(
      `report mail could not be sent from ${notify.sender}: ${e instanceof Error ? e.message : String(e)}`,
      { policy: run.policyId, run: run.runId },
    );
  }
}

/** How often a pass reads its folder's name (FOLDER_NAME_CHECK_HOURS), on the app's clock. */
const folderNameCheck = (app: App): FolderNameCheck => ({
  everyMs: app.settings.FOLDER_NAME_CHECK_HOURS * 3_600_000,
  now: app.now().getTime(),
});

/**
 * Reads the next contacts-delta round of every target mailbox that has synced before, 20 mailboxes to
 * a $batch, so a run where users changed little costs one HTTP call per 20 mailboxes for drift
 * instead of one per mailbox. Best effort: a mailbox left out reads its own delta.
 */
async function preReadDrifts(
  app: App,
  connection: Connection,
  { id: policyId, folder }: Policy,
  targets: readonly TargetMailbox[],
  log: Logger,
  fields: Record<string, string>,
): Promise<Map<string, PreReadDrift>> {
  const out = new Map<string, PreReadDrift>();
  try {
    const reads: { mailboxId: string; deltaLink: string; folderId?: string }[] = [];
    const check = folderNameCheck(app);
    for (let i = 0; i < targets.length; i += 32) {
      const folders = await Promise.all(
        targets.slice(i, i + 32).map((t) => app.mailboxStore.loadFolder(policyId, t.userId)),
      );
      folders.forEach((f, n) => {
        if (f?.deltaLink)
          reads.push({
            mailboxId: targets[i + n]!.userId,
            deltaLink: f.deltaLink,
            // The folder's name only when its pass is to check it (FOLDER_NAME_CHECK_HOURS).
            ...(f.folderId && folder.name !== null && folderNameCheckDue(f, folder.name, check)
              ? { folderId: f.folderId }
              : {}),
          });
      });
    }
    if (reads.length === 0) return out;
    const from = new Map(reads.map((r) => [r.mailboxId, r.deltaLink]));
    // A page of at most maxPreReadDriftItems: a longer round hands its next page to the mailbox's pass.
    const read = await withFreshCredential(app, connection, async () =>
      (await app.graph(connection)).mailboxes.readDrifts(reads, maxPreReadDriftItems),
    );
    for (const [mailboxId, d] of read) {
      const drift: PreReadDrift = {
        fromDeltaLink: from.get(mailboxId)!,
        ...(d.nextLink ? { nextLink: d.nextLink } : { deltaLink: d.deltaLink! }),
        items: d.items,
      };
      // Larger drift stays with the worker: the run's row holds at most 1 MiB.
      if (d.items.length > maxPreReadDriftItems || JSON.stringify(drift).length > maxPreReadDriftChars)
        continue;
      out.set(mailboxId, {
        ...drift,
        ...(typeof d.folderName === 'string' ? { folderName: d.folderName } : {}),
      });
    }
  } catch (e) {
    log.warn(`drift pre-read skipped: ${e instanceof Error ? e.message : String(e)}`, fields);
  }
  return out;
}

/** The mailbox-type part of the refresh log line (unanswered look-ups usually mean a missing permission). */
function typeSummary(t: SourceRefresh['stats']['mailboxTypes']): string {
  if (!t || t.checked + t.unreadable + t.pending === 0) return '';
  return `; mailbox types: ${t.checked} looked up${t.unreadable ? `, ${t.unreadable} unanswered (is MailboxSettings.Read granted?)` : ''}${t.pending ? `, ${t.pending} still to look up` : ''}`;
}

/** The photo part of the refresh log line: what an admin needs to see that photos are progressing. */
function photoSummary(p: SourceRefresh['stats']['photos']): string {
  if (!p) return '';
  const parts = [`${p.checked} photos looked at`, `${p.changed} new or changed`];
  if (p.tooLarge) parts.push(`${p.tooLarge} over the size limit (left off)`);
  if (p.unreadable) parts.push(`${p.unreadable} unreadable (tried again next run)`);
  if (p.pending) parts.push(`${p.pending} still to look at`);
  return `; ${parts.join(', ')}`;
}

// Run records and the policy lease. A run knows how many mailboxes it expects; each mailbox outcome is
// recorded once (at-least-once delivery is fine), and the last one finalizes the run.
import type { MailboxResult } from './sync-mailbox';
import type { TargetResolution } from './directory';
import type { DriftItem } from './ports';

export type RunStatus = 'starting' | 'running' | 'completed' | 'failed';

export interface RunSummary {
  runId: string;
  policyId: string;
  trigger: 'schedule' | 'http' | 'cli';
  /** What the run may do, fixed when it started under the lease; workers take it from here. */
  options: RunRecordOptions;
  status: RunStatus;
  startedAt: string;
  finishedAt: string | null;
  expected: number;
  done: number;
  mailboxes: { succeeded: number; failed: number; skipped: number };
  contacts: {
    created: number;
    updated: number;
    deleted: number;
    unchanged: number;
    restored: number;
    failed: number;
  };
  /** The first `maxListedSkipped` targets left out; `skippedCount` counts them all. */
  skippedTargets: TargetResolution['skipped'];
  skippedCount: number;
  /** Why the run as a whole failed (source refresh, bad policy, ...). */
  error: string | null;
  /** What the admin should know about the source (e.g. hidden users that cannot be told apart). */
  notes?: string[];
  /** Mailboxes that left the targets and were not cleaned: too many at once, or no target is left. */
  departedHeldBack?: DepartedHeldBack;
  /**
   * Mailboxes that left the targets and were emptied by this run (absent when none): counted here, not
   * among `mailboxes` or `contacts` (its targets and their sync). `expected` counts them too.
   */
  departed?: DepartedCounts;
  reportSent: boolean;
  /** The delivery writing the target list while the run starts (the last to claim it wins). */
  targetWriter?: string;
  /** Graph requests and 429s of the run's start and recorded mailbox passes; absent before counting. */
  graph?: GraphTraffic;
}

/** Graph traffic of one invocation: requests ($batch sub-requests each count) and 429 answers. */
export interface GraphTraffic {
  requests: number;
  throttled: number;
}

export interface DepartedHeldBack {
  /** Mailboxes that left the targets and keep the policy's contacts for now. */
  mailboxes: number;
  /** Mailboxes holding the policy's contacts before the run. */
  known: number;
  /** How many may leave in one run without a forced one. */
  limit: number;
  /** No target is left at all: even a forced run cleans nothing (`remove --policy` does). */
  noTarget: boolean;
}

export interface DepartedCounts {
  /** Departed mailboxes the run took (each one's worker removes the policy's contacts). */
  mailboxes: number;
  succeeded: number;
  failed: number;
  skipped: number;
  /** Contacts removed from them (in a dry run: that would be). */
  removed: number;
  /** The first `maxNamedDeparted` to finish, by UPN; the rest are counted ("and N more"). */
  named: string[];
}

/** Departed mailboxes a run names; a summary row stays small however many leave at once. */
export const maxNamedDeparted = 5;

export const emptyDeparted = (mailboxes: number): DepartedCounts => ({
  mailboxes,
  succeeded: 0,
  failed: 0,
  skipped: 0,
  removed: 0,
  named: [],
});

/**
 * Mailboxes that failed, departed ones included: their contacts stay behind, so a failed clean-up is
 * a failure of the run (exit code, report mail, dashboard) even though it is counted apart.
 */
export function failedMailboxes(run: {
  mailboxes: { failed: number };
  departed?: { failed: number } | null;
}): number {
  return run.mailboxes.failed + (run.departed?.failed ?? 0);
}

/** "a@x, b@x and 3 more": the departed mailboxes named so far, the rest counted. */
export function departedNames(d: DepartedCounts): string {
  const rest = d.mailboxes - d.named.length;
  return `${d.named.join(', ')}${rest > 0 ? `${d.named.length ? ' and ' : ''}${rest} more` : ''}`;
}

export type MailboxOutcomeStatus = 'succeeded' | 'failed' | 'skipped' | 'planned' | 'retrying';

export interface MailboxOutcome {
  mailboxId: string;
  userPrincipalName: string;
  status: MailboxOutcomeStatus;
  result: MailboxResult | null;
  lastError: string | null;
  attempts: number;
  /** Per-contact errors left out of `result.errors` (only the first `maxStoredErrors` are kept). */
  errorsLeftOut?: number;
  /** The Graph traffic of the mailbox's passes (all continuations and retries counted). */
  graph?: GraphTraffic;
  /** The mailbox left the policy's targets: this outcome is its clean-up, counted in `RunSummary.departed`. */
  departed?: boolean;
}

export interface RunRecordOptions {
  dryRun: boolean;
  fullResync: boolean;
  /** How many mailboxes the request named (the list is kept beside the summary); 0: every target. */
  mailboxCount: number;
  /** A removal of the policy's contacts (`remove` over HTTP, a deleted policy's clean-up), not a sync. */
  removal?: boolean;
}

/** A mailbox the run covers: stored per row, so a run's target list has no size limit. */
export interface RunTarget {
  mailboxId: string;
  userPrincipalName: string;
  /** A mailbox that left the policy's targets: its worker removes the policy's contacts (onTargetRemoval). */
  departed?: boolean;
}

/**
 * A mailbox folder's next contacts-delta round, read for many mailboxes in one $batch when the run
 * fanned out and kept in the run's Table rows (never in a queue message, where it could be forged).
 * The worker uses it on its first pass only if its state's token is still `fromDeltaLink`.
 */
export interface PreReadDrift {
  fromDeltaLink: string;
  /** The round's new token, when the round fit the first page. */
  deltaLink?: string;
  /** The round goes on past the first page: the pass reads the rest from here (never page 1 again). */
  nextLink?: string;
  /** The folder's name when the round was read: a pass sees a renamed folder without a request. */
  folderName?: string;
  items: DriftItem[];
}
/** The pre-read's page size: a row stays far under 1 MiB; a longer round hands on its next page. */
export const maxPreReadDriftItems = 200;
/** JSON characters of one pre-read round (UTF-16: 600 KB, in properties of 30,000 characters). */
export const maxPreReadDriftChars = 300_000;

/** A mailbox's time-budget continuations so far and what they did (kept per run, never in a message). */
export interface MailboxProgress {
  continuation: number;
  carried: { created: number; updated: number; deleted: number; restored: number; failed: number };
  /** The Graph traffic of the continuations so far (absent: a row from before it was counted). */
  graph?: GraphTraffic;
}

/** Skipped targets kept in the run summary (the rest are counted); a Table property holds 32K chars. */
export const maxListedSkipped = 50;
/** Per-contact errors kept in a mailbox outcome, and the characters kept of each message. */
export const maxStoredErrors = 20;
export const maxErrorChars = 1000;

const clip = (s: string, n = maxErrorChars): string => (s.length > n ? `${s.slice(0, n)}…` : s);

/** An outcome cut to what a row holds: the first errors, each message clipped, the rest counted. */
/** A run's record is gone: the retention sweep deleted it (its lease had lapsed) while work went on. */
export class RunGoneError extends Error {
  constructor(readonly runId: string) {
    super(`run ${runId} does not exist (deleted past RUN_HISTORY_DAYS, or never recorded)`);
    this.name = 'RunGoneError';
  }
}

export function boundOutcome(o: MailboxOutcome): MailboxOutcome {
  const lastError = o.lastError === null ? null : clip(o.lastError);
  if (!o.result) return { ...o, lastError };
  const errors = o.result.errors;
  const kept = errors.slice(0, maxStoredErrors).map((e) => ({
    ...e,
    message: clip(e.message),
    ...(e.sourceKey ? { sourceKey: clip(e.sourceKey, 300) } : {}),
  }));
  const left = errors.length - kept.length + (o.errorsLeftOut ?? 0);
  return {
    ...o,
    lastError,
    result: { ...o.result, errors: kept },
    ...(left > 0 ? { errorsLeftOut: left } : {}),
  };
}

export const isFinal = (s: MailboxOutcomeStatus): boolean => s !== 'retrying';

export interface PolicyState {
  policyId: string;
  leaseRunId: string | null;
  leaseExpiresAt: string | null;
  lastScheduledAt: string | null;
  lastRunId: string | null;
}

export interface RunStore {
  /** Creates the run record with the mailboxes the request named (any number). */
  createRun(summary: RunSummary, requestedMailboxes: readonly string[]): Promise<void>;
  getRun(runId: string): Promise<RunSummary | undefined>;
  /** Removes a run that never started (its lease was refused). */
  deleteRun(runId: string): Promise<void>;
  requestedMailboxes(runId: string): Promise<string[]>;
  /**
   * Stores the run's targets and sets what the run expects, once: on a run past "starting" it writes
   * nothing; of concurrent deliveries one list is stored whole. `wrote` says whether this call's list
   * is the run's.
   */
  startRun(
    runId: string,
    targets: readonly RunTarget[],
    skippedTargets: TargetResolution['skipped'],
    notes?: string[],
    departedHeldBack?: DepartedHeldBack,
    /** Called every thousand or so rows written (the caller renews the policy's lease). */
    progress?: () => Promise<void>,
  ): Promise<{ run: RunSummary; wrote: boolean }>;
  getTarget(runId: string, mailboxId: string): Promise<RunTarget | undefined>;
  /** Indexes a target under the UPN its worker looked up (it was named by id when the run started). */
  indexTarget(runId: string, target: RunTarget): Promise<void>;
  /** Continuations of a mailbox so far (none: its first pass). */
  mailboxProgress(runId: string, mailboxId: string): Promise<MailboxProgress | undefined>;
  saveMailboxProgress(runId: string, mailboxId: string, progress: MailboxProgress): Promise<void>;
  /** Keeps pre-read delta rounds (each within maxPreReadDriftChars) for the run's first passes. */
  savePreReadDrifts(runId: string, drifts: ReadonlyMap<string, PreReadDrift>): Promise<void>;
  preReadDrift(runId: string, mailboxId: string): Promise<PreReadDrift | undefined>;
  /** Drops a mailbox's pre-read drift once its first pass has used it. */
  deletePreReadDrift(runId: string, mailboxId: string): Promise<void>;
  listTargets(runId: string): Promise<RunTarget[]>;
  failRun(runId: string, error: string): Promise<RunSummary | undefined>;
  getOutcome(runId: string, mailboxId: string): Promise<MailboxOutcome | undefined>;
  listOutcomes(runId: string): Promise<MailboxOutcome[]>;
  /** Records an error on a mailbox still being retried (read by the poison handler). */
  noteAttempt(
    runId: string,
    mailboxId: string,
    userPrincipalName: string,
    error: string,
    /** The failed attempt's Graph traffic: added to the row's, and so to the final outcome's. */
    graph?: GraphTraffic,
  ): Promise<void>;
  /** Adds the run start's Graph traffic (source read, pre-read) to the run's totals. */
  addRunTraffic(runId: string, traffic: GraphTraffic): Promise<void>;
  /**
   * Records a final outcome and counts it on the run, atomically and once: a repeated delivery of the
   * same mailbox returns the run unchanged with recorded=false. Throws RunGoneError when the run's
   * record is gone (deleted past RUN_HISTORY_DAYS while the mailbox was synced).
   */
  recordOutcome(runId: string, outcome: MailboxOutcome): Promise<{ run: RunSummary; recorded: boolean }>;
  /** Marks the run completed; only one caller wins (true). */
  completeRun(runId: string, finishedAt: string): Promise<boolean>;
  markReportSent(runId: string): Promise<void>;

  getPolicyState(policyId: string): Promise<PolicyState>;
  /**
   * Takes the policy's lease unless a live one is held; returns the holder's run id when refused. A
   * lease whose run record is missing or finished is free.
   */
  acquireLease(
    policyId: string,
    runId: string,
    expiresAt: Date,
    now: Date,
    scheduledAt?: Date,
  ): Promise<{ acquired: true } | { acquired: false; heldBy: string }>;
  /**
   * Extends the run's lease to `expiresAt` while the run makes progress (written only once less than
   * half of it is left). Returns who holds the lease when the run lost it to another.
   */
  renewLease(
    policyId: string,
    runId: string,
    expiresAt: Date,
    now: Date,
  ): Promise<{ held: true } | { held: false; heldBy: string | null }>;
  releaseLease(policyId: string, runId: string): Promise<void>;
  markScheduled(policyId: string, at: Date): Promise<void>;
}

export function emptySummary(
  runId: string,
  policyId: string,
  trigger: RunSummary['trigger'],
  options: { dryRun: boolean; fullResync: boolean; mailboxes: readonly string[] },
  now: Date,
): RunSummary {
  return {
    runId,
    policyId,
    trigger,
    options: {
      dryRun: options.dryRun,
      fullResync: options.fullResync,
      mailboxCount: options.mailboxes.length,
    },
    status: 'starting',
    startedAt: now.toISOString(),
    finishedAt: null,
    expected: 0,
    done: 0,
    mailboxes: { succeeded: 0, failed: 0, skipped: 0 },
    contacts: { created: 0, updated: 0, deleted: 0, unchanged: 0, restored: 0, failed: 0 },
    skippedTargets: [],
    skippedCount: 0,
    error: null,
    reportSent: false,
  };
}

/** Adds one mailbox outcome to the run's totals (pure). */
export function addOutcome(run: RunSummary, outcome: MailboxOutcome): RunSummary {
  const counted = outcome.graph ? addRunStartTraffic(run, outcome.graph) : run;
  const next: RunSummary = {
    ...counted,
    done: run.done + 1,
    mailboxes: { ...run.mailboxes },
    contacts: { ...run.contacts },
    status: run.status === 'starting' ? 'running' : run.status,
  };
  if (outcome.departed) {
    next.departed = addDeparted(run.departed ?? emptyDeparted(0), outcome);
    return next;
  }
  if (outcome.status === 'skipped') next.mailboxes.skipped++;
  else if (outcome.status === 'failed') next.mailboxes.failed++;
  else next.mailboxes.succeeded++;
  const r = outcome.result;
  if (r)
    for (const k of Object.keys(next.contacts) as (keyof RunSummary['contacts'])[]) next.contacts[k] += r[k];
  return next;
}

/** Two tallies of Graph traffic added (pure); undefined when neither was counted. */
export function sumTraffic(
  a: GraphTraffic | undefined,
  b: GraphTraffic | undefined,
): GraphTraffic | undefined {
  if (!a || !b) return a ?? b;
  return { requests: a.requests + b.requests, throttled: a.throttled + b.throttled };
}

/** Adds Graph traffic (the run start's, or a mailbox's) to the run's totals (pure). */
export function addRunStartTraffic(run: RunSummary, traffic: GraphTraffic): RunSummary {
  return { ...run, graph: sumTraffic(run.graph, traffic) };
}

function addDeparted(d: DepartedCounts, outcome: MailboxOutcome): DepartedCounts {
  const next = { ...d, named: [...d.named] };
  if (outcome.status === 'skipped') next.skipped++;
  else if (outcome.status === 'failed') next.failed++;
  else next.succeeded++;
  next.removed += outcome.result?.deleted ?? 0;
  if (next.named.length < maxNamedDeparted) next.named.push(outcome.userPrincipalName);
  // A run recorded before departed mailboxes were counted apart knows no total: it is at least those seen.
  next.mailboxes = Math.max(next.mailboxes, next.succeeded + next.failed + next.skipped);
  return next;
}

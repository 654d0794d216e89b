// Run records and the policy lease. A run knows how many mailboxes it expects; each mailbox outcome is
// recorded once (at-least-once delivery is fine), and the last one finalizes the run.
import type { MailboxResult } from './sync-mailbox';
import type { RunOptions } from './messages';
import type { TargetResolution } from './directory';

export type RunStatus = 'starting' | 'running' | 'completed' | 'failed';

export interface RunSummary {
  runId: string;
  policyId: string;
  trigger: 'schedule' | 'http' | 'cli';
  options: RunOptions;
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
  skippedTargets: TargetResolution['skipped'];
  /** Why the run as a whole failed (source refresh, bad policy, ...). */
  error: string | null;
  /** What the admin should know about the source (e.g. hidden users that cannot be told apart). */
  notes?: string[];
  reportSent: boolean;
}

export type MailboxOutcomeStatus = 'succeeded' | 'failed' | 'skipped' | 'planned' | 'retrying';

export interface MailboxOutcome {
  mailboxId: string;
  userPrincipalName: string;
  status: MailboxOutcomeStatus;
  result: MailboxResult | null;
  lastError: string | null;
  attempts: number;
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
  createRun(summary: RunSummary): Promise<void>;
  getRun(runId: string): Promise<RunSummary | undefined>;
  /** Sets what the run expects once targets are known. */
  startRun(
    runId: string,
    expected: number,
    skippedTargets: TargetResolution['skipped'],
    notes?: string[],
  ): Promise<RunSummary>;
  failRun(runId: string, error: string): Promise<RunSummary | undefined>;
  getOutcome(runId: string, mailboxId: string): Promise<MailboxOutcome | undefined>;
  listOutcomes(runId: string): Promise<MailboxOutcome[]>;
  /** Records an error on a mailbox still being retried (read by the poison handler). */
  noteAttempt(runId: string, mailboxId: string, userPrincipalName: string, error: string): Promise<void>;
  /**
   * Records a final outcome and counts it on the run, atomically and once: a repeated delivery of the
   * same mailbox returns the run unchanged with recorded=false.
   */
  recordOutcome(runId: string, outcome: MailboxOutcome): Promise<{ run: RunSummary; recorded: boolean }>;
  /** Marks the run completed; only one caller wins (true). */
  completeRun(runId: string, finishedAt: string): Promise<boolean>;
  markReportSent(runId: string): Promise<void>;

  getPolicyState(policyId: string): Promise<PolicyState>;
  /** Takes the policy's lease unless a live one is held; returns the holder's run id when refused. */
  acquireLease(
    policyId: string,
    runId: string,
    expiresAt: Date,
    now: Date,
    scheduledAt?: Date,
  ): Promise<{ acquired: true } | { acquired: false; heldBy: string }>;
  releaseLease(policyId: string, runId: string): Promise<void>;
  markScheduled(policyId: string, at: Date): Promise<void>;
}

export function emptySummary(
  runId: string,
  policyId: string,
  trigger: RunSummary['trigger'],
  options: RunOptions,
  now: Date,
): RunSummary {
  return {
    runId,
    policyId,
    trigger,
    options,
    status: 'starting',
    startedAt: now.toISOString(),
    finishedAt: null,
    expected: 0,
    done: 0,
    mailboxes: { succeeded: 0, failed: 0, skipped: 0 },
    contacts: { created: 0, updated: 0, deleted: 0, unchanged: 0, restored: 0, failed: 0 },
    skippedTargets: [],
    error: null,
    reportSent: false,
  };
}

/** Adds one mailbox outcome to the run's totals (pure). */
export function addOutcome(run: RunSummary, outcome: MailboxOutcome): RunSummary {
  const next: RunSummary = {
    ...run,
    done: run.done + 1,
    mailboxes: { ...run.mailboxes },
    contacts: { ...run.contacts },
    status: run.status === 'starting' ? 'running' : run.status,
  };
  if (outcome.status === 'skipped') next.mailboxes.skipped++;
  else if (outcome.status === 'failed') next.mailboxes.failed++;
  else next.mailboxes.succeeded++;
  const r = outcome.result;
  if (r)
    for (const k of Object.keys(next.contacts) as (keyof RunSummary['contacts'])[]) next.contacts[k] += r[k];
  return next;
}

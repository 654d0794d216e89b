// One whole run of a policy in one process, without leases or run records (the engine tests' harness):
// refresh the source once, resolve targets, sync the mailboxes a few at a time, and total up. The
// product's runs (the Functions app's and the CLI's `run`) go through src/app/use-cases.ts.
import { randomUUID } from 'node:crypto';
import type { Policy } from './config/schema';
import type { TargetResolution } from './directory';
import type {
  DirectoryReader,
  MailboxGraph,
  MailboxStateStore,
  PhotoStore,
  RecipientReader,
  SourceStore,
} from './ports';
import { refreshSource, type SourceRefresh } from './refresh-source';
import { syncMailbox, type MailboxResult } from './sync-mailbox';

export interface RunDependencies {
  directory: DirectoryReader;
  mailboxes: MailboxGraph;
  sourceStore: SourceStore;
  mailboxStore: MailboxStateStore;
  /** Needed when a policy syncs photos. */
  photoStore?: PhotoStore;
  /** Exchange Online's recipients, when the connection reads them (hidden flags, marks). */
  recipients?: RecipientReader;
}

export interface RunOptions {
  dryRun?: boolean;
  force?: boolean;
  /** Only these target mailboxes (UPNs). */
  mailboxes?: string[];
  /** Mailboxes synced at once. */
  concurrency?: number;
  /** A mailbox left partial (lost replies, time budget) is passed again up to this many times. */
  maxPasses?: number;
  /** Each pass's time budget (ms), as the Functions app's MAILBOX_TIME_BUDGET_SECONDS; none by default. */
  budgetMs?: number;
  now?: () => Date;
  onMailboxDone?: (result: MailboxResult, done: number, total: number) => void;
}

export interface ContactTotals {
  created: number;
  updated: number;
  deleted: number;
  unchanged: number;
  restored: number;
  failed: number;
}

export interface RunRecord {
  policy: string;
  runId: string;
  dryRun: boolean;
  startedAt: string;
  finishedAt: string;
  source: SourceRefresh['stats'];
  mailboxes: { total: number; succeeded: number; failed: number; skipped: number };
  contacts: ContactTotals;
  skippedTargets: TargetResolution['skipped'];
  results: MailboxResult[];
}

export function totals(results: readonly MailboxResult[]): {
  mailboxes: RunRecord['mailboxes'];
  contacts: ContactTotals;
} {
  const contacts: ContactTotals = {
    created: 0,
    updated: 0,
    deleted: 0,
    unchanged: 0,
    restored: 0,
    failed: 0,
  };
  const mailboxes = { total: results.length, succeeded: 0, failed: 0, skipped: 0 };
  for (const r of results) {
    if (r.status === 'skipped') mailboxes.skipped++;
    else if (r.status === 'failed' || r.status === 'partial') mailboxes.failed++;
    else mailboxes.succeeded++;
    for (const k of Object.keys(contacts) as (keyof ContactTotals)[]) contacts[k] += r[k];
  }
  return { mailboxes, contacts };
}

export async function runPolicy(
  policy: Policy,
  deps: RunDependencies,
  options: RunOptions = {},
): Promise<RunRecord> {
  const now = options.now ?? (() => new Date());
  const startedAt = now();
  const dryRun = options.dryRun ?? policy.options.dryRun;
  const refreshed = await refreshSource(
    policy,
    deps.directory,
    deps.sourceStore,
    startedAt,
    deps.mailboxes,
    deps.photoStore,
    deps.recipients ? { recipients: deps.recipients } : {},
  );
  let targets = refreshed.targets.mailboxes;
  const skippedTargets = [...refreshed.targets.skipped];
  if (options.mailboxes && options.mailboxes.length > 0) {
    const wanted = new Set(options.mailboxes.map((m) => m.toLowerCase()));
    targets = targets.filter((t) => wanted.has(t.userPrincipalName.toLowerCase()));
    for (const m of options.mailboxes) {
      if (
        !targets.some((t) => t.userPrincipalName.toLowerCase() === m.toLowerCase()) &&
        !skippedTargets.some((s) => s.user.toLowerCase() === m.toLowerCase())
      ) {
        skippedTargets.push({ user: m, reason: 'notFound' });
      }
    }
  }

  const results: MailboxResult[] = new Array<MailboxResult>(targets.length);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < targets.length) {
      const i = next++;
      const target = targets[i]!;
      let r: MailboxResult | undefined;
      const carried = { created: 0, updated: 0, deleted: 0, restored: 0, failed: 0 };
      for (let pass = 0; pass < (options.maxPasses ?? 3); pass++) {
        try {
          r = await syncMailbox(
            policy,
            target,
            refreshed.desired,
            deps.mailboxes,
            deps.mailboxStore,
            {
              dryRun,
              force: options.force ?? false,
              ...(options.budgetMs !== undefined ? { deadline: Date.now() + options.budgetMs } : {}),
            },
            deps.photoStore,
            deps.sourceStore,
          );
          // A later pass sees what earlier passes wrote as unchanged: count each contact once.
          r.unchanged = Math.max(0, r.unchanged - carried.created - carried.restored - carried.updated);
          for (const k of Object.keys(carried) as (keyof typeof carried)[]) {
            r[k] += carried[k];
            carried[k] = r[k];
          }
        } catch (e) {
          // A mailbox that fails is reported, never silently skipped; the next pass or run retries it.
          const err = e as { status?: number; code?: string; requestId?: string };
          r = {
            mailbox: target.userPrincipalName,
            userId: target.userId,
            status: 'failed',
            created: 0,
            updated: 0,
            deleted: 0,
            unchanged: 0,
            restored: 0,
            failed: 0,
            duplicatesRemoved: 0,
            errors: [
              {
                status: err.status ?? 0,
                code: err.code ?? 'Error',
                message: e instanceof Error ? e.message : String(e),
                ...(err.requestId ? { requestId: err.requestId } : {}),
              },
            ],
          };
        }
        if (
          r.status !== 'partial' &&
          !(
            r.status === 'failed' &&
            r.failed === 0 &&
            r.errors.every((x) => x.status === 0 || x.status >= 500)
          )
        )
          break;
        if (pass > 0 && r.status === 'failed') break;
      }
      results[i] = r!;
      done++;
      options.onMailboxDone?.(r!, done, targets.length);
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency ?? 8, Math.max(1, targets.length)) }, worker),
  );
  const t = totals(results);
  return {
    policy: policy.id,
    runId: randomUUID(),
    dryRun,
    startedAt: startedAt.toISOString(),
    finishedAt: now().toISOString(),
    source: refreshed.stats,
    ...t,
    skippedTargets,
    results,
  };
}

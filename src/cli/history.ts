// `runs`, `run-status` and `mailbox`: what happened, read from the run records the Functions app and
// the CLI's `run` write.
import { listRuns, mailboxHistory } from '../app/history';
import { departedLine } from '../sync/report';
import type { MailboxOutcome, RunSummary } from '../sync/runs';
import type { Io } from './commands';
import { workstationApp } from './remove';

export interface HistoryFlags {
  config?: string;
  storage?: string;
  json: boolean;
}

const runLine = (r: RunSummary): string =>
  `${r.runId}  ${r.policyId}  ${r.trigger}${r.options.removal ? ' removal' : ''}${r.options.dryRun ? ' (dry run)' : ''}  ${r.status}  ${r.startedAt}  mailboxes ${r.mailboxes.succeeded} ok / ${r.mailboxes.failed} failed / ${r.mailboxes.skipped} skipped  contacts +${r.contacts.created} ~${r.contacts.updated} -${r.contacts.deleted}${r.departed ? `  departed ${r.departed.mailboxes} (-${r.departed.removed})` : ''}${r.error ? `  error: ${r.error}` : ''}`;

const outcomeLine = (o: MailboxOutcome): string => {
  const r = o.result;
  const counts = r
    ? `, ${r.created} created, ${r.updated} updated, ${r.deleted} deleted, ${r.unchanged} unchanged`
    : '';
  const held = r?.deletionsBlocked ? `, ${r.deletionsBlocked.wanted} deletions held back` : '';
  const folder = r?.removal?.folderRemoved ? ', folder removed' : '';
  return `${o.userPrincipalName}${o.departed ? ' (left the targets)' : ''}: ${o.status}${counts}${held}${folder}${o.lastError ? `; ${o.lastError}` : ''}`;
};

async function open(io: Io, flags: HistoryFlags, env: Record<string, string | undefined>) {
  // The policy file is not read by these commands; the settings only want one named.
  return workstationApp(io, flags.config ?? 'policies.json', flags.storage, env);
}

export async function runs(
  io: Io,
  flags: HistoryFlags & { policy?: string; last: number },
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const app = await open(io, flags, env);
  if (!app) return 2;
  const found = await listRuns(app.tables.runs, flags.policy, flags.last);
  if (flags.json) io.out(JSON.stringify(found));
  else if (found.length === 0) io.out(`no runs${flags.policy ? ` of policy "${flags.policy}"` : ''}`);
  else for (const r of found) io.out(runLine(r));
  return 0;
}

export async function runStatus(
  io: Io,
  flags: HistoryFlags & { runId: string },
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const app = await open(io, flags, env);
  if (!app) return 2;
  const run = await app.runStore.getRun(flags.runId);
  if (!run) {
    io.err(`no run ${flags.runId}`);
    return 1;
  }
  const outcomes = await app.runStore.listOutcomes(flags.runId);
  if (flags.json) {
    io.out(JSON.stringify({ ...run, outcomes }));
    return 0;
  }
  io.out(runLine(run));
  if (run.departed) io.out(`departed: ${departedLine(run.departed, run.options.dryRun)}`);
  for (const n of run.notes ?? []) io.out(`note: ${n}`);
  for (const o of outcomes) io.out(`  ${outcomeLine(o)}`);
  return 0;
}

export async function mailbox(
  io: Io,
  flags: HistoryFlags & { upn: string },
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const app = await open(io, flags, env);
  if (!app) return 2;
  const found = await mailboxHistory(
    app.tables.runs,
    flags.upn,
    (runId, mailboxId) => app.runStore.getOutcome(runId, mailboxId),
    (runId) => app.runStore.getRun(runId),
  );
  if (flags.json) io.out(JSON.stringify(found));
  else if (found.length === 0) io.out(`no run has covered ${flags.upn}`);
  else
    for (const { run, outcome } of found)
      io.out(
        `${run.policyId}: run ${run.runId} (${run.startedAt}): ${outcome ? outcomeLine(outcome) : 'no outcome recorded yet'}`,
      );
  return found.length === 0 ? 1 : 0;
}

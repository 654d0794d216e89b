// History: the run records read back (the CLI's `runs`, `run-status` and `mailbox`). Runs and a
// user's runs are listed from the history index (src/adapters/tables/run-index.ts), one partition read
// newest first. Until runs recorded before the index are back-filled (the scheduler does it), the
// summaries and target rows are found across the table as they were before.
import { odata, type TableClient } from '@azure/data-tables';
import { unpackData } from '../adapters/tables/run-store';
import { IndexedRunHistory } from '../adapters/tables/run-history';
import { fromTableKey } from '../adapters/tables/table-key';
import type { MailboxOutcome, RunSummary } from '../sync/runs';

const summaryKey = '~run';
const targetPrefix = '~target~';

/** The last `last` runs (newest first), of one policy or all. */
export async function listRuns(
  runs: TableClient,
  policyId: string | undefined,
  last: number,
): Promise<RunSummary[]> {
  const index = new IndexedRunHistory(runs);
  if (await index.ready()) return index.newestRuns(policyId, last);
  const filter = policyId
    ? odata`RowKey eq ${summaryKey} and policyId eq ${policyId}`
    : odata`RowKey eq ${summaryKey}`;
  const all: RunSummary[] = [];
  for await (const e of runs.listEntities<Record<string, unknown>>({ queryOptions: { filter } }))
    all.push(unpackData<RunSummary>(e));
  return all.sort((a, b) => b.startedAt.localeCompare(a.startedAt)).slice(0, last);
}

/** Each policy's last outcome for the mailbox (by UPN, without regard to case), newest run first. */
export async function mailboxHistory(
  runs: TableClient,
  upn: string,
  outcome: (runId: string, mailboxId: string) => Promise<MailboxOutcome | undefined>,
  run: (runId: string) => Promise<RunSummary | undefined>,
): Promise<{ run: RunSummary; outcome: MailboxOutcome | undefined }[]> {
  const index = new IndexedRunHistory(runs);
  if (await index.ready()) {
    // The newest row of each policy: the user's whole partition (one row per run that covered the
    // user, within RUN_HISTORY_DAYS), small rows read 1,000 to a request.
    const seen = new Set<string>();
    const newest = await index.userRows(
      { upn },
      Number.MAX_SAFE_INTEGER,
      (p) => {
        if (p.kind !== 'target' || !p.mailboxId || seen.has(p.policyId)) return Promise.resolve(undefined);
        seen.add(p.policyId);
        return Promise.resolve({ runId: p.runId, mailboxId: p.mailboxId });
      },
      Number.POSITIVE_INFINITY,
    );
    const found = await Promise.all(
      newest.map(async (f) => ({ run: await run(f.runId), outcome: await outcome(f.runId, f.mailboxId) })),
    );
    return found.flatMap((f) => (f.run ? [{ run: f.run, outcome: f.outcome }] : []));
  }
  const targets = odata`RowKey ge ${targetPrefix} and RowKey lt ${`${targetPrefix}\uffff`}`;
  const find = async (filter: string): Promise<{ runId: string; mailboxId: string }[]> => {
    const out: { runId: string; mailboxId: string }[] = [];
    for await (const e of runs.listEntities<Record<string, unknown>>({ queryOptions: { filter } }))
      if (typeof e.upn === 'string' && e.upn.toLowerCase() === upn.toLowerCase())
        out.push({ runId: e.partitionKey!, mailboxId: fromTableKey(e.rowKey!.slice(targetPrefix.length)) });
    return out;
  };
  // The UPN as the directory spells it is looked up by the service; another spelling reads them all.
  let found = await find(`${targets} and ${odata`upn eq ${upn}`}`);
  if (found.length === 0) found = await find(targets);
  const byPolicy = new Map<string, { run: RunSummary; outcome: MailboxOutcome | undefined }>();
  for (const f of found) {
    const r = await run(f.runId);
    if (!r) continue;
    const have = byPolicy.get(r.policyId);
    if (have && have.run.startedAt >= r.startedAt) continue;
    byPolicy.set(r.policyId, { run: r, outcome: await outcome(f.runId, f.mailboxId) });
  }
  return [...byPolicy.values()].sort((a, b) => b.run.startedAt.localeCompare(a.run.startedAt));
}

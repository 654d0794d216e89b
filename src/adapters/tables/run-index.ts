// Index rows beside the run records, so every history read is one partition read newest first with
// `$top`, whatever else the table holds. They live in the runs table, in partitions starting with `~`
// (run partitions are run ids, never `~`):
//   ~runs                  every run               (the CLI's `runs`, the retention sweep)
//   ~policy~<policy>       a policy's runs         (the dashboard's Policies page, `runs --policy`)
//   ~users~<bucket>        users' runs, by UPN (lower case) and by mailbox id: rows `upn:<upn>|<newest>`
//                          and `id:<id>|<newest>`, one user's rows a row-key range of one partition.
// A user's rows go to one of 16 partitions by a hash of the name, so a run's rows for all its users are
// written in transactions of 100 (300 targets: about 16 requests, not 600); a partition per user would
// make each row a request of its own. Row keys put the newest first: reversed start time, then the run
// id. A run's pointers are written before its summary (a crash leaves a pointer the sweep finds, never a
// run nothing points to) and are deleted with it. Readers skip a pointer whose run is gone.
import { createHash } from 'node:crypto';
import { odata, type TableClient, type TableEntity, type TransactionAction } from '@azure/data-tables';
import type { RunSummary, RunTarget } from '../../sync/runs';
import { packData, unpackData } from './pack';
import { maxTableKeyChars, tableKey } from './table-key';

export const allRunsPartition = '~runs';
export const policyPartition = (policyId: string): string => `~policy~${tableKey(policyId)}`;

/** Partitions users' rows are spread over. */
const userBuckets = 16;
const usersPartitionPrefix = '~users~';

/** Which user: by user principal name (any case) or by mailbox id. */
export type UserQuery = { upn: string } | { mailboxId: string };

/**
 * Where a user's rows are: their partition and the row-key prefix they all start with. `|` ends the
 * name and is escaped inside it, so no other user's rows share the prefix. Throws when no key can
 * hold the name.
 */
export function userRowsOf(query: UserQuery): { partitionKey: string; prefix: string } {
  const [kind, value] = 'upn' in query ? ['upn', query.upn] : ['id', query.mailboxId];
  const name = `${kind}:${tableKey(value.toLowerCase()).replace(/\|/g, '%7C')}`;
  const bucket = createHash('sha256').update(name).digest()[0]! % userBuckets;
  const prefix = `${name}|`;
  // The longest row key adds the newest-first time, a run id and `_left`.
  if (prefix.length + 60 > maxTableKeyChars) throw new Error(`Table key too long for ${kind} index`);
  return { partitionKey: `${usersPartitionPrefix}${bucket.toString(16)}`, prefix };
}

/** The filter of a user's rows: their partition and the row keys with their prefix. */
export function userRowsFilter(query: UserQuery): string {
  const { partitionKey, prefix } = userRowsOf(query);
  // `}` follows `|`: the range holds exactly the keys that start with the prefix.
  return odata`PartitionKey eq ${partitionKey} and RowKey gt ${prefix} and RowKey lt ${`${prefix.slice(0, -1)}}`}`;
}

/** The marker of a table whose runs are all indexed (new, or back-filled) in this layout. */
const markerPartition = '~index';
const markerRow = 'users-by-bucket';
/** The marker of the layout before (a partition per user), whose rows the back-fill deletes. */
const formerMarkerRow = 'state';
const formerUserPartitions = [
  // Up to the next prefix: a name may begin with a character that sorts after `~` (no other partition starts so).
  ['~mailbox~', '~mailboy'],
  ['~upn~', '~upo'],
] as const;

/** Milliseconds after the epoch, reversed so later sorts first (13 digits last until the year 2286). */
const latest = 9_999_999_999_999;
export const newestFirst = (startedAt: string, runId: string): string =>
  `${String(latest - Date.parse(startedAt)).padStart(13, '0')}_${tableKey(runId)}`;
/** Row keys from this one on (in key order) are of runs that started before `ms`. */
const startedBefore = (ms: number): string => String(latest - ms + 1).padStart(13, '0');

const status = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;

/** What every index row says about its run (enough to list it without reading the summary). */
export interface RunPointer {
  runId: string;
  policyId: string;
  startedAt: string;
  dryRun: boolean;
}

/** A user's index row: a run covered the mailbox (`target`) or left the user out (with the reason). */
export interface MailboxPointer extends RunPointer {
  kind: 'target' | 'left out';
  mailboxId: string | null;
  upn: string;
  reason: string | null;
}

type Row = TableEntity<Record<string, unknown>>;

/** What the index says of a run. */
export const pointerOfRun = (run: RunSummary): RunPointer => ({
  runId: run.runId,
  policyId: run.policyId,
  startedAt: run.startedAt,
  dryRun: run.options.dryRun,
});

/**
 * The `~runs` and `~policy~` rows of a run. A finished run's rows carry a copy of its summary, so a
 * list of runs is the partition read alone (a summary is about 1 KB: at most 50 listed left-out users
 * and 50 notes); a run not finished yet is read from its own partition.
 */
export function runIndexRows(run: RunPointer, finished?: RunSummary): Row[] {
  const rowKey = newestFirst(run.startedAt, run.runId);
  const fields = {
    runId: run.runId,
    policyId: run.policyId,
    startedAt: run.startedAt,
    dryRun: run.dryRun,
    ...(finished && isFinished(finished) ? { finished: true, ...packData(finished) } : {}),
  };
  return [
    { partitionKey: allRunsPartition, rowKey, ...fields },
    { partitionKey: policyPartition(run.policyId), rowKey, ...fields },
  ];
}

const isFinished = (run: RunSummary): boolean => run.status === 'completed' || run.status === 'failed';

/** The copy of its finished run's summary a `~runs` or `~policy~` row carries, if any. */
export function finishedRunOf(row: Row): RunSummary | undefined {
  return row.finished === true && typeof row.data === 'string' ? unpackData<RunSummary>(row) : undefined;
}

/** The properties of a pointer row without the summary copy (what the sweep reads). */
export const pointerColumns = [
  'PartitionKey',
  'RowKey',
  'runId',
  'policyId',
  'startedAt',
  'dryRun',
  'noUserRows',
];

/** A user's rows of a run: each target under its UPN and its mailbox id, each listed skipped user. */
export function mailboxIndexRows(
  run: RunPointer,
  targets: readonly RunTarget[],
  skipped: RunSummary['skippedTargets'],
): Row[] {
  const time = newestFirst(run.startedAt, run.runId);
  const pointer = { runId: run.runId, policyId: run.policyId, startedAt: run.startedAt, dryRun: run.dryRun };
  const rows: Row[] = [];
  const row = (query: UserQuery, suffix: string, fields: Record<string, unknown>): void => {
    const { partitionKey, prefix } = userRowsOf(query);
    rows.push({ partitionKey, rowKey: `${prefix}${time}${suffix}`, ...pointer, ...fields });
  };
  for (const t of targets) {
    const fields = { kind: 'target', mailboxId: t.mailboxId, upn: t.userPrincipalName };
    row({ upn: t.userPrincipalName }, '', fields);
    row({ mailboxId: t.mailboxId }, '', fields);
  }
  // A name someone asked for that no key can hold (over 1 KiB escaped) stays in the summary only.
  for (const s of skipped.filter((x) => fitsKey(x.user)))
    row({ upn: s.user }, '_left', { kind: 'left out', upn: s.user, reason: s.reason });
  return rows;
}

const fitsKey = (user: string): boolean => {
  try {
    userRowsOf({ upn: user });
    return true;
  } catch {
    return false;
  }
};

/** Upserts rows: a transaction per partition and 100 rows, 16 requests at a time. */
export async function upsertRows(runs: TableClient, rows: readonly Row[]): Promise<void> {
  await inTransactions(runs, rows, (r) => ['upsert', r, 'Replace']);
}

/** Deletes rows by key; rows already gone are fine (a sweep that was stopped runs again). */
export async function deleteRows(
  runs: TableClient,
  keys: readonly { partitionKey: string; rowKey: string }[],
): Promise<void> {
  await inTransactions(runs, keys, (k) => ['delete', { partitionKey: k.partitionKey, rowKey: k.rowKey }]);
}

async function inTransactions<T extends { partitionKey?: string; rowKey?: string }>(
  runs: TableClient,
  items: readonly T[],
  action: (item: T) => TransactionAction,
): Promise<void> {
  const byPartition = new Map<string, Map<string, TransactionAction>>();
  for (const item of items) {
    const rows = byPartition.get(item.partitionKey!) ?? new Map<string, TransactionAction>();
    rows.set(item.rowKey!, action(item));
    byPartition.set(item.partitionKey!, rows);
  }
  const chunks: TransactionAction[][] = [];
  for (const rows of byPartition.values()) {
    const all = [...rows.values()];
    for (let i = 0; i < all.length; i += 100) chunks.push(all.slice(i, i + 100));
  }
  for (let i = 0; i < chunks.length; i += 16)
    await Promise.all(chunks.slice(i, i + 16).map((c) => submit(runs, c)));
}

async function submit(runs: TableClient, chunk: TransactionAction[]): Promise<void> {
  if (chunk.length > 1) {
    try {
      await runs.submitTransaction(chunk);
      return;
    } catch (e) {
      // A delete of a row already gone fails the whole transaction: then one by one.
      if (status(e) !== 404) throw e;
    }
  }
  for (const [kind, entity] of chunk) {
    if (kind !== 'delete') await runs.upsertEntity(entity, 'Replace');
    else
      await runs.deleteEntity(entity.partitionKey, entity.rowKey).catch((e: unknown) => {
        if (status(e) !== 404) throw e;
      });
  }
}

/**
 * Index rows that `filter` selects (one partition), newest first, a page at a time (`$top` = the page
 * size), until `take` says it has enough or they end. At most `maxPages` pages are read.
 */
export async function readNewest(
  runs: TableClient,
  filter: string,
  pageSize: number,
  take: (rows: Row[]) => Promise<boolean>,
  maxPages = 10,
): Promise<void> {
  let pages = 0;
  for await (const page of runs
    .listEntities<Row>({ queryOptions: { filter } })
    .byPage({ maxPageSize: pageSize })) {
    if ((await take(page)) || ++pages >= maxPages) return;
  }
}

export const pointerOf = (e: Row): RunPointer => ({
  runId: String(e.runId),
  policyId: String(e.policyId),
  startedAt: String(e.startedAt),
  dryRun: e.dryRun === true,
});

export const mailboxPointerOf = (e: Row): MailboxPointer => ({
  ...pointerOf(e),
  kind: e.kind === 'left out' ? 'left out' : 'target',
  mailboxId: typeof e.mailboxId === 'string' ? e.mailboxId : null,
  upn: typeof e.upn === 'string' ? e.upn : '',
  reason: typeof e.reason === 'string' ? e.reason : null,
});

/** `~runs` rows of runs that started before `beforeMs`, newest of them first. */
export function expiredFrom(beforeMs: number): string {
  return startedBefore(beforeMs);
}

// ---- Whether every run is indexed -------------------------------------------------------------

export interface IndexState {
  complete: boolean;
  /** Where the back-fill goes on (the table's continuation token of the page it is in). */
  continuation?: string;
  /** The last run of that page already indexed (pages list runs in key order). */
  doneThrough?: string;
  /** Every run is indexed; the former layout's rows are being deleted. */
  runsDone?: boolean;
}

const ready = new WeakSet<TableClient>();

export async function readIndexState(runs: TableClient): Promise<IndexState | undefined> {
  try {
    const e = await runs.getEntity<Row>(markerPartition, markerRow);
    return {
      complete: e.complete === true,
      ...(typeof e.continuation === 'string' ? { continuation: e.continuation } : {}),
      ...(typeof e.doneThrough === 'string' ? { doneThrough: e.doneThrough } : {}),
      ...(e.runsDone === true ? { runsDone: true } : {}),
    };
  } catch (e) {
    if (status(e) === 404) return undefined;
    throw e;
  }
}

export async function writeIndexState(runs: TableClient, state: IndexState): Promise<void> {
  await runs.upsertEntity({ partitionKey: markerPartition, rowKey: markerRow, ...state }, 'Replace');
  if (!state.complete) return;
  ready.add(runs);
  await deleteRows(runs, [{ partitionKey: markerPartition, rowKey: formerMarkerRow }]);
}

/**
 * Deletes the users' rows of the layout before (a partition per UPN and per mailbox id), a page of
 * 1,000 at a time while `more()` says there is time. Returns whether none is left.
 */
export async function deleteFormerUserRows(runs: TableClient, more: () => boolean): Promise<boolean> {
  for (const [from, to] of formerUserPartitions)
    for (;;) {
      if (!more()) return false;
      const keys: { partitionKey: string; rowKey: string }[] = [];
      const filter = odata`PartitionKey ge ${from} and PartitionKey lt ${to}`;
      for await (const page of runs
        .listEntities<Row>({ queryOptions: { filter, select: ['PartitionKey', 'RowKey'] } })
        .byPage({ maxPageSize: 1000 })) {
        keys.push(...page.map((e) => ({ partitionKey: e.partitionKey, rowKey: e.rowKey })));
        if (keys.length > 0) break;
      }
      if (keys.length === 0) break;
      await deleteRows(runs, keys);
    }
  return true;
}

/** Whether the index holds every run (else readers fall back to scanning the summaries). */
export async function indexComplete(runs: TableClient): Promise<boolean> {
  if (ready.has(runs)) return true;
  const complete = (await readIndexState(runs))?.complete === true;
  if (complete) ready.add(runs);
  return complete;
}

/**
 * A table holding no run summary needs no back-fill: it is marked complete at once (a new install,
 * every test). One that holds runs recorded before the index is back-filled by the scheduler.
 */
export async function markIndexedWhenEmpty(runs: TableClient): Promise<void> {
  if (await readIndexState(runs)) return;
  const iterator = runs
    .listEntities<Row>({ queryOptions: { filter: odata`RowKey eq ${'~run'}`, select: ['RowKey'] } })
    .byPage({ maxPageSize: 1 });
  // The service may answer an empty page with a continuation: only its end says the table is empty.
  for await (const page of iterator) if (page.length > 0) return;
  await runs
    .createEntity({ partitionKey: markerPartition, rowKey: markerRow, complete: true })
    .catch((e: unknown) => {
      if (status(e) !== 409) throw e;
    });
  ready.add(runs);
}

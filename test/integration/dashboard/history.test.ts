// The dashboard's mailbox history over run records the real run store wrote to Azurite.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { ensureTable } from '../../../src/adapters/tables/table-stores';
import { TableRunStore } from '../../../src/adapters/tables/run-store';
import { emptySummary } from '../../../src/sync/runs';
import { RunHistory } from '../../../src/dashboard/history';

const mailboxId = '0f000000-0000-0000-0000-000000000001';
const upn = 'anna@contoso.example';
const days = 60;
/** Run ids that sort oldest first, as the table lists partitions: the newest runs come last. */
const runIdOf = (day: number): string => `00000000-0000-4000-8000-${day.toString(16).padStart(12, '0')}`;
const startOf = (day: number): string => new Date(Date.UTC(2026, 8, 1) + day * 86_400_000).toISOString();

describe("one user's history across more runs than the page shows", () => {
  let azurite: AzuriteHandle;
  let history: RunHistory;

  before(async () => {
    azurite = await startAzurite();
    const runs = azurite.tableClient('syncruns');
    const policies = azurite.tableClient('syncpolicies');
    await Promise.all([ensureTable(runs), ensureTable(policies)]);
    const store = new TableRunStore(runs, policies);
    for (let day = 0; day < days; day++) {
      const runId = runIdOf(day);
      const options = { dryRun: false, fullResync: false, mailboxes: [] };
      await store.createRun(emptySummary(runId, 'p', 'schedule', options, new Date(startOf(day))), []);
      await store.startRun(runId, [{ mailboxId, userPrincipalName: upn }], []);
      const last = day === days - 1;
      await store.recordOutcome(runId, {
        mailboxId,
        userPrincipalName: upn,
        status: last ? 'failed' : 'succeeded',
        result: null,
        lastError: last ? 'ErrorAccessDenied last night' : null,
        attempts: 1,
      });
    }
    history = new RunHistory(runs);
  });
  after(() => azurite.close());

  for (const query of [upn, mailboxId])
    it(`shows the newest 50 runs, last night's failure first (by ${query === upn ? 'UPN' : 'mailbox id'})`, async () => {
      const entries = await history.mailbox(query);
      assert.equal(entries.length, 50);
      assert.deepEqual(
        entries.map((e) => e.startedAt),
        Array.from({ length: 50 }, (_, i) => startOf(days - 1 - i)),
      );
      assert.equal(entries[0]!.status, 'failed');
      assert.equal(entries[0]!.reason, 'ErrorAccessDenied last night');
    });
});

// Issue 17 item 3: a report whose run held deletions back says so before anything else, and lists the
// take-over's adoptions.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { policySchema } from '../../../src/sync/config/schema';
import { buildReport, hasErrors } from '../../../src/sync/report';
import { emptySummary, type MailboxOutcome } from '../../../src/sync/runs';
import type { MailboxResult } from '../../../src/sync/sync-mailbox';

const policy = policySchema.parse({
  id: 'gal',
  name: 'GAL',
  connection: 'c',
  source: { type: 'directory' },
  targets: { type: 'allMailboxes' },
  folder: { name: 'Company Directory' },
});
const result = (extra: Partial<MailboxResult>): MailboxResult => ({
  mailbox: 'a@contoso.example',
  userId: 'a',
  status: 'succeeded',
  created: 0,
  updated: 0,
  deleted: 0,
  unchanged: 24,
  restored: 0,
  failed: 0,
  errors: [],
  duplicatesRemoved: 0,
  ...extra,
});
const outcome = (r: MailboxResult): MailboxOutcome => ({
  mailboxId: r.userId,
  userPrincipalName: r.mailbox,
  status: 'succeeded',
  result: r,
  lastError: null,
  attempts: 1,
});

describe('the report mail and held-back deletions (issue 17 item 3)', () => {
  const run = {
    ...emptySummary(
      '00000000-0000-4000-8000-000000000001',
      'gal',
      'schedule',
      { dryRun: false, fullResync: false, mailboxes: [] },
      new Date(),
    ),
    status: 'completed' as const,
    finishedAt: new Date().toISOString(),
  };

  it('says first that deletions were held back, and how to apply them', () => {
    const outcomes = [
      outcome(result({ deletionsBlocked: { wanted: 24, managed: 24, limit: 10 } })),
      outcome(
        result({
          mailbox: 'b@contoso.example',
          userId: 'b',
          takeOver: { adopted: 10, removed: 0, left: 0, heldBack: { wanted: 12, limit: 10 }, items: [] },
        }),
      ),
    ];
    const report = buildReport(policy, run, outcomes);
    assert.ok(hasErrors(run, outcomes), 'sent under "onErrors" too');
    assert.match(report.subject, /held back/);
    const body = report.text.split('\n');
    assert.match(body[2]!, /^HELD BACK: 36 deletions in 2 mailboxes .*run --force.*fullResync/);
    assert.match(report.html, /<h2>[^<]*<\/h2>\n<p[^>]*><b>Held back:<\/b> 36 deletions/);
    assert.match(report.text, /Unmanaged contacts \(take-over\): 10 adopted, 0 removed, 0 left/);
  });

  it('says nothing of the kind when nothing was held back', () => {
    const outcomes = [outcome(result({}))];
    const report = buildReport(policy, run, outcomes);
    assert.doesNotMatch(report.text, /HELD BACK|take-over/);
    assert.equal(hasErrors(run, outcomes), false);
  });
});

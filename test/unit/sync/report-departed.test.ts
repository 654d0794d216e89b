// Issue 17: mailboxes that left a policy's targets and were emptied by the run are counted apart from
// its targets and their deletions, in the run record and the report; up to five are named, then "and N
// more". Counts read as English ("1 mailbox").
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { policySchema } from '../../../src/sync/config/schema';
import { buildReport, heldBackLine } from '../../../src/sync/report';
import { addOutcome, emptyDeparted, emptySummary, type MailboxOutcome } from '../../../src/sync/runs';
import type { MailboxResult } from '../../../src/sync/sync-mailbox';

const policy = policySchema.parse({
  id: 'gal',
  name: 'GAL',
  connection: 'c',
  source: { type: 'directory' },
  targets: { type: 'allMailboxes' },
  folder: { name: 'Company Directory' },
});
const result = (upn: string, deleted: number, extra: Partial<MailboxResult> = {}): MailboxResult => ({
  mailbox: upn,
  userId: upn,
  status: 'succeeded',
  created: 0,
  updated: 0,
  deleted,
  unchanged: 0,
  restored: 0,
  failed: 0,
  errors: [],
  duplicatesRemoved: 0,
  ...extra,
});
const outcome = (upn: string, deleted: number, departed: boolean): MailboxOutcome => ({
  mailboxId: upn,
  userPrincipalName: upn,
  status: 'succeeded',
  result: result(upn, deleted),
  lastError: null,
  attempts: 1,
  ...(departed ? { departed: true } : {}),
});

function runWith(targets: number, departed: number) {
  const started = {
    ...emptySummary(
      '00000000-0000-4000-8000-000000000002',
      'gal',
      'schedule',
      { dryRun: false, fullResync: false, mailboxes: [] },
      new Date(),
    ),
    status: 'running' as const,
    expected: targets + departed,
    departed: emptyDeparted(departed),
  };
  const outcomes = [
    ...Array.from({ length: targets }, (_, i) => outcome(`t${i}@contoso.example`, 1, false)),
    ...Array.from({ length: departed }, (_, i) => outcome(`left${i}@contoso.example`, 30, true)),
  ];
  const run = outcomes.reduce(addOutcome, started);
  return { run: { ...run, status: 'completed' as const, finishedAt: run.startedAt }, outcomes };
}

describe('departed mailboxes in the run record and the report (issue 17)', () => {
  it('counts them apart from the targets and their deletions, and names the first five, then "and N more"', () => {
    const { run, outcomes } = runWith(3, 7);
    assert.deepEqual(run.mailboxes, { succeeded: 3, failed: 0, skipped: 0 });
    assert.equal(run.contacts.deleted, 3, 'only the targets’ deletions');
    assert.equal(run.departed?.mailboxes, 7);
    assert.equal(run.departed?.succeeded, 7);
    assert.equal(run.departed?.removed, 7 * 30);
    assert.equal(run.departed?.named.length, 5, 'a bounded list');
    const report = buildReport(policy, run, outcomes);
    assert.match(report.text, /^Mailboxes: 3 targeted: 3 succeeded, 0 failed, 0 skipped$/m);
    assert.match(report.text, /^Contacts: 0 created, 0 updated, 3 deleted/m);
    assert.match(
      report.text,
      /^Departed mailboxes: 7 mailboxes left the policy's targets: 7 emptied \(210 contacts removed\): left0@contoso\.example, left1@contoso\.example, left2@contoso\.example, left3@contoso\.example, left4@contoso\.example and 2 more$/m,
    );
    assert.match(report.html, /<th align="left">Departed mailboxes<\/th><td>7 mailboxes left/);
  });

  it('one departed mailbox reads "1 mailbox", and its name is escaped in the HTML part', () => {
    const { run, outcomes } = runWith(1, 0);
    const departed = outcome('<b>x</b>@contoso.example', 1, true);
    const withOne = addOutcome({ ...run, departed: emptyDeparted(1) }, departed);
    const report = buildReport(policy, withOne, [...outcomes, departed]);
    assert.match(
      report.text,
      /^Departed mailboxes: 1 mailbox left the policy's targets: 1 emptied \(1 contact removed\): <b>x<\/b>@contoso\.example$/m,
    );
    assert.doesNotMatch(report.html, /<b>x<\/b>/);
    assert.match(report.html, /&lt;b&gt;x&lt;\/b&gt;@contoso\.example/);
  });

  it('held-back lines read "1 mailbox", never "1 mailboxes"', () => {
    const line = heldBackLine({ mailboxes: 1, deletions: 1, departedMailboxes: 1, noTarget: false });
    assert.match(
      line,
      /^1 deletion in 1 mailbox was held back by the deletion threshold; 1 mailbox that left the policy's targets was not cleaned/,
    );
    assert.doesNotMatch(line, /\b1 (mailboxes|deletions)\b/);
  });
});

// Issue 19 item 1: a run's totals hold the Graph requests and 429s of its mailbox passes (and of its
// start), summed from the outcomes as they are recorded.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { addOutcome, addRunStartTraffic, emptySummary, type MailboxOutcome } from '../../../src/sync/runs';

function outcome(mailboxId: string, graph?: { requests: number; throttled: number }): MailboxOutcome {
  return {
    mailboxId,
    userPrincipalName: `${mailboxId}@contoso.example`,
    status: 'succeeded',
    result: null,
    lastError: null,
    attempts: 1,
    ...(graph ? { graph } : {}),
  };
}

describe('Graph traffic in a run summary', () => {
  const start = emptySummary(
    'r1',
    'gal',
    'http',
    { dryRun: false, fullResync: false, mailboxes: [] },
    new Date(0),
  );

  it('sums each outcome’s requests and 429s into the run totals', () => {
    let run = addOutcome(start, outcome('a', { requests: 12, throttled: 2 }));
    run = addOutcome(run, outcome('b', { requests: 5, throttled: 0 }));
    assert.deepEqual(run.graph, { requests: 17, throttled: 2 });
  });

  it('adds the run start’s traffic (source read, fan-out) to the same totals', () => {
    let run = addRunStartTraffic(start, { requests: 40, throttled: 1 });
    run = addOutcome(run, outcome('a', { requests: 3, throttled: 1 }));
    assert.deepEqual(run.graph, { requests: 43, throttled: 2 });
  });

  it('counts an outcome written without traffic (an older release, a poison message) as none', () => {
    const run = addOutcome(addOutcome(start, outcome('a')), outcome('b', { requests: 4, throttled: 0 }));
    assert.deepEqual(run.graph, { requests: 4, throttled: 0 });
  });

  it('leaves the run totals unknown while nothing counted has arrived (a run from before counting)', () => {
    assert.equal(addOutcome(start, outcome('a')).graph, undefined);
  });
});

// Issue 15 remainder, item 1: a run's drift pre-read ($batch, at the fan-out) reads the first page of
// each mailbox's delta round; a round longer than that page is never read again from its start: the
// mailbox's pass goes on from the page's nextLink.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { folderContacts } from '../../support/engine';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';
import { runThroughQueues } from '../../model/pipeline';

describe('pre-read delta rounds longer than a page (issue 15)', () => {
  let f: FunctionsFixture;
  let target: SimUser;
  before(async () => {
    f = await functionsFixture({
      sim: {
        seed: { generate: { users: 1_120, mailboxes: 1_120, awkward: false } },
        latency: { meanMs: 0, jitterMs: 0 },
      },
      policies: (sim) => {
        target = [...sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
        return [
          {
            id: 'long-rounds',
            name: 'Long rounds',
            connection: 'contoso',
            source: { type: 'directory' },
            targets: { type: 'users', users: [target.userPrincipalName] },
            folder: { name: 'Directory' },
          },
        ];
      },
    });
  });
  after(() => f.close());

  it('a round of 1,050 changes is read once: the pre-read page, then the rest from its nextLink', async () => {
    const first = await runThroughQueues(f, 'long-rounds');
    assert.equal(first.mailboxes.failed, 0, JSON.stringify(first));
    const contacts = folderContacts(f.sim, target.userPrincipalName, 'Directory');
    assert.ok(contacts.length > 1_050, `${contacts.length} contacts ${JSON.stringify(first)}`);
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    // A user's phone touches 1,050 contacts (a new changeKey each) and edits the first and the last:
    // one lands in the pre-read's page, the other past it.
    const touched = contacts.slice(0, 1_050);
    const [firstEdited, lastEdited] = [touched[0]!, touched[touched.length - 1]!];
    const titles = [firstEdited.data.jobTitle ?? null, lastEdited.data.jobTitle ?? null];
    for (const c of touched)
      mailbox.updateContact(
        c,
        c === firstEdited || c === lastEdited ? { jobTitle: 'Typed on a phone' } : {},
        [],
        new Date(),
      );
    const since = f.sim.log.lastSeq;
    const second = await runThroughQueues(f, 'long-rounds');
    assert.equal(second.mailboxes.failed, 0);
    const traffic = f.sim.log.since(since);
    const firstWrite = traffic.find((e) => /^contacts\.(create|update|delete)$/.test(e.operation));
    const reads = traffic.filter(
      (e) => e.operation === 'contacts.delta' && (firstWrite === undefined || e.seq < firstWrite.seq),
    );
    assert.ok(reads[0]?.inBatch, 'the round starts in the run-start $batch');
    // Pages of 1,000 at most: read once, 200 + 850 is 2 requests; page 1 read again, 1 + 2.
    assert.equal(reads.length, 2, `delta requests before the first write: ${reads.length}`);
    assert.equal(second.contacts.restored, 2, 'both edits seen: in the first page and past it');
    assert.equal(mailbox.contact(firstEdited.id)!.data.jobTitle ?? null, titles[0]);
    assert.equal(mailbox.contact(lastEdited.id)!.data.jobTitle ?? null, titles[1]);
  });
});

// Issue 15, defect 1: a mailbox source never takes managed contacts (ours or another policy's) as
// source objects, so a source mailbox that is also a target does not multiply itself.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { policySchema, type PolicyInput } from '../../../src/sync/config/schema';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';
import {
  invariantViolations,
  snapshotUntagged,
  assertInvariant,
  tagOfContact,
} from '../../support/invariant';
import { runThroughQueues } from '../../model/pipeline';

const boss = 'boss@contoso.example';
const ann = 'ann@contoso.example';

const sharedBook: PolicyInput = {
  id: 'shared-book',
  name: 'Shared book',
  connection: 'contoso',
  // The source folder is the default Contacts folder of a mailbox that is itself a target, written
  // into the same folder: the case that multiplied itself.
  source: { type: 'mailbox', mailbox: boss, folder: null },
  targets: { type: 'users', users: [boss, ann] },
  folder: { name: null },
};
const directory: PolicyInput = {
  id: 'gal',
  name: 'GAL',
  connection: 'contoso',
  source: { type: 'directory' },
  targets: { type: 'users', users: [boss] },
  folder: { name: null },
};

describe('a mailbox source that is also a target (issue 15, defect 1)', () => {
  let f: FunctionsFixture;
  before(async () => {
    f = await functionsFixture({
      sim: {
        seed: {
          users: [
            { userPrincipalName: boss, displayName: 'Boss', mail: boss },
            { userPrincipalName: ann, displayName: 'Ann', mail: ann },
          ],
        },
      },
      policies: () => [sharedBook, directory],
    });
    const mailbox = f.sim.tenant.mailbox(boss)!;
    for (const [name, address] of [
      ['Plumber', 'plumber@example.net'],
      ['Caterer', 'food@example.net'],
    ])
      mailbox.createContact(
        mailbox.contactsFolderId,
        { displayName: name, emailAddresses: [{ address, name }] },
        [],
        new Date(),
      );
  });
  after(() => f.close());

  it('copies only the source folder own contacts, run after run, beside another policy writing there', async () => {
    const policy = policySchema.parse(sharedBook);
    for (let run = 1; run <= 3; run++) {
      const before = snapshotUntagged(f.sim);
      assert.equal((await runThroughQueues(f, 'gal')).status, 'completed');
      const record = await runThroughQueues(f, 'shared-book');
      assert.equal(record.status, 'completed', JSON.stringify(record));
      assert.deepEqual(invariantViolations(f.sim, policy, before), [], `run ${run}`);
    }
    const ours = [...f.sim.tenant.mailbox(ann)!.contacts.values()].filter((c) =>
      tagOfContact(c)?.startsWith('shared-book|'),
    );
    assert.deepEqual(ours.map((c) => c.data.displayName).sort(), ['Caterer', 'Plumber']);
    await assertInvariant(f.sim, policy, snapshotUntagged(f.sim), async () => {
      await runThroughQueues(f, 'shared-book');
    });
  });
});

// Issue 15, defect 3 (the source half): a full resync re-reads the directory from scratch, so what a
// delta round never reported (a change or a removal missed, a snapshot gone stale) is put right.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { policySchema, type PolicyInput } from '../../../src/sync/config/schema';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';
import { invariantViolations, snapshotUntagged } from '../../support/invariant';
import { runThroughQueues } from '../../model/pipeline';

const policyInput: PolicyInput = {
  id: 'gal',
  name: 'GAL',
  connection: 'contoso',
  source: { type: 'directory' },
  targets: { type: 'allMailboxes' },
  folder: { name: 'GAL' },
};
const policy = policySchema.parse(policyInput);

describe('a full resync re-reads the directory from scratch (issue 15, defect 3)', () => {
  let f: FunctionsFixture;
  before(async () => {
    f = await functionsFixture({
      sim: { seed: { generate: { users: 12, mailboxes: 4, groups: 0, orgContacts: 0, awkward: false } } },
      policies: () => [policyInput],
    });
  });
  after(() => f.close());

  it('puts right what no delta round reported, which a normal run cannot', async () => {
    assert.equal((await runThroughQueues(f, 'gal')).status, 'completed');
    // Changes the directory's change log never shows (as a lost or skipped delta page would).
    const [changed, gone] = [...f.sim.tenant.users.values()].filter((u) => u.mail).slice(-2);
    changed!.jobTitle = 'Chief Silence Officer';
    f.sim.tenant.users.delete(gone!.id);
    const before = snapshotUntagged(f.sim);
    await runThroughQueues(f, 'gal');
    const stale = invariantViolations(f.sim, policy, before);
    assert.ok(
      stale.some((p) => p.includes('jobTitle')) && stale.some((p) => p.includes(gone!.id)),
      'a normal run trusts the delta (the reason a full resync exists)',
    );
    const logged = f.logs.length;
    const run = await runThroughQueues(f, 'gal', { fullResync: true });
    assert.equal(run.status, 'completed');
    assert.ok(
      f.logs.slice(logged).some((l) => l.includes('(full directory read)')),
      'the directory is read from the start',
    );
    assert.deepEqual(invariantViolations(f.sim, policy, before), []);
  });
});

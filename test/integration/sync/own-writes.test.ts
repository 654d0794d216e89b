// Defects 5 and 8 of issue 15: our own writes are never taken for a user's.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';

describe('our own writes are never taken for a user edit (issue 15, defects 5 and 8)', () => {
  let f: EngineFixture;
  let target: SimUser;
  let source: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 6, mailboxes: 6, awkward: false } } });
    const users = [...f.sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
    [target, source] = users as [SimUser, SimUser];
  });
  after(() => f.close());

  const only = (): { mailboxes: string[] } => ({ mailboxes: [target.userPrincipalName] });
  const contactOf = (folder: string) =>
    folderContacts(f.sim, target.userPrincipalName, folder).find((c) => tagOf(c)?.endsWith(source.id))!;

  it('a PATCH whose reply was lost is recognised as ours under onUserEdit: keep (the field is not frozen)', async () => {
    const policy = f.policy({
      id: 'lost-patch',
      folder: { name: 'Lost Patch' },
      options: { onUserEdit: 'keep' },
    } as never);
    await f.run(policy, only());
    f.sim.tenant.updateUser(source.id, { jobTitle: 'First change' });
    f.sim.faults.add({ kind: 'lostReply', times: 3, match: { operation: 'contacts.update', inBatch: true } });
    await f.run(policy, only());
    // Sent again after a lost reply, the PATCH meets its own changeKey: 412, re-checked next pass.
    assert.ok(f.sim.faults.hits()[0]! >= 1, 'the PATCH ran, and no reply came back');
    f.sim.faults.clear();
    assert.equal(contactOf('Lost Patch').data.jobTitle, 'First change');
    f.sim.tenant.updateUser(source.id, { jobTitle: 'Second change' });
    await f.run(policy, only());
    assert.equal(contactOf('Lost Patch').data.jobTitle, 'Second change', 'our own write is not the user’s');
  });

  it('a user edit made after the pass read its drift is not overwritten: If-Match, 412, re-planned (defect 10)', async () => {
    const policy = f.policy({
      id: 'if-match',
      folder: { name: 'If Match' },
      options: { onUserEdit: 'keep' },
    } as never);
    await f.run(policy, only());
    f.sim.tenant.updateUser(source.id, { jobTitle: 'From the directory' });
    // The user types on a phone right after the pass read what changed, before our PATCH arrives.
    const since = f.sim.log.lastSeq;
    let typed = false;
    f.sim.graph.observer = (operation) => {
      if (typed || operation !== 'contacts.delta') return;
      typed = true;
      const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
      mailbox.updateContact(contactOf('If Match'), { jobTitle: 'Typed on a phone' }, [], new Date());
    };
    try {
      await f.run(policy, only());
    } finally {
      f.sim.graph.observer = undefined;
    }
    assert.ok(typed);
    assert.equal(
      f.sim.log.since(since).filter((e) => e.operation === 'contacts.update' && e.status === 412).length,
      1,
      'the PATCH planned against the old changeKey was refused',
    );
    assert.equal(contactOf('If Match').data.jobTitle, 'Typed on a phone', "the user's edit is kept");
    f.sim.tenant.updateUser(source.id, { department: 'Later' });
    await f.run(policy, only());
    assert.equal(contactOf('If Match').data.jobTitle, 'Typed on a phone', 'and stays kept');
    assert.equal(contactOf('If Match').data.department, 'Later', 'other fields still follow the source');
  });
});

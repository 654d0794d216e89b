// A contact look-up Graph refuses (400, 403) is not an answer about the contact: a 403 comes in bursts
// on items that exist. The refused id stays unsettled (asked again by the next pass) and is reported in
// the mailbox's errors with Graph's request id; the contact is never recreated on a refusal, so a
// contact that still exists (moved to a user's folder, or still in ours) gets no twin, and once the
// look-up is answered the moved copy is released (review 15a, finding 2: repros R2, R5).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SimContact, SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';

describe('contact look-ups Graph refuses (issue 15, review 15a finding 2)', () => {
  let f: EngineFixture;
  let target: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 20, mailboxes: 20, awkward: false } } });
    target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
  });
  after(() => f.close());

  const only = (): { mailboxes: string[] } => ({ mailboxes: [target.userPrincipalName] });
  const keyOf = (tag: string | undefined): string | undefined => tag?.split('|').slice(1).join('|');
  const idPattern = (c: SimContact): RegExp => new RegExp(c.immutableId.replace(/[^A-Za-z0-9]/g, '.'));

  it('R2: a contact the user moved to their own folder, its look-up refused 403 once: the moved copy released, one live copy', async () => {
    const policy = f.policy({ id: 'refused-move', folder: { name: 'Refused Move' } });
    await f.run(policy, only());
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const [moved] = folderContacts(f.sim, target.userPrincipalName, 'Refused Move');
    const liveTag = tagOf(moved!);
    const mine = mailbox.createFolder('My People', mailbox.rootFolderId);
    mailbox.moveContact(moved!, mine.id, new Date());
    f.sim.faults.add({
      kind: 'refuse',
      status: 403,
      times: 1,
      match: { operation: 'contacts.get', path: idPattern(moved!) },
    });
    try {
      const run = await f.run(policy, only());
      assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results));
    } finally {
      f.sim.faults.clear();
    }
    await f.run(policy, only());
    const copy = mailbox.contacts.get(moved!.id)!;
    assert.ok(!tagOf(copy)?.startsWith(`${policy.id}|`), `the moved copy keeps our live tag: ${tagOf(copy)}`);
    // Released, the moved copy is the user's; the one copy carrying our live tag is in our folder.
    const live = [...mailbox.contacts.values()].filter((c) => tagOf(c) === liveTag);
    assert.equal(live.length, 1, `contacts carrying our live tag for this person: ${live.length}`);
    assert.notEqual(live[0]!.id, moved!.id);
  });

  it('R5: a contact still in our folder whose re-check is refused 403 once: no twin', async () => {
    const policy = f.policy({ id: 'refused-dirty', folder: { name: 'Refused Dirty' } });
    await f.run(policy, only());
    const before = folderContacts(f.sim, target.userPrincipalName, 'Refused Dirty');
    const [still] = before;
    const store = f.deps.mailboxStore;
    let mbx = target.id;
    let row = await store.loadFolder(policy.id, mbx);
    if (!row) {
      mbx = target.userPrincipalName;
      row = await store.loadFolder(policy.id, mbx);
    }
    assert.ok(row, 'folder row');
    // As settleFolder leaves it when a catch-up read saw this contact changed by someone else.
    await store.saveFolder(policy.id, mbx, { ...row, dirtyContactIds: [still!.immutableId] });
    f.sim.faults.add({
      kind: 'refuse',
      status: 403,
      times: 1,
      match: { operation: 'contacts.get', path: idPattern(still!) },
    });
    try {
      const run = await f.run(policy, only());
      assert.equal(run.contacts.restored, 0, 'a refusal is no deletion: nothing recreated');
    } finally {
      f.sim.faults.clear();
    }
    await f.run(policy, only());
    const after = folderContacts(f.sim, target.userPrincipalName, 'Refused Dirty');
    const same = after.filter((c) => keyOf(tagOf(c)) === keyOf(tagOf(still!)));
    assert.equal(same.length, 1, `copies of one person in our folder: ${same.length}`);
    assert.equal(after.length, before.length);
  });

  for (const status of [400, 403] as const)
    it(`a removed contact whose look-up is always answered ${status}: reported once a pass with the request id, unsettled, the mailbox not failed`, async () => {
      const folder = `Refused Always ${status}`;
      const policy = f.policy({ id: `refused-always-${status}`, folder: { name: folder } });
      await f.run(policy, only());
      const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
      const [gone] = folderContacts(f.sim, target.userPrincipalName, folder);
      const count = folderContacts(f.sim, target.userPrincipalName, folder).length;
      mailbox.deleteContact(gone!);
      f.sim.faults.add({
        kind: 'refuse',
        status,
        ...(status === 400 ? { code: 'ErrorInvalidIdMalformed', message: 'Id is malformed.' } : {}),
        match: { operation: 'contacts.get', path: idPattern(gone!) },
      });
      try {
        for (let pass = 1; pass <= 2; pass++) {
          const since = f.sim.log.lastSeq;
          const run = await f.run(policy, only());
          const refused = f.sim.log
            .since(since)
            .filter((e) => e.operation === 'contacts.get' && e.status === status);
          assert.ok(
            refused.length >= 1 && refused.length <= 2,
            `looked up ${refused.length} times in pass ${pass}`,
          );
          assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results));
          assert.equal(run.contacts.restored, 0, 'not settled as gone on a refusal');
          const errors = run.results.flatMap((r) => r.errors);
          assert.equal(errors.length, 1, JSON.stringify(errors));
          assert.equal(errors[0]!.status, status);
          assert.match(errors[0]!.message, new RegExp(gone!.immutableId.replace(/[^A-Za-z0-9]/g, '.')));
          assert.ok(
            refused.some((e) => e.requestId === errors[0]!.requestId),
            'reported with the Graph request id',
          );
        }
        assert.equal(folderContacts(f.sim, target.userPrincipalName, folder).length, count - 1);
      } finally {
        f.sim.faults.clear();
      }
      // Once Graph answers (404), the deletion is settled: restored, and no longer reported.
      const run = await f.run(policy, only());
      assert.equal(run.contacts.restored, 1);
      assert.deepEqual(
        run.results.flatMap((r) => r.errors),
        [],
      );
      assert.equal(folderContacts(f.sim, target.userPrincipalName, folder).length, count);
    });
});

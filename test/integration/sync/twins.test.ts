// Defect 3 of issue 15: twins are never created, and any read that finds one heals it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { StoredContact } from '../../../src/sync/ports';
import { tagPropertyId, tagValue } from '../../../src/sync/tag';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagCounts, tagOf, type EngineFixture } from '../../support/engine';

describe('twins are never made, and healed wherever a read finds them (issue 15, defect 3)', () => {
  let f: EngineFixture;
  let target: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 30, mailboxes: 30, awkward: false } } });
    target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
  });
  after(() => f.close());

  const only = (): { mailboxes: string[] } => ({ mailboxes: [target.userPrincipalName] });
  const twinsIn = (folder: string): [string, number][] =>
    [...tagCounts(folderContacts(f.sim, target.userPrincipalName, folder))].filter(([, n]) => n > 1);

  it('a create answered 504 after it ran is looked up by its tag, never sent blind again', async () => {
    const policy = f.policy({ id: 'gateway', folder: { name: 'Gateway' } });
    f.sim.faults.add({
      kind: 'status',
      status: 504,
      executed: true,
      times: 3,
      match: { operation: 'contacts.create', inBatch: true },
    });
    const run = await f.run(policy, only());
    assert.deepEqual(f.sim.faults.hits(), [3], 'three creates ran and were answered 504');
    f.sim.faults.clear();
    assert.deepEqual(twinsIn('Gateway'), [], 'no contact made twice');
    assert.equal(run.mailboxes.failed, 0);
    assert.equal(folderContacts(f.sim, target.userPrincipalName, 'Gateway').length, 29);
  });

  it('state restored from an older backup does not skip the tag check for creates', async () => {
    const policy = f.policy({ id: 'backup', folder: { name: 'Backup' } });
    await f.run(policy, only());
    const backup = await f.deps.mailboxStore.load(policy.id, target.id);
    const newcomer = f.sim.tenant.addUser({
      userPrincipalName: 'newcomer@contoso.example',
      displayName: 'New Comer',
      mail: 'newcomer@contoso.example',
      mailbox: 'none',
    });
    await f.run(policy, only());
    // The state goes back to the backup, taken before the newcomer's contact was created.
    await f.deps.mailboxStore.clear(policy.id, target.id);
    await f.deps.mailboxStore.saveFolder(policy.id, target.id, backup.folder!);
    await f.deps.mailboxStore.apply(
      policy.id,
      target.id,
      [...backup.contacts] as [string, StoredContact][],
      [],
    );
    const since = f.sim.log.lastSeq;
    await f.run(policy, only());
    assert.deepEqual(twinsIn('Backup'), []);
    assert.equal(
      f.sim.log.since(since).filter((e) => e.operation === 'contacts.create').length,
      0,
      `the newcomer (${newcomer.id}) is found by its tag, not created again`,
    );
  });

  it('a twin seen in a delta read is removed, keeping the oldest', async () => {
    const policy = f.policy({ id: 'seen', folder: { name: 'Seen' } });
    await f.run(policy, only());
    const [original] = folderContacts(f.sim, target.userPrincipalName, 'Seen');
    const key = tagOf(original!)!.slice('seen|'.length);
    // Another writer made the same contact again (a create that ran twice).
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    await new Promise((r) => setTimeout(r, 1100)); // a later createdDateTime (whole seconds)
    const twin = mailbox.createContact(
      original!.folderId,
      { ...original!.data },
      [{ id: tagPropertyId, value: tagValue('seen', key) }],
      new Date(),
    );
    const run = await f.run(policy, only());
    assert.deepEqual(twinsIn('Seen'), []);
    assert.ok(mailbox.contact(original!.id), 'the oldest is kept');
    assert.equal(mailbox.contact(twin.id), undefined, 'the newer twin is removed');
    assert.equal(run.results[0]!.duplicatesRemoved, 1);
  });
});

describe('smaller defects of the pass (issue 15, defect 10)', () => {
  let f: EngineFixture;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 8, mailboxes: 8, awkward: false } } });
  });
  after(() => f.close());

  it('adopts a folder whose name differs only in case, instead of failing every run', async () => {
    const target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const own = mailbox.createFolder('company directory', mailbox.contactsFolderId);
    const run = await f.run(f.policy(), { mailboxes: [target.userPrincipalName] });
    assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results[0]?.errors));
    assert.equal(mailbox.contactsIn(own.id).length, 7, 'the contacts went into the existing folder');
    assert.equal(
      [...mailbox.folders.values()].filter((x) => x.displayName.toLowerCase() === 'company directory').length,
      1,
    );
  });
});

describe('reads of the pass that cost nothing twice (issue 15, defect 10)', () => {
  let f: EngineFixture;
  let target: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 12, mailboxes: 12, awkward: false } } });
    target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
  });
  after(() => f.close());

  const only = (): { mailboxes: string[] } => ({ mailboxes: [target.userPrincipalName] });

  it('an expired contacts-delta token reads the folder once, and still restores a deleted contact', async () => {
    const policy = f.policy({ id: 'expired', folder: { name: 'Expired' } });
    await f.run(policy, only());
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const [victim] = folderContacts(f.sim, target.userPrincipalName, 'Expired');
    const tag = tagOf(victim!);
    mailbox.deleteContact(victim!);
    f.sim.expireDeltaTokens();
    await new Promise((r) => setTimeout(r, 5));
    const since = f.sim.log.lastSeq;
    const run = await f.run(policy, only());
    assert.equal(run.contacts.restored, 1);
    assert.equal(tagCounts(folderContacts(f.sim, target.userPrincipalName, 'Expired')).get(tag!), 1);
    const reads = f.sim.log
      .since(since)
      .filter(
        (e) =>
          e.mailbox !== null && ['contacts.list', 'contacts.delta'].includes(e.operation) && e.status === 200,
      );
    assert.equal(
      reads.filter((e) => e.operation === 'contacts.list').length,
      0,
      'the folder is not listed besides',
    );
  });

  it('a default-folder policy that manages nothing in a mailbox does not list the folder every run', async () => {
    const policy = f.policy({
      id: 'nothing',
      folder: { name: null },
      source: {
        type: 'directory',
        filters: [{ attribute: 'department', op: 'equals', value: 'No Such Department' }],
      },
    } as never);
    await f.run(policy, only());
    const since = f.sim.log.lastSeq;
    await f.run(policy, only());
    const listed = f.sim.log.since(since).filter((e) => e.operation === 'contacts.list');
    assert.equal(listed.length, 0);
  });
});

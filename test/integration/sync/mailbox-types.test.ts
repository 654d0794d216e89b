import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicyInput } from '../../../src/sync/config/schema';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';
import { productPermissions } from '../../doubles/graph-tenant-simulator/simulator';

const folder = 'Company Directory';

describe('shared and room mailboxes in or out by option', () => {
  let f: EngineFixture;
  let target: string;
  before(async () => {
    // The awkward tenant holds reception@ (shared, sign-in disabled), boardroom@ (room, disabled)
    // and former.employee@ (a user mailbox, disabled).
    f = await engineFixture({
      seed: { generate: { users: 10, mailboxes: 10, awkward: true } },
      // The optional permission these options need.
      permissions: [...productPermissions, 'MailboxSettings.Read'],
    });
    target = [...f.sim.tenant.users.values()].find(
      (u) => u.mailbox === 'user' && u.accountEnabled,
    )!.userPrincipalName;
  });
  after(() => f.close());

  const upnOf = (id: string): string => f.sim.tenant.users.get(id)!.userPrincipalName;
  /** Mail nicknames of the users a policy put in the target's folder. */
  const inFolder = (policyId: string): Set<string> =>
    new Set(
      folderContacts(f.sim, target, folder)
        .filter((c) => tagOf(c)?.startsWith(`${policyId}|`))
        .map((c) => tagOf(c)?.split('|user:')[1])
        .filter((id): id is string => id !== undefined)
        .map(upnOf)
        .map((u) => u.split('@')[0]!),
    );
  const policy = (id: string, source: Partial<Extract<PolicyInput['source'], { type: 'directory' }>>) =>
    f.policy({
      id,
      source: { type: 'directory', ...source },
      targets: { type: 'users', users: [target] },
    });

  it('unset: shared and room mailboxes count as the disabled accounts they are', async () => {
    const since = f.sim.log.lastSeq;
    const record = await f.run(policy('plain', {}));
    assert.equal(record.mailboxes.failed, 0);
    const names = inFolder('plain');
    assert.ok(!names.has('reception') && !names.has('boardroom') && !names.has('former.employee'));
    assert.equal(
      f.sim.log.since(since).filter((e) => e.operation === 'users.mailboxSettings').length,
      0,
      'no look-up (and no MailboxSettings.Read) unless the policy asks',
    );
    assert.equal(record.source.mailboxTypes, undefined);
  });

  it('shared in, rooms out: by mailbox type, while a disabled user mailbox stays out', async () => {
    const p = policy('typed', { sharedMailboxes: true, roomMailboxes: false });
    const since = f.sim.log.lastSeq;
    const record = await f.run(p);
    assert.equal(record.mailboxes.failed, 0, JSON.stringify(record.results.map((r) => r.errors)));
    const names = inFolder('typed');
    assert.ok(names.has('reception'), 'the shared mailbox is in although its sign-in is disabled');
    assert.ok(!names.has('boardroom'), 'the room mailbox is out');
    assert.ok(!names.has('former.employee'), 'a disabled user mailbox is still out');
    assert.equal(record.source.excluded.roomMailbox, 1);
    const lookups = f.sim.log.since(since).filter((e) => e.operation === 'users.mailboxSettings').length;
    assert.equal(lookups, record.source.mailboxTypes?.checked);
    assert.ok(lookups > 0);

    const again = f.sim.log.lastSeq;
    await f.run(p);
    assert.equal(
      f.sim.log.since(again).filter((e) => e.operation === 'users.mailboxSettings').length,
      0,
      'a mailbox type is looked up once, not every run',
    );
  });

  it("a leaver's mailbox converted to shared leaves the address book when shared mailboxes are out", async () => {
    const p = policy('no-shared', { sharedMailboxes: false });
    await f.run(p);
    const leaver = [...f.sim.tenant.users.values()].find(
      (u) => u.mailbox === 'user' && u.accountEnabled && u.userPrincipalName !== target,
    )!;
    assert.ok(inFolder('no-shared').has(leaver.userPrincipalName.split('@')[0]!));
    f.sim.tenant.updateUser(leaver.id, { mailbox: 'shared', accountEnabled: true });
    const since = f.sim.log.lastSeq;
    const record = await f.run(p);
    assert.equal(
      f.sim.log.since(since).filter((e) => e.operation === 'users.mailboxSettings').length,
      1,
      'only the changed user is looked up again',
    );
    assert.ok(
      !inFolder('no-shared').has(leaver.userPrincipalName.split('@')[0]!),
      'out by type, even with sign-in enabled',
    );
    assert.equal(record.contacts.deleted, 1);
  });
});

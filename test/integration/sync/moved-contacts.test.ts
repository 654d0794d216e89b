// Contacts a user moves out of the policy's folder are the user's: each is looked up by id and released
// (our tag overwritten), however the pass that should look it up ends: look-ups cut short by more than
// maxDirtyIds moves (the folder row then lists the folder instead of ids), or the folder deleted
// before the next run (issue 15 review findings 1 and 2).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runPolicy } from '../../../src/sync/run-policy';
import type { MailboxGraph } from '../../../src/sync/ports';
import type { Policy } from '../../../src/sync/config/schema';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';

describe('contacts moved out of the policy folder (issue 15 review)', () => {
  let f: EngineFixture;
  let target: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 160, mailboxes: 160, awkward: false } } });
    target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
  });
  after(() => f.close());

  const only = (): { mailboxes: string[] } => ({ mailboxes: [target.userPrincipalName] });

  /** Contacts carrying the policy's tag outside its folder (none once each move is released). */
  function taggedOutside(policy: Policy, folderName: string): number {
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const inFolder = new Set(folderContacts(f.sim, target.userPrincipalName, folderName).map((c) => c.id));
    return [...mailbox.contacts.values()].filter(
      (c) => !inFolder.has(c.id) && tagOf(c)?.startsWith(`${policy.id}|`),
    ).length;
  }

  /** The mailbox port whose first contact look-ups are throttled (none read). */
  function throttledLookUps(times: number): MailboxGraph {
    let calls = 0;
    return new Proxy(f.mailboxes, {
      get(t, p) {
        const v = Reflect.get(t, p) as unknown;
        if (typeof v !== 'function') return v;
        if (p !== 'getContacts') return (v as (...a: unknown[]) => unknown).bind(t);
        return async (...args: unknown[]) =>
          ++calls <= times ? new Map() : (v as (...a: unknown[]) => Promise<unknown>).apply(t, args);
      },
    });
  }

  it('150 moves whose look-ups are cut (more than maxDirtyIds) are still looked up and released', async () => {
    const policy = f.policy({ id: 'many-moves', folder: { name: 'Many Moves' } });
    await f.run(policy, only());
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const mine = mailbox.createFolder('Mine', mailbox.contactsFolderId);
    const moved = folderContacts(f.sim, target.userPrincipalName, 'Many Moves').slice(0, 150);
    assert.equal(moved.length, 150);
    for (const c of moved) mailbox.moveContact(c, mine.id, new Date());
    // The pass that reads the removals cannot look them up (throttled): 150 to re-check > 100.
    const first = await runPolicy(
      policy,
      { ...f.deps, mailboxes: throttledLookUps(1) },
      { ...only(), maxPasses: 1 },
    );
    assert.equal(first.mailboxes.succeeded, 0, 'the pass is partial while the moves are not settled');
    const row = await f.deps.mailboxStore.loadFolder(policy.id, target.id);
    assert.equal(row?.recheckAll, true, 'more than 100 to re-check: the folder is listed next pass');
    const second = await f.run(policy, { ...only(), maxPasses: 5 });
    assert.equal(second.mailboxes.failed, 0, JSON.stringify(second.results));
    assert.equal(taggedOutside(policy, 'Many Moves'), 0, 'every moved contact released');
    assert.equal(folderContacts(f.sim, target.userPrincipalName, 'Mine').length, 150, 'the user keeps them');
    const again = await f.run(policy, only());
    assert.equal(again.contacts.created + again.contacts.updated + again.contacts.deleted, 0);
    assert.equal(taggedOutside(policy, 'Many Moves'), 0);
  });

  it('159 contacts the user deleted in Outlook (to Deleted Items) are restored, not taken for moves', async () => {
    const policy = f.policy({ id: 'deleted-items', folder: { name: 'Deleted In Outlook' } });
    await f.run(policy, only());
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const deleted = folderContacts(f.sim, target.userPrincipalName, 'Deleted In Outlook').slice(0, 159);
    assert.equal(deleted.length, 159);
    for (const c of deleted) mailbox.deleteContactToDeletedItems(c, new Date());
    const since = f.sim.log.lastSeq;
    const run = await f.run(policy, only());
    assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results));
    const log = f.sim.log.since(since);
    const count = (operation: string): number => log.filter((e) => e.operation === operation).length;
    assert.equal(count('contacts.get'), 159, 'each removed contact looked up once');
    const binId = mailbox.deletedItems.immutableId;
    assert.equal(
      log.filter((e) => e.operation === 'contactFolders.get' && decodeURIComponent(e.path).includes(binId))
        .length,
      1,
      'Deleted Items checked once, for all of them',
    );
    assert.equal(count('contacts.update'), 0, 'nothing written to the copies in Deleted Items');
    assert.equal(run.contacts.restored, 159, 'onUserDelete: restore recreates every one');
    assert.equal(count('contacts.create'), 159);
    const bin = [...mailbox.contacts.values()].filter((c) => c.folderId === mailbox.deletedItems.id);
    assert.equal(bin.length, 159, 'the copies stay in Deleted Items');
    assert.ok(
      bin.every((c) => tagOf(c)?.startsWith(`${policy.id}|`)),
      'untouched: still carrying the tag',
    );
    const again = await f.run(policy, only());
    assert.equal(again.contacts.created + again.contacts.updated + again.contacts.deleted, 0);
  });

  for (const status of [400, 403] as const)
    it(`a removed contact whose look-up is answered ${status} is settled as gone (restored) and reported`, async () => {
      const policy = f.policy({ id: `refused-${status}`, folder: { name: `Refused ${status}` } });
      await f.run(policy, only());
      const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
      const [gone] = folderContacts(f.sim, target.userPrincipalName, `Refused ${status}`);
      const count = folderContacts(f.sim, target.userPrincipalName, `Refused ${status}`).length;
      mailbox.deleteContact(gone!);
      const path = new RegExp(gone!.immutableId.replace(/[^A-Za-z0-9]/g, '.'));
      f.sim.faults.add({ kind: 'refused', status, match: { operation: 'contacts.get', path } });
      try {
        const since = f.sim.log.lastSeq;
        const run = await f.run(policy, only());
        const refused = f.sim.log
          .since(since)
          .filter((e) => e.operation === 'contacts.get' && e.status === status);
        assert.equal(refused.length, 1, 'looked up once');
        assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results));
        assert.equal(run.contacts.restored, 1, 'gone: onUserDelete restore recreates it');
        const errors = run.results.flatMap((r) => r.errors);
        assert.equal(errors.length, 1, JSON.stringify(errors));
        assert.equal(errors[0]!.status, status);
        assert.equal(errors[0]!.requestId, refused[0]!.requestId, 'reported with the Graph request id');
        assert.equal(folderContacts(f.sim, target.userPrincipalName, `Refused ${status}`).length, count);
        const again = await f.run(policy, only());
        assert.equal(again.contacts.created + again.contacts.updated + again.contacts.deleted, 0);
        assert.equal(
          f.sim.log.since(since).filter((e) => e.operation === 'contacts.get' && e.status === status).length,
          1,
          'settled: never looked up again',
        );
      } finally {
        f.sim.faults.clear();
      }
    });

  it('a contact moved, then the policy folder deleted before the next run: the moved one is released', async () => {
    const policy = f.policy({ id: 'moved-then-gone', folder: { name: 'Moved Then Gone' } });
    await f.run(policy, only());
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const mine = mailbox.createFolder('Kept Aside', mailbox.contactsFolderId);
    const [movedOne] = folderContacts(f.sim, target.userPrincipalName, 'Moved Then Gone');
    mailbox.moveContact(movedOne!, mine.id, new Date());
    const folder = mailbox.folderByName('Moved Then Gone')!;
    mailbox.deleteFolder(folder.id);
    const run = await f.run(policy, only());
    assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results));
    assert.equal(taggedOutside(policy, 'Moved Then Gone'), 0, 'the moved contact is released');
    assert.equal(folderContacts(f.sim, target.userPrincipalName, 'Kept Aside').length, 1);
  });
});

describe('look-ups of removed contacts under a time budget (issue 15 review, blockers 0 and 1)', () => {
  let f: EngineFixture;
  let targets: SimUser[];
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 160, mailboxes: 160, awkward: false } } });
    targets = [...f.sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
  });
  after(() => f.close());

  const latency = (meanMs: number): void => {
    (f.sim.graph.options as { latency: { meanMs: number; jitterMs: number } }).latency = {
      meanMs,
      jitterMs: 0,
    };
  };

  it('a user deletes every contact; look-ups longer than the budget still let each run restore some', async () => {
    const t = targets[0]!;
    const policy = f.policy({ id: 'del-all', folder: { name: 'Del All' } });
    await f.run(policy, { mailboxes: [t.userPrincipalName] });
    const mailbox = f.sim.tenant.mailbox(t.userPrincipalName)!;
    const all = folderContacts(f.sim, t.userPrincipalName, 'Del All');
    for (const c of all) mailbox.deleteContact(c);
    latency(30);
    try {
      let restored = 0;
      for (let i = 0; i < 8 && restored < all.length; i++) {
        await runPolicy(policy, f.deps, { mailboxes: [t.userPrincipalName], maxPasses: 3, budgetMs: 1500 });
        const now = folderContacts(f.sim, t.userPrincipalName, 'Del All').length;
        assert.ok(now > restored, `run ${i + 1} restored more (${now} of ${all.length})`);
        restored = now;
      }
      assert.equal(restored, all.length);
    } finally {
      latency(0);
    }
  });

  it('the policy folder deleted; look-ups longer than the budget: the folder and its contacts come back', async () => {
    const t = targets[1]!;
    const policy = f.policy({ id: 'gone-slow', folder: { name: 'Gone Slow' } });
    await f.run(policy, { mailboxes: [t.userPrincipalName] });
    const mailbox = f.sim.tenant.mailbox(t.userPrincipalName)!;
    const count = folderContacts(f.sim, t.userPrincipalName, 'Gone Slow').length;
    mailbox.deleteFolder(mailbox.folderByName('Gone Slow')!.id);
    latency(30);
    try {
      for (let i = 0; i < 8 && folderContacts(f.sim, t.userPrincipalName, 'Gone Slow').length < count; i++)
        await runPolicy(policy, f.deps, { mailboxes: [t.userPrincipalName], maxPasses: 3, budgetMs: 1500 });
    } finally {
      latency(0);
    }
    assert.ok(mailbox.folderByName('Gone Slow'), 'the folder is back');
    assert.equal(folderContacts(f.sim, t.userPrincipalName, 'Gone Slow').length, count);
  });
});

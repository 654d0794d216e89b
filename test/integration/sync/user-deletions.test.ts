// Defect 2 of issue 15: a user's deletion of a managed contact must never be lost, whenever it
// happens relative to our own writes and delta reads. The simulator reports @removed only for
// contacts the delta token had handed out, as Exchange does.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { MailboxGraph } from '../../../src/sync/ports';
import { runPolicy } from '../../../src/sync/run-policy';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';

/** The adapter with a user action slipped in before some of its calls (the moment a user acts). */
function withUserAction(
  graph: MailboxGraph,
  before: (method: 'write' | 'readDrift', args: unknown[]) => void,
): MailboxGraph {
  return new Proxy(graph, {
    get(target, p, receiver) {
      const v = Reflect.get(target, p, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (p === 'write' || p === 'readDrift') before(p, args);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

describe('user deletions of managed contacts are never lost (issue 15, defect 2)', () => {
  let f: EngineFixture;
  let target: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 30, mailboxes: 30, awkward: false } } });
    target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
  });
  after(() => f.close());

  const only = (): { mailboxes: string[] } => ({ mailboxes: [target.userPrincipalName] });
  const contactsOf = (folder: string) => folderContacts(f.sim, target.userPrincipalName, folder);

  it('a contact deleted by its user right after a small fill is restored by the next run', async () => {
    const policy = f.policy({ id: 'small-fill', folder: { name: 'Small Fill' } });
    const fill = await f.run(policy, only());
    assert.ok(fill.contacts.created > 10 && fill.contacts.created < 500, String(fill.contacts.created));
    const victim = contactsOf('Small Fill')[3]!;
    const tag = tagOf(victim);
    f.sim.tenant.mailbox(target.userPrincipalName)!.deleteContact(victim);
    const next = await f.run(policy, only());
    assert.equal(next.contacts.restored, 1, 'onUserDelete: restore brings it back');
    assert.equal(contactsOf('Small Fill').filter((c) => tagOf(c) === tag).length, 1);
  });

  it('the token stored after a small fill is past our own writes: the next delta round is empty', async () => {
    const policy = f.policy({ id: 'token-after-fill', folder: { name: 'Token After Fill' } });
    await f.run(policy, only());
    const state = await f.deps.mailboxStore.loadFolder(policy.id, target.id);
    assert.ok(state?.folderId && state.deltaLink);
    const round = await f.mailboxes.readDrift(
      target.id,
      { kind: 'named', id: state.folderId },
      state.deltaLink,
    );
    assert.equal(round.items.length, 0, 'our own creates are not read back by the next run');
  });

  it('a contact deleted while the run that created it still runs is noticed and restored next run', async () => {
    const policy = f.policy({ id: 'mid-create', folder: { name: 'Mid Create' } });
    let wrote = false;
    let tag: string | undefined;
    const graph = withUserAction(f.mailboxes, (method, args) => {
      if (method === 'write') wrote = true;
      else if (wrote && tag === undefined && args[2] !== null) {
        // Our creates are done; the user deletes one before any further delta read.
        const victim = contactsOf('Mid Create')[0]!;
        tag = tagOf(victim);
        f.sim.tenant.mailbox(target.userPrincipalName)!.deleteContact(victim);
      }
    });
    await runPolicy(policy, { ...f.deps, mailboxes: graph }, only());
    if (tag === undefined) {
      // No delta read after the writes (the defect): the user deletes it before the next run.
      const victim = contactsOf('Mid Create')[0]!;
      tag = tagOf(victim);
      f.sim.tenant.mailbox(target.userPrincipalName)!.deleteContact(victim);
    }
    const next = await f.run(policy, only());
    assert.equal(next.contacts.restored, 1);
    assert.equal(contactsOf('Mid Create').filter((c) => tagOf(c) === tag).length, 1);
  });
});

describe('a deletion during a pass of 500+ writes survives the catch-up read (issue 15, defect 2)', () => {
  let f: EngineFixture;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 560, mailboxes: 560, awkward: false } } });
  });
  after(() => f.close());

  it('the catch-up read keeps @removed of a managed contact, and the next run restores it', async () => {
    const target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
    const only = { mailboxes: [target.userPrincipalName] };
    const policy = f.policy({ id: 'big', folder: { name: 'Big' } });
    await f.run(policy, only);
    const contacts = folderContacts(f.sim, target.userPrincipalName, 'Big');
    assert.ok(contacts.length > 520, String(contacts.length));
    const [victim, ...others] = contacts;
    const tag = tagOf(victim!);
    // 500+ updates in the next run; the user deletes a contact we do not touch while they are written.
    for (const c of others) f.sim.tenant.updateUser(tagOf(c)!.split('user:')[1]!, { jobTitle: 'Renamed' });
    let deleted = false;
    const graph = withUserAction(f.mailboxes, (method) => {
      if (method === 'write' && !deleted) {
        deleted = true;
        f.sim.tenant.mailbox(target.userPrincipalName)!.deleteContact(victim!);
      }
    });
    const busy = await runPolicy(policy, { ...f.deps, mailboxes: graph }, only);
    assert.ok(busy.contacts.updated >= 500, String(busy.contacts.updated));
    assert.ok(deleted);
    const next = await f.run(policy, only);
    assert.equal(next.contacts.restored, 1, 'onUserDelete: restore brings it back');
    assert.equal(
      folderContacts(f.sim, target.userPrincipalName, 'Big').filter((c) => tagOf(c) === tag).length,
      1,
    );
  });
});

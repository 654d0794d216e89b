// Defect 6 of issue 15: contacts to re-check are read 20 to a $batch, and their list never outgrows
// the folder row (a string property holds 32K characters).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runPolicy } from '../../../src/sync/run-policy';
import type { MailboxGraph } from '../../../src/sync/ports';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';

describe('re-checks of contacts (issue 15, defect 6)', () => {
  let f: EngineFixture;
  let target: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 40, mailboxes: 40, awkward: false } } });
    target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
  });
  after(() => f.close());

  const only = (): { mailboxes: string[] } => ({ mailboxes: [target.userPrincipalName] });

  /** Users act, then the stored token is moved past it: only the re-check list can find the change. */
  async function hideFromDelta(policyId: string, dirty: string[]): Promise<void> {
    const state = (await f.deps.mailboxStore.loadFolder(policyId, target.id))!;
    const round = await f.mailboxes.readDrift(
      target.id,
      { kind: 'named', id: state.folderId! },
      state.deltaLink,
    );
    await f.deps.mailboxStore.saveFolder(policyId, target.id, {
      ...state,
      deltaLink: round.deltaLink,
      dirtyContactIds: dirty,
    });
  }

  it('reads the contacts to re-check 20 to a $batch, and acts on what they show', async () => {
    const policy = f.policy({ id: 'batched', folder: { name: 'Batched' } });
    await f.run(policy, only());
    const contacts = folderContacts(f.sim, target.userPrincipalName, 'Batched');
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const [edited, deleted] = contacts;
    const title = edited!.data.jobTitle;
    const deletedTag = tagOf(deleted!);
    mailbox.updateContact(edited!, { jobTitle: 'Scribbled' }, [], new Date());
    mailbox.deleteContact(deleted!);
    await hideFromDelta(
      policy.id,
      contacts.map((c) => c.immutableId),
    );
    const since = f.sim.log.lastSeq;
    const run = await f.run(policy, only());
    assert.equal(run.contacts.restored, 2);
    assert.equal(mailbox.contact(edited!.id)!.data.jobTitle, title ?? null);
    assert.ok(
      folderContacts(f.sim, target.userPrincipalName, 'Batched').some((c) => tagOf(c) === deletedTag),
    );
    const gets = f.sim.log.since(since).filter((e) => e.operation === 'contacts.get');
    assert.equal(gets.length, contacts.length);
    assert.ok(
      gets.every((e) => e.inBatch),
      'every re-check inside a $batch, none one by one',
    );
  });

  it('re-checks are part of the time budget: none starts after the deadline, and the next pass reads each once', async () => {
    const policy = f.policy({ id: 'budgeted', folder: { name: 'Budgeted' } });
    await f.run(policy, only());
    const contacts = folderContacts(f.sim, target.userPrincipalName, 'Budgeted');
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const [edited, deleted] = contacts;
    const title = edited!.data.jobTitle;
    mailbox.updateContact(edited!, { jobTitle: 'Scribbled' }, [], new Date());
    mailbox.deleteContact(deleted!);
    await hideFromDelta(
      policy.id,
      contacts.map((c) => c.immutableId),
    );
    // The first pass's delta read outlasts the pass's whole budget (a slow Graph).
    const budgetMs = 2_000;
    const marks: number[] = [];
    let reads = 0;
    const slow = new Proxy(f.mailboxes, {
      get(t, p) {
        const v = Reflect.get(t, p) as unknown;
        if (typeof v !== 'function') return v;
        if (p !== 'readDrift') return (v as (...a: unknown[]) => unknown).bind(t);
        return async (...args: unknown[]) => {
          if (++reads === 2) marks.push(f.sim.log.lastSeq); // the next pass starts
          const round = await (v as (...a: unknown[]) => Promise<unknown>).apply(t, args);
          if (reads === 1) {
            await new Promise((r) => setTimeout(r, budgetMs + 100));
            marks.push(f.sim.log.lastSeq); // the first pass's deadline has passed
          }
          return round;
        };
      },
    }) as MailboxGraph;
    const since = f.sim.log.lastSeq;
    const run = await runPolicy(
      policy,
      { ...f.deps, mailboxes: slow },
      { ...only(), budgetMs, maxPasses: 5 },
    );
    assert.equal(marks.length, 2, 'the first pass ended partial and a second one ran');
    const late = f.sim.log
      .since(marks[0]!)
      .filter((e) => e.seq <= marks[1]! && e.operation === 'contacts.get');
    assert.equal(late.length, 0, 'no re-check sent after the deadline');
    const gets = f.sim.log.since(since).filter((e) => e.operation === 'contacts.get');
    assert.equal(gets.length, contacts.length, 'each contact re-checked once, by the pass within its budget');
    assert.equal(run.mailboxes.failed, 0);
    assert.equal(run.contacts.restored, 2);
    assert.equal(mailbox.contact(edited!.id)!.data.jobTitle, title ?? null);
  });

  it('3,000 contacts to re-check (10x what overflowed) are stored, and the next pass still finds each change', async () => {
    const policy = f.policy({ id: 'many-dirty', folder: { name: 'Many Dirty' } });
    await f.run(policy, only());
    const contacts = folderContacts(f.sim, target.userPrincipalName, 'Many Dirty');
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const [edited, deleted] = contacts;
    const title = edited!.data.jobTitle;
    mailbox.updateContact(edited!, { jobTitle: 'Scribbled' }, [], new Date());
    mailbox.deleteContact(deleted!);
    const longId = (i: number): string => `${edited!.immutableId}${String(i).padStart(6, '0')}`;
    await hideFromDelta(policy.id, [
      edited!.immutableId,
      deleted!.immutableId,
      ...Array.from({ length: 2998 }, (_, i) => longId(i)),
    ]);
    const run = await f.run(policy, only());
    assert.equal(run.mailboxes.failed, 0);
    assert.equal(run.contacts.restored, 2);
    assert.equal(mailbox.contact(edited!.id)!.data.jobTitle, title ?? null);
    const after = await f.deps.mailboxStore.loadFolder(policy.id, target.id);
    assert.ok(after!.dirtyContactIds.length <= 100, 'what is kept to re-check stays bounded');
  });
});

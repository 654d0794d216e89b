// Look-ups by tag (pending creates, heal.ts) and the category reads before a removal mark
// (marks.ts) are part of the pass's time budget: none starts after the deadline, and the next pass
// goes on with what is left, without twins (issue 15 review finding 4).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runPolicy } from '../../../src/sync/run-policy';
import type { MailboxGraph } from '../../../src/sync/ports';
import { engineFixture, folderContacts, tagCounts, tagOf, type EngineFixture } from '../../support/engine';

const ann = 'ann@contoso.example';
const others = ['bob', 'cid', 'dan', 'eve', 'fay'].map((n) => `${n}@contoso.example`);
const budgetMs = 2_000;

describe('look-ups within the time budget (issue 15 review)', () => {
  let f: EngineFixture;
  before(async () => {
    f = await engineFixture({
      seed: {
        users: [ann, ...others].map((upn) => ({
          userPrincipalName: upn,
          displayName: upn.split('@')[0]!,
          mail: upn,
        })),
      },
    });
  });
  after(() => f.close());

  /**
   * The port, with one method made slow on its first call (past the whole budget), and a record of
   * which pass (counted by delta reads) each call of `watched` that was sent fell in.
   */
  function slowed(
    slow: keyof MailboxGraph,
    watched: keyof MailboxGraph,
  ): { port: MailboxGraph; calls: number[] } {
    const calls: number[] = [];
    let passes = 0;
    let slowed = false;
    const port = new Proxy(f.mailboxes, {
      get(t, p) {
        const v = Reflect.get(t, p) as unknown;
        if (typeof v !== 'function') return v;
        const fn = v as (...a: unknown[]) => Promise<unknown>;
        return async (...args: unknown[]) => {
          if (p === 'readDrift' && args[2] !== undefined) passes++;
          const out = await fn.apply(t, args);
          // A read the budget stopped before it was sent answers nothing.
          if (p === watched && !(out instanceof Map && out.size === 0)) calls.push(passes);
          if (p === slow && !slowed) {
            slowed = true;
            await new Promise((r) => setTimeout(r, budgetMs + 100));
          }
          return out;
        };
      },
    }) as MailboxGraph;
    return { port, calls };
  }

  it('pending creates are looked up by tag only before the deadline; the rest in the next pass', async () => {
    const policy = f.policy({
      id: 'pending',
      folder: { name: 'Pending' },
      targets: { type: 'users', users: [ann] },
    });
    await f.run(policy);
    const annId = f.sim.tenant.user(ann)!.id;
    // Three creates whose replies were lost: their rows are pending, the contacts exist.
    const state = await f.deps.mailboxStore.load(policy.id, annId);
    const keys = [...state.contacts.keys()].slice(0, 3);
    await f.deps.mailboxStore.apply(
      policy.id,
      annId,
      keys.map((k) => [k, { pending: true, hash: '', fields: {} }]),
      [],
    );
    const { port, calls } = slowed('findByTag', 'findByTag');
    const run = await runPolicy(policy, { ...f.deps, mailboxes: port }, { budgetMs, maxPasses: 5 });
    assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results));
    assert.equal(calls.length, 3, 'each pending create looked up once');
    assert.equal(calls.filter((n) => n === calls[0]).length, 1, 'none after the first pass deadline');
    const counts = tagCounts(folderContacts(f.sim, ann, 'Pending'));
    assert.equal(counts.size, 5);
    assert.ok(
      [...counts.values()].every((n) => n === 1),
      'no twin',
    );
  });

  it('the categories of contacts to mark are read only before the deadline; marked in the next pass', async () => {
    const mark = 'Left the company';
    const policy = f.policy({
      id: 'marks-late',
      folder: { name: 'Marks Late' },
      targets: { type: 'users', users: [ann] },
      mapping: { exclude: ['categories'] } as never,
      options: { onSourceRemoval: 'keepAndMark', removalCategory: mark } as never,
    });
    await f.run(policy);
    f.sim.tenant.updateUser(others[0]!, { accountEnabled: false });
    // The delta read outlasts the pass's budget: the mark's category read must wait.
    const { port, calls } = slowed('readDrift', 'getContacts');
    const run = await runPolicy(policy, { ...f.deps, mailboxes: port }, { budgetMs, maxPasses: 5 });
    assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results));
    assert.ok(calls.length >= 1);
    assert.ok(!calls.includes(1), 'no category read in the pass past its deadline');
    const bobId = f.sim.tenant.user(others[0]!)!.id;
    const bobs = folderContacts(f.sim, ann, 'Marks Late').filter((c) => tagOf(c)?.endsWith(bobId));
    assert.deepEqual(bobs[0]?.data.categories, [mark]);
  });
});

// Issue 15: onSourceRemoval keepAndMark, when the policy does not manage categories, adds its mark to
// the categories the contact holds (the user's own) and, when the source object returns, takes only
// its mark away again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SimContact } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';

const ann = 'ann@contoso.example';
const bob = 'bob@contoso.example';
const cid = 'cid@contoso.example';
const mark = 'Left the company';

describe('keepAndMark keeps the categories a user gave the contact (issue 15)', () => {
  let f: EngineFixture;
  before(async () => {
    f = await engineFixture({
      seed: {
        users: [ann, bob, cid].map((upn) => ({
          userPrincipalName: upn,
          displayName: upn.split('@')[0]!,
          mail: upn,
        })),
      },
    });
  });
  after(() => f.close());

  const policy = () =>
    f.policy({
      id: 'marks',
      folder: { name: 'Marks' },
      targets: { type: 'users', users: [ann] },
      mapping: { exclude: ['categories'] } as never,
      options: { onSourceRemoval: 'keepAndMark', removalCategory: mark } as never,
    });
  const bobsContact = (): SimContact => {
    const bobId = f.sim.tenant.user(bob)!.id;
    const found = folderContacts(f.sim, ann, 'Marks').filter((c) => tagOf(c)?.endsWith(bobId));
    assert.equal(found.length, 1, 'one contact for bob');
    return found[0]!;
  };
  const giveCategories = (categories: string[]): void =>
    f.sim.tenant.mailbox(ann)!.updateContact(bobsContact(), { categories }, [], new Date());
  const categories = (): unknown => bobsContact().data.categories;
  const runOk = async (): Promise<void> => {
    const record = await f.run(policy());
    assert.equal(record.mailboxes.failed, 0, JSON.stringify(record));
  };

  it('marks a removed source object without wiping the user categories, then unmarks only its mark', async () => {
    assert.ok(policy().mapping.exclude.includes('categories'), 'categories are not ours');
    await runOk();
    giveCategories(['Friends']);
    await runOk(); // the edit is seen (categories are not ours: nothing to write)
    giveCategories(['Friends', 'Golf']); // edited again, not read yet

    f.sim.tenant.updateUser(bob, { accountEnabled: false });
    await runOk();
    assert.deepEqual(categories(), ['Friends', 'Golf', mark]);

    giveCategories(['Friends', 'Golf', mark, 'Kept']);
    f.sim.tenant.updateUser(bob, { accountEnabled: true });
    await runOk();
    assert.deepEqual(categories(), ['Friends', 'Golf', 'Kept']);
    await runOk();
    assert.deepEqual(categories(), ['Friends', 'Golf', 'Kept'], 'stable');
  });
});

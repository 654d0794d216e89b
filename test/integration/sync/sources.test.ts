import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import { engineFixture, folderContacts, tagCounts, tagOf, type EngineFixture } from '../../support/engine';

const folder = 'GAL';

/** Org contacts and mail-enabled groups the simulator holds now, as the tags we expect. */
function expected(sim: GraphTenantSimulator, policyId: string): Set<string> {
  const out = new Set<string>();
  for (const c of sim.tenant.orgContacts.values()) if (c.mail) out.add(`${policyId}|orgContact:${c.id}`);
  for (const g of sim.tenant.groups.values())
    if (g.mailEnabled && g.mail) out.add(`${policyId}|group:${g.id}`);
  return out;
}

describe('org contacts and distribution lists: add, change and remove reach several mailboxes', () => {
  let f: EngineFixture;
  let targets: string[];
  before(async () => {
    f = await engineFixture({
      seed: { generate: { users: 8, mailboxes: 8, orgContacts: 5, groups: 4, awkward: false } },
    });
    targets = [...f.sim.tenant.users.values()].slice(0, 3).map((u) => u.userPrincipalName);
    for (const name of ['Finance', 'People'])
      f.sim.tenant.addGroup({
        displayName: `${name} DL`,
        mail: `${name.toLowerCase()}@contoso.example`,
        mailEnabled: true,
        securityEnabled: false,
      });
  });
  after(() => f.close());

  const policy = () =>
    f.policy({
      id: 'gal-extras',
      source: {
        type: 'directory',
        includeUsers: false,
        includeOrgContacts: true,
        includeDistributionLists: true,
      },
      targets: { type: 'users', users: targets },
      folder: { name: folder },
    });
  const contactFor = (upn: string, key: string) =>
    folderContacts(f.sim, upn, folder).find((c) => tagOf(c) === `gal-extras|${key}`);
  const assertConverged = (): void => {
    const want = expected(f.sim, 'gal-extras');
    for (const t of targets) {
      const counts = tagCounts(folderContacts(f.sim, t, folder));
      assert.deepEqual(
        [...counts].filter(([, n]) => n > 1),
        [],
        `${t}: no duplicates`,
      );
      assert.deepEqual(new Set(counts.keys()), want, `${t}: exactly the org contacts and DLs`);
    }
  };

  it('the first run puts every org contact and mail-enabled group in each target', async () => {
    const record = await f.run(policy());
    assert.equal(record.mailboxes.failed, 0);
    assert.ok(expected(f.sim, 'gal-extras').size >= 6);
    assertConverged();
  });

  it('the next run brings additions, changes and removals of both kinds to every target', async () => {
    const [gone, changed] = [...f.sim.tenant.orgContacts.values()];
    f.sim.tenant.deleteOrgContact(gone!.id);
    f.sim.tenant.updateOrgContact(changed!.id, { jobTitle: 'Account Director', companyName: 'Northwind' });
    const added = f.sim.tenant.addOrgContact({
      displayName: 'New Supplier',
      mail: 'orders@supplier.example',
      companyName: 'Supplier Ltd',
    });
    const mailGroups = [...f.sim.tenant.groups.values()].filter((g) => g.mailEnabled && g.mail);
    const renamed = mailGroups[0]!;
    const dropped = mailGroups[1]!;
    f.sim.tenant.updateGroup(renamed.id, { displayName: 'Everyone (renamed)' });
    f.sim.tenant.deleteGroup(dropped.id);
    const newDl = f.sim.tenant.addGroup({
      displayName: 'Sales DL',
      mail: 'sales@contoso.example',
      mailEnabled: true,
      securityEnabled: false,
    });

    const record = await f.run(policy());
    assert.equal(record.mailboxes.failed, 0);
    assertConverged();
    for (const t of targets) {
      assert.equal(contactFor(t, `orgContact:${changed!.id}`)?.data.jobTitle, 'Account Director');
      assert.equal(contactFor(t, `orgContact:${changed!.id}`)?.data.companyName, 'Northwind');
      assert.equal(contactFor(t, `orgContact:${added.id}`)?.data.displayName, 'New Supplier');
      assert.equal(contactFor(t, `orgContact:${gone!.id}`), undefined);
      assert.equal(contactFor(t, `group:${renamed.id}`)?.data.displayName, 'Everyone (renamed)');
      assert.equal(contactFor(t, `group:${dropped.id}`), undefined);
      assert.equal(
        (contactFor(t, `group:${newDl.id}`)?.data.emailAddresses as { address: string }[])[0]!.address,
        'sales@contoso.example',
      );
    }
    assert.equal(record.contacts.created, 2 * targets.length);
    assert.equal(record.contacts.updated, 2 * targets.length);
    assert.equal(record.contacts.deleted, 2 * targets.length);
  });

  it('a group that stops being mail-enabled leaves the address book', async () => {
    const dl = [...f.sim.tenant.groups.values()].find((g) => g.displayName === 'Sales DL')!;
    f.sim.tenant.updateGroup(dl.id, { mailEnabled: false, mail: null });
    await f.run(policy());
    assertConverged();
    for (const t of targets) assert.equal(contactFor(t, `group:${dl.id}`), undefined);
  });
});

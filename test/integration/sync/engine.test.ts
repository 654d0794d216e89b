import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagCounts, tagOf, type EngineFixture } from '../../support/engine';

const folder = 'Company Directory';
const hasMarker = (u: SimUser, m: string): boolean =>
  Object.values(u.onPremisesExtensionAttributes).includes(m);

/** Written independently of the engine: who should be in the address book, by the rules. */
function expectedSource(sim: GraphTenantSimulator): Set<string> {
  return new Set(
    [...sim.tenant.users.values()]
      .filter(
        (u) =>
          u.userType === 'Member' &&
          u.mail &&
          u.accountEnabled &&
          // Hidden users are in: Graph shows showInAddressList null for users and this connection
          // does not read Exchange Online (hidden-users.test.ts covers exchangeAdmin).
          !hasMarker(u, 'NoContactSync'),
      )
      .map((u) => `directory|user:${u.id}`),
  );
}

function expectedTargets(sim: GraphTenantSimulator): SimUser[] {
  return [...sim.tenant.users.values()].filter(
    (u) =>
      u.userType === 'Member' &&
      u.mail &&
      u.accountEnabled &&
      !hasMarker(u, 'NoMailboxSync') &&
      u.mailbox !== 'none',
  );
}

/** Every target mailbox holds exactly the expected contacts, each once. */
function assertConverged(sim: GraphTenantSimulator, folderName: string | null = folder): void {
  const source = expectedSource(sim);
  for (const target of expectedTargets(sim)) {
    const counts = tagCounts(folderContacts(sim, target.userPrincipalName, folderName));
    const want = new Set(source);
    want.delete(`directory|user:${target.id}`);
    const dupes = [...counts].filter(([, n]) => n > 1);
    assert.deepEqual(dupes, [], `${target.userPrincipalName}: no duplicates`);
    assert.deepEqual(new Set(counts.keys()), want, `${target.userPrincipalName}: exactly the source`);
  }
}

const writeOps = (sim: GraphTenantSimulator, since: number): number =>
  sim.log
    .since(since)
    .filter(
      (e) =>
        ['contacts.create', 'contacts.update', 'contacts.delete'].includes(e.operation) && e.status < 300,
    ).length;

describe('sync engine against the simulator and Azurite', () => {
  let f: EngineFixture;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 60, mailboxes: 8 } } });
  });
  after(() => f.close());

  it('fills every target mailbox exactly on the first run, and writes nothing on the second', async () => {
    const policy = f.policy();
    const first = await f.run(policy);
    assert.equal(
      first.mailboxes.failed,
      0,
      JSON.stringify(first.results.filter((r) => r.status === 'failed')),
    );
    assertConverged(f.sim);
    assert.equal(
      first.mailboxes.skipped,
      1,
      'the user with mail but no Exchange Online mailbox is skipped and counted',
    );
    assert.equal(first.results.find((r) => r.status === 'skipped')?.mailbox, 'no.exchange@contoso.example');
    const since = f.sim.log.lastSeq;
    const second = await f.run(policy);
    assert.equal(writeOps(f.sim, since), 0);
    assert.equal(second.contacts.created + second.contacts.updated + second.contacts.deleted, 0);
    assert.equal(second.contacts.unchanged, first.contacts.created);
    // Steady state here (no FOLDER_NAME_CHECK_HOURS on this path): the folder's delta and its name
    // (a folder renamed by its user gets the policy's name back) per mailbox; the Functions app reads
    // the name at most once per window (folder-name-check.test.ts).
    const perMailbox = f.sim.log.since(since).filter((e) => e.mailbox !== null && e.status !== 404);
    assert.deepEqual([...new Set(perMailbox.map((e) => e.operation))].sort(), [
      'contactFolders.get',
      'contacts.delta',
    ]);
    assert.equal(perMailbox.length, 2 * expectedTargets(f.sim).length);
  });

  it('trims more than 3 email addresses and 2 business phones before sending', () => {
    const many = [...f.sim.tenant.users.values()].find((u) =>
      u.userPrincipalName.startsWith('many.addresses'),
    )!;
    const someone = expectedTargets(f.sim).find((u) => u.id !== many.id)!;
    const contact = folderContacts(f.sim, someone.userPrincipalName, folder).find(
      (c) => tagOf(c) === `directory|user:${many.id}`,
    )!;
    assert.equal((contact.data.emailAddresses as unknown[]).length, 3);
    assert.equal(f.sim.log.count({ status: 400 }), 0, 'Graph never rejected a write');
  });

  it('brings adds, changes, removals and re-adds to every mailbox', async () => {
    const policy = f.policy();
    const [changed, removed] = expectedTargets(f.sim).slice(2, 4);
    f.sim.tenant.updateUser(changed!.id, { jobTitle: 'Head of Testing', department: 'QA' });
    const saved = { ...removed! };
    f.sim.tenant.deleteUser(removed!.id);
    // A new colleague whose mailbox is not provisioned yet: in every address book, skipped as a target.
    f.sim.tenant.addUser({
      userPrincipalName: 'new.colleague@contoso.example',
      displayName: 'New Colleague',
      mail: 'new.colleague@contoso.example',
      jobTitle: 'Analyst',
      mailbox: 'none',
    });
    const since = f.sim.log.lastSeq;
    const run = await f.run(policy);
    assertConverged(f.sim);
    const targets = expectedTargets(f.sim).length;
    assert.equal(run.contacts.created, targets, 'the new colleague in every mailbox');
    assert.equal(run.contacts.updated, targets - 1, 'the changed user everywhere but in their own mailbox');
    assert.equal(run.contacts.deleted, targets, 'the removed user from every mailbox');
    const viewer = expectedTargets(f.sim).find((u) => u.id !== changed!.id)!;
    const c = folderContacts(f.sim, viewer.userPrincipalName, folder).find(
      (x) => tagOf(x) === `directory|user:${changed!.id}`,
    )!;
    assert.equal(c.data.jobTitle, 'Head of Testing');
    assert.equal(writeOps(f.sim, since), 3 * targets - 1, 'only the changes were written');
    // Re-add: the user comes back (restored from the recycle bin keeps the id).
    f.sim.tenant.addUser({ ...saved, id: saved.id });
    await f.run(policy);
    assertConverged(f.sim);
  });

  it('honours NoContactSync and NoMailboxSync set later', async () => {
    const policy = f.policy();
    const [a, b] = expectedTargets(f.sim).slice(0, 2);
    f.sim.tenant.updateUser(a!.id, {
      onPremisesExtensionAttributes: { extensionAttribute9: 'NoContactSync' },
    });
    f.sim.tenant.updateUser(b!.id, {
      onPremisesExtensionAttributes: { extensionAttribute12: 'NoMailboxSync' },
    });
    const before = folderContacts(f.sim, b!.userPrincipalName, folder).length;
    await f.run(policy);
    assertConverged(f.sim);
    assert.equal(
      folderContacts(f.sim, b!.userPrincipalName, folder).length,
      before,
      'an opted-out mailbox is left as it was',
    );
    f.sim.tenant.updateUser(a!.id, { onPremisesExtensionAttributes: { extensionAttribute9: null } });
    f.sim.tenant.updateUser(b!.id, { onPremisesExtensionAttributes: { extensionAttribute12: null } });
    await f.run(policy);
    assertConverged(f.sim);
  });

  it('restores a managed contact a user edited or deleted, and leaves contacts the user added alone', async () => {
    const policy = f.policy();
    const target = expectedTargets(f.sim)[0]!;
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const contacts = folderContacts(f.sim, target.userPrincipalName, folder);
    const [edited, deleted] = contacts;
    const originalTitle = edited!.data.jobTitle;
    mailbox.updateContact(edited!, { jobTitle: 'Scribbled over' }, [], new Date());
    mailbox.deleteContact(deleted!);
    const own = mailbox.createContact(
      edited!.folderId,
      { givenName: 'My', surname: 'Plumber' },
      [],
      new Date(),
    );
    const run = await f.run(policy);
    assert.equal(run.contacts.restored, 2);
    assert.equal(mailbox.contact(edited!.id)!.data.jobTitle, originalTitle ?? null);
    assert.ok(mailbox.contact(own.id), "the user's own contact is untouched");
    assertConverged(f.sim);
  });

  it('keeps user edits and deletions when the policy says keep', async () => {
    const policy = f.policy({ options: { onUserEdit: 'keep', onUserDelete: 'keep' } } as never);
    const target = expectedTargets(f.sim)[1]!;
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const [edited, deleted] = folderContacts(f.sim, target.userPrincipalName, folder);
    mailbox.updateContact(edited!, { mobilePhone: '+1 555 0000 my own' }, [], new Date());
    const deletedTag = tagOf(deleted!);
    mailbox.deleteContact(deleted!);
    const run = await f.run(policy);
    assert.equal(run.contacts.restored, 0);
    assert.equal(mailbox.contact(edited!.id)!.data.mobilePhone, '+1 555 0000 my own');
    assert.ok(!folderContacts(f.sim, target.userPrincipalName, folder).some((c) => tagOf(c) === deletedTag));
    // A later source change still reaches the other fields of the edited contact, not the user's one.
    const sourceId = tagOf(edited!)!.split(':')[1]!;
    f.sim.tenant.updateUser(sourceId, { jobTitle: 'Promoted', mobilePhone: '+1 555 1111' });
    await f.run(policy);
    assert.equal(mailbox.contact(edited!.id)!.data.jobTitle, 'Promoted');
    assert.equal(mailbox.contact(edited!.id)!.data.mobilePhone, '+1 555 0000 my own');
  });

  it('recreates the folder and its contacts when a user deletes the folder', async () => {
    const policy = f.policy();
    const target = expectedTargets(f.sim)[2]!;
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const count = folderContacts(f.sim, target.userPrincipalName, folder).length;
    mailbox.deleteFolder(mailbox.folderByName(folder)!.id);
    const run = await f.run(policy);
    assert.equal(run.results.find((r) => r.userId === target.id)!.restored, count);
    assertConverged(f.sim);
  });

  it('reconciles after an expired directory delta token without losing a change', async () => {
    const policy = f.policy();
    const victim = expectedTargets(f.sim)[3]!;
    const changed = expectedTargets(f.sim)[4]!;
    f.sim.tenant.deleteUser(victim.id);
    f.sim.tenant.updateUser(changed.id, { officeLocation: 'Moon Base' });
    f.sim.expireDeltaTokens();
    await new Promise((r) => setTimeout(r, 5));
    const run = await f.run(policy);
    assert.equal(run.source.fullRead, true);
    assertConverged(f.sim);
    const viewer = expectedTargets(f.sim).find((u) => u.id !== changed.id)!;
    assert.equal(
      folderContacts(f.sim, viewer.userPrincipalName, folder).find(
        (c) => tagOf(c) === `directory|user:${changed.id}`,
      )!.data.officeLocation,
      'Moon Base',
    );
  });

  it('heals lost state: no twins when the state tables are emptied', async () => {
    const policy = f.policy();
    for (const t of expectedTargets(f.sim)) await f.deps.mailboxStore.clear(policy.id, t.id);
    const since = f.sim.log.lastSeq;
    const run = await f.run(policy);
    assert.equal(run.contacts.created, 0);
    assert.equal(
      f.sim.log.since(since).filter((e) => e.operation === 'contacts.create').length,
      0,
      'found by the tag, not created again',
    );
    assertConverged(f.sim);
  });

  it('holds back mass deletions when the source collapses, unless forced', async () => {
    // A small tenant: a threshold of 20 % and at least 2 contacts.
    const policy = f.policy({ options: { deletionThreshold: { percent: 20, minimum: 2 } } });
    const victims = [...expectedSource(f.sim)]
      .slice(0, Math.ceil(expectedSource(f.sim).size / 2))
      .map((k) => k.split(':')[1]!);
    for (const id of victims) f.sim.tenant.updateUser(id, { accountEnabled: false });
    const held = await f.run(policy);
    assert.equal(held.contacts.deleted, 0);
    assert.ok(
      held.results.every(
        (r) => r.status === 'skipped' || r.deletionsBlocked !== undefined || victims.includes(r.userId),
      ),
    );
    const forced = await f.run(policy, { force: true });
    assert.ok(forced.contacts.deleted > 0);
    assertConverged(f.sim);
    for (const id of victims) f.sim.tenant.updateUser(id, { accountEnabled: true });
    await f.run(policy);
    assertConverged(f.sim);
  });

  it('reports a dry run without writing', async () => {
    const policy = f.policy();
    f.sim.tenant.addUser({
      userPrincipalName: 'dry.run@contoso.example',
      displayName: 'Dry Run',
      mail: 'dry.run@contoso.example',
    });
    const since = f.sim.log.lastSeq;
    const run = await f.run(policy, { dryRun: true });
    assert.equal(run.dryRun, true);
    assert.equal(writeOps(f.sim, since), 0);
    assert.ok(run.results.every((r) => r.status === 'planned' || r.status === 'skipped'));
    assert.ok(run.contacts.created >= expectedTargets(f.sim).length - 1);
    await f.run(policy);
    assertConverged(f.sim);
  });
});

describe('sync engine: scoping, the default folder, and faults', () => {
  let f: EngineFixture;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 40, mailboxes: 6, groups: 3 } } });
  });
  after(() => f.close());

  it('scopes the source by attribute filters and groups, and targets by group', async () => {
    const sales = [...f.sim.tenant.groups.values()].find((g) => g.displayName === 'Dept Sales')!;
    const allStaff = [...f.sim.tenant.groups.values()].find((g) => g.displayName === 'All Staff')!;
    const policy = f.policy({
      id: 'sales',
      source: {
        type: 'directory',
        includeGroups: [sales.id],
        filters: [{ attribute: 'companyName', op: 'equals', value: 'contoso ltd' }],
      },
      targets: { type: 'groups', groups: [allStaff.id], excludeUsers: [] },
      folder: { name: 'Sales' },
    } as never);
    const run = await f.run(policy);
    assert.equal(run.mailboxes.failed, 0);
    const salesMembers = new Set(f.sim.tenant.transitiveMembers(sales.id));
    const expected = [...f.sim.tenant.users.values()].filter(
      (u) => salesMembers.has(u.id) && u.mail && u.accountEnabled && u.companyName === 'Contoso Ltd',
    );
    const targets = [...f.sim.tenant.users.values()].filter(
      (u) =>
        allStaff.members.has(u.id) &&
        u.mail &&
        u.accountEnabled &&
        u.mailbox === 'user' &&
        !hasMarker(u, 'NoMailboxSync'),
    );
    assert.ok(expected.length > 0 && targets.length > 0);
    for (const t of targets) {
      const want = new Set(expected.filter((u) => u.id !== t.id).map((u) => `sales|user:${u.id}`));
      assert.deepEqual(
        new Set(tagCounts(folderContacts(f.sim, t.userPrincipalName, 'Sales')).keys()),
        want,
        t.userPrincipalName,
      );
    }
  });

  it('writes into the default Contacts folder, touching only our own contacts there', async () => {
    const target = [...f.sim.tenant.users.values()].find(
      (u) => u.mailbox === 'user' && u.accountEnabled && u.mail,
    )!;
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const personal = mailbox.createContact(mailbox.contactsFolderId, { givenName: 'Mum' }, [], new Date());
    const policy = f.policy({
      id: 'default-folder',
      folder: { name: null },
      targets: { type: 'users', users: [target.userPrincipalName] },
    } as never);
    const run = await f.run(policy);
    assert.equal(run.mailboxes.succeeded, 1);
    const inDefault = folderContacts(f.sim, target.userPrincipalName, null);
    assert.ok(inDefault.some((c) => c.id === personal.id));
    assert.equal(
      inDefault.filter((c) => tagOf(c)?.startsWith('default-folder|')).length,
      run.contacts.created,
    );
    // The source shrinks (a user leaves): only our contact goes, Mum stays.
    const leaver = inDefault.find((c) => tagOf(c))!;
    f.sim.tenant.deleteUser(tagOf(leaver)!.split(':')[1]!);
    await f.run(policy);
    assert.ok(mailbox.contact(personal.id));
    assert.equal(mailbox.contact(leaver.id), undefined);
  });

  it('adds org contacts (mail contacts in the GAL) on request, and follows their changes', async () => {
    const target = [...f.sim.tenant.users.values()].find(
      (u) => u.mailbox === 'user' && u.accountEnabled && u.mail && !hasMarker(u, 'NoMailboxSync'),
    )!;
    const policy = f.policy({
      id: 'with-contacts',
      source: { type: 'directory', includeOrgContacts: true },
      targets: { type: 'users', users: [target.userPrincipalName] },
      folder: { name: 'GAL' },
    } as never);
    await f.run(policy);
    const tags = () => new Set(tagCounts(folderContacts(f.sim, target.userPrincipalName, 'GAL')).keys());
    const orgContacts = [...f.sim.tenant.orgContacts.values()];
    assert.ok(orgContacts.length > 0);
    for (const c of orgContacts)
      assert.ok(tags().has(`with-contacts|orgContact:${c.id}`), c.displayName ?? c.id);
    const partner = folderContacts(f.sim, target.userPrincipalName, 'GAL').find(
      (c) => tagOf(c) === `with-contacts|orgContact:${orgContacts[0]!.id}`,
    )!;
    assert.equal(partner.data.companyName, 'Fabrikam');
    f.sim.tenant.deleteOrgContact(orgContacts[0]!.id);
    f.sim.tenant.updateOrgContact(orgContacts[1]!.id, { jobTitle: 'Account Manager' });
    await f.run(policy);
    assert.ok(!tags().has(`with-contacts|orgContact:${orgContacts[0]!.id}`));
    assert.equal(
      folderContacts(f.sim, target.userPrincipalName, 'GAL').find(
        (c) => tagOf(c) === `with-contacts|orgContact:${orgContacts[1]!.id}`,
      )!.data.jobTitle,
      'Account Manager',
    );
  });

  it("reconciles a mailbox whose contacts delta token expired, keeping the user's deletion in view", async () => {
    const target = [...f.sim.tenant.users.values()].find(
      (u) => u.mailbox === 'user' && u.accountEnabled && u.mail && !hasMarker(u, 'NoMailboxSync'),
    )!;
    const policy = f.policy({
      id: 'outlook-expiry',
      targets: { type: 'users', users: [target.userPrincipalName] },
      folder: { name: 'Expiry' },
    } as never);
    await f.run(policy);
    const mailbox = f.sim.tenant.mailbox(target.userPrincipalName)!;
    const [victim] = folderContacts(f.sim, target.userPrincipalName, 'Expiry');
    const victimTag = tagOf(victim!);
    mailbox.deleteContact(victim!);
    f.sim.expireDeltaTokens();
    await new Promise((r) => setTimeout(r, 5));
    const since = f.sim.log.lastSeq;
    const run = await f.run(policy);
    assert.ok(
      f.sim.log.since(since).some((e) => e.operation === 'contacts.delta' && e.status === 410),
      'the expired token was answered 410',
    );
    assert.equal(run.contacts.restored, 1);
    assert.equal(tagCounts(folderContacts(f.sim, target.userPrincipalName, 'Expiry')).get(victimTag!), 1);
  });

  it("syncs a shared mailbox's contact folder into every target: adds, changes and removals", async () => {
    const shared = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'shared')!;
    const sharedBox = f.sim.tenant.mailbox(shared.userPrincipalName)!;
    const folder = sharedBox.createFolder('Partners', sharedBox.contactsFolderId);
    const partners = ['Ada Supplier', 'Bo Vendor', 'Cy Partner'].map((name, i) =>
      sharedBox.createContact(
        folder.id,
        {
          displayName: name,
          givenName: name.split(' ')[0],
          companyName: 'Fabrikam',
          emailAddresses: [1, 2, 3].map((n) => ({ address: `p${i}.${n}@fabrikam.example`, name })),
          businessPhones: ['+44 1', '+44 2'],
        },
        [],
        new Date(),
      ),
    );
    const targets = [...f.sim.tenant.users.values()]
      .filter((u) => u.mailbox === 'user' && u.accountEnabled && u.mail && !hasMarker(u, 'NoMailboxSync'))
      .slice(0, 3);
    const policy = f.policy({
      id: 'partners',
      source: { type: 'mailbox', mailbox: shared.userPrincipalName, folder: 'Partners' },
      targets: { type: 'users', users: targets.map((t) => t.userPrincipalName) },
      folder: { name: 'Partners' },
      mapping: { categories: ['Partner'] },
    } as never);
    const keysFor = (contacts: typeof partners): Set<string> =>
      new Set(contacts.map((c) => `partners|mailboxContact:${c.immutableId}`));
    const first = await f.run(policy);
    assert.equal(first.mailboxes.failed, 0, JSON.stringify(first.results.map((r) => r.errors)));
    for (const t of targets)
      assert.deepEqual(
        new Set(tagCounts(folderContacts(f.sim, t.userPrincipalName, 'Partners')).keys()),
        keysFor(partners),
      );
    const copy = folderContacts(f.sim, targets[0]!.userPrincipalName, 'Partners').find(
      (c) => c.data.displayName === 'Ada Supplier',
    )!;
    assert.equal(copy.data.companyName, 'Fabrikam');
    assert.deepEqual(copy.data.categories, ['Partner']);
    // Changes in the shared folder reach every target.
    sharedBox.updateContact(partners[0]!, { jobTitle: 'Key Account' }, [], new Date());
    sharedBox.deleteContact(partners[1]!);
    const added = sharedBox.createContact(
      folder.id,
      { displayName: 'Di New', companyName: 'Contoso Partner' },
      [],
      new Date(),
    );
    const second = await f.run(policy);
    assert.equal(second.contacts.created, 3);
    assert.equal(second.contacts.updated, 3);
    assert.equal(second.contacts.deleted, 3);
    for (const t of targets) {
      assert.deepEqual(
        new Set(tagCounts(folderContacts(f.sim, t.userPrincipalName, 'Partners')).keys()),
        keysFor([partners[0]!, partners[2]!, added]),
      );
      assert.equal(
        folderContacts(f.sim, t.userPrincipalName, 'Partners').find(
          (c) => c.data.displayName === 'Ada Supplier',
        )!.data.jobTitle,
        'Key Account',
      );
    }
    // A missing source folder fails the run clearly instead of emptying the targets.
    const broken = f.policy({
      id: 'partners-missing',
      source: { type: 'mailbox', mailbox: shared.userPrincipalName, folder: 'Nope' },
      targets: { type: 'users', users: [targets[0]!.userPrincipalName] },
      folder: { name: 'X' },
    } as never);
    await assert.rejects(f.run(broken), /SourceFolderNotFound.*"Nope"/);
  });

  it('adds mail-enabled groups (distribution lists) as contacts on request, and only those', async () => {
    const target = [...f.sim.tenant.users.values()].find(
      (u) => u.mailbox === 'user' && u.accountEnabled && u.mail && !hasMarker(u, 'NoMailboxSync'),
    )!;
    const policy = f.policy({
      id: 'with-dls',
      source: { type: 'directory', includeDistributionLists: true },
      targets: { type: 'users', users: [target.userPrincipalName] },
      folder: { name: 'DLs' },
    } as never);
    await f.run(policy);
    const tags = new Set(tagCounts(folderContacts(f.sim, target.userPrincipalName, 'DLs')).keys());
    for (const g of f.sim.tenant.groups.values())
      assert.equal(tags.has(`with-dls|group:${g.id}`), g.mailEnabled && Boolean(g.mail), g.displayName);
    const dl = folderContacts(f.sim, target.userPrincipalName, 'DLs').find(
      (c) => c.data.displayName === 'All Staff',
    )!;
    assert.equal((dl.data.emailAddresses as { address: string }[])[0]!.address, 'allstaff@contoso.example');
  });

  it('converges without twins when replies to creates, patches and deletes are lost', async () => {
    const policy = f.policy({ id: 'faults', folder: { name: 'Faults' } });
    f.sim.faults.add({ kind: 'lostReply', times: 3, match: { operation: 'batch' } });
    f.sim.faults.add({ kind: 'lostReply', times: 2, match: { operation: 'contacts.create', inBatch: true } });
    const first = await f.run(policy);
    assert.equal(
      first.mailboxes.failed,
      0,
      JSON.stringify(first.results.filter((r) => r.status !== 'succeeded' && r.status !== 'skipped')),
    );
    f.sim.faults.clear();
    const check = (): void => {
      for (const t of [...f.sim.tenant.users.values()].filter(
        (u) =>
          u.mailbox === 'user' &&
          u.accountEnabled &&
          u.mail &&
          u.userType === 'Member' &&
          !hasMarker(u, 'NoMailboxSync'),
      )) {
        const counts = tagCounts(folderContacts(f.sim, t.userPrincipalName, 'Faults'));
        assert.deepEqual(
          [...counts].filter(([, n]) => n > 1),
          [],
          `${t.userPrincipalName} has no twins`,
        );
        const want = new Set([...expectedSource(f.sim)].map((k) => k.replace('directory|', 'faults|')));
        want.delete(`faults|user:${t.id}`);
        assert.deepEqual(new Set(counts.keys()), want, `${t.userPrincipalName} has no gaps`);
      }
    };
    check();
    // Lost replies on updates and deletes too.
    const [u1, u2] = [...expectedSource(f.sim)].slice(0, 2).map((k) => k.split(':')[1]!);
    f.sim.tenant.updateUser(u1!, { jobTitle: 'Changed under faults' });
    f.sim.tenant.deleteUser(u2!);
    f.sim.faults.add({ kind: 'lostReply', times: 2, match: { operation: 'batch' } });
    await f.run(policy);
    f.sim.faults.clear();
    await f.run(policy);
    check();
  });

  it('waits out a long throttle that says how long (Retry-After) instead of failing the writes', async () => {
    const target = [...f.sim.tenant.users.values()].find(
      (u) => u.mailbox === 'user' && u.accountEnabled && u.mail && !hasMarker(u, 'NoMailboxSync'),
    )!;
    const policy = f.policy({
      id: 'long-throttle',
      folder: { name: 'Long throttle' },
      targets: { type: 'users', users: [target.userPrincipalName] },
    } as never);
    // 50 answers of 429 in a row: the write at the head of the queue meets most of them (a throttled
    // batch goes back to the front), far more than the 12 attempts a transient failure gets.
    f.sim.faults.add({
      kind: 'status',
      status: 429,
      retryAfterSeconds: 0.01,
      times: 50,
      match: { operation: 'contacts.create', inBatch: true },
    });
    const run = await f.run(policy);
    f.sim.faults.clear();
    assert.equal(run.contacts.failed, 0, JSON.stringify(run.results.map((r) => r.errors)));
    assert.equal(run.mailboxes.failed, 0);
    assert.ok(run.contacts.created > 0);
  });

  it('converges through 429 storms and 503 bursts inside batches', async () => {
    const policy = f.policy({ id: 'storm', folder: { name: 'Storm' } });
    f.sim.faults.add({
      kind: 'status',
      status: 429,
      retryAfterSeconds: 0.05,
      probability: 0.3,
      match: { operation: 'contacts.create', inBatch: true },
    });
    f.sim.faults.add({
      kind: 'status',
      status: 503,
      times: 10,
      match: { operation: 'contacts.create', inBatch: true },
    });
    const run = await f.run(policy);
    f.sim.faults.clear();
    assert.equal(
      run.mailboxes.failed,
      0,
      JSON.stringify(run.results.filter((r) => r.status === 'failed').map((r) => r.errors)),
    );
    assert.ok(f.sim.log.count({ status: 429, inBatch: true }) > 0);
    for (const r of run.results.filter((x) => x.status === 'succeeded')) {
      const counts = tagCounts(folderContacts(f.sim, r.mailbox, 'Storm'));
      assert.ok([...counts.values()].every((n) => n === 1));
      assert.equal(counts.size, r.created);
    }
  });
});

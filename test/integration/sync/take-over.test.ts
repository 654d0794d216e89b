// Issue 17, item 1: taking over the folder an old tool (contactSync, CiraSync, ...) filled. Contacts
// without our tag are matched to source objects by e-mail address (primary SMTP, then any proxy
// address; never by display name); `adopt` makes the matches ours, `remove` also deletes the rest in
// a folder of the policy's own, within the deletion threshold.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicyInput } from '../../../src/sync/config/schema';
import type { Mailbox, SimContact, SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';
import { assertInvariant, snapshotUntagged, writesSince } from '../../support/invariant';

const folderName = 'Company Directory';

describe("taking over an old tool's folder (options.unmanagedContacts, issue 17 item 1)", () => {
  let f: EngineFixture;
  let users: SimUser[];
  /** A source user whose matching address is a fourth proxy address (beyond the contact's three). */
  let manyAddresses: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 16, mailboxes: 16, awkward: false } } });
    manyAddresses = f.sim.tenant.addUser({
      userPrincipalName: 'pat.proxy@contoso.example',
      displayName: 'Pat Proxy',
      mail: 'pat.proxy@contoso.example',
      proxyAddresses: [
        'SMTP:pat.proxy@contoso.example',
        'smtp:pat@contoso.example',
        'smtp:p.proxy@contoso.example',
        'smtp:pat.old@fabrikam.example',
      ],
      mailbox: 'none',
    });
    users = [...f.sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
  });
  after(() => f.close());

  /** What an old tool left in a mailbox: contacts without our tag, some matching, some not. */
  function seedOldTool(owner: SimUser, folder: string | null = folderName): Record<string, SimContact> {
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    const folderId =
      folder === null ? mailbox.contactsFolderId : mailbox.createFolder(folder, mailbox.contactsFolderId).id;
    const others = users.filter((u) => u.id !== owner.id);
    const at = new Date('2026-01-01T00:00:00Z');
    const make = (name: string, address: string, extra: Record<string, unknown> = {}): SimContact =>
      mailbox.createContact(
        folderId,
        { displayName: name, emailAddresses: [{ address, name }], companyName: 'Old Tool', ...extra },
        [],
        at,
      );
    const seeded: Record<string, SimContact> = {};
    others.slice(0, 6).forEach((u, i) => {
      // Addresses in another case, as old tools wrote them.
      seeded[`match${i}`] = make(u.displayName!, u.mail!.toUpperCase());
    });
    seeded.proxy = make('Pat P.', 'PAT.OLD@fabrikam.example');
    // One second later: the older contact of the two is the one adopted.
    seeded.duplicate = mailbox.createContact(
      folderId,
      { displayName: others[0]!.displayName, emailAddresses: [{ address: others[0]!.mail! }] },
      [],
      new Date(at.getTime() + 1000),
    );
    seeded.outsider = make('Outside Person', 'outsider@fabrikam.example');
    // The same name as a colleague, another address: never matched by display name.
    seeded.sameName = make(others[1]!.displayName!, 'someone.else@fabrikam.example');
    return seeded;
  }

  const policyFor = (id: string, owner: SimUser, options: PolicyInput['options']) =>
    f.policy({
      id,
      targets: { type: 'users', users: [owner.userPrincipalName] },
      options,
    });

  const contactIn = (mailbox: Mailbox, c: SimContact): SimContact | undefined => mailbox.contact(c.id);

  it('adopt: a dry run lists what it would adopt and leave and writes nothing; the run adopts the matches (primary SMTP, then a proxy address) instead of creating twins', async () => {
    const owner = users[0]!;
    const seeded = seedOldTool(owner);
    const policy = policyFor('adopting', owner, { unmanagedContacts: 'adopt' });
    const mark = f.sim.log.lastSeq;
    const dry = await f.run(policy, { dryRun: true });
    assert.deepEqual(writesSince(f.sim, mark), [], 'a dry run writes nothing');
    const planned = dry.results[0]!.takeOver!;
    assert.equal(planned.adopted, 7, JSON.stringify(planned.items));
    assert.equal(planned.left, 3);
    assert.equal(planned.removed, 0);
    const byAddress = new Map(planned.items.map((x) => [x.address.toLowerCase(), x]));
    assert.equal(byAddress.get('outsider@fabrikam.example')?.action, 'leave');
    assert.equal(byAddress.get('someone.else@fabrikam.example')?.reason, 'noMatch');
    assert.equal(byAddress.get('pat.old@fabrikam.example')?.action, 'adopt');
    assert.equal(planned.items.filter((x) => x.reason === 'duplicate').length, 1);
    // The plan of the dry run counts the adopted ones as ours: 7 fewer creates.
    assert.equal(dry.results[0]!.created, policyDesiredCount(owner) - 7);

    const before = snapshotUntagged(f.sim);
    const run = await f.run(policy);
    assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results[0]!.errors));
    assert.equal(run.results[0]!.takeOver?.adopted, 7);
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    // The old contacts themselves became ours (same ids, now tagged and in line with the source).
    for (const name of ['match0', 'match5', 'proxy']) {
      const c = contactIn(mailbox, seeded[name]!);
      assert.ok(c && tagOf(c)?.startsWith('adopting|'), `${name} is adopted`);
      assert.equal(c.data.companyName ?? undefined, name === 'proxy' ? undefined : 'Contoso Ltd');
    }
    assert.equal(tagOf(contactIn(mailbox, seeded.proxy!)!), `adopting|user:${manyAddresses.id}`);
    for (const name of ['duplicate', 'outsider', 'sameName'])
      assert.equal(tagOf(contactIn(mailbox, seeded[name]!)!), undefined, `${name} is left as it was`);
    assert.equal(
      folderContacts(f.sim, owner.userPrincipalName, folderName).length,
      policyDesiredCount(owner) + 3,
      'the source once, and the three contacts left',
    );
    await assertInvariant(f.sim, policy, before, async () => void (await f.run(policy)));
  });

  it('remove: adopts the matches and deletes the rest from a folder of its own; the default Contacts folder is never touched', async () => {
    const owner = users[1]!;
    const seeded = seedOldTool(owner);
    const inDefault = seedOldTool(owner, null);
    const policy = policyFor('removing', owner, { unmanagedContacts: 'remove' });
    const before = snapshotUntagged(f.sim);
    const run = await f.run(policy);
    assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results[0]!.errors));
    assert.deepEqual(
      { ...run.results[0]!.takeOver!, items: undefined },
      { adopted: 7, removed: 3, left: 0, items: undefined },
    );
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    for (const name of ['duplicate', 'outsider', 'sameName'])
      assert.equal(contactIn(mailbox, seeded[name]!), undefined, `${name} is removed`);
    for (const c of Object.values(inDefault))
      assert.equal(tagOf(contactIn(mailbox, c)!), undefined, 'the default Contacts folder is left alone');
    assert.equal(
      folderContacts(f.sim, owner.userPrincipalName, folderName).length,
      policyDesiredCount(owner),
    );
    await assertInvariant(f.sim, policy, before, async () => void (await f.run(policy)));
  });

  it('remove in the default Contacts folder adopts the matches and removes nothing', async () => {
    const owner = users[2]!;
    const seeded = seedOldTool(owner, null);
    const policy = f.policy({
      id: 'default-folder',
      targets: { type: 'users', users: [owner.userPrincipalName] },
      folder: { name: null },
      options: { unmanagedContacts: 'remove' },
    });
    const run = await f.run(policy);
    const takeOver = run.results[0]!.takeOver!;
    assert.equal(takeOver.removed, 0);
    assert.equal(takeOver.adopted, 7);
    assert.ok(takeOver.items.filter((x) => x.action === 'leave').every((x) => x.reason === 'defaultFolder'));
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    for (const name of ['duplicate', 'outsider', 'sameName'])
      assert.ok(contactIn(mailbox, seeded[name]!), `${name} stays`);
  });

  it('removals beyond the deletion threshold are held back and reported; a forced run applies them', async () => {
    const owner = users[3]!;
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    const folder = mailbox.createFolder(folderName, mailbox.contactsFolderId);
    for (let i = 0; i < 12; i++)
      mailbox.createContact(
        folder.id,
        { displayName: `Stranger ${i}`, emailAddresses: [{ address: `stranger${i}@fabrikam.example` }] },
        [],
        new Date(),
      );
    const policy = policyFor('threshold', owner, {
      unmanagedContacts: 'remove',
      deletionThreshold: { percent: 20, minimum: 10 },
    });
    const held = await f.run(policy);
    assert.deepEqual(held.results[0]!.takeOver!.heldBack, { wanted: 12, limit: 10 });
    assert.equal(held.results[0]!.takeOver!.removed, 0);
    assert.equal(mailbox.contactsIn(folder.id).filter((c) => tagOf(c) === undefined).length, 12);
    const forced = await f.run(policy, { force: true });
    assert.equal(forced.results[0]!.takeOver!.removed, 12);
    assert.equal(mailbox.contactsIn(folder.id).filter((c) => tagOf(c) === undefined).length, 0);
  });

  it("remove: a source that selects nobody removes none of the old tool's contacts (a broken filter, not an empty company)", async () => {
    const owner = users[4]!;
    const seeded = seedOldTool(owner);
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    const policy = f.policy({
      id: 'take-over-empty-source',
      source: {
        type: 'directory',
        filters: [{ attribute: 'department', op: 'equals', value: 'No Such Department' }],
      },
      targets: { type: 'users', users: [owner.userPrincipalName] },
      options: { unmanagedContacts: 'remove' },
    });
    await f.run(policy);
    for (const [name, c] of Object.entries(seeded))
      assert.ok(
        contactIn(mailbox, c),
        `${name}: an old tool's contact was removed by a run selecting nobody`,
      );
  });

  /** Contacts the directory policy gives a mailbox: every user with mail but its owner. */
  function policyDesiredCount(owner: SimUser): number {
    return [...f.sim.tenant.users.values()].filter(
      (u) => u.id !== owner.id && u.mail && u.accountEnabled && u.userType === 'Member',
    ).length;
  }
});

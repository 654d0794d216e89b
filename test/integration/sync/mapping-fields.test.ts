// Issue 18: mapping at contactSync's level, through the real pipeline against the simulator: the
// fields a directory can fill (fax as a MAPI property), file-as, private contacts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SimContact, SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';
import { assertInvariant, snapshotUntagged } from '../../support/invariant';
import { rawGraph } from '../../support/clients';

/** PidTagBusinessFaxNumber (0x3A24), as the simulator keys extended properties (lower case). */
const faxId = 'string 0x3a24';

describe('mapping: every useful field, file-as and private contacts (issue 18)', () => {
  let f: EngineFixture;
  let target: SimUser;
  let alice: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 12, mailboxes: 3, awkward: false } } });
    target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
    alice = f.sim.tenant.addUser({
      userPrincipalName: 'alice.vandenberg@contoso.example',
      mail: 'alice.vandenberg@contoso.example',
      displayName: 'Alice van den Berg',
      givenName: 'Alice',
      surname: 'van den Berg',
      companyName: 'Contoso',
      faxNumber: '+31 20 555 0199',
      imAddresses: ['sip:alice@contoso.example', 'sip:alice@contoso.example', 'sip:a.berg@contoso.example'],
      onPremisesExtensionAttributes: {
        extensionAttribute5: 'Speaks Dutch and German',
        extensionAttribute6: 'Ali',
      },
      mailbox: 'none',
    });
  });
  after(() => f.close());

  const only = (): { mailboxes: string[] } => ({ mailboxes: [target.userPrincipalName] });
  const contactOf = (folder: string, key: string): SimContact | undefined =>
    folderContacts(f.sim, target.userPrincipalName, folder).find((c) => tagOf(c)?.endsWith(key));

  it('round-trips the new fields exactly: sources, constants, the fax as a MAPI property, Graph limits', async () => {
    const org = f.sim.tenant.addOrgContact({
      displayName: 'Partner Desk',
      mail: 'desk@partner.example',
      phones: [
        { type: 'home', number: '+1 555 0101' },
        { type: 'home', number: '+1 555 0102' },
        { type: 'home', number: '+1 555 0103' },
        { type: 'businessFax', number: '+1 555 0199' },
      ],
      addresses: [],
    });
    const policy = f.policy({
      id: 'fields',
      folder: { name: 'Fields' },
      source: { type: 'directory', includeOrgContacts: true },
      mapping: {
        sources: { personalNotes: 'extensionAttribute5', nickName: 'extensionAttribute6' },
        constants: {
          profession: 'Staff',
          businessHomePage: 'https://contoso.example',
          initials: 'A.v.d.B.',
          middleName: 'Maria',
          title: 'Dr.',
          generation: 'Jr.',
          assistantName: 'Frans Hals',
        },
      },
    });
    const before = snapshotUntagged(f.sim);
    const run = await f.run(policy, only());
    assert.equal(run.mailboxes.failed, 0, JSON.stringify(run.results));
    const a = contactOf('Fields', `user:${alice.id}`)!;
    assert.ok(a, 'a contact for Alice');
    assert.equal(
      a.extendedProperties.get(faxId)?.value,
      '+31 20 555 0199',
      'the fax number as PidTagBusinessFaxNumber',
    );
    assert.deepEqual(a.data.imAddresses, ['sip:alice@contoso.example', 'sip:a.berg@contoso.example']);
    assert.equal(a.data.personalNotes, 'Speaks Dutch and German', 'from extensionAttribute5');
    assert.equal(a.data.nickName, 'Ali');
    assert.equal(a.data.profession, 'Staff');
    assert.equal(a.data.businessHomePage, 'https://contoso.example');
    for (const [field, value] of Object.entries({
      initials: 'A.v.d.B.',
      middleName: 'Maria',
      title: 'Dr.',
      generation: 'Jr.',
      assistantName: 'Frans Hals',
    }))
      assert.equal(a.data[field], value, field);
    const o = contactOf('Fields', `orgContact:${org.id}`)!;
    assert.deepEqual(o.data.homePhones, ['+1 555 0101', '+1 555 0102'], "Graph's limit: 2 home phones");
    assert.equal(o.extendedProperties.get(faxId)?.value, '+1 555 0199');
    await assertInvariant(f.sim, policy, before, async () => void (await f.run(policy, only())), {
      absent: (upn) => upn !== target.userPrincipalName,
    });

    // A change at the source reaches the contact; a cleared fax clears the MAPI property.
    f.sim.tenant.updateUser(alice.id, {
      faxNumber: null,
      onPremisesExtensionAttributes: { extensionAttribute6: 'Lisa' },
    });
    await f.run(policy, only());
    const a2 = contactOf('Fields', `user:${alice.id}`)!;
    assert.equal(a2.extendedProperties.get(faxId)?.value ?? '', '', 'the fax number cleared');
    assert.equal(a2.data.nickName, 'Lisa');
  });

  it('files contacts as Outlook shows them: "Surname, Given" by default, other modes and templates on update', async () => {
    const zoe = f.sim.tenant.addUser({
      userPrincipalName: 'zoe.adams@contoso.example',
      mail: 'zoe.adams@contoso.example',
      displayName: 'Zoe Adams',
      givenName: 'Zoe',
      surname: 'Adams',
      companyName: 'Fabrikam',
      mailbox: 'none',
    });
    const desk = f.sim.tenant.addUser({
      userPrincipalName: 'frontdesk@contoso.example',
      mail: 'frontdesk@contoso.example',
      displayName: 'Front Desk',
      mailbox: 'none',
    });
    let policy = f.policy({ id: 'fileas', folder: { name: 'File As' } });
    await f.run(policy, only());
    const fileAs = (u: SimUser): unknown => contactOf('File As', `user:${u.id}`)?.data.fileAs;
    assert.equal(fileAs(alice), 'van den Berg, Alice');
    assert.equal(fileAs(zoe), 'Adams, Zoe');
    assert.equal(fileAs(desk), 'Front Desk', 'no names: the display name');
    const sorted = [alice, zoe, desk].map((u) => String(fileAs(u))).sort((a, b) => a.localeCompare(b));
    assert.deepEqual(sorted, ['Adams, Zoe', 'Front Desk', 'van den Berg, Alice'], 'sorted by surname');
    // Graph reads it back as written.
    const read = await rawGraph(
      f.sim,
      'GET',
      `/users/${target.id}/contacts/${contactOf('File As', `user:${zoe.id}`)!.id}?$select=fileAs`,
    );
    assert.equal(read.body.fileAs, 'Adams, Zoe');

    // A surname change files the contact anew; so does a new mode.
    f.sim.tenant.updateUser(zoe.id, { surname: 'Brown', displayName: 'Zoe Brown' });
    await f.run(policy, only());
    assert.equal(fileAs(zoe), 'Brown, Zoe');
    for (const [mode, want] of [
      ['firstLast', 'Zoe Brown'],
      ['company', 'Fabrikam'],
      ['{companyName}: {surname}', 'Fabrikam: Brown'],
    ] as const) {
      policy = f.policy({ id: 'fileas', folder: { name: 'File As' }, mapping: { fileAs: mode } });
      const before = snapshotUntagged(f.sim);
      await f.run(policy, only());
      assert.equal(fileAs(zoe), want, mode);
      await assertInvariant(f.sim, policy, before, async () => void (await f.run(policy, only())), {
        absent: (upn) => upn !== target.userPrincipalName,
      });
    }
    assert.equal(fileAs(desk), 'Front Desk', 'a template over empty fields files by name');
  });

  it('marks every synced contact private (PidTagSensitivity 2) on request, and normal again when turned off', async () => {
    const sensitivity = (c: SimContact): string | undefined =>
      c.extendedProperties.get('integer 0x0036')?.value;
    const mine = () =>
      folderContacts(f.sim, target.userPrincipalName, 'Private').filter((c) =>
        tagOf(c)?.startsWith('private|'),
      );
    let policy = f.policy({ id: 'private', folder: { name: 'Private' }, mapping: { private: true } });
    const before = snapshotUntagged(f.sim);
    await f.run(policy, only());
    assert.ok(mine().length >= 3, `${mine().length} contacts`);
    assert.deepEqual(new Set(mine().map(sensitivity)), new Set(['2']), 'every contact private');
    await assertInvariant(f.sim, policy, before, async () => void (await f.run(policy, only())), {
      absent: (upn) => upn !== target.userPrincipalName,
    });
    policy = f.policy({ id: 'private', folder: { name: 'Private' } });
    await f.run(policy, only());
    assert.deepEqual(new Set(mine().map(sensitivity)), new Set(['0']), 'normal again');
  });

  it('the simulator refuses an integer extended property that is not a number', async () => {
    const res = await rawGraph(f.sim, 'POST', `/users/${target.id}/contacts`, {
      displayName: 'x',
      singleValueExtendedProperties: [{ id: 'Integer 0x0036', value: 'private' }],
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'ErrorInvalidExtendedPropertyValue');
  });

  it('splits a display name into given name and surname only when asked; particles, CJK and RTL round-trip', async () => {
    const people = [
      ['Ludwig van Beethoven', 'Ludwig', 'van Beethoven'],
      ['山田太郎', undefined, undefined],
      ['محمد بن سلمان', 'محمد', 'بن سلمان'],
      ['Madonna', undefined, undefined],
      ['García Márquez, Gabriel', 'Gabriel', 'García Márquez'],
    ] as const;
    const users = people.map(([displayName], n) =>
      f.sim.tenant.addUser({
        userPrincipalName: `split${n}@contoso.example`,
        mail: `split${n}@contoso.example`,
        displayName,
        mailbox: 'none',
      }),
    );
    const off = f.policy({ id: 'nosplit', folder: { name: 'No Split' } });
    await f.run(off, only());
    for (const u of users) {
      const c = contactOf('No Split', `user:${u.id}`)!;
      assert.equal(c.data.givenName ?? null, null, 'never split by default');
      assert.equal(c.data.displayName, u.displayName);
    }
    const on = f.policy({ id: 'split', folder: { name: 'Split' }, mapping: { splitDisplayName: true } });
    const before = snapshotUntagged(f.sim);
    await f.run(on, only());
    for (const [n, [displayName, given, surname]] of people.entries()) {
      const c = contactOf('Split', `user:${users[n]!.id}`)!;
      assert.equal(c.data.displayName, displayName, 'the display name round-trips unchanged');
      assert.equal(c.data.givenName ?? undefined, given, displayName);
      assert.equal(c.data.surname ?? undefined, surname, displayName);
    }
    assert.equal(contactOf('Split', `user:${users[0]!.id}`)!.data.fileAs, 'van Beethoven, Ludwig');
    await assertInvariant(f.sim, on, before, async () => void (await f.run(on, only())), {
      absent: (upn) => upn !== target.userPrincipalName,
    });
  });

  it('refuses a file-as template naming an unknown field, saying which', () => {
    assert.throws(
      () => f.policy({ mapping: { fileAs: '{surname}, {firstName}' } }),
      /mapping\.fileAs.*\{firstName\}, which is not a field|\{firstName\}, which is not a field/s,
    );
  });

  it('the simulator refuses more home phones and IM addresses than Graph keeps', async () => {
    for (const [field, n, max, name] of [
      ['homePhones', 3, 2, 'HomePhones'],
      ['imAddresses', 4, 3, 'ImAddresses'],
    ] as const) {
      const res = await rawGraph(f.sim, 'POST', `/users/${target.id}/contacts`, {
        displayName: 'x',
        [field]: Array.from({ length: n }, (_, i) => `${i}`),
      });
      assert.equal(res.status, 400);
      assert.equal(
        res.body.error.message,
        `The multi value property ${name} has ${n} entries, that exceeds the max allowed value of ${max}`,
      );
    }
  });
});

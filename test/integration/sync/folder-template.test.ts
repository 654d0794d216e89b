// Issue 18 item 5: a folder per value. `folder.name` as a template over one field fills one folder per
// value; contacts move when their value changes (no twin, none lost), folders left empty go, the
// threshold counts per folder. Each sequence runs through the real queue pipeline against the
// simulator and is checked by the invariant (its own reference of the per-value folders) after every
// run, and a run with no change writes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../../model/model';
import { runThroughQueues } from '../../model/pipeline';
import { removePolicy } from '../../../src/app/remove-policy';
import { logger } from '../../../src/app/logging';
import { tagOfContact, writesSince } from '../../support/invariant';
import { startRun } from '../../../src/app/use-cases';
import { partHash, partStateIdOf } from '../../../src/sync/folder-template';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

const restore = { onUserEdit: 'restore', onUserDelete: 'restore' } as const;
const folderNames = (upn: string): string[] =>
  [...world.f.sim.tenant.mailbox(upn)!.folders.values()].map((f) => f.displayName).sort();

describe('a folder per value (issue 18, item 5)', () => {
  it('a plain folder switched to {department}: one folder per value, the plain folder emptied and gone', async () => {
    await runSequence(world, {
      ...restore,
      steps: [{ t: 'run' }, { t: 'folderTemplate', field: 'department' }],
    });
    const id = `m${world.sequences}`;
    const names = folderNames(world.targets[0]!);
    for (const d of ['Legal', 'Ops', 'Sales']) assert.ok(names.includes(`Model ${id} – ${d}`), d);
    assert.ok(!names.includes(`Model ${id}`), 'the plain folder is deleted once emptied');
  });

  it('values change: contacts move to their new folder (no twin), a value nobody has any more loses its folder', async () => {
    await runSequence(world, {
      ...restore,
      steps: [
        { t: 'folderTemplate', field: 'department' },
        { t: 'run' },
        // Every Legal person becomes Sales or gets no department (the emptyValue folder, "Other").
        { t: 'updateUser', user: 1, field: 'department', value: 0 },
        { t: 'updateUser', user: 4, field: 'department', value: 3 },
        { t: 'run' },
      ],
    });
    const id = `m${world.sequences}`;
    const names = folderNames(world.targets[0]!);
    assert.ok(names.includes(`Model ${id} – Other`), 'no department: the emptyValue folder');
  });

  it('back to a plain name: the per-value folders are emptied into it and removed', async () => {
    await runSequence(world, {
      ...restore,
      steps: [
        { t: 'folderTemplate', field: 'department' },
        { t: 'run' },
        { t: 'folderTemplate', field: null },
      ],
    });
    const id = `m${world.sequences}`;
    const names = folderNames(world.targets[1]!);
    assert.ok(names.includes(`Model ${id}`));
    assert.ok(!names.some((n) => n.startsWith(`Model ${id} – `)), names.join(', '));
  });

  it('values with characters Outlook refuses and differing only in case share one valid folder', async () => {
    await runSequence(world, {
      ...restore,
      steps: [
        { t: 'updateUser', user: 0, field: 'companyName', value: 3 }, // "Smith & Sons: B/C"
        { t: 'updateUser', user: 1, field: 'companyName', value: 1 }, // "Brand A"
        { t: 'updateUser', user: 2, field: 'companyName', value: 2 }, // "brand a"
        { t: 'folderTemplate', field: 'companyName' },
        { t: 'run' },
      ],
    });
    const id = `m${world.sequences}`;
    const names = folderNames(world.targets[2]!);
    assert.ok(names.includes(`Model ${id} – Smith - Sons- B-C`), names.join(', '));
    assert.ok(names.includes(`Model ${id} – Brand A`), names.join(', '));
    assert.ok(!names.includes(`Model ${id} – brand a`), 'one folder for both spellings');
  });

  it('a user deletion stays deleted when its value moves it (onUserDelete: keep), with a switch of field', () =>
    runSequence(world, {
      onUserEdit: 'keep',
      onUserDelete: 'keep',
      steps: [
        { t: 'folderTemplate', field: 'department' },
        { t: 'run' },
        { t: 'deleteContact', mailbox: 0, contact: 2 },
        { t: 'editContact', mailbox: 1, contact: 1, value: 4 },
        { t: 'run' },
        { t: 'updateUser', user: 2, field: 'department', value: 1 },
        { t: 'updateUser', user: 0, field: 'department', value: 2 },
        { t: 'run' },
        { t: 'folderTemplate', field: 'mailDomain' },
      ],
    }));

  it("a user's edit (onUserEdit: keep) survives the switch to another field, which moves every contact", () =>
    runSequence(world, {
      onUserEdit: 'keep',
      onUserDelete: 'keep',
      steps: [
        { t: 'folderTemplate', field: 'department' },
        { t: 'run' },
        { t: 'editContact', mailbox: 0, contact: 0, value: 5 },
        { t: 'editContact', mailbox: 1, contact: 3, value: 6 },
        { t: 'run' },
        { t: 'editContact', mailbox: 2, contact: 1, value: 7 },
        { t: 'folderTemplate', field: 'companyName' },
        { t: 'run' },
        { t: 'folderTemplate', field: 'mailDomain' },
      ],
    }));

  it('a template and a renamed policy at once (model, seed 1): the former id leaves nothing behind', () =>
    runSequence(world, {
      ...restore,
      steps: [
        { t: 'run' },
        { t: 'folderTemplate', field: 'department' },
        { t: 'policy', filter: 2, excludeGroup: false },
        { t: 'renamePolicyId' },
      ],
    }));

  it('a renamed policy leaves its template for a plain name, and a template policy is renamed', () =>
    runSequence(world, {
      onUserEdit: 'keep',
      onUserDelete: 'keep',
      steps: [
        { t: 'folderTemplate', field: 'department' },
        { t: 'run' },
        { t: 'deleteContact', mailbox: 0, contact: 1 },
        { t: 'run' },
        { t: 'renamePolicyId' },
        { t: 'run' },
        { t: 'folderTemplate', field: null },
        { t: 'renamePolicyId' },
      ],
    }));

  it('a deletion just before the switch to a template stays deleted (model, seed 1, onUserDelete: keep)', () =>
    runSequence(world, {
      onUserEdit: 'restore',
      onUserDelete: 'keep',
      steps: [
        { t: 'run' },
        { t: 'folderTemplate', field: 'companyName' },
        { t: 'deleteContact', mailbox: 24, contact: 26 },
        { t: 'run' },
      ],
    }));

  it('faults while moving between folders: lost replies and a worker killed after a state write', () =>
    runSequence(world, {
      ...restore,
      steps: [
        { t: 'folderTemplate', field: 'department' },
        { t: 'run' },
        { t: 'updateUser', user: 0, field: 'department', value: 1 },
        { t: 'updateUser', user: 3, field: 'department', value: 2 },
        { t: 'fault', kind: 'lostCreate' },
        { t: 'fault', kind: 'lostDelete' },
        { t: 'run' },
        { t: 'updateUser', user: 1, field: 'department', value: 0 },
        { t: 'fault', kind: 'killAfterStateWrite' },
        { t: 'run' },
      ],
    }));
});

describe('the deletion threshold counts per folder (issue 18, item 5)', () => {
  it('two of the two Sales contacts leaving is held back, though 2 of 8 in the mailbox would not be', async () => {
    const f = world.f;
    const id = `threshold${++world.sequences}`;
    f.writePolicies([
      {
        id,
        name: id,
        connection: 'contoso',
        source: { type: 'directory' },
        targets: { type: 'users', users: world.targets },
        folder: { name: `${id} {department}` },
        options: { deletionThreshold: { percent: 50, minimum: 1 } },
      },
    ]);
    (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
    // Two people alone in a department of their own (earlier sequences moved the others about).
    const sales = [...f.sim.tenant.users.values()]
      .filter((u) => u.userPrincipalName.startsWith('person'))
      .slice(0, 2);
    const was = sales.map((u) => u.department);
    for (const u of sales) f.sim.tenant.updateUser(u.id, { department: 'Sales' });
    for (const u of f.sim.tenant.users.values())
      if (u.department === 'Sales' && !sales.includes(u))
        f.sim.tenant.updateUser(u.id, { department: 'Ops' });
    const first = await runThroughQueues(f, id);
    assert.equal(first.status, 'completed');
    const inSales = (): number => {
      const mailbox = f.sim.tenant.mailbox(world.targets[0]!)!;
      const folder = [...mailbox.folders.values()].find((x) => x.displayName === `${id} Sales`);
      return folder ? mailbox.contactsIn(folder.id).length : 0;
    };
    assert.equal(inSales(), 2);
    const mark = (on: boolean): void => {
      for (const u of sales)
        f.sim.tenant.updateUser(u.id, {
          onPremisesExtensionAttributes: { extensionAttribute5: on ? 'NoContactSync' : null },
        });
    };
    mark(true);
    try {
      const held = await runThroughQueues(f, id);
      assert.equal(held.contacts.deleted, 0, 'held back in the Sales folder (2 > its limit of 1)');
      assert.equal(inSales(), 2);
      const forced = await runThroughQueues(f, id, { fullResync: true });
      assert.equal(forced.contacts.deleted, 2 * world.targets.length, 'a forced run removes them');
      assert.equal(inSales(), 0);
      const mailbox = f.sim.tenant.mailbox(world.targets[0]!)!;
      assert.ok(
        ![...mailbox.folders.values()].some((x) => x.displayName === `${id} Sales`),
        'the emptied Sales folder we created is deleted',
      );
    } finally {
      mark(false);
      sales.forEach((u, n) => f.sim.tenant.updateUser(u.id, { department: was[n] ?? null }));
    }
  });
});

describe('the deletion threshold also holds over all folders of a mailbox (review 18, blocker 1)', () => {
  it('one of two leaving in each of three folders is held back: 3 of 8 in the mailbox is over its limit', async () => {
    const f = world.f;
    const id = `spread${++world.sequences}`;
    f.writePolicies([
      {
        id,
        name: id,
        connection: 'contoso',
        source: { type: 'directory' },
        targets: { type: 'users', users: world.targets },
        folder: { name: `${id} {department}` },
        options: { deletionThreshold: { percent: 30, minimum: 1 } },
      },
    ]);
    (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
    const people = [...f.sim.tenant.users.values()].filter((u) => u.userPrincipalName.startsWith('person'));
    const was = people.map((u) => u.department);
    people.forEach((u, n) => f.sim.tenant.updateUser(u.id, { department: `D${Math.floor(n / 2)}` }));
    const leaving = people.filter((_, n) => n % 2 === 0);
    const mark = (on: boolean): void => {
      for (const u of leaving)
        f.sim.tenant.updateUser(u.id, {
          onPremisesExtensionAttributes: { extensionAttribute5: on ? 'NoContactSync' : null },
        });
    };
    try {
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      mark(true);
      const held = await runThroughQueues(f, id);
      assert.equal(held.contacts.deleted, 0, 'held back: 3 of 8 is over the mailbox limit of 2');
      const forced = await runThroughQueues(f, id, { fullResync: true });
      assert.equal(forced.contacts.deleted, leaving.length * world.targets.length);
    } finally {
      mark(false);
      people.forEach((u, n) => f.sim.tenant.updateUser(u.id, { department: was[n] ?? null }));
    }
  });
});

describe('removing a policy with a folder template (issue 18, item 5)', () => {
  it('removes every contact of every per-value folder, the folders we created, and the state', async () => {
    const f = world.f;
    const id = `remove${++world.sequences}`;
    f.writePolicies([
      {
        id,
        name: id,
        connection: 'contoso',
        source: { type: 'directory' },
        targets: { type: 'users', users: world.targets },
        folder: { name: `${id} – {department}` },
      },
    ]);
    (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
    assert.equal((await runThroughQueues(f, id)).status, 'completed');
    const ours = (): number =>
      world.targets
        .flatMap((upn) => [...f.sim.tenant.mailbox(upn)!.contacts.values()])
        .filter((c) => tagOfContact(c)?.startsWith(`${id}|`)).length;
    const folders = (): string[] =>
      world.targets.flatMap((upn) =>
        [...f.sim.tenant.mailbox(upn)!.folders.values()]
          .map((x) => x.displayName)
          .filter((n) => n.startsWith(`${id} – `)),
      );
    assert.ok(ours() > 0);
    assert.ok(folders().length >= 3 * world.targets.length, folders().join(', '));
    const quiet = { log: () => {}, warn: () => {}, error: () => {} };
    const summary = await removePolicy(f.app, { policyId: id, mailboxes: [], dryRun: false }, logger(quiet));
    assert.equal(summary.totals.failed, 0, JSON.stringify(summary.mailboxes.map((m) => m.errors)));
    assert.equal(ours(), 0, 'no contact of the policy is left');
    assert.deepEqual(folders(), [], 'the per-value folders we created are gone');
    assert.deepEqual(await f.app.mailboxStore.listMailboxes(id), [], 'no state is left');
  });
});

describe("users' edits and deletions follow a contact to its new folder (review 18, findings 1 and 5)", () => {
  it('a kept edit survives a value change (onUserEdit: keep); a deletion stays deleted (onUserDelete: keep)', async () => {
    const f = world.f;
    const id = `carry${++world.sequences}`;
    f.writePolicies([
      {
        id,
        name: id,
        connection: 'contoso',
        source: { type: 'directory' },
        targets: { type: 'users', users: world.targets },
        folder: { name: `${id} {department}` },
        options: { onUserEdit: 'keep', onUserDelete: 'keep' },
      },
    ]);
    (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
    const people = [...f.sim.tenant.users.values()].filter((u) => u.userPrincipalName.startsWith('person'));
    const [edited, deleted] = [people[0]!, people[1]!];
    const was = [edited.department, deleted.department];
    f.sim.tenant.updateUser(edited.id, { department: 'Sales' });
    f.sim.tenant.updateUser(deleted.id, { department: 'Sales' });
    const mailbox = f.sim.tenant.mailbox(world.targets[0]!)!;
    const contactOf = (userId: string) =>
      [...mailbox.contacts.values()].filter((c) => tagOfContact(c) === `${id}|user:${userId}`);
    const folderName = (c: { folderId: string }): string | undefined =>
      mailbox.folders.get(c.folderId)?.displayName;
    try {
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      const [mine] = contactOf(edited.id);
      assert.ok(mine, 'the contact to edit');
      mailbox.updateContact(mine, { jobTitle: 'MY OWN NOTE', mobilePhone: '+1 555 0100' }, [], new Date());
      // Read by a run first (the edit becomes the user's), then the value changes.
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      f.sim.tenant.updateUser(edited.id, { department: 'Legal' });
      // A deletion no run has read yet, and a value change in the same run.
      mailbox.deleteContact(contactOf(deleted.id)[0]!);
      f.sim.tenant.updateUser(deleted.id, { department: 'Ops' });
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      const moved = contactOf(edited.id);
      assert.equal(moved.length, 1, 'one contact, in its new folder');
      assert.equal(folderName(moved[0]!), `${id} Legal`);
      assert.deepEqual(contactOf(deleted.id), [], 'the contact its user deleted stays deleted');
      assert.equal(moved[0]!.data.jobTitle, 'MY OWN NOTE', "the user's edit is kept in the new folder");
      assert.equal(moved[0]!.data.mobilePhone, '+1 555 0100');
      // Still theirs after the source changes the field, and a run with no change writes nothing.
      f.sim.tenant.updateUser(edited.id, { jobTitle: 'Director' });
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      assert.equal(contactOf(edited.id)[0]!.data.jobTitle, 'MY OWN NOTE');
      const mark = f.sim.log.lastSeq;
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      assert.deepEqual(writesSince(f.sim, mark), []);
    } finally {
      f.sim.tenant.updateUser(edited.id, { department: was[0] ?? null, jobTitle: 'Engineer' });
      f.sim.tenant.updateUser(deleted.id, { department: was[1] ?? null });
    }
  });

  it('a kept edit survives a create in the new folder that failed once (review 4-18, finding 1)', async () => {
    const f = world.f;
    const id = `carry${++world.sequences}`;
    f.writePolicies([
      {
        id,
        name: id,
        connection: 'contoso',
        source: { type: 'directory' },
        targets: { type: 'users', users: [world.targets[2]!] },
        folder: { name: `${id} {department}` },
        options: { onUserEdit: 'keep' },
      },
    ]);
    (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
    const person = [...f.sim.tenant.users.values()].find((u) => u.userPrincipalName.startsWith('person'))!;
    const was = person.department;
    const mailbox = f.sim.tenant.mailbox(world.targets[2]!)!;
    const contactOf = () =>
      [...mailbox.contacts.values()].filter((c) => tagOfContact(c) === `${id}|user:${person.id}`);
    try {
      f.sim.tenant.updateUser(person.id, { department: 'Sales' });
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      mailbox.updateContact(contactOf()[0]!, { jobTitle: 'KEEP-ME' }, [], new Date());
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      f.sim.tenant.updateUser(person.id, { department: 'Ops' });
      // The new folder's create fails once, before it was made (a 500 in the $batch).
      f.sim.faults.add({
        kind: 'status',
        status: 500,
        times: 1,
        match: { operation: 'contacts.create', inBatch: true },
      });
      try {
        await runThroughQueues(f, id);
      } finally {
        f.sim.faults.clear();
      }
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      const now = contactOf();
      assert.equal(now.length, 1);
      assert.equal(mailbox.folders.get(now[0]!.folderId)?.displayName, `${id} Ops`);
      assert.equal(now[0]!.data.jobTitle, 'KEEP-ME');
    } finally {
      f.sim.tenant.updateUser(person.id, { department: was ?? null });
    }
  });

  it('an edit no run has read yet, made just before the value changes, is kept too', async () => {
    const f = world.f;
    const id = `carry${++world.sequences}`;
    f.writePolicies([
      {
        id,
        name: id,
        connection: 'contoso',
        source: { type: 'directory' },
        targets: { type: 'users', users: world.targets },
        folder: { name: `${id} {department}` },
        options: { onUserEdit: 'keep' },
      },
    ]);
    (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
    const person = [...f.sim.tenant.users.values()].find((u) => u.userPrincipalName.startsWith('person'))!;
    const was = person.department;
    const mailbox = f.sim.tenant.mailbox(world.targets[1]!)!;
    const contactOf = () =>
      [...mailbox.contacts.values()].filter((c) => tagOfContact(c) === `${id}|user:${person.id}`);
    try {
      f.sim.tenant.updateUser(person.id, { department: 'Sales' });
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      mailbox.updateContact(contactOf()[0]!, { jobTitle: 'MINE' }, [], new Date());
      f.sim.tenant.updateUser(person.id, { department: 'Ops' });
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      const now = contactOf();
      assert.equal(now.length, 1);
      assert.equal(mailbox.folders.get(now[0]!.folderId)?.displayName, `${id} Ops`);
      assert.equal(now[0]!.data.jobTitle, 'MINE');
    } finally {
      f.sim.tenant.updateUser(person.id, { department: was ?? null });
    }
  });
});

describe('removing a policy whose former folders are not emptied yet (review 18, finding 3)', () => {
  for (const [from, to] of [
    ['a plain name', 'a template'],
    ['a template', 'a plain name'],
  ] as const)
    it(`switched from ${from} to ${to}: the contacts left in the former folders go too`, async () => {
      const f = world.f;
      const id = `retired${++world.sequences}`;
      const [plain, template] = [`${id} plain`, `${id} {department}`];
      const use = (name: string): void => {
        f.writePolicies([
          {
            id,
            name: id,
            connection: 'contoso',
            source: { type: 'directory' },
            targets: { type: 'users', users: world.targets },
            folder: { name },
          },
        ]);
        (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
      };
      use(from === 'a plain name' ? plain : template);
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      use(from === 'a plain name' ? template : plain);
      // Deletes fail: the new folders are filled, the former ones stay retired, not emptied.
      f.sim.faults.add({
        kind: 'status',
        status: 500,
        match: { operation: 'contacts.delete', inBatch: true },
      });
      try {
        await runThroughQueues(f, id);
      } finally {
        f.sim.faults.clear();
      }
      const ours = (): number =>
        world.targets
          .flatMap((upn) => [...f.sim.tenant.mailbox(upn)!.contacts.values()])
          .filter((c) => tagOfContact(c)?.startsWith(`${id}|`)).length;
      const folders = (): string[] =>
        world.targets.flatMap((upn) =>
          [...f.sim.tenant.mailbox(upn)!.folders.values()]
            .map((x) => x.displayName)
            .filter((n) => n.startsWith(`${id} `)),
        );
      const anyRow = (await f.app.mailboxStore.loadFolder(
        id,
        f.sim.tenant.mailbox(world.targets[0]!)!.userId,
      ))!;
      assert.ok(anyRow.retired?.length, 'the former folders are still to be emptied');
      const quiet = { log: () => {}, warn: () => {}, error: () => {} };
      const planned = await removePolicy(f.app, { policyId: id, mailboxes: [], dryRun: true }, logger(quiet));
      assert.equal(
        planned.totals.contacts,
        ours(),
        'a dry run counts the contacts of the former folders too',
      );
      const summary = await removePolicy(
        f.app,
        { policyId: id, mailboxes: [], dryRun: false },
        logger(quiet),
      );
      assert.equal(summary.totals.failed, 0, JSON.stringify(summary.mailboxes.map((m) => m.errors)));
      assert.equal(ours(), 0, 'no contact of the policy is left');
      assert.deepEqual(folders(), [], 'the folders it created, former ones too, are gone');
      assert.deepEqual(await f.app.mailboxStore.listMailboxes(id), [], 'no state is left');
    });
});

describe('a dry run of a folder template writes nothing (review 18, nit 7)', () => {
  it("a per-value folder's state without its folder row (a crash before its first pass) is left as it is", async () => {
    const f = world.f;
    const id = `dry${++world.sequences}`;
    f.writePolicies([
      {
        id,
        name: id,
        connection: 'contoso',
        source: { type: 'directory' },
        targets: { type: 'users', users: world.targets },
        folder: { name: `${id} {department}` },
      },
    ]);
    (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
    assert.equal((await runThroughQueues(f, id)).status, 'completed');
    const mbx = f.sim.tenant.mailbox(world.targets[0]!)!.userId;
    const store = f.app.mailboxStore;
    const root = (await store.loadFolder(id, mbx))!;
    const hash = partHash(`${id} Gone`);
    await store.saveFolder(id, mbx, { ...root, parts: [...(root.parts ?? []), hash] });
    await store.apply(
      partStateIdOf(id, hash),
      mbx,
      [['user:x', { pending: true, hash: 'h', fields: {} }]],
      [],
    );
    const found = (await f.app.policy(id))!;
    const started = await startRun(f.app, found.policy, 'cli', {
      dryRun: true,
      fullResync: false,
      mailboxes: [],
    });
    assert.ok(started.started);
    await f.runner.drain(120_000);
    assert.equal((await f.app.runStore.getRun(started.runId))!.status, 'completed');
    assert.equal(
      (await store.load(partStateIdOf(id, hash), mbx)).contacts.size,
      1,
      'the dry run cleared nothing',
    );
    assert.deepEqual((await store.loadFolder(id, mbx))!.parts, [...(root.parts ?? []), hash]);
  });
});

describe('a worker killed while a template gives way to a plain name (review 18, finding 2)', () => {
  it('killed right after the policy row forgets its per-value folders: a deletion its user made stays', async () => {
    const f = world.f;
    const id = `leave${++world.sequences}`;
    const policy = (name: string) => ({
      id,
      name: id,
      connection: 'contoso',
      source: { type: 'directory' as const },
      targets: { type: 'users' as const, users: world.targets },
      folder: { name },
      options: { onUserDelete: 'keep' as const },
    });
    const use = (name: string): void => {
      f.writePolicies([policy(name)]);
      (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
    };
    use(`${id} {department}`);
    assert.equal((await runThroughQueues(f, id)).status, 'completed');
    const ann = [...f.sim.tenant.users.values()].find((u) => u.userPrincipalName === world.targets[0])!;
    const mailbox = f.sim.tenant.mailbox(ann.id)!;
    const ours = () => [...mailbox.contacts.values()].filter((c) => tagOfContact(c)?.startsWith(`${id}|`));
    const victim = ours()[0]!;
    const key = tagOfContact(victim)!;
    mailbox.deleteContact(victim);
    assert.equal((await runThroughQueues(f, id)).status, 'completed', 'the deletion is read');
    use(`${id} plain`);
    // The worker dies right after the policy's row in ann's mailbox is stored without its per-value
    // folders (the crash point of the review): the queue delivers the message again.
    let armed = true;
    const name = `kill-leaving-${id}`;
    f.app.tables.mailboxes.pipeline.addPolicy({
      name,
      sendRequest: async (req, next) => {
        const res = await next(req);
        const url = decodeURIComponent(req.url);
        if (
          armed &&
          req.method === 'PUT' &&
          url.includes(`PartitionKey='${id}|${ann.id}'`) &&
          url.includes(`RowKey='~folder'`) &&
          typeof req.body === 'string' &&
          !req.body.includes('"parts"')
        ) {
          armed = false;
          throw new Error('worker killed right after the row forgot its per-value folders');
        }
        return res;
      },
    });
    try {
      await runThroughQueues(f, id, { drainMs: 420_000 });
    } finally {
      f.app.tables.mailboxes.pipeline.removePolicy({ name });
    }
    assert.equal(armed, false, 'the crash point was reached');
    assert.equal((await runThroughQueues(f, id)).status, 'completed');
    assert.deepEqual(
      ours().filter((c) => tagOfContact(c) === key),
      [],
      'the contact its user deleted did not come back',
    );
    const folders = [...mailbox.folders.values()].map((x) => x.displayName).filter((n) => n.startsWith(id));
    assert.deepEqual(folders, [`${id} plain`], 'the per-value folders are emptied and gone');
  });
});

describe('a template back to a plain name reads each per-value folder first (issue 15, item 7)', () => {
  for (const onUserDelete of ['keep', 'restore'] as const)
    it(`a contact moved out of a per-value folder is released; one deleted there stays deleted unless restored (onUserDelete: ${onUserDelete})`, async () => {
      const f = world.f;
      const id = `unpart${++world.sequences}`;
      const use = (name: string): void => {
        f.writePolicies([
          {
            id,
            name: id,
            connection: 'contoso',
            source: { type: 'directory' },
            targets: { type: 'users', users: world.targets },
            folder: { name },
            options: { onUserDelete },
          },
        ]);
        (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
      };
      use(`${id} {department}`);
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      const mailbox = f.sim.tenant.mailbox(world.targets[0]!)!;
      const tagged = (key: string) => [...mailbox.contacts.values()].filter((c) => tagOfContact(c) === key);
      const ours = [...mailbox.contacts.values()].filter((c) => tagOfContact(c)?.startsWith(`${id}|`));
      const [moved, deleted] = [ours[0]!, ours[1]!];
      const [movedKey, deletedKey] = [tagOfContact(moved)!, tagOfContact(deleted)!];
      const own = mailbox.createFolder(`${id} mine`, mailbox.contactsFolderId).id;
      // Just before the switch, with no run in between to read either.
      mailbox.moveContact(moved, own, new Date());
      mailbox.deleteContact(deleted);
      use(`${id} plain`);
      assert.equal((await runThroughQueues(f, id)).status, 'completed');

      const plain = mailbox.folderByName(`${id} plain`, mailbox.contactsFolderId)!.id;
      const inOwn = [...mailbox.contacts.values()].filter((c) => c.folderId === own);
      assert.equal(inOwn.length, 1, 'the moved contact stays in its user folder');
      assert.ok(tagOfContact(inOwn[0]!)?.startsWith('~released|'), 'and our tag on it is released');
      const expected = onUserDelete === 'keep' ? 0 : 1;
      for (const key of [movedKey, deletedKey])
        assert.deepEqual(
          tagged(key).map((c) => c.folderId),
          Array<string>(expected).fill(plain),
          `${key}: ${expected} in the plain folder, none elsewhere`,
        );
      const folders = [...mailbox.folders.values()].map((x) => x.displayName).filter((n) => n.startsWith(id));
      assert.deepEqual(folders.sort(), [`${id} mine`, `${id} plain`], 'the per-value folders are gone');
      // Settled: a run with no change writes nothing, and the user's folder is not touched.
      const mark = f.sim.log.lastSeq;
      assert.equal((await runThroughQueues(f, id)).status, 'completed');
      assert.deepEqual(writesSince(f.sim, mark), []);
    });
});

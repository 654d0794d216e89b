// Review of issue 17 through the real Functions handlers: a take-over never leaves a contact twice
// (a failed adopt is tried again, never created beside), never touches contacts users add later, and
// one pass deletes within one threshold; a mailbox leaving the targets is held back by its own rule.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { PolicyInput } from '../../../src/sync/config/schema';
import { startRun } from '../../../src/app/use-cases';
import { removePolicy } from '../../../src/app/remove-policy';
import { logger } from '../../../src/app/logging';
import type { SimContact, SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { functionsFixture, usersPolicy as policy, type FunctionsFixture } from '../../support/functions-app';
import { folderContacts, tagOf } from '../../support/engine';
import { decodeParts } from '../../support/mime';

const oldToolTime = new Date('2026-01-01T00:00:00Z');

describe('take-over and cleanup limits (review of issue 17)', () => {
  let f: FunctionsFixture;
  let users: SimUser[];
  let policies: PolicyInput[] = [];
  const setPolicies = (next: PolicyInput[]): void => {
    policies = next;
    f.writePolicies(policies);
    f.advanceClock(31_000); // past the app's 30-second cache of the policy file
  };
  const runNow = async (id: string, force = false): Promise<string> => {
    const found = (await f.app.policy(id))!;
    const started = await startRun(f.app, found.policy, 'cli', {
      dryRun: false,
      fullResync: force,
      mailboxes: [],
    });
    assert.ok(started.started);
    await f.runner.drain();
    return started.runId;
  };
  /** The old tool's folder: a contact for each of `colleagues`, and `strangers` nobody matches. */
  const seedOldTool = (
    owner: SimUser,
    folder: string,
    colleagues: SimUser[],
    strangers = 0,
  ): SimContact[] => {
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    const folderId = mailbox.createFolder(folder, mailbox.contactsFolderId).id;
    const make = (name: string, address: string): SimContact =>
      mailbox.createContact(
        folderId,
        { displayName: name, emailAddresses: [{ address, name }] },
        [],
        oldToolTime,
      );
    return [
      ...colleagues.map((u) => make(u.displayName!, u.mail!)),
      ...Array.from({ length: strangers }, (_, i) => make(`Stranger ${i}`, `stranger${i}@fabrikam.example`)),
    ];
  };
  const withAddress = (contacts: SimContact[], address: string): SimContact[] =>
    contacts.filter((c) =>
      (c.data.emailAddresses as { address: string }[] | undefined)?.some(
        (e) => e.address.toLowerCase() === address.toLowerCase(),
      ),
    );

  before(async () => {
    f = await functionsFixture({
      sim: {
        seed: { generate: { users: 14, mailboxes: 8, awkward: false } },
        latency: { meanMs: 0, jitterMs: 0 },
      },
      policies: () => [],
    });
    users = [...f.sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
  });
  after(() => f.close());

  it('a failed adopt creates no twin beside the old contact, and the next pass adopts it', async () => {
    const [owner, colleague] = [users[0]!, users[1]!];
    const [old] = seedOldTool(owner, 'Folder adoptfail', [colleague]);
    setPolicies([...policies, policy('adoptfail', [owner], { options: { unmanagedContacts: 'adopt' } })]);
    // The connection breaks on every tagging PATCH of this pass: its outcome is unknown.
    f.sim.faults.add({ kind: 'reset', match: { operation: 'contacts.update', mailbox: owner.id } });
    await runNow('adoptfail');
    f.sim.faults.clear();
    const first = withAddress(
      folderContacts(f.sim, owner.userPrincipalName, 'Folder adoptfail'),
      colleague.mail!,
    );
    assert.deepEqual(
      first.map((c) => c.id),
      [old!.id],
      'the colleague is in the folder once: ours was not created beside the old contact',
    );
    await runNow('adoptfail');
    const second = withAddress(
      folderContacts(f.sim, owner.userPrincipalName, 'Folder adoptfail'),
      colleague.mail!,
    );
    assert.deepEqual(
      second.map((c) => c.id),
      [old!.id],
      'still once: the old contact was adopted on the next pass',
    );
    assert.match(tagOf(second[0]!) ?? '', /^adoptfail\|/, 'and carries our tag');
  });

  it('an adopt whose reply is lost (the tag applied) leaves no twin either: the next pass keeps the tagged contact', async () => {
    const [owner, colleague] = [users[5]!, users[6]!];
    const [old] = seedOldTool(owner, 'Folder lost', [colleague]);
    setPolicies([...policies, policy('lost', [owner], { options: { unmanagedContacts: 'adopt' } })]);
    f.sim.faults.add({ kind: 'lostReply', match: { operation: 'contacts.update', mailbox: owner.id } });
    const first = await runNow('lost');
    f.sim.faults.clear();
    const [outcome] = await f.app.runStore.listOutcomes(first);
    assert.match(
      outcome!.result!.errors.map((e) => e.code).join(' '),
      /ReplyLost/,
      'the lost reply is reported',
    );
    await runNow('lost');
    await runNow('lost');
    await runNow('lost', true);
    const left = withAddress(folderContacts(f.sim, owner.userPrincipalName, 'Folder lost'), colleague.mail!);
    assert.deepEqual(
      left.map((c) => c.id),
      [old!.id],
      'the colleague is there once, the old contact',
    );
    assert.match(tagOf(left[0]!) ?? '', /^lost\|/);
  });

  it('remove: contacts a user adds after the take-over are never touched, not even by a forced run', async () => {
    const [owner, colleague] = [users[2]!, users[3]!];
    const [matched, stranger] = seedOldTool(owner, 'Folder later', [colleague], 1);
    setPolicies([
      ...policies,
      policy('later', [owner], {
        options: { unmanagedContacts: 'remove', deletionThreshold: { percent: 100, minimum: 50 } },
      }),
    ]);
    await runNow('later');
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    assert.equal(
      mailbox.contact(stranger!.id),
      undefined,
      "the old tool's contact nobody matches is removed",
    );
    assert.match(tagOf(mailbox.contact(matched!.id)!) ?? '', /^later\|/, 'the match is adopted');
    // Afterwards the user adds their own: one nobody matches, one for a colleague we already hold.
    const folderId = mailbox.folderByName('Folder later', mailbox.contactsFolderId)!.id;
    const plumber = mailbox.createContact(
      folderId,
      { displayName: 'My plumber', emailAddresses: [{ address: 'plumber@example.org' }] },
      [],
      new Date(),
    );
    const mine = mailbox.createContact(
      folderId,
      { displayName: colleague.displayName, emailAddresses: [{ address: colleague.mail! }] },
      [],
      new Date(),
    );
    await runNow('later');
    await runNow('later', true);
    assert.ok(mailbox.contact(plumber.id), "the user's own contact stays");
    assert.ok(mailbox.contact(mine.id), "the user's own copy of a colleague stays");
    assert.equal(tagOf(mailbox.contact(mine.id)!), undefined, 'and is not adopted');

    // A folder taken over by a version that kept no instant: what users add is left alone too.
    const state = (await f.app.mailboxStore.loadFolder('later', owner.id))!;
    delete state.takeOverBefore;
    await f.app.mailboxStore.saveFolder('later', owner.id, state);
    const another = mailbox.createContact(
      folderId,
      { displayName: 'My dentist', emailAddresses: [{ address: 'dentist@example.org' }] },
      [],
      new Date(),
    );
    await runNow('later', true);
    assert.ok(mailbox.contact(another.id), 'kept after an upgrade');
  });

  it('the old tool writing after the take-over leaves a twin, even through a forced run; remove --mailbox and a run take the folder over again (docs/migrate.md)', async () => {
    const [owner, colleague] = [users[4]!, users[7]!];
    seedOldTool(owner, 'Folder still', [colleague]);
    setPolicies([...policies, policy('still', [owner], { options: { unmanagedContacts: 'remove' } })]);
    await runNow('still');
    const inFolder = (): SimContact[] =>
      withAddress(folderContacts(f.sim, owner.userPrincipalName, 'Folder still'), colleague.mail!);
    assert.equal(inFolder().length, 1);
    // The old tool was left running: it writes the colleague again after the take-over.
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    const folderId = mailbox.folderByName('Folder still', mailbox.contactsFolderId)!.id;
    const late = mailbox.createContact(
      folderId,
      {
        displayName: colleague.displayName,
        emailAddresses: [{ address: colleague.mail!, name: colleague.displayName }],
      },
      [],
      new Date(f.app.now().getTime() + 60_000),
    );
    await runNow('still');
    await runNow('still', true);
    assert.equal(inFolder().length, 2, "a contact written after the take-over may be a user's own: it stays");
    // What docs/migrate.md says to do once the old tool is stopped: remove ours there, then run.
    const removed = await removePolicy(
      f.app,
      { policyId: 'still', mailboxes: [owner.userPrincipalName], dryRun: false },
      logger({ log: () => undefined, warn: () => undefined, error: () => undefined }),
    );
    assert.equal(removed.totals.failed, 0);
    await runNow('still');
    assert.deepEqual(
      inFolder().map((c) => c.id),
      [late.id],
      'the colleague is there once: the late contact, taken over',
    );
    assert.match(tagOf(inFolder()[0]!) ?? '', /^still\|/);
  });

  it('mailboxes leaving the targets: a share of them per run (at least one); more is HELD BACK in the run and the report mail; no target left is never cleaned by a run', async () => {
    const targets = users.slice(0, 5);
    const admin = users.at(-1)!;
    const depart = (to: string[]): PolicyInput =>
      policy('depart', [], {
        targets: { type: 'users', users: to },
        notify: { recipients: ['it-admins@contoso.example'], sender: admin.userPrincipalName },
      });
    const ours = (u: SimUser): number =>
      folderContacts(f.sim, u.userPrincipalName, 'Folder depart').filter((c) =>
        tagOf(c)?.startsWith('depart|'),
      ).length;
    const others = policies.filter((p) => p.id !== 'depart');
    setPolicies([...others, depart(targets.map((u) => u.userPrincipalName))]);
    await runNow('depart');
    assert.ok(targets.every((u) => ours(u) > 0));
    const mails = (): number => f.sim.tenant.mailbox(admin.id)!.sentMail.length;
    const mailsBefore = mails();

    // Four of five leave at once (a group emptied by mistake looks like this): held back.
    setPolicies([...others, depart([targets[0]!.userPrincipalName])]);
    const held = (await f.app.runStore.getRun(await runNow('depart')))!;
    assert.deepEqual(held.departedHeldBack, { mailboxes: 4, known: 5, limit: 1, noTarget: false });
    assert.ok(
      targets.slice(1).every((u) => ours(u) > 0),
      'their contacts stay',
    );
    assert.equal(mails(), mailsBefore + 1, 'a held-back run is reported (notify: onErrors)');
    const report = String(f.sim.tenant.mailbox(admin.id)!.sentMail.at(-1)!.message.mime);
    assert.match(decodeParts(report).text, /^HELD BACK: 4 mailboxes that left the policy's targets/m);
    assert.match(decodeParts(report).text.split('\n')[0]!, /held back/i, 'the subject says so');

    // A forced run cleans them.
    await runNow('depart', true);
    assert.ok(
      targets.slice(1).every((u) => ours(u) === 0),
      'forced: cleaned',
    );
    assert.ok(ours(targets[0]!) > 0);

    // No target at all: not even a forced run empties the last mailbox.
    setPolicies([...others, depart(['nobody@contoso.example'])]);
    const none = (await f.app.runStore.getRun(await runNow('depart', true)))!;
    assert.deepEqual(none.departedHeldBack, { mailboxes: 1, known: 1, limit: 1, noTarget: true });
    assert.ok(ours(targets[0]!) > 0, 'the last mailbox keeps its contacts');
    const last = decodeParts(String(f.sim.tenant.mailbox(admin.id)!.sentMail.at(-1)!.message.mime)).text;
    assert.match(last, /no target is left: .*remove --policy depart/);
  });

  it('a run reads the source rows for the take-over once, not once per mailbox, and lists its mailboxes from an index, not a scan of every contact row', async () => {
    const owners = users.slice(0, 4);
    for (const u of owners) seedOldTool(u, 'Folder once', [users[5]!]);
    let entriesRead = 0;
    const scans: string[] = [];
    f.app.tables.sources.pipeline.addPolicy({
      name: 'count-entries',
      sendRequest: async (req, next) => {
        const res = await next(req);
        if (req.method === 'GET' && res.bodyAsText)
          entriesRead += ((JSON.parse(res.bodyAsText) as { value?: object[] }).value ?? []).filter(
            (e) => 'entry' in e,
          ).length;
        return res;
      },
    });
    f.app.tables.mailboxes.pipeline.addPolicy({
      name: 'record-scans',
      sendRequest: (req, next) => {
        if (req.method === 'GET' && /PartitionKey(%20|\+| )ge/.test(decodeURIComponent(req.url)))
          scans.push(req.url);
        return next(req);
      },
    });
    try {
      setPolicies([...policies, policy('once', owners, { options: { unmanagedContacts: 'adopt' } })]);
      await runNow('once'); // the first run indexes the (empty) mailbox list once
      const rows = (await f.app.sourceStore.load('once')).rows.size;
      entriesRead = 0;
      scans.length = 0;
      for (const u of owners) seedOldTool(u, 'Folder once 2', [users[6]!]);
      setPolicies([
        ...policies.filter((p) => p.id !== 'once'),
        policy('once', owners, {
          folder: { name: 'Folder once 2' },
          options: { unmanagedContacts: 'adopt' },
        }),
      ]);
      await runNow('once');
      assert.ok(
        owners.every((u) =>
          folderContacts(f.sim, u.userPrincipalName, 'Folder once 2').every((c) =>
            tagOf(c)?.startsWith('once|'),
          ),
        ),
        'each mailbox took its folder over',
      );
      assert.ok(
        entriesRead <= 2 * rows,
        `source rows read ${entriesRead} times over ${rows} rows: the refresh and the take-over once each, not once per mailbox`,
      );
      assert.deepEqual(scans, [], 'no scan across the mailboxes of the policy');
      assert.deepEqual(
        (await f.app.mailboxStore.listMailboxes('once')).sort(),
        owners.map((u) => u.id).sort(),
      );
    } finally {
      f.app.tables.sources.pipeline.removePolicy({ name: 'count-entries' });
      f.app.tables.mailboxes.pipeline.removePolicy({ name: 'record-scans' });
    }
  });

  it('the mailbox index: state written before it existed is found (and indexed), state cleared leaves it', async () => {
    const ids = [randomUUID(), randomUUID()];
    const folder = { folderId: 'f', folderName: 'F', deltaLink: null, dirtyContactIds: [] };
    for (const id of ids) await f.app.mailboxStore.saveFolder('legacy', id, folder);
    // As an older version left it: folder rows, no index.
    for await (const e of f.app.tables.mailboxes.listEntities({
      queryOptions: { filter: "PartitionKey eq 'legacy~mailboxes'" },
    }))
      await f.app.tables.mailboxes.deleteEntity(e.partitionKey!, e.rowKey!);
    assert.deepEqual((await f.app.mailboxStore.listMailboxes('legacy')).sort(), [...ids].sort());
    await f.app.mailboxStore.clear('legacy', ids[0]!);
    assert.deepEqual(await f.app.mailboxStore.listMailboxes('legacy'), [ids[1]]);
  });

  it("one pass deletes within one threshold: a take-over's removals and the plan's deletions count together", async () => {
    const owner = users[4]!;
    seedOldTool(owner, 'Folder one', [], 6);
    const one = (unmanagedContacts: 'leave' | 'remove'): PolicyInput =>
      policy('one', [owner], {
        options: { unmanagedContacts, deletionThreshold: { percent: 0, minimum: 6 } },
      });
    setPolicies([...policies.filter((p) => p.id !== 'one'), one('leave')]);
    await runNow('one');
    // Five colleagues leave the company, and the policy starts removing the old tool's six contacts.
    const leavers = [...f.sim.tenant.users.values()].filter((u) => u.mail && u.id !== owner.id).slice(0, 5);
    assert.equal(leavers.length, 5);
    for (const u of leavers) f.sim.tenant.deleteUser(u.id);
    setPolicies([...policies.filter((p) => p.id !== 'one'), one('remove')]);
    const runId = await runNow('one');
    const [outcome] = await f.app.runStore.listOutcomes(runId);
    const r = outcome!.result!;
    assert.equal(r.takeOver?.removed, 6, "the old tool's six are removed (within the threshold of 6)");
    assert.equal(r.deleted, 0, 'the plan may delete no more in the same pass');
    assert.equal(r.deletionsBlocked?.wanted, 5, 'its five deletions are held back');
  });
});

// Issue 17, review: an adopt Graph refuses for good (400/403 on the tagging PATCH) must not freeze
// that person. Three refusals, then the old contact is left as it is (never deleted, not even under
// `remove`) and ours is created beside it, reported as AdoptFailed; transient failures still retry.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicyInput } from '../../../src/sync/config/schema';
import { startRun } from '../../../src/app/use-cases';
import type { SimContact, SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { functionsFixture, usersPolicy as policy, type FunctionsFixture } from '../../support/functions-app';
import { folderContacts, tagOf } from '../../support/engine';
import { decodeParts } from '../../support/mime';

const oldToolTime = new Date('2026-01-01T00:00:00Z');
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
/** A request path naming this contact (the app asks Graph for immutable ids). */
const naming = (c: SimContact): RegExp => new RegExp(`${escape(c.id)}|${escape(c.immutableId)}`);

describe('a take-over whose adopt Graph refuses for good (review of issue 17)', () => {
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
  const seedOldTool = (owner: SimUser, folder: string, colleagues: SimUser[]): SimContact[] => {
    const mailbox = f.sim.tenant.mailbox(owner.id)!;
    const folderId = mailbox.createFolder(folder, mailbox.contactsFolderId).id;
    return colleagues.map((u) =>
      mailbox.createContact(
        folderId,
        { displayName: u.displayName!, emailAddresses: [{ address: u.mail!, name: u.displayName! }] },
        [],
        oldToolTime,
      ),
    );
  };
  const withAddress = (owner: SimUser, folder: string, address: string): SimContact[] =>
    folderContacts(f.sim, owner.userPrincipalName, folder).filter((c) =>
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

  it('adopt: refused (400) twice, the person stays once (no twin); the third refusal leaves it, creates ours and reports AdoptFailed; never PATCHed again', async () => {
    const [owner, colleague, other, admin] = [users[0]!, users[1]!, users[2]!, users[7]!];
    const [old] = seedOldTool(owner, 'Folder refused', [colleague, other]);
    setPolicies([
      ...policies,
      policy('refused', [owner], {
        options: { unmanagedContacts: 'adopt' },
        notify: { recipients: ['it-admins@contoso.example'], sender: admin.userPrincipalName },
      }),
    ]);
    f.sim.faults.add({
      kind: 'refuse',
      status: 400,
      match: { operation: 'contacts.update', mailbox: owner.id, path: naming(old!) },
    });
    const colleagueHere = (): SimContact[] => withAddress(owner, 'Folder refused', colleague.mail!);
    for (const pass of [1, 2]) {
      const [outcome] = await f.app.runStore.listOutcomes(await runNow('refused'));
      assert.deepEqual(
        colleagueHere().map((c) => c.id),
        [old!.id],
        `pass ${pass}: once, the old contact (a refusal may still be passing)`,
      );
      assert.match(outcome!.result!.errors.map((e) => e.code).join(' '), /ErrorInvalidRequest/);
      assert.doesNotMatch(outcome!.result!.errors.map((e) => e.code).join(' '), /AdoptFailed/);
    }
    const mails = (): number => f.sim.tenant.mailbox(admin.id)!.sentMail.length;
    const mailsBefore = mails();
    const [third] = await f.app.runStore.listOutcomes(await runNow('refused'));
    const failed = third!.result!.errors.filter((e) => e.code === 'AdoptFailed');
    assert.equal(failed.length, 1, 'AdoptFailed, once, for that contact');
    assert.match(
      failed[0]!.message,
      new RegExp(`"${colleague.displayName!}" <${colleague.mail!}>.*refused it 3 times`),
    );
    assert.equal(third!.result!.takeOver!.adoptFailed, 1, 'counted in the take-over totals');
    const both = colleagueHere();
    assert.equal(both.length, 2, 'the old contact and ours');
    assert.equal(
      tagOf(both.find((c) => c.id === old!.id)!) ?? null,
      null,
      'the old contact is left as it was',
    );
    assert.match(tagOf(both.find((c) => c.id !== old!.id)!) ?? '', /^refused\|/, 'ours carries our tag');
    assert.match(
      tagOf(withAddress(owner, 'Folder refused', other.mail!)[0]!) ?? '',
      /^refused\|/,
      'the other adopted',
    );
    assert.equal(mails(), mailsBefore + 1, 'the run is reported');
    const report = decodeParts(String(f.sim.tenant.mailbox(admin.id)!.sentMail.at(-1)!.message.mime)).text;
    assert.match(report, /1 could not be adopted \(left, ours created\)/);
    assert.match(report, /AdoptFailed/);

    const refusedSoFar = f.sim.faults.hits()[0];
    assert.equal(refusedSoFar, 3);
    await runNow('refused', true);
    assert.equal(f.sim.faults.hits()[0], 3, 'a forced pass does not send the refused PATCH again');
    assert.equal(colleagueHere().length, 2, 'no third contact');
    f.sim.faults.clear();
  });

  it('remove: a contact Graph refused (403) three times is never deleted, not even by a forced run; ours is created', async () => {
    const [owner, colleague] = [users[3]!, users[4]!];
    const [old] = seedOldTool(owner, 'Folder refusedrm', [colleague]);
    setPolicies([...policies, policy('refusedrm', [owner], { options: { unmanagedContacts: 'remove' } })]);
    f.sim.faults.add({
      kind: 'refuse',
      status: 403,
      match: { operation: 'contacts.update', mailbox: owner.id, path: naming(old!) },
    });
    for (let i = 0; i < 3; i++) await runNow('refusedrm');
    await runNow('refusedrm', true);
    await runNow('refusedrm', true);
    const here = withAddress(owner, 'Folder refusedrm', colleague.mail!);
    assert.equal(here.length, 2, 'the old contact (not deleted) and ours');
    assert.ok(here.some((c) => c.id === old!.id && (tagOf(c) ?? null) === null));
    assert.ok(here.some((c) => /^refusedrm\|/.test(tagOf(c) ?? '')));
    assert.equal(f.sim.faults.hits()[0], 3);
    f.sim.faults.clear();
  });

  it('a transient failure (503) is no refusal: however often, the person stays once and is adopted when Graph answers', async () => {
    const [owner, colleague] = [users[5]!, users[6]!];
    const [old] = seedOldTool(owner, 'Folder flaky', [colleague]);
    setPolicies([...policies, policy('flaky', [owner], { options: { unmanagedContacts: 'adopt' } })]);
    f.sim.faults.add({
      kind: 'status',
      status: 503,
      retryAfterSeconds: 0,
      match: { operation: 'contacts.update', mailbox: owner.id, path: naming(old!) },
    });
    for (let i = 0; i < 4; i++) {
      const [outcome] = await f.app.runStore.listOutcomes(await runNow('flaky'));
      assert.doesNotMatch(outcome!.result!.errors.map((e) => e.code).join(' '), /AdoptFailed/);
      assert.deepEqual(
        withAddress(owner, 'Folder flaky', colleague.mail!).map((c) => c.id),
        [old!.id],
        `pass ${i + 1}: no twin`,
      );
    }
    f.sim.faults.clear();
    await runNow('flaky');
    const here = withAddress(owner, 'Folder flaky', colleague.mail!);
    assert.deepEqual(
      here.map((c) => c.id),
      [old!.id],
    );
    assert.match(tagOf(here[0]!) ?? '', /^flaky\|/);
  });
});

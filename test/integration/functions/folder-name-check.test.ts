// FOLDER_NAME_CHECK_HOURS: a steady-state run costs one Graph request per mailbox (its contacts
// delta); the folder's name is read at most once per window, so a user's rename is undone by the
// first run past it, and a deleted folder is noticed at once by its delta read (404).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { folderContacts, tagCounts } from '../../support/engine';
import { functionsFixture, usersPolicy, type FunctionsFixture } from '../../support/functions-app';
import { folderOf } from '../../support/invariant';
import { runThroughQueues } from '../../model/pipeline';

const hourMs = 3_600_000;

describe('FOLDER_NAME_CHECK_HOURS: the folder name is read at most once per window', () => {
  let f: FunctionsFixture;
  let targets: SimUser[];
  /** The targets whose mailbox the first run synced (one may have no mailbox). */
  let synced: number;
  const folder = 'Folder names';
  before(async () => {
    f = await functionsFixture({
      sim: { seed: { generate: { users: 12, mailboxes: 3 } } },
      env: { FOLDER_NAME_CHECK_HOURS: '6' },
      policies: (sim) => {
        targets = [...sim.tenant.users.values()].filter((u) => u.mailbox === 'user' && u.accountEnabled);
        return [usersPolicy('names', targets, { folder: { name: folder } })];
      },
    });
  });
  after(() => f.close());

  /** A run through the queues; the Graph requests it sent against the mailboxes, by operation. */
  const runCounted = async (): Promise<Map<string, number>> => {
    const since = f.sim.log.lastSeq;
    const run = await runThroughQueues(f, 'names');
    assert.equal(run.status, 'completed');
    assert.equal(run.mailboxes.failed, 0);
    synced = run.mailboxes.succeeded;
    const ops = new Map<string, number>();
    for (const e of f.sim.log.since(since))
      if (e.operation.startsWith('contact')) ops.set(e.operation, (ops.get(e.operation) ?? 0) + 1);
    return ops;
  };

  it('a steady-state run reads each mailbox once: its delta, not its folder name', async () => {
    await runCounted();
    f.advanceClock(hourMs);
    const ops = await runCounted();
    assert.deepEqual(Object.fromEntries(ops), { 'contacts.delta': synced });
  });

  it("a user's rename stays until the window has passed, then the policy's name comes back", async () => {
    const mailbox = f.sim.tenant.mailbox(targets[0]!.userPrincipalName)!;
    const id = folderOf(mailbox, folder)!;
    mailbox.folders.get(id)!.displayName = 'Mine now';
    f.advanceClock(hourMs);
    const early = await runCounted();
    assert.equal(early.get('contactFolders.get') ?? 0, 0, 'not read within the window');
    assert.equal(mailbox.folders.get(id)!.displayName, 'Mine now');
    f.advanceClock(5 * hourMs);
    const late = await runCounted();
    assert.equal(late.get('contactFolders.get'), synced, 'each name read once past the window');
    assert.equal(mailbox.folders.get(id)!.displayName, folder, 'renamed back, in place');
    assert.equal(folderOf(mailbox, folder), id);
    f.advanceClock(hourMs);
    assert.equal((await runCounted()).get('contactFolders.get') ?? 0, 0, 'and not again within the window');
  });

  it('a folder its user deleted is recreated with its contacts at the next run, within the window', async () => {
    const upn = targets[1]!.userPrincipalName;
    const mailbox = f.sim.tenant.mailbox(upn)!;
    const before = folderContacts(f.sim, upn, folder).length;
    assert.ok(before > 0);
    mailbox.deleteFolder(folderOf(mailbox, folder)!);
    f.advanceClock(hourMs);
    await runCounted();
    const after = folderContacts(f.sim, upn, folder);
    assert.equal(after.length, before, 'recreated and filled');
    assert.ok(
      [...tagCounts(after).values()].every((n) => n === 1),
      'one contact per tag',
    );
  });
});

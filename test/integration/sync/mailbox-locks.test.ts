// Defect 4 of issue 15: the mailbox lock is renewed while a pass runs, and free once it ended.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { MailboxLocks } from '../../../src/adapters/tables/mailbox-locks';
import { ensureTable, tableNames } from '../../../src/adapters/tables/table-stores';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const soon = (ms: number): Date => new Date(Date.now() + ms);

describe('the mailbox lock (issue 15, defect 4)', () => {
  let azurite: AzuriteHandle;
  let locks: MailboxLocks;
  before(async () => {
    azurite = await startAzurite();
    const table = azurite.tableClient(tableNames.mailboxes);
    await ensureTable(table);
    locks = new MailboxLocks(table);
  });
  after(() => azurite.close());

  it('is renewed while a pass runs past its first expiry, and taken by another worker only after', async () => {
    assert.ok(await locks.tryLock('p', 'm1', 'worker-1', soon(300), new Date()));
    const renewal = locks.keepLocked('p', 'm1', 'worker-1', 300, 100);
    await sleep(700); // twice the first expiry
    assert.equal(await locks.tryLock('p', 'm1', 'worker-2', soon(300), new Date()), false, 'still held');
    await renewal.stop();
    await sleep(400);
    assert.ok(await locks.tryLock('p', 'm1', 'worker-2', soon(300), new Date()), 'free once renewals stop');
  });
});

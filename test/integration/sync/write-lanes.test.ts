// The Graph adapter's write lanes against the simulator (which refuses a 5th concurrent request
// to a mailbox with 429 MailboxConcurrency).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { WriteOp } from '../../../src/sync/ports';
import { engineFixture, folderContacts, type EngineFixture } from '../../support/engine';

describe('Graph writes to one mailbox: 4 lanes with even shares', () => {
  let f: EngineFixture;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 3, mailboxes: 1, awkward: false } } });
  });
  after(() => f.close());

  it('sends 200 creates as 12 batches (8 of 20, 4 of 10), each contact once, never throttled', async () => {
    const mailbox = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user')!;
    const folderId = await f.mailboxes.createFolder(mailbox.id, 'Lanes');
    const ops: WriteOp[] = Array.from({ length: 200 }, (_, i) => ({
      id: `c${i}`,
      kind: 'create',
      folder: { kind: 'named', id: folderId },
      body: () => ({ displayName: `Contact ${i}`, givenName: 'Contact', surname: String(i) }),
    }));
    const sizes: number[] = [];
    const results = await f.mailboxes.write(mailbox.id, ops, {
      beforeBatch: (batch) => {
        sizes.push(batch.length);
        return Promise.resolve();
      },
    });
    assert.deepEqual(
      sizes.sort((a, b) => a - b),
      [10, 10, 10, 10, 20, 20, 20, 20, 20, 20, 20, 20],
    );
    assert.equal(results.filter((r) => r.outcome === 'ok').length, 200);
    assert.equal(f.sim.log.count({ status: 429 }), 0, 'never more than 4 in flight');
    const names = folderContacts(f.sim, mailbox.userPrincipalName, 'Lanes').map((c) => c.data.displayName);
    assert.equal(new Set(names).size, 200);
    assert.equal(names.length, 200);
  });
});

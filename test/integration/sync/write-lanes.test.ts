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

  it('a failed state write stops every lane: no batch starts after it, and none is in flight when write rejects', async () => {
    const mailbox = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user')!;
    const folderId = await f.mailboxes.createFolder(mailbox.id, 'Stop');
    const ops: WriteOp[] = Array.from({ length: 200 }, (_, i) => ({
      id: `c${i}`,
      kind: 'create',
      folder: { kind: 'named', id: folderId },
      body: () => ({ displayName: `Stop ${i}`, givenName: 'Stop', surname: String(i) }),
    }));
    let failed = false;
    let startedAfterFailure = 0;
    await assert.rejects(
      f.mailboxes.write(mailbox.id, ops, {
        beforeBatch: () => {
          if (failed) startedAfterFailure++;
          return Promise.resolve();
        },
        onResults: () => {
          if (failed) return Promise.resolve();
          failed = true;
          return Promise.reject(new Error('Table Storage answered 503'));
        },
      }),
      /503/,
    );
    const settled = f.sim.log.lastSeq;
    const made = folderContacts(f.sim, mailbox.userPrincipalName, 'Stop').length;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(startedAfterFailure, 0, 'no lane starts a batch once a state write failed');
    assert.equal(f.sim.log.lastSeq, settled, 'no request was still in flight');
    assert.equal(folderContacts(f.sim, mailbox.userPrincipalName, 'Stop').length, made);
    assert.ok(made <= 80, `at most one batch per lane was sent (${made})`);
  });
});

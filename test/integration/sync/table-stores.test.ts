import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { TableSourceStore, ensureTable } from '../../../src/adapters/tables/table-stores';
import type { SourceMeta, SourceRow } from '../../../src/sync/ports';
import { emptyEntry } from '../../../src/sync/directory';
import { contentHash, type ContactFields } from '../../../src/sync/mapping';

const meta: SourceMeta = {
  userDeltaLink: null,
  orgContactDeltaLink: null,
  groupDeltaLink: null,
  mailboxDeltaLink: null,
  refreshedAt: '2026-12-01T00:00:00.000Z',
};

function row(n: number, jobTitle = 'Engineer'): SourceRow {
  const fields: ContactFields = {
    displayName: `User ${n}`,
    jobTitle,
    emailAddresses: [{ address: `user${n}@contoso.example`, name: `User ${n}` }],
  };
  return {
    key: `user:${n}`,
    entry: { ...emptyEntry('user', String(n)), displayName: `User ${n}` },
    desired: { fields, hash: contentHash(fields) },
    exclusion: null,
  };
}

describe('the source snapshot in Table Storage, as mailbox workers read it', () => {
  let azurite: AzuriteHandle;
  let reads = 0;
  let store: TableSourceStore;
  before(async () => {
    azurite = await startAzurite();
    const table = azurite.tableClient('syncsources');
    table.pipeline.addPolicy({
      name: 'count-reads',
      sendRequest: (req, next) => {
        if (req.method === 'GET') reads++;
        return next(req);
      },
    });
    await ensureTable(table);
    store = new TableSourceStore(table);
    await store.save('p1', [row(1), row(2), row(3)], [], meta);
  });
  after(() => azurite.close());

  it('gives each desired contact its hash and fields, parsed from the stored row', async () => {
    const desired = await store.loadDesired('p1');
    assert.deepEqual([...desired.keys()].sort(), ['user:1', 'user:2', 'user:3']);
    const one = desired.get('user:1')!;
    assert.equal(one.hash, row(1).desired!.hash);
    assert.deepEqual(one.fields, row(1).desired!.fields);
    // Parsed anew on each read: a worker that changes its copy changes nobody else's.
    (one.fields as { jobTitle?: string }).jobTitle = 'changed by a caller';
    assert.equal(one.fields.jobTitle, 'Engineer');
  });

  it('shares one snapshot among concurrent workers of a process: one read of the rows, not one each', async () => {
    await store.save('p1', [row(4)], [], meta); // a new snapshot
    reads = 0;
    const loaded = await Promise.all(Array.from({ length: 8 }, () => store.loadDesired('p1')));
    assert.ok(
      loaded.every((d) => d === loaded[0]),
      'the same map for every worker',
    );
    assert.equal(loaded[0]!.size, 4);
    // 8 point reads of the snapshot id, and one listing of the rows.
    assert.equal(reads, 8 + 1);
  });

  it('reads the rows again once the source was refreshed, and sees the change', async () => {
    const old = await store.loadDesired('p1');
    await store.save('p1', [row(2, 'Director')], ['user:3'], { ...meta, refreshedAt: meta.refreshedAt });
    const fresh = await store.loadDesired('p1');
    assert.notEqual(fresh, old);
    assert.equal(fresh.get('user:2')!.fields.jobTitle, 'Director');
    assert.equal(fresh.has('user:3'), false);
    assert.equal(old.get('user:2')!.fields.jobTitle, 'Engineer', 'a worker holding the old one keeps it');
  });

  it('keeps policies apart', async () => {
    await store.save('p2', [row(9)], [], meta);
    assert.deepEqual([...(await store.loadDesired('p2')).keys()], ['user:9']);
    assert.equal((await store.loadDesired('p1')).has('user:9'), false);
  });
});

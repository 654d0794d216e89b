// A folder row's lists fit Azure Table Storage: a string property holds 32K UTF-16 characters (64 KiB),
// an entity 1 MiB. Azurite does not enforce the property limit, so this test's pipeline does, as the
// service would (400 PropertyValueTooLarge). Review 18, nit 9: the folders a template leaves behind
// (`retired`: up to maxFolders old and new per-value folders, plus former policy ids') must fit.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { TableMailboxStore, ensureTable } from '../../../src/adapters/tables/table-stores';
import type { FolderState } from '../../../src/sync/ports';

/** Azure Table Storage's limit on one string property, in UTF-16 code units. */
const maxStringChars = 32 * 1024;

describe("a folder row's retired folders in Table Storage (review 18, nit 9)", () => {
  let azurite: AzuriteHandle;
  let store: TableMailboxStore;
  before(async () => {
    azurite = await startAzurite();
    const table = azurite.tableClient('mailboxes');
    table.pipeline.addPolicy({
      name: 'table-property-limit',
      sendRequest: async (req, next) => {
        if (typeof req.body === 'string' && req.body.startsWith('{')) {
          const entity = JSON.parse(req.body) as Record<string, unknown>;
          for (const [k, v] of Object.entries(entity))
            if (typeof v === 'string' && v.length > maxStringChars)
              throw Object.assign(new Error(`PropertyValueTooLarge: ${k} holds ${v.length} characters`), {
                statusCode: 400,
              });
        }
        return next(req);
      },
    });
    await ensureTable(table);
    store = new TableMailboxStore(table);
  });
  after(() => azurite.close());

  it('300 retired folder ids of 160 characters (48,000) are stored and read back whole', async () => {
    // Graph's contact folder ids are about 150 characters (base64 of an Exchange entry id).
    const ids = Array.from(
      { length: 300 },
      (_, n) => `AAMkAD${String(n).padStart(4, '0')}${'x'.repeat(150)}`,
    );
    const folder: FolderState = {
      folderId: null,
      folderName: 'Partners',
      deltaLink: null,
      dirtyContactIds: [],
      retired: [null, ...ids],
    };
    await store.saveFolder('gal', 'mbx1', folder);
    assert.deepEqual((await store.loadFolder('gal', 'mbx1'))?.retired, [null, ...ids]);
    // Fewer again: no piece of the longer list is left behind.
    await store.saveFolder('gal', 'mbx1', { ...folder, retired: ids.slice(0, 2) });
    assert.deepEqual((await store.loadFolder('gal', 'mbx1'))?.retired, ids.slice(0, 2));
    assert.deepEqual((await store.load('gal', 'mbx1')).folder?.retired, ids.slice(0, 2));
  });
});

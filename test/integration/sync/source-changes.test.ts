// Defect 7 (issue 15): a policy whose mailbox source changes (source.mailbox, source.folder) or whose
// source folder is deleted and made again converges on the new source: the stored delta token of the
// old one is never read for the new one, and what the old source gave is removed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { policySchema, type PolicyInput } from '../../../src/sync/config/schema';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';
import { invariantViolations, snapshotUntagged, tagOfContact } from '../../support/invariant';
import { runThroughQueues } from '../../model/pipeline';

const buyer = 'buyer@contoso.example';
const office = 'office@contoso.example';
const ann = 'ann@contoso.example';

const base: PolicyInput = {
  id: 'suppliers',
  name: 'Suppliers',
  connection: 'contoso',
  source: { type: 'mailbox', mailbox: buyer, folder: 'Suppliers' },
  targets: { type: 'users', users: [ann] },
  folder: { name: 'Suppliers' },
};

describe('a mailbox source that changes (issue 15, defect 7)', () => {
  let f: FunctionsFixture;
  const add = (upn: string, folder: string, name: string): void => {
    const m = f.sim.tenant.mailbox(upn)!;
    const address = `${name.toLowerCase()}@example.net`;
    m.createContact(folder, { displayName: name, emailAddresses: [{ address, name }] }, [], new Date());
  };
  const use = (input: PolicyInput): ReturnType<typeof policySchema.parse> => {
    f.writePolicies([input]);
    (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
    return policySchema.parse(input);
  };
  const names = (): string[] =>
    [...f.sim.tenant.mailbox(ann)!.contacts.values()]
      .filter((c) => tagOfContact(c)?.startsWith('suppliers|'))
      .map((c) => String(c.data.displayName))
      .sort();
  const runAndCheck = async (input: PolicyInput, want: string[]): Promise<void> => {
    const policy = use(input);
    const before = snapshotUntagged(f.sim);
    const record = await runThroughQueues(f, 'suppliers');
    assert.equal(record.status, 'completed', JSON.stringify(record));
    assert.equal(record.mailboxes.failed, 0, JSON.stringify(record));
    assert.deepEqual(invariantViolations(f.sim, policy, before), []);
    assert.deepEqual(names(), want);
  };

  before(async () => {
    f = await functionsFixture({
      sim: {
        seed: {
          users: [buyer, office, ann].map((upn) => ({
            userPrincipalName: upn,
            displayName: upn.split('@')[0]!,
            mail: upn,
          })),
        },
      },
      policies: () => [base],
    });
    const m = f.sim.tenant.mailbox(buyer)!;
    const folder = m.createFolder('Suppliers', m.contactsFolderId).id;
    add(buyer, folder, 'Plumber');
    add(buyer, folder, 'Caterer');
    add(buyer, m.contactsFolderId, 'Private');
    add(office, f.sim.tenant.mailbox(office)!.contactsFolderId, 'Courier');
  });
  after(() => f.close());

  it('source.mailbox changed: the new mailbox is read in full, the old one left', async () => {
    await runAndCheck(base, ['Caterer', 'Plumber']);
    await runAndCheck({ ...base, source: { type: 'mailbox', mailbox: office, folder: null } }, ['Courier']);
  });

  it('source.folder changed: the other folder of the same mailbox', async () => {
    await runAndCheck({ ...base, source: { type: 'mailbox', mailbox: buyer, folder: null } }, ['Private']);
    await runAndCheck(base, ['Caterer', 'Plumber']);
  });

  it('the source folder deleted and made again: the new folder is the source', async () => {
    const m = f.sim.tenant.mailbox(buyer)!;
    m.deleteFolder(m.folderByName('Suppliers', m.contactsFolderId)!.id);
    add(buyer, m.createFolder('Suppliers', m.contactsFolderId).id, 'Glazier');
    await runAndCheck(base, ['Glazier']);
  });
});

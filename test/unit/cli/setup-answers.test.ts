// setup's questions without a terminal: every answer from its flag, --yes for the defaults, and a
// missing or bad answer named by its flag; the answers give the first policy, which the policy
// schema accepts and which asks for exactly the permissions its sources and targets need.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { askSetup, firstPolicy, MissingAnswerError } from '../../../src/cli/setup-answers';
import { policySchema } from '../../../src/sync/config/schema';
import { neededPermissions } from '../../../src/app/diagnostics';

const vault = 'https://kv-contoso.vault.azure.net';
const group = '6f1c2b1e-94a4-4a55-9a0b-2e2f0c6f0a11';

describe('setup answers: flags, --yes and the first policy', () => {
  it('--yes takes the defaults: the whole directory to every mailbox, in "Company Directory"', async () => {
    const a = await askSetup({ yes: true, vault }, false, {});
    const policy = policySchema.parse(firstPolicy(a));
    assert.equal(policy.targets.type, 'allMailboxes');
    assert.equal(policy.folder.name, 'Company Directory');
    assert.equal(a.signInClientId, '04b07795-8ddb-461a-bbee-02f9e1bf7b46');
    assert.deepEqual(
      neededPermissions([policy]).map((p) => p.permission),
      ['User.Read.All', 'Contacts.ReadWrite'],
    );
  });

  it('flags choose a group source and a group target; the policy then needs GroupMember.Read.All', async () => {
    const a = await askSetup(
      { vault, source: 'group', sourceGroup: group, target: 'group', targetGroup: group, folder: 'Staff' },
      false,
      {},
    );
    const policy = policySchema.parse(firstPolicy(a));
    assert.equal(policy.targets.type, 'groups');
    assert.deepEqual(policy.targets.groups, [group]);
    assert.ok(neededPermissions([policy]).some((p) => p.permission === 'GroupMember.Read.All'));
  });

  it('a shared mailbox source copies its contacts', async () => {
    const a = await askSetup(
      { vault, yes: true, source: 'mailbox', sourceMailbox: 'shared@contoso.com' },
      false,
      {},
    );
    assert.deepEqual(firstPolicy(a).source, { type: 'mailbox', mailbox: 'shared@contoso.com' });
  });

  it('without a terminal a missing answer is an error naming its flag; a bad one names the flag and what it needs', async () => {
    await assert.rejects(askSetup({ yes: true }, false, {}), (e: Error) => {
      assert.ok(e instanceof MissingAnswerError);
      assert.match(e.message, /--vault is needed/);
      return true;
    });
    await assert.rejects(askSetup({ vault, source: 'group' }, false, {}), /--source-group is needed/);
    await assert.rejects(
      askSetup({ vault, yes: true, source: 'group', sourceGroup: 'Sales' }, false, {}),
      /--source-group: a group object id \(GUID\)/,
    );
    await assert.rejects(
      askSetup({ vault, yes: true, target: 'some' }, false, {}),
      /--target: one of everyone, group/,
    );
    await assert.rejects(askSetup({ vault: 'http://kv', yes: true }, false, {}), /--vault: an https URL/);
    await assert.rejects(askSetup({ vault, yes: true, folder: 'a/b' }, false, {}), /no \/ or \\/);
    await assert.rejects(
      askSetup({ vault, yes: true }, false, { POLICY_BLOB_URL: 'http://127.0.0.1/x' }),
      /--policy-blob-url: an https URL/,
    );
  });

  it("the admin's Storage token goes only to an Azure blob endpoint (loopback only for the local test front)", async () => {
    await assert.rejects(
      askSetup({ vault, yes: true, policyBlobUrl: 'https://evil.example/config/policies.json' }, false, {}),
      /--policy-blob-url: evil\.example is not an Azure Storage blob endpoint/,
    );
    await assert.rejects(
      askSetup(
        { vault, yes: true, policyBlobUrl: 'https://127.0.0.1:8443/devstoreaccount1/config/p.json' },
        false,
        {},
      ),
      /not an Azure Storage blob endpoint/,
    );
    const local = await askSetup(
      { vault, yes: true, policyBlobUrl: 'https://127.0.0.1:8443/devstoreaccount1/config/p.json' },
      false,
      { CONTACTSYNC_LOCAL_KEY_VAULT: 'allow' },
    );
    assert.ok(local.policyBlobUrl);
  });

  it("the vault and the policy blob default to azd's environment", async () => {
    const a = await askSetup({ yes: true }, false, {
      AZURE_KEY_VAULT_URL: vault,
      POLICY_BLOB_URL: 'https://stcontoso.blob.core.windows.net/config/policies.json',
    });
    assert.equal(a.vault, vault);
    assert.equal(a.policyBlobUrl, 'https://stcontoso.blob.core.windows.net/config/policies.json');
  });
});

// Plain HTTP and the Key Vault fake's relaxed challenge check are for this machine only: a host name
// that merely starts like a local one (localhost.evil.example, 127.0.0.1.nip.io) must not pass.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { App } from '../../src/app/composition';
import { parseSettings } from '../../src/app/settings';
import { vaultOptions } from '../../src/cli/credentials';
import { isLoopbackHost, storageIsLocal } from '../../src/adapters/local-address';

const key = Buffer.from('not-a-real-key').toString('base64');
const storage = (host: string): string =>
  `DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=${key};` +
  `BlobEndpoint=http://${host}:10000/dev;QueueEndpoint=http://${host}:10001/dev;TableEndpoint=http://${host}:10002/dev;`;
const lookalikes = [
  'localhost.evil.example',
  '127.0.0.1.nip.io',
  'evil.example',
  'localhost-evil.example',
  '10.0.0.1',
  '[fe80::1]',
];
const local = ['127.0.0.1', 'localhost', '127.1.2.3', '[::1]'];

/** Whether the app's Table client would talk plain HTTP (the SDK keeps the option on the client). */
function appTablesAllowHttp(connectionString: string): boolean {
  const app = new App({
    settings: parseSettings({ AzureWebJobsStorage: connectionString, POLICY_FILE: 'unused.json' }),
    credential: { getToken: () => Promise.resolve(null) },
  });
  return (app.tables.runs as unknown as { allowInsecureConnection: boolean }).allowInsecureConnection;
}

describe('local addresses: plain HTTP and relaxed checks only for this machine', () => {
  it('a loopback host is 127.0.0.0/8, ::1 or localhost, never a name that starts like one', () => {
    for (const h of ['127.0.0.1', '127.255.0.9', 'localhost', 'LOCALHOST', '::1', '[::1]'])
      assert.equal(isLoopbackHost(h), true, h);
    for (const h of [...lookalikes, '127.0.0.1.evil.example', '0.0.0.0', '128.0.0.1', ''])
      assert.equal(isLoopbackHost(h), false, h);
  });

  it('the app allows plain-HTTP Table Storage for Azurite on this machine only', () => {
    for (const host of local) assert.equal(appTablesAllowHttp(storage(host)), true, host);
    assert.equal(appTablesAllowHttp('UseDevelopmentStorage=true'), true);
    for (const host of lookalikes) assert.equal(appTablesAllowHttp(storage(host)), false, host);
    // A local endpoint named only in the account's other values does not make the table endpoint local.
    assert.equal(
      appTablesAllowHttp(
        `DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=${key};BlobEndpoint=http://127.0.0.1:1/dev;QueueEndpoint=http://127.0.0.1:2/dev;TableEndpoint=http://evil.example/dev;`,
      ),
      false,
    );
  });

  it('storageIsLocal (used by the app and the CLI) judges every endpoint the string names', () => {
    assert.equal(storageIsLocal(storage('127.0.0.1')), true);
    assert.equal(storageIsLocal('UseDevelopmentStorage=true'), true);
    assert.equal(
      storageIsLocal('UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://evil.example'),
      false,
    );
    assert.equal(storageIsLocal(`AccountName=dev;AccountKey=${key};EndpointSuffix=core.windows.net`), false);
    assert.equal(
      storageIsLocal(`TableEndpoint=http://localhost.evil.example/x;AccountName=a;AccountKey=${key}`),
      false,
    );
    assert.equal(storageIsLocal('not a connection string'), false);
  });

  it('the CLI relaxes the Key Vault challenge check only when told to, and only for a loopback vault', () => {
    const allow = { CONTACTSYNC_LOCAL_KEY_VAULT: 'allow' };
    assert.deepEqual(vaultOptions('https://127.0.0.1:8443', allow), {
      disableChallengeResourceVerification: true,
    });
    assert.deepEqual(vaultOptions('https://localhost:8443', allow), {
      disableChallengeResourceVerification: true,
    });
    assert.deepEqual(vaultOptions('https://127.0.0.1:8443', {}), {});
    for (const host of [...lookalikes, 'contoso.vault.azure.net'])
      assert.deepEqual(vaultOptions(`https://${host}`, allow), {}, host);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parsePolicyFile } from '../../../src/sync/config/policy-file';
import { rotationEnabled } from '../../../src/adapters/graph/connection';

const guid = '11111111-2222-3333-4444-555555555555';
const objectId = '66666666-7777-8888-9999-000000000000';
const file = (connection: Record<string, unknown>): string =>
  JSON.stringify({
    connections: [{ id: 'c', tenantId: guid, clientId: guid, ...connection }],
    policies: [],
  });
const vault = { keyVaultUrl: 'https://v.vault.azure.net', name: 'contact-sync' };

describe('policy file: certificate rotation fields', () => {
  it('turns rotation on with applicationObjectId and a Key Vault certificate; keyId is optional', () => {
    const on = parsePolicyFile(
      file({ certificate: { ...vault, keyId: guid }, applicationObjectId: objectId }),
    );
    assert.equal(rotationEnabled(on.connections.get('c')!), true);
    const off = parsePolicyFile(file({ certificate: vault }));
    assert.equal(rotationEnabled(off.connections.get('c')!), false);
  });
  it('names the field when rotation cannot work', () => {
    assert.throws(
      () => parsePolicyFile(file({ certificate: { pemFile: '/x.pem' }, applicationObjectId: objectId })),
      /applicationObjectId: certificate rotation needs the certificate in Key Vault/,
    );
    assert.throws(
      () => parsePolicyFile(file({ certificate: vault, applicationObjectId: 'my-app' })),
      /applicationObjectId/,
    );
    assert.throws(() => parsePolicyFile(file({ certificate: { ...vault, keyId: 'x' } })), /certificate/);
  });
  it('refuses the client id pasted as applicationObjectId, naming the field', () => {
    assert.throws(
      () => parsePolicyFile(file({ certificate: vault, applicationObjectId: guid.toUpperCase() })),
      /applicationObjectId: .*client id.*Object ID/,
    );
  });
});

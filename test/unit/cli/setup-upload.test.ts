// How setup compares the policy blob with the file it wrote: by meaning (canonical JSON), so a blob
// that only orders or spaces things differently never stops setup with an empty list of
// differences, and an id listed twice is not folded into one.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { differences } from '../../../src/cli/setup-upload';

const policy = { id: 'p', folder: { name: 'Company Directory', mode: 'dedicated' }, enabled: true };
const file = JSON.stringify({ connections: [{ id: 'c', tenantId: 't' }], policies: [policy] }, null, 2);

describe('setup upload: differences between the policy blob and the file', () => {
  it('the same file with keys in another order and other spacing has no differences', () => {
    const reordered = JSON.stringify({
      policies: [{ enabled: true, folder: { mode: 'dedicated', name: 'Company Directory' }, id: 'p' }],
      connections: [{ tenantId: 't', id: 'c' }],
    });
    assert.deepEqual(differences(reordered, file), []);
  });

  it('a policy id listed twice in the blob is named, not folded into one', () => {
    const twice = JSON.stringify({ connections: [{ id: 'c', tenantId: 't' }], policies: [policy, policy] });
    assert.deepEqual(differences(twice, file), ['policy "p" (2nd) only in the blob']);
    assert.deepEqual(differences(file, twice), ['policy "p" (2nd) not in the blob']);
  });

  it('a changed value inside a policy is named', () => {
    const edited = JSON.stringify({
      connections: [{ id: 'c', tenantId: 't' }],
      policies: [{ ...policy, enabled: false }],
    });
    assert.deepEqual(differences(edited, file), ['policy "p" differs']);
  });

  it('a blob that is not a policy file gives undefined', () => {
    assert.equal(differences('not json', file), undefined);
    assert.equal(differences('[1,2]', file), undefined);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GraphSchemas } from '../../support/graph-schemas';

// The conformance suite is only as good as its schemas: prove they reject what Graph would not send.
describe("Microsoft's Graph schemas as the conformance suite uses them", () => {
  const schemas = new GraphSchemas();
  it('accepts a real contact and rejects a typo, a wrong type and a bad error body', () => {
    assert.deepEqual(
      schemas.check('microsoft.graph.contact.with-csdl-additions', {
        '@odata.etag': 'W/"x"',
        id: 'A',
        givenName: 'Dana',
        emailAddresses: [{ address: 'd@x.example', name: 'D' }],
        businessAddress: {},
      }),
      [],
    );
    assert.notDeepEqual(
      schemas.check('microsoft.graph.contact.with-csdl-additions', { givenName: 'Dana', emailAddress: [] }),
      [],
      'unknown property',
    );
    assert.notDeepEqual(
      schemas.check('microsoft.graph.contact.with-csdl-additions', { givenName: 42 }),
      [],
      'wrong type',
    );
    assert.notDeepEqual(
      schemas.check('microsoft.graph.ODataErrors.ODataError', { message: 'no error wrapper' }),
      [],
    );
  });
  it('checks $batch bodies against the documented limits', () => {
    const req = (n: number): unknown => ({
      requests: Array.from({ length: n }, (_, i) => ({ id: String(i), method: 'GET', url: '/users' })),
    });
    assert.deepEqual(schemas.checkBatch('request', req(20)), []);
    assert.notDeepEqual(schemas.checkBatch('request', req(21)), []);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mappingSchema } from '../../../src/sync/config/schema';
import { emptyEntry, type DirectoryEntry } from '../../../src/sync/directory';
import { contentHash, mapEntry, toGraphBody } from '../../../src/sync/mapping';

const user = (p: Partial<DirectoryEntry>): DirectoryEntry => ({ ...emptyEntry('user', 'u1'), ...p });
const defaults = mappingSchema.parse(undefined);

describe('mapping a directory entry to a contact', () => {
  it('keeps at most 3 email addresses (primary first, no case twins) and 2 business phones', () => {
    const fields = mapEntry(
      user({
        displayName: 'Ada',
        mail: 'ada@x.example',
        proxyAddresses: [
          'smtp:a2@x.example',
          'SMTP:ADA@x.example',
          'smtp:a3@x.example',
          'smtp:a4@x.example',
          'X500:/o=legacy',
        ],
        businessPhones: ['1', '2', '3'],
      }),
      defaults,
      undefined,
    );
    assert.deepEqual(
      fields.emailAddresses?.map((e) => e.address),
      ['ada@x.example', 'a2@x.example', 'a3@x.example'],
    );
    assert.deepEqual(fields.businessPhones, ['1', '2']);
  });

  it('falls back to names, mail or UPN for the display name, and drops empty fields', () => {
    assert.equal(
      mapEntry(user({ givenName: 'Ada', surname: 'King' }), defaults, undefined).displayName,
      'Ada King',
    );
    assert.equal(mapEntry(user({ mail: 'x@y.example' }), defaults, undefined).displayName, 'x@y.example');
    const f = mapEntry(
      user({ displayName: '  ', jobTitle: '', userPrincipalName: 'u@y.example' }),
      defaults,
      undefined,
    );
    assert.equal(f.displayName, 'u@y.example');
    assert.equal('jobTitle' in f, false);
  });

  it('applies include, exclude, constants, categories and "never"', () => {
    const m = mappingSchema.parse({
      exclude: ['mobilePhone'],
      constants: { companyName: 'Contoso' },
      categories: ['Company'],
      rules: { jobTitle: 'never' },
    });
    const f = mapEntry(
      user({ displayName: 'Ada', mobilePhone: '1', jobTitle: 'Eng', companyName: 'Other' }),
      m,
      'Boss',
    );
    assert.deepEqual(f, {
      displayName: 'Ada',
      fileAs: 'Ada',
      companyName: 'Contoso',
      categories: ['Company'],
      manager: 'Boss',
    });
    const only = mappingSchema.parse({ include: ['displayName'] });
    assert.deepEqual(mapEntry(user({ displayName: 'Ada', jobTitle: 'Eng' }), only, undefined), {
      displayName: 'Ada',
    });
  });

  it('hashes contents stably: key order and empties do not matter, a change does', () => {
    assert.equal(
      contentHash({ displayName: 'A', jobTitle: 'B' }),
      contentHash({ jobTitle: 'B', displayName: 'A', mobilePhone: undefined, businessPhones: [] }),
    );
    assert.notEqual(contentHash({ displayName: 'A' }), contentHash({ displayName: 'a' }));
  });

  it('sends cleared fields as null or [] so a PATCH empties them', () => {
    assert.deepEqual(toGraphBody({}, ['jobTitle', 'businessPhones']), { jobTitle: null, businessPhones: [] });
  });

  it('keeps hostile text intact (escaping is the job of whoever renders it)', () => {
    const name = '<script>alert("x")</script> & O\'Brien 🚀';
    assert.equal(mapEntry(user({ displayName: name }), defaults, undefined).displayName, name);
  });
});

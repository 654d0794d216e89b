// Issue 18 item 5: folder templates. Validation names the field; values become valid folder names;
// one folder per value up to maxFolders, the rest (and empty values) in the emptyValue folder.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parsePolicyFile } from '../../../src/sync/config/policy-file';
import { policySchema, type Policy } from '../../../src/sync/config/schema';
import { assignFolders, folderNameFor, overflowNote } from '../../../src/sync/folder-template';
import type { DesiredContact } from '../../../src/sync/planner';

const connection = {
  id: 'contoso',
  tenantId: '11111111-2222-4333-8444-555555555555',
  clientId: '21111111-2222-4333-8444-555555555555',
  certificate: { keyVaultUrl: 'https://kv.vault.azure.net', name: 'contact-sync' },
};
const policy = (folder: unknown, source: unknown = { type: 'directory' }): Record<string, unknown> => ({
  id: 'gal',
  name: 'GAL',
  connection: 'contoso',
  source,
  targets: { type: 'allMailboxes' },
  folder,
});
const issues = (folder: unknown, source?: unknown): string[] =>
  parsePolicyFile(
    JSON.stringify({ connections: [connection], policies: [policy(folder, source)] }),
  ).invalidPolicies.flatMap((p) => p.issues.map((i) => `${i.path}: ${i.message}`));
const folderOf = (f: Record<string, unknown>): Policy['folder'] => policySchema.parse(policy(f)).folder;

describe('folder templates (issue 18, item 5)', () => {
  it('accepts one known field, with emptyValue and maxFolders defaults', () => {
    assert.deepEqual(issues({ name: 'Partners – {companyName}' }), []);
    assert.deepEqual(issues({ name: '{mailDomain}' }), []);
    const f = folderOf({ name: '{department}' });
    assert.equal(f.emptyValue, 'Other');
    assert.equal(f.maxFolders, 50);
  });

  it('refuses a bad template, naming policies[i].folder.name', () => {
    const cases: [unknown, RegExp][] = [
      [{ name: 'By {colour}' }, /policies\[0\]\.folder\.name: unknown field "\{colour\}".*companyName/],
      [{ name: '{department} {city}' }, /policies\[0\]\.folder\.name: .*exactly one field.*found 2/],
      [{ name: 'Team {department' }, /policies\[0\]\.folder\.name: .*one \{field\} and no other brace/],
      [{ name: '{}' }, /policies\[0\]\.folder\.name: unknown field "\{\}"/],
      [{ name: '{department}', maxFolders: 500 }, /policies\[0\]\.folder\.maxFolders/],
      [{ name: '{department}', emptyValue: 'a/b' }, /policies\[0\]\.folder\.emptyValue/],
      // Characters Outlook refuses in address-book folder names (review 18, nit 8): a value's are
      // replaced, but the admin's own text is refused, naming the field and the character.
      ...['&', ':', ';', '+', '*', '?', '|', '<', '>', '"', '~', '[', ']'].flatMap(
        (c): [unknown, RegExp][] => [
          [
            { name: '{department}', emptyValue: `A${c}B` },
            /policies\[0\]\.folder\.emptyValue: .*Outlook refuses/,
          ],
          [{ name: `R${c}D {department}` }, /policies\[0\]\.folder\.name: .*Outlook refuses/],
        ],
      ),
    ];
    for (const [folder, want] of cases) {
      const got = issues(folder);
      assert.ok(
        got.some((i) => want.test(i)),
        `${JSON.stringify(folder)}: ${got.join('; ')}`,
      );
    }
    const mailbox = issues({ name: '{department}' }, { type: 'mailbox', mailbox: 'shared@contoso.example' });
    assert.ok(
      mailbox.some((i) =>
        /^policies\[0\]\.folder\.name: a folder template .* needs a directory source/.test(i),
      ),
      mailbox.join('; '),
    );
  });

  it('turns values into names Exchange and Outlook accept', () => {
    const f = folderOf({ name: 'Partners – {companyName}' });
    assert.equal(folderNameFor(f, 'Smith & Sons: A/B'), 'Partners – Smith - Sons- A-B');
    assert.equal(folderNameFor(f, '  <<>>  '), 'Partners – Other', 'nothing left: emptyValue');
    assert.equal(folderNameFor(f, null), 'Partners – Other');
    assert.equal(folderNameFor(f, 'Tab\there\u0000'), 'Partners – Tab-here');
    assert.equal(folderNameFor(f, 'Ünïcødé 東京'), 'Partners – Ünïcødé 東京', 'letters of any script stay');
    const long = folderNameFor(f, '😀'.repeat(300))!;
    assert.ok([...long].length <= 255 && long.length <= 510, 'cut to 255 characters');
    assert.ok(!/[\uD800-\uDBFF]$/.test(long), 'no half surrogate pair');
    assert.equal(folderNameFor(folderOf({ name: 'Plain' }), 'x'), undefined);
  });

  it('one folder per value, case-insensitively, and at most maxFolders', () => {
    const f = folderOf({ name: '{companyName}', maxFolders: 3 });
    const desired = new Map<string, DesiredContact>();
    const add = (k: string, folder: string | undefined): void =>
      void desired.set(k, { fields: {}, hash: k, ...(folder ? { folder } : {}) });
    ['Acme', 'ACME', 'acme', 'Beta', 'Beta', 'Gamma', 'Delta'].forEach((v, n) => add(`k${n}`, v));
    add('none', undefined);
    const a = assignFolders(f, desired);
    assert.equal(a.groups.size, 3, 'maxFolders holds');
    const names = [...a.groups.values()].map((g) => g.name).sort();
    assert.deepEqual(names, ['ACME', 'Beta', 'Other']);
    assert.equal(a.groups.get('acme')!.desired.size, 3, 'names differing in case share a folder');
    assert.equal(a.groups.get('other')!.desired.size, 3, 'no value and the least populated share Other');
    assert.equal(a.overflow, 2);
    assert.match(overflowNote(f, a)!, /2 values past maxFolders \(3\) share the folder "Other"/);
    // No overflow: no note, and no Other folder when every contact has a value.
    const b = assignFolders(folderOf({ name: '{companyName}' }), new Map([...desired].slice(0, 7)));
    assert.equal(overflowNote(f, b), undefined);
    assert.ok(![...b.groups.keys()].includes('other'));
  });
});

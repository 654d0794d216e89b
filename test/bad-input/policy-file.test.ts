// Bad input, generated: mutations of valid policy files (every path of a valid file, given wrong
// types, hostile strings, nulls, deletions and unknown keys). Each is answered with named errors,
// never a crash.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parsePolicyFile, PolicyFileError, policyPath } from '../../src/sync/config/policy-file';

export const validFile = {
  connections: [
    {
      id: 'contoso',
      tenantId: '11111111-2222-4333-8444-555555555555',
      clientId: '21111111-2222-4333-8444-555555555555',
      certificate: { keyVaultUrl: 'https://kv.vault.azure.net', name: 'contact-sync' },
      cloud: 'global',
    },
  ],
  policies: [
    {
      id: 'gal',
      name: 'GAL',
      enabled: true,
      connection: 'contoso',
      source: {
        type: 'directory',
        includeOrgContacts: true,
        includeGroups: ['31111111-2222-4333-8444-555555555555'],
        filters: [{ attribute: 'department', op: 'in', values: ['Sales'] }],
      },
      targets: { type: 'users', users: ['a@contoso.example'], excludeUsers: [], excludeSelf: true },
      folder: { name: 'Company Directory' },
      mapping: {
        exclude: ['mobilePhone'],
        constants: { companyName: 'Contoso' },
        categories: ['Company'],
        rules: { jobTitle: 'setIfEmpty' },
      },
      options: {
        deletionThreshold: { percent: 20, minimum: 10 },
        onUserEdit: 'restore',
        onUserDelete: 'keep',
        onSourceRemoval: 'keepAndMark',
        dryRun: false,
      },
      schedule: '0 0 */4 * * *',
      notify: { recipients: ['it@contoso.example'], sender: 'sync@contoso.example', when: 'always' },
    },
  ],
};

type Path = (string | number)[];
export function paths(value: unknown, prefix: Path = []): Path[] {
  if (Array.isArray(value)) return [prefix, ...value.flatMap((v, i) => paths(v, [...prefix, i]))];
  if (value && typeof value === 'object')
    return [prefix, ...Object.entries(value).flatMap(([k, v]) => paths(v, [...prefix, k]))];
  return [prefix];
}

export const hostile = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    "O'Brien",
    '<script>alert(1)</script>',
    '\u202Eevil',
    '🚀'.repeat(50),
    'x'.repeat(10_000),
    '../../etc/passwd',
    '%00',
    '{"$ne":null}',
    "' or 1 eq 1 or '",
  ),
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant([]),
  fc.constant({}),
  fc.jsonValue(),
);

export type Mutation =
  | { path: Path; kind: 'replace'; value: unknown }
  | { path: Path; kind: 'delete' }
  | { path: Path; kind: 'addKey'; key: string; value: unknown };

export function mutate(base: unknown, m: Mutation): unknown {
  const copy = structuredClone(base) as Record<string | number, unknown>;
  if (m.path.length === 0) return m.kind === 'replace' ? m.value : copy;
  let parent: Record<string | number, unknown> = copy;
  for (const p of m.path.slice(0, -1)) parent = parent[p] as Record<string | number, unknown>;
  const last = m.path.at(-1)!;
  if (m.kind === 'replace') parent[last] = m.value;
  else if (m.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else {
    const target = parent[last];
    if (target && typeof target === 'object' && !Array.isArray(target))
      (target as Record<string, unknown>)[m.key] = m.value;
  }
  return copy;
}

export const mutationOf = (base: unknown): fc.Arbitrary<Mutation> => {
  const all = paths(base);
  return fc.oneof(
    fc.record({ path: fc.constantFrom(...all), kind: fc.constant('replace' as const), value: hostile }),
    fc.record({
      path: fc.constantFrom(...all.filter((p) => p.length > 0)),
      kind: fc.constant('delete' as const),
    }),
    fc.record({
      path: fc.constantFrom(...all),
      kind: fc.constant('addKey' as const),
      key: fc.string({ minLength: 1, maxLength: 12 }),
      value: hostile,
    }),
  );
};

describe('bad input: policy files', () => {
  it('the valid example is valid', () => {
    const loaded = parsePolicyFile(JSON.stringify(validFile));
    assert.deepEqual(loaded.invalidPolicies, []);
    assert.equal(loaded.policies.length, 1);
  });

  it('every mutation is either valid or answered with errors naming a JSON path, never a crash', () => {
    fc.assert(
      fc.property(fc.array(mutationOf(validFile), { minLength: 1, maxLength: 3 }), (mutations) => {
        const file = mutations.reduce<unknown>((acc, m) => {
          try {
            return mutate(acc, m);
          } catch {
            return acc; // a path that no longer exists after an earlier mutation
          }
        }, validFile);
        let loaded;
        try {
          loaded = parsePolicyFile(JSON.stringify(file));
        } catch (e) {
          assert.ok(e instanceof PolicyFileError, `unexpected ${String(e)}`);
          assert.ok(e.issues.length > 0);
          for (const i of e.issues) assert.ok(i.path && i.message, JSON.stringify(i));
          return;
        }
        for (const bad of loaded.invalidPolicies) {
          assert.ok(bad.issues.length > 0);
          for (const i of bad.issues) {
            assert.match(i.path, /^policies\[\d+\]/);
            assert.ok(i.message.length > 0);
          }
        }
        // A policy that parsed is fully usable: its connection exists.
        for (const p of loaded.policies) assert.ok(loaded.connections.has(p.connection));
      }),
      { numRuns: 400, seed: 20261124 },
    );
  });

  it('text that is not JSON, or JSON that is not an object, is refused with a message', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        (text) => {
          try {
            parsePolicyFile(text);
          } catch (e) {
            assert.ok(e instanceof PolicyFileError);
            assert.ok(e.issues[0]!.message.length > 0);
          }
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });

  it('errors name the JSON path of the policy they are about, when an earlier (invalid) policy has the same id', () => {
    const base = validFile.policies[0]!;
    const file = {
      ...validFile,
      policies: [
        { ...base, id: 'dup', targets: { type: 'users', users: [] } }, // invalid: no target user
        { ...base, id: 'dup', previousIds: ['other'] }, // valid itself; its former id is taken
        { ...base, id: 'keep', targets: { type: 'users', users: [] } },
        { ...base, id: 'keep' },
        { ...base, id: 'other' },
      ],
    };
    const loaded = parsePolicyFile(JSON.stringify(file));
    const paths = loaded.invalidPolicies.flatMap((b) => b.issues.map((i) => i.path)).sort();
    assert.deepEqual(paths, [
      'policies[0].targets.users',
      'policies[1].previousIds',
      'policies[2].targets.users',
    ]);
    assert.equal(policyPath(loaded, 'keep', 'notify.sender'), 'policies[3].notify.sender');
    assert.equal(policyPath(loaded, 'other', 'folder'), 'policies[4].folder');
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parsePolicyFile, PolicyFileError } from '../../../src/sync/config/policy-file';
import { policyFileJsonSchema } from '../../../src/sync/config/schema';

const connection = {
  id: 'contoso',
  tenantId: '11111111-2222-4333-8444-555555555555',
  clientId: '21111111-2222-4333-8444-555555555555',
  certificate: { keyVaultUrl: 'https://kv.vault.azure.net', name: 'contact-sync' },
};
const policy = (p: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'gal',
  name: 'GAL',
  connection: 'contoso',
  source: { type: 'directory' },
  targets: { type: 'allMailboxes' },
  folder: { name: 'Company Directory' },
  ...p,
});
const file = (policies: unknown[], connections: unknown[] = [connection]): string =>
  JSON.stringify({ connections, policies });

describe('policy file', () => {
  it('accepts a minimal policy and fills safe defaults', () => {
    const loaded = parsePolicyFile(file([policy()]));
    const p = loaded.policies[0]!;
    assert.equal(p.enabled, true);
    assert.equal(p.options.dryRun, false);
    assert.deepEqual(p.options.deletionThreshold, { percent: 20, minimum: 10 });
    assert.equal(p.options.onUserEdit, 'restore');
    assert.equal(p.targets.excludeSelf, true);
    assert.equal(p.schedule, '0 0 */4 * * *');
    assert.equal(loaded.connections.get('contoso')!.cloud, 'global');
  });

  it('reports a bad policy by id and field, and still loads the others', () => {
    const loaded = parsePolicyFile(
      file([
        policy({ id: 'bad', targets: { type: 'users', users: ['not-an-upn'] } }),
        policy({ id: 'good' }),
      ]),
    );
    assert.deepEqual(
      loaded.policies.map((p) => p.id),
      ['good'],
    );
    assert.equal(loaded.invalidPolicies[0]!.policyId, 'bad');
    assert.equal(loaded.invalidPolicies[0]!.issues[0]!.path, 'policies[0].targets.users[0]');
  });

  it('names unknown connections, unknown fields, bad schedules and a missing report sender', () => {
    const loaded = parsePolicyFile(
      file([
        policy({ id: 'a', connection: 'fabrikam' }),
        policy({ id: 'b', folderName: 'x' }),
        policy({ id: 'c', schedule: '*/5 * * * *' }),
        policy({ id: 'd', notify: { recipients: ['admin@contoso.example'], when: 'always' } }),
        policy({
          id: 'e',
          source: { type: 'directory', filters: [{ attribute: 'shoeSize', op: 'equals', value: '9' }] },
        }),
      ]),
    );
    const paths = loaded.invalidPolicies.map((p) => p.issues[0]!.path);
    assert.deepEqual(paths, [
      'policies[0].connection',
      'policies[1]',
      'policies[2].schedule',
      'policies[3].notify.sender',
      'policies[4].source.filters[0].attribute',
    ]);
    assert.match(loaded.invalidPolicies[1]!.issues[0]!.message, /folderName/);
  });

  it("a renamed policy lists its former ids; one that is its own or another policy's id is refused by name", () => {
    const loaded = parsePolicyFile(
      file([
        policy({ id: 'directory', previousIds: ['gal-old'] }),
        policy({ id: 'self', previousIds: ['self'] }),
        policy({ id: 'thief', previousIds: ['directory'] }),
      ]),
    );
    assert.deepEqual(
      loaded.policies.map((p) => [p.id, p.previousIds]),
      [['directory', ['gal-old']]],
    );
    const issues = loaded.invalidPolicies.map((p) => [p.policyId, p.issues[0]!.path, p.issues[0]!.message]);
    assert.deepEqual(issues, [
      ['self', 'policies[1].previousIds', '"self" is this policy\'s own id'],
      [
        'thief',
        'policies[2].previousIds',
        '"directory" is the id of another policy in this file: a former id must be one no policy has now',
      ],
    ]);
  });

  it('refuses a file without valid connections, naming the field', () => {
    assert.throws(
      () => parsePolicyFile(file([policy()], [{ ...connection, tenantId: 'contoso' }])),
      (e: unknown) => e instanceof PolicyFileError && e.issues[0]!.path === 'connections[0].tenantId',
    );
    assert.throws(() => parsePolicyFile('{ nope'), /not valid JSON/);
    assert.throws(
      () => parsePolicyFile(file([policy()], [{ ...connection, authorityHost: 'https://login.example' }])),
      /authorityHost and graphEndpoint go together/,
    );
  });

  it('ships a JSON Schema for editors that matches the zod schemas', () => {
    const shipped = JSON.parse(
      readFileSync(resolve(__dirname, '../../../../schema/policy-file.schema.json'), 'utf8'),
    );
    assert.deepEqual(
      shipped,
      JSON.parse(JSON.stringify(policyFileJsonSchema())),
      'run `npm run schema` after changing the config schema',
    );
  });
});

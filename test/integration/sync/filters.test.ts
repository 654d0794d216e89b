// Issue 18, item 4: source filters with all / any / not, endsWith and mailDomain, through the real
// pipeline against the simulator; compiled to Graph's $filter where Graph evaluates it, as an
// advanced query (ConsistencyLevel: eventual, $count) where Graph requires one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FilterExpression, PolicyInput } from '../../../src/sync/config/schema';
import { policySchema } from '../../../src/sync/config/schema';
import { compileUserFilter } from '../../../src/sync/filters';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { rawGraph } from '../../support/clients';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';
import { assertInvariant, snapshotUntagged } from '../../support/invariant';

type Filters = NonNullable<Extract<PolicyInput['source'], { type: 'directory' }>['filters']>;

describe('source filters: all / any / not, endsWith and mailDomain (issue 18)', () => {
  let f: EngineFixture;
  let target: SimUser;
  const people: Record<string, SimUser> = {};
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 6, mailboxes: 2, awkward: false } } });
    target = [...f.sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
    for (const [name, department, domain, jobTitle] of [
      ['ann', 'Sales', 'brand-a.example', 'Sales Engineer'],
      ['ben', 'Legal', 'brand-a.example', 'Counsel'],
      ['cat', 'Ops', 'brand-b.example', 'Site Engineer'],
      ['dan', 'Sales', 'brand-b.example', 'Account Manager'],
      ['eve', null, 'Brand-C.example', 'Engineer'],
    ] as const) {
      people[name] = f.sim.tenant.addUser({
        userPrincipalName: `${name}@${domain.toLowerCase()}`,
        mail: `${name}@${domain}`,
        displayName: name,
        department,
        jobTitle,
        mailbox: 'none',
      });
    }
  });
  after(() => f.close());

  const only = (): { mailboxes: string[] } => ({ mailboxes: [target.userPrincipalName] });
  const dept = (u: SimUser): string => (u.department ?? '').toLowerCase();
  const domain = (u: SimUser): string => (u.mail ?? '').split('@')[1]?.toLowerCase() ?? '';
  const cases: { name: string; filters: Filters; want: string[]; match: (u: SimUser) => boolean }[] = [
    {
      name: 'a flat list is an implicit all',
      filters: [{ attribute: 'department', op: 'equals', value: 'sales' }],
      want: ['ann', 'dan'],
      match: (u) => dept(u) === 'sales',
    },
    {
      name: 'any: Legal, or a brand-b address',
      filters: {
        any: [
          { attribute: 'department', op: 'equals', value: 'Legal' },
          { attribute: 'mailDomain', op: 'in', values: ['brand-b.example'] },
        ],
      },
      want: ['ben', 'cat', 'dan'],
      match: (u) => dept(u) === 'legal' || domain(u) === 'brand-b.example',
    },
    {
      name: 'not: everyone except Sales (those without a department too)',
      filters: { not: { attribute: 'department', op: 'in', values: ['Sales'] } },
      want: ['ben', 'cat', 'eve'],
      match: (u) => dept(u) !== 'sales',
    },
    {
      name: 'all: engineers, not at brand-a (endsWith, mailDomain ignoring case)',
      filters: {
        all: [
          { attribute: 'jobTitle', op: 'endsWith', value: 'engineer' },
          { not: { attribute: 'mailDomain', op: 'equals', value: 'BRAND-A.example' } },
        ],
      },
      want: ['cat', 'eve'],
      match: (u) => (u.jobTitle ?? '').toLowerCase().endsWith('engineer') && domain(u) !== 'brand-a.example',
    },
  ];

  for (const [n, c] of cases.entries()) {
    it(`selects what it says: ${c.name}`, async () => {
      const input: PolicyInput = {
        id: `filter${n}`,
        name: c.name,
        connection: 'contoso',
        source: { type: 'directory', filters: c.filters },
        targets: { type: 'users', users: [target.userPrincipalName] },
        folder: { name: `Filter ${n}` },
      };
      const policy = policySchema.parse(input);
      const before = snapshotUntagged(f.sim);
      const run = await f.run(policy, only());
      assert.equal(run.mailboxes.failed, 0);
      const mine = new Set(Object.values(people).map((u) => `user:${u.id}`));
      const selected = folderContacts(f.sim, target.userPrincipalName, `Filter ${n}`)
        .map((x) => tagOf(x)!.slice(policy.id.length + 1))
        .filter((k) => mine.has(k))
        .map((k) => Object.entries(people).find(([, u]) => `user:${u.id}` === k)![0])
        .sort();
      assert.deepEqual(selected, c.want);
      await assertInvariant(f.sim, policy, before, async () => void (await f.run(policy, only())));

      // Graph, asked with the compiled $filter, finds the same among all users.
      const compiled = compileUserFilter(policy.source.type === 'directory' ? policy.source.filters : [])!;
      assert.ok(compiled, 'compiles to a $filter');
      const expected = [...f.sim.tenant.users.values()].filter(c.match).length;
      assert.equal(await f.deps.directory.countUsers!(compiled), expected, 'Graph counts the same users');
    });
  }

  it('Graph refuses an advanced filter without ConsistencyLevel: eventual, and the product sends it', async () => {
    const x: FilterExpression = { not: { attribute: 'department', op: 'equals', value: 'Sales' } };
    const compiled = compileUserFilter(x)!;
    assert.equal(compiled.advanced, true);
    const refused = await rawGraph(f.sim, 'GET', `/users?$filter=${encodeURIComponent(compiled.filter)}`);
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.code, 'Request_UnsupportedQuery');
    const withoutCount = await rawGraph(
      f.sim,
      'GET',
      `/users?$filter=${encodeURIComponent("endswith(mail,'@brand-a.example')")}`,
      undefined,
      { ConsistencyLevel: 'eventual' },
    );
    assert.equal(withoutCount.status, 400, 'an advanced query needs $count=true too');
    const total = f.sim.tenant.users.size;
    const sales = [...f.sim.tenant.users.values()].filter(
      (u) => u.department?.toLowerCase() === 'sales',
    ).length;
    assert.equal(await f.deps.directory.countUsers!(compiled), total - sales);
  });

  it('refuses a filter with an unknown operator or group, naming where', () => {
    const bad = (filters: unknown): string => {
      const r = policySchema.safeParse({
        id: 'bad',
        name: 'bad',
        connection: 'contoso',
        source: { type: 'directory', filters },
        targets: { type: 'allMailboxes' },
        folder: { name: 'x' },
      });
      assert.equal(r.success, false);
      return JSON.stringify(r.error.issues);
    };
    assert.match(bad({ either: [] }), /filters/);
    assert.match(bad([{ attribute: 'department', op: 'contains', value: 'x' }]), /filters/);
    assert.match(bad({ any: [] }), /filters/);
  });
});

// Issue 18: the preview's Graph count. The compiled $filter is sent to Graph (the simulator) as the
// preview sends it, as an advanced query (ConsistencyLevel: eventual, $count=true) where Graph needs
// one, and the users Graph counts equal the preview's own local evaluation of the filter and a count
// worked out here apart from the product. Every case selects some users and not all, so a compiled
// filter that drops a clause, inverts a test or ignores case would count differently.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { preview } from '../../../src/app/diagnostics';
import type { PolicyInput } from '../../../src/sync/config/schema';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';

type Filters = NonNullable<Extract<PolicyInput['source'], { type: 'directory' }>['filters']>;

const people = [
  ['ann', 'Sales', 'brand-a.example', 'Sales Engineer', 'VIP'],
  ['ben', 'Legal', 'brand-a.example', 'Counsel', null],
  ['cat', 'Ops', 'Brand-B.example', 'Site Engineer', 'vip'],
  ['dan', 'sales', 'brand-b.example', 'Account Manager', null],
  ['eve', null, 'brand-c.example', 'Engineer', null],
  ['fay', 'Ops', 'brand-c.example', "O'Brien's Engineer", 'Staff'],
] as const;

describe("the preview's Graph count equals the local evaluation (issue 18)", () => {
  let f: FunctionsFixture;
  before(async () => {
    f = await functionsFixture({ sim: { seed: { users: [] } }, policies: () => [] });
    for (const [name, department, domain, jobTitle, ext] of people) {
      const u = f.sim.tenant.addUser({
        userPrincipalName: `${name}@${domain.toLowerCase()}`,
        mail: `${name}@${domain}`,
        displayName: name,
        department,
        jobTitle,
        mailbox: name === 'ann' ? 'user' : 'none',
      });
      if (ext) f.sim.tenant.updateUser(u.id, { onPremisesExtensionAttributes: { extensionAttribute3: ext } });
    }
  });
  after(() => f.close());

  const low = (s: string | null | undefined): string => (s ?? '').toLowerCase();
  const domain = (u: SimUser): string => low(u.mail?.split('@')[1]);
  const cases: { name: string; filters: Filters; match: (u: SimUser) => boolean; advanced: boolean }[] = [
    {
      name: 'equals (Graph compares without case)',
      filters: [{ attribute: 'department', op: 'equals', value: 'Sales' }],
      match: (u) => low(u.department) === 'sales',
      advanced: false,
    },
    {
      name: 'in and startsWith, all',
      filters: {
        all: [
          { attribute: 'department', op: 'in', values: ['Ops', 'Legal'] },
          { attribute: 'jobTitle', op: 'startsWith', value: 'site' },
        ],
      },
      match: (u) => ['ops', 'legal'].includes(low(u.department)) && low(u.jobTitle).startsWith('site'),
      advanced: false,
    },
    {
      name: 'any of an endsWith and a mail domain',
      filters: {
        any: [
          { attribute: 'jobTitle', op: 'endsWith', value: 'counsel' },
          { attribute: 'mailDomain', op: 'in', values: ['brand-b.example'] },
        ],
      },
      match: (u) => low(u.jobTitle).endsWith('counsel') || domain(u) === 'brand-b.example',
      advanced: true,
    },
    {
      name: 'not: everyone outside Sales (those without a department too)',
      filters: { not: { attribute: 'department', op: 'equals', value: 'sales' } },
      match: (u) => low(u.department) !== 'sales',
      advanced: true,
    },
    {
      name: 'an extension attribute and a quote in a value',
      filters: {
        any: [
          { attribute: 'extensionAttribute3', op: 'equals', value: 'vip' },
          { attribute: 'jobTitle', op: 'equals', value: "O'Brien's Engineer" },
        ],
      },
      match: (u) =>
        low(u.onPremisesExtensionAttributes?.extensionAttribute3) === 'vip' ||
        u.jobTitle === "O'Brien's Engineer",
      advanced: true,
    },
    {
      name: 'mailDomain equals, not at brand-a',
      filters: {
        all: [
          { attribute: 'jobTitle', op: 'endsWith', value: 'engineer' },
          { not: { attribute: 'mailDomain', op: 'equals', value: 'BRAND-A.example' } },
        ],
      },
      match: (u) => low(u.jobTitle).endsWith('engineer') && domain(u) !== 'brand-a.example',
      advanced: true,
    },
  ];

  for (const [n, c] of cases.entries()) {
    it(`counts the same: ${c.name}`, async () => {
      const id = `count${n}`;
      f.writePolicies([
        {
          id,
          name: c.name,
          connection: 'contoso',
          source: { type: 'directory', filters: c.filters },
          targets: { type: 'users', users: ['ann@brand-a.example'] },
          folder: { name: 'Counted' },
        },
      ]);
      (f.app as unknown as { policyCache: undefined }).policyCache = undefined;
      const found = (await f.app.policy(id))!;
      const since = f.sim.log.lastSeq;
      const p = await preview(f.app, found.policy, found.connection);
      const users = [...f.sim.tenant.users.values()];
      const expected = users.filter(c.match).length;
      assert.ok(expected > 0 && expected < users.length, 'the case tells a wrong filter from a right one');
      const graph = p.source.graphFilter;
      assert.ok(graph, 'the filter compiles to a $filter');
      assert.equal(graph.advanced, c.advanced);
      assert.equal(graph.users, expected, `Graph counts ${graph.filter} as the reference does`);
      assert.equal(p.source.objects, expected, "the preview's local evaluation selects as many");
      // Graph answered every read (the simulator refuses an advanced query sent without
      // ConsistencyLevel: eventual and $count=true, as Graph does: filters.test.ts).
      const reads = f.sim.log.since(since).filter((e) => e.service === 'graph' && /^users/.test(e.operation));
      assert.ok(reads.length > 0, 'the preview read users from Graph');
      for (const e of reads) assert.ok(e.status < 400, `${e.operation} ${e.path} → ${e.status}`);
    });
  }
});

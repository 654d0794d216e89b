import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  evaluateFilter,
  filterUses,
  parseExpand,
  parseFilter,
  resolvePath,
  ODataSyntaxError,
} from '../../doubles/graph-tenant-simulator/odata';

const user = {
  id: 'u1',
  displayName: "Seán O'Brien",
  department: 'Sales',
  accountEnabled: true,
  proxyAddresses: ['SMTP:sean@contoso.example', 'smtp:s@contoso.example'],
  ext: { a1: 'NoContactSync' },
};
const matches = (filter: string, obj: unknown = user): boolean =>
  evaluateFilter(parseFilter(filter), (p) => resolvePath(obj, p));

describe('OData $filter (simulator)', () => {
  it('given comparisons, and/or, not and parentheses, when evaluated, then matches as OData does', () => {
    assert.equal(matches("department eq 'Sales'"), true);
    assert.equal(matches("department eq 'sales'"), true, 'string comparison ignores case');
    assert.equal(matches("department ne 'Sales'"), false);
    assert.equal(matches("department eq 'Sales' and accountEnabled eq false"), false);
    assert.equal(matches("department eq 'HR' or accountEnabled eq true"), true);
    assert.equal(matches("not (department eq 'HR')"), true);
    assert.equal(matches("displayName eq 'Seán O''Brien'"), true, "'' escapes a quote");
    assert.equal(matches("department in ('HR','Sales')"), true);
    assert.equal(matches("startswith(displayName,'seán')"), true);
    assert.equal(matches("ext/a1 eq 'NoContactSync'"), true);
  });

  it('given an any() lambda, when evaluated, then any element may match', () => {
    assert.equal(matches("proxyAddresses/any(p: p eq 'smtp:s@contoso.example')"), true);
    const contact = { singleValueExtendedProperties: [{ id: 'String {x} Name SourceId', value: 'abc' }] };
    assert.equal(
      matches(
        "singleValueExtendedProperties/Any(ep: ep/id eq 'String {x} Name SourceId' and ep/value eq 'abc')",
        contact,
      ),
      true,
    );
    assert.equal(
      matches(
        "singleValueExtendedProperties/Any(ep: ep/id eq 'String {x} Name SourceId' and ep/value eq 'abd')",
        contact,
      ),
      false,
    );
  });

  it('given a filter, when asked what it uses, then lists each property and operator', () => {
    assert.deepEqual(filterUses(parseFilter("a eq 1 and startswith(b,'x') or c/any(z: z/d eq 'e')")), [
      { path: 'a', op: 'eq' },
      { path: 'b', op: 'startswith' },
      { path: 'c', op: 'any' },
      { path: 'c/d', op: 'eq' },
    ]);
  });

  it('given broken syntax, when parsed, then throws a syntax error', () => {
    for (const bad of ["a eq 'x", 'a eq', 'a foo 1', "a eq 'x' and", '(a eq 1', 'a eq 1)']) {
      assert.throws(() => parseFilter(bad), ODataSyntaxError, bad);
    }
  });

  it('given $expand with a nested $filter, when parsed, then splits name and filter', () => {
    assert.deepEqual(
      parseExpand("singleValueExtendedProperties($filter=id eq 'String {g} Name X'),manager"),
      [{ name: 'singleValueExtendedProperties', filter: "id eq 'String {g} Name X'" }, { name: 'manager' }],
    );
  });
});

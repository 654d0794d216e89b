import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from '@microsoft/microsoft-graph-client';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import { graphClient, rawGraph, startSimulator } from '../../support/clients';
import { GraphSchemas } from '../../support/graph-schemas';
import { watchConformance, type ConformanceReport } from '../../support/conformance';

/** Follows @odata.nextLink to the end; returns items and the final deltaLink, if any. */
async function readAll(
  client: Client,
  url: string,
  headers: Record<string, string> = {},
): Promise<{ items: any[]; pages: number; deltaLink?: string }> {
  const items: any[] = [];
  let pages = 0;
  let next: string | undefined = url;
  let deltaLink: string | undefined;
  while (next) {
    const page = await client.api(next).headers(headers).get();
    pages++;
    items.push(...page.value);
    next = page['@odata.nextLink'];
    deltaLink = page['@odata.deltaLink'] ?? deltaLink;
  }
  return { items, pages, ...(deltaLink ? { deltaLink } : {}) };
}

describe('Graph tenant simulator: directory', () => {
  let sim: GraphTenantSimulator;
  let client: Client;
  let report: ConformanceReport;
  before(async () => {
    sim = await startSimulator({
      seed: { generate: { users: 150, mailboxes: 20, groups: 4, orgContacts: 12 } },
    });
    client = graphClient(sim);
    report = watchConformance(sim, new GraphSchemas());
  });
  after(() => sim.close());

  it('lists users with $select and pages by @odata.nextLink under Prefer: odata.maxpagesize', async () => {
    const { items, pages } = await readAll(
      client,
      '/users?$select=id,displayName,onPremisesExtensionAttributes,showInAddressList,accountEnabled',
      { Prefer: 'odata.maxpagesize=40' },
    );
    assert.equal(items.length, sim.tenant.users.size);
    assert.equal(pages, Math.ceil(sim.tenant.users.size / 40));
    assert.deepEqual(Object.keys(items[0]).sort(), [
      'accountEnabled',
      'displayName',
      'id',
      'onPremisesExtensionAttributes',
      'showInAddressList',
    ]);
    assert.equal(new Set(items.map((u) => u.id)).size, items.length, 'no user twice across pages');
  });

  it('filters users with the forms Graph supports and refuses advanced ones without ConsistencyLevel', async () => {
    const sales = await readAll(
      client,
      "/users?$filter=department eq 'Sales' and accountEnabled eq true&$select=id,department",
    );
    assert.ok(sales.items.length > 0);
    assert.ok(sales.items.every((u) => u.department === 'Sales'));
    const quoted = await client.api("/users?$filter=surname eq 'O''Brien'").get();
    assert.equal(quoted.value.length, 1);
    const starts = await client.api("/users?$filter=startswith(displayName,'Ada')&$select=displayName").get();
    assert.ok(starts.value.every((u: any) => u.displayName.startsWith('Ada')));
    const inList = await client
      .api("/users?$filter=country in ('Denmark','Germany')&$select=country&$top=999")
      .get();
    assert.ok(inList.value.every((u: any) => u.country === 'Denmark' || u.country === 'Germany'));
    const advanced = await rawGraph(
      sim,
      'GET',
      "/users?$filter=onPremisesExtensionAttributes/extensionAttribute7 eq 'NoContactSync'",
    );
    assert.equal(advanced.status, 400);
    assert.equal(advanced.body.error.code, 'Request_UnsupportedQuery');
    const withEventual = await rawGraph(
      sim,
      'GET',
      "/users?$filter=onPremisesExtensionAttributes/extensionAttribute7 eq 'NoContactSync'&$count=true",
      undefined,
      { ConsistencyLevel: 'eventual' },
    );
    assert.equal(withEventual.status, 200);
    assert.equal(withEventual.body['@odata.count'], 1);
    const unknown = await rawGraph(sim, 'GET', '/users?$select=id,favouriteColour');
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error.message, /favouriteColour/);
  });

  it('gets a user by id or UPN, and answers 404 Request_ResourceNotFound for a missing one', async () => {
    const someone = [...sim.tenant.users.values()][3]!;
    const byUpn = await client.api(`/users/${someone.userPrincipalName}`).select('id').get();
    assert.equal(byUpn.id, someone.id);
    const missing = await rawGraph(sim, 'GET', '/users/nobody@contoso.example');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'Request_ResourceNotFound');
  });

  it('runs /users/delta: a full round to a deltaLink, then only the changes, with changed properties only', async () => {
    const first = await readAll(client, '/users/delta?$select=id,displayName,department,jobTitle,manager', {
      Prefer: 'odata.maxpagesize=50',
    });
    assert.equal(first.items.length, sim.tenant.users.size);
    assert.ok(first.deltaLink);
    assert.ok(
      first.items.some((u) => Array.isArray(u['manager@delta'])),
      'manager@delta on selected manager',
    );
    const [a, b, c] = [...sim.tenant.users.values()].slice(10, 13);
    sim.tenant.updateUser(a!.id, { jobTitle: 'Chief Tester' });
    sim.tenant.updateUser(b!.id, { mobilePhone: '+1 555 9999' }); // not selected: not reported
    sim.tenant.deleteUser(c!.id);
    const added = sim.tenant.addUser({
      userPrincipalName: 'new.hire@contoso.example',
      displayName: 'New Hire',
      department: 'Sales',
    });
    const second = await readAll(client, first.deltaLink);
    const byId = new Map(second.items.map((u) => [u.id, u]));
    assert.deepEqual(
      Object.keys(byId.get(a!.id))
        .filter((k) => !k.startsWith('@'))
        .sort(),
      ['id', 'jobTitle'],
    );
    assert.equal(byId.get(a!.id).jobTitle, 'Chief Tester');
    assert.ok(!byId.has(b!.id));
    assert.deepEqual(byId.get(c!.id)['@removed'], { reason: 'changed' });
    assert.equal(byId.get(added.id).displayName, 'New Hire');
    assert.equal(second.items.length, 3);
    const third = await readAll(client, second.deltaLink!);
    assert.equal(third.items.length, 0, 'nothing changed since');
  });

  it('expires delta tokens with 400 syncStateNotFound, and $deltatoken=latest starts from now', async () => {
    const first = await readAll(client, '/users/delta?$select=id');
    sim.expireDeltaTokens();
    await new Promise((r) => setTimeout(r, 5));
    const expired = await rawGraph(sim, 'GET', first.deltaLink!.replace(`${sim.graphUrl}/v1.0`, ''));
    assert.equal(expired.status, 400);
    assert.equal(expired.body.error.code, 'syncStateNotFound');
    const latest = await client.api('/users/delta?$select=id,displayName&$deltatoken=latest').get();
    assert.deepEqual(latest.value, []);
    sim.tenant.updateUser([...sim.tenant.users.values()][0]!.id, { displayName: 'Renamed' });
    const after = await readAll(client, latest['@odata.deltaLink']);
    assert.equal(after.items.length, 1);
  });

  it('accepts delta/() spellings and refuses $filter other than id eq', async () => {
    for (const spelling of ['delta()', 'microsoft.graph.delta()', 'delta']) {
      const res = await rawGraph(sim, 'GET', `/users/${spelling}?$select=id&$deltatoken=latest`);
      assert.equal(res.status, 200, spelling);
    }
    const bad = await rawGraph(sim, 'GET', "/users/delta?$filter=department eq 'Sales'");
    assert.equal(bad.status, 400);
    const byId = [...sim.tenant.users.values()].slice(0, 2).map((u) => u.id);
    const ok = await client
      .api(`/users/delta?$select=id&$filter=id eq '${byId[0]}' or id eq '${byId[1]}'`)
      .get();
    assert.deepEqual(ok.value.map((u: any) => u.id).sort(), [...byId].sort());
  });

  it('lists nested group members with transitiveMembers and casts to users', async () => {
    const sales = [...sim.tenant.groups.values()].find((g) => g.displayName === 'Dept Sales')!;
    const emea = [...sim.tenant.groups.values()].find((g) => g.displayName === 'Sales EMEA')!;
    const direct = await readAll(client, `/groups/${sales.id}/members?$select=id`);
    assert.ok(direct.items.some((m) => m.id === emea.id && m['@odata.type'] === '#microsoft.graph.group'));
    const users = await readAll(
      client,
      `/groups/${sales.id}/transitiveMembers/microsoft.graph.user?$select=id,displayName`,
    );
    assert.ok(users.items.every((m) => m['@odata.type'] === '#microsoft.graph.user'));
    const alias = await readAll(client, `/groups/${sales.id}/transitiveMembers/graph.user?$select=id`);
    assert.equal(alias.items.length, users.items.length);
    const expected = new Set([...sales.members, ...emea.members].filter((id) => sim.tenant.users.has(id)));
    assert.deepEqual(new Set(users.items.map((m) => m.id)), expected);
  });

  it('reports group membership changes through /groups/delta with members@delta', async () => {
    const first = await readAll(client, '/groups/delta?$select=id,displayName,members');
    assert.ok(first.items.every((g) => Array.isArray(g['members@delta'])));
    const group = [...sim.tenant.groups.values()].find((g) => g.displayName === 'Dept Finance')!;
    const newcomer = sim.tenant.addUser({
      userPrincipalName: 'joiner@contoso.example',
      displayName: 'Joiner',
    });
    const leaver = [...group.members][0]!;
    sim.tenant.addMember(group.id, newcomer.id);
    sim.tenant.removeMember(group.id, leaver);
    const second = await readAll(client, first.deltaLink!);
    const changed = second.items.find((g) => g.id === group.id);
    assert.ok(changed);
    assert.deepEqual(
      changed['members@delta'].find((m: any) => m.id === newcomer.id),
      { '@odata.type': '#microsoft.graph.user', id: newcomer.id },
    );
    assert.deepEqual(changed['members@delta'].find((m: any) => m.id === leaver)['@removed'], {
      reason: 'deleted',
    });
  });

  it('lists org contacts and their delta', async () => {
    const all = await readAll(client, '/contacts?$select=id,displayName,mail,companyName,phones');
    assert.equal(all.items.length, 12);
    const delta = await readAll(client, '/contacts/delta?$select=id,displayName,mail');
    const victim = all.items[0];
    sim.tenant.deleteOrgContact(victim.id);
    const next = await readAll(client, delta.deltaLink!);
    assert.deepEqual(next.items, [
      { '@odata.type': '#microsoft.graph.orgContact', id: victim.id, '@removed': { reason: 'changed' } },
    ]);
  });

  it('serves user photos and answers 404 ImageNotFound without one', async () => {
    const [withPhoto, without] = [...sim.tenant.users.values()];
    sim.tenant.setUserPhoto(withPhoto!.id, {
      contentType: 'image/jpeg',
      bytes: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]),
    });
    const meta = await client.api(`/users/${withPhoto!.id}/photo`).get();
    assert.equal(meta['@odata.mediaContentType'], 'image/jpeg');
    const missing = await rawGraph(sim, 'GET', `/users/${without!.id}/photo/$value`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'ImageNotFound');
  });

  it("every body answered conforms to Microsoft's OpenAPI description", () => {
    assert.deepEqual(report.violations, []);
    for (const op of [
      'users.list',
      'users.get',
      'users.delta',
      'groups.members',
      'groups.transitiveMembers',
      'orgContacts.list',
      'orgContacts.delta',
    ]) {
      assert.ok(report.seen.has(op), `${op} was exercised`);
    }
    assert.ok(report.checkedBodies > 200, `checked ${report.checkedBodies} bodies`);
  });
});

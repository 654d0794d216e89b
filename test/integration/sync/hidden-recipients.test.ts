// Issue 15, defect 9: hidden-from-address-list flags and NoContactSync marks in a real tenant. Graph
// returns showInAddressList null for users (microsoft-graph-docs #5380, msgraph-sdk-php #109), so the
// flag comes from Exchange Online's admin endpoint (Get-Recipient), opt-in per connection; groups
// carry hideFromAddressLists on Graph (GET /groups/{id} only); mail contacts and groups keep their
// marks in Exchange's custom attributes. When nobody can tell hidden users apart, the run report and
// doctor say so.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { policySchema, type PolicyInput } from '../../../src/sync/config/schema';
import { health } from '../../../src/app/diagnostics';
import { buildReport } from '../../../src/sync/report';
import { hiddenUsersUnknown } from '../../../src/sync/refresh-source';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';
import { graphClient } from '../../support/clients';
import { assertInvariant, snapshotUntagged, tagOfContact } from '../../support/invariant';
import { runThroughQueues } from '../../model/pipeline';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';

const reader = 'reader@contoso.example';
const policyInput: PolicyInput = {
  id: 'gal',
  name: 'GAL',
  connection: 'contoso',
  source: { type: 'directory', includeOrgContacts: true, includeDistributionLists: true },
  targets: { type: 'users', users: [reader] },
  folder: { name: 'GAL' },
};
const policy = policySchema.parse(policyInput);

/** A tenant with one of each: hidden user, hidden mail contact, hidden group, marked contact and group. */
function seed(sim: GraphTenantSimulator): Record<string, string> {
  const t = sim.tenant;
  const user = (upn: string, extra = {}) =>
    t.addUser({ userPrincipalName: upn, displayName: upn.split('@')[0]!, mail: upn, ...extra }).id;
  user(reader);
  const ids = {
    visibleUser: user('visible@contoso.example'),
    hiddenUser: user('hidden.exec@contoso.example', { hiddenFromAddressListsEnabled: true }),
    visibleContact: t.addOrgContact({ displayName: 'Partner', mail: 'partner@x.example' }).id,
    hiddenContact: t.addOrgContact({
      displayName: 'Hidden partner',
      mail: 'secret@x.example',
      hiddenFromAddressListsEnabled: true,
    }).id,
    markedContact: t.addOrgContact({
      displayName: 'Marked partner',
      mail: 'marked@x.example',
      onPremisesExtensionAttributes: { extensionAttribute7: 'NoContactSync' },
    }).id,
    visibleGroup: t.addGroup({ displayName: 'Sales', mail: 'sales@contoso.example', mailEnabled: true }).id,
    hiddenGroup: t.addGroup({
      displayName: 'Board',
      mail: 'board@contoso.example',
      mailEnabled: true,
      hideFromAddressLists: true,
    }).id,
    markedGroup: t.addGroup({
      displayName: 'Ops',
      mail: 'ops@contoso.example',
      mailEnabled: true,
      customAttributes: { extensionAttribute1: ' nocontactsync ' },
    }).id,
  };
  return ids;
}

function syncedKeys(f: FunctionsFixture): Set<string> {
  return new Set(
    [...f.sim.tenant.mailbox(reader)!.contacts.values()]
      .map((c) => tagOfContact(c))
      .filter((t): t is string => t !== undefined)
      .map((t) => t.slice('gal|'.length)),
  );
}

describe('hidden recipients without Exchange Online (issue 15, defect 9)', () => {
  let f: FunctionsFixture;
  let ids: Record<string, string>;
  before(async () => {
    f = await functionsFixture({ sim: { seed: { users: [] } }, policies: () => [policyInput] });
    ids = seed(f.sim);
  });
  after(() => f.close());

  it('Graph shows showInAddressList null for every user, hidden or not, as the service does', async () => {
    const client = graphClient(f.sim);
    const hidden = await client.api(`/users/${ids.hiddenUser}?$select=id,showInAddressList`).get();
    assert.equal(hidden.showInAddressList, null);
    const group = await client.api(`/groups/${ids.hiddenGroup}?$select=id,hideFromAddressLists`).get();
    assert.equal(group.hideFromAddressLists, true);
    await assert.rejects(client.api('/groups?$select=id,hideFromAddressLists').get(), /hideFromAddressLists/);
  });

  it('leaves out the hidden group (Graph), syncs the hidden user and says so in the run report and doctor', async () => {
    const before = snapshotUntagged(f.sim);
    const run = await runThroughQueues(f, 'gal');
    assert.equal(run.status, 'completed');
    const keys = syncedKeys(f);
    assert.ok(!keys.has(`group:${ids.hiddenGroup}`), 'the hidden group stays out');
    assert.ok(keys.has(`group:${ids.visibleGroup}`));
    assert.ok(keys.has(`user:${ids.hiddenUser}`), 'without Exchange nobody can tell the hidden user apart');
    assert.deepEqual(run.notes, [hiddenUsersUnknown]);
    assert.match(buildReport(policy, run, []).text, /hidden users cannot be told apart/);
    const checks = (await health(f.app)).connections[0]!.checks;
    const hidden = checks.find((c) => c.name === 'hidden users')!;
    assert.equal(hidden.warning, true);
    assert.match(hidden.fix!, /exchangeAdmin.*Exchange\.ManageAsApp.*View-Only Recipients/);
    await assertInvariant(f.sim, policy, before, async () => void (await runThroughQueues(f, 'gal')));
  });
});

describe('hidden recipients through Exchange Online (issue 15, defect 9)', () => {
  let f: FunctionsFixture;
  let ids: Record<string, string>;
  before(async () => {
    f = await functionsFixture({
      sim: { seed: { users: [] } },
      policies: () => [policyInput],
      connection: { exchangeAdmin: true },
    });
    ids = seed(f.sim);
  });
  after(() => f.close());

  it('without Exchange.ManageAsApp the run still completes, and report and doctor name the missing grant', async () => {
    const run = await runThroughQueues(f, 'gal');
    assert.equal(run.status, 'completed');
    assert.ok(run.notes?.some((n) => /Exchange Online refused/.test(n)));
    assert.ok(run.notes?.includes(hiddenUsersUnknown));
    const hidden = (await health(f.app)).connections[0]!.checks.find((c) => c.name === 'hidden users')!;
    assert.equal(hidden.ok, false);
    assert.match(hidden.detail, /Exchange\.ManageAsApp/);
    f.sim.grantExchange({ permission: true, role: null });
    const noRole = (await health(f.app)).connections[0]!.checks.find((c) => c.name === 'hidden users')!;
    assert.equal(noRole.ok, false);
    assert.match(noRole.detail, /View-Only Recipients/);
  });

  it('with the grant, hidden and marked users, mail contacts and groups stay out, and come back when unhidden', async () => {
    f.sim.grantExchange({ permission: true, role: 'View-Only Recipients' });
    // Roles are fixed when a token is issued: the workers' cached token predates the grant, so a
    // fresh credential (as after the token's expiry) is what sees it.
    await f.app.rebuild((await f.app.policy('gal'))!.connection);
    let before = snapshotUntagged(f.sim);
    const run = await runThroughQueues(f, 'gal');
    assert.equal(run.status, 'completed');
    assert.equal(run.notes, undefined);
    const keys = syncedKeys(f);
    for (const out of ['hiddenUser', 'hiddenContact', 'markedContact', 'hiddenGroup', 'markedGroup'])
      assert.ok(![...keys].some((k) => k.endsWith(ids[out]!)), `${out} stays out`);
    for (const inside of ['visibleUser', 'visibleContact', 'visibleGroup'])
      assert.ok(
        [...keys].some((k) => k.endsWith(ids[inside]!)),
        `${inside} is in`,
      );
    await assertInvariant(f.sim, policy, before, async () => void (await runThroughQueues(f, 'gal')), {
      exchange: true,
    });
    assert.equal(
      (await health(f.app)).connections[0]!.checks.find((c) => c.name === 'hidden users')!.ok,
      true,
    );

    // Exchange changes show in the next run, though Graph's delta says nothing about them.
    f.sim.tenant.users.get(ids.hiddenUser!)!.hiddenFromAddressListsEnabled = false;
    f.sim.tenant.orgContacts.get(ids.markedContact!)!.onPremisesExtensionAttributes = {};
    f.sim.tenant.orgContacts.get(ids.visibleContact!)!.hiddenFromAddressListsEnabled = true;
    before = snapshotUntagged(f.sim);
    await runThroughQueues(f, 'gal');
    const now = syncedKeys(f);
    assert.ok(now.has(`user:${ids.hiddenUser!}`));
    assert.ok(now.has(`orgContact:${ids.markedContact!}`));
    assert.ok(!now.has(`orgContact:${ids.visibleContact!}`));
    await assertInvariant(f.sim, policy, before, async () => void (await runThroughQueues(f, 'gal')), {
      exchange: true,
    });
  });

  it('the simulated endpoint pages, and refuses a token without the permission', async () => {
    const token = async (): Promise<string> => {
      const { appCredential } = await import('../../support/clients');
      return (await appCredential(f.sim).getToken('https://outlook.office365.com/.default')).token;
    };
    const body = JSON.stringify({ CmdletInput: { CmdletName: 'Get-Recipient', Parameters: {} } });
    const headers = {
      authorization: `Bearer ${await token()}`,
      'content-type': 'application/json',
      'x-anchormailbox': `APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@${f.sim.tenantId}`,
      prefer: 'odata.maxpagesize=3',
    };
    let url: string | undefined =
      `${f.sim.graphUrl}/adminapi/beta/${f.sim.tenantId}/InvokeCommand?$select=ExternalDirectoryObjectId`;
    const seen: string[] = [];
    while (url) {
      const res = await fetch(url, { method: 'POST', headers, body });
      assert.equal(res.status, 200);
      const page = (await res.json()) as {
        value: { ExternalDirectoryObjectId: string }[];
        '@odata.nextLink'?: string;
      };
      assert.ok(page.value.length <= 3);
      seen.push(...page.value.map((r) => r.ExternalDirectoryObjectId));
      url = page['@odata.nextLink'];
    }
    assert.equal(new Set(seen).size, seen.length);
    assert.equal(seen.length, f.sim.exchange.recipients().length);
    f.sim.grantExchange({ permission: false, role: 'View-Only Recipients' });
    const refused = await fetch(`${f.sim.graphUrl}/adminapi/beta/${f.sim.tenantId}/InvokeCommand`, {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${await token()}` },
      body,
    });
    assert.equal(refused.status, 401);
  });
});

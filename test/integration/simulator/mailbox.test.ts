import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from '@microsoft/microsoft-graph-client';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import { graphClient, rawGraph, startSimulator } from '../../support/clients';
import { GraphSchemas } from '../../support/graph-schemas';
import { watchConformance, type ConformanceReport } from '../../support/conformance';

const tagId = 'String {f4b5e3a2-3c1d-4f6e-9a8b-7c6d5e4f3a2b} Name SourceId';
const immutable = { Prefer: 'IdType="ImmutableId"' };

describe('Graph tenant simulator: mailbox contact folders and contacts', () => {
  let sim: GraphTenantSimulator;
  let client: Client;
  let report: ConformanceReport;
  let upn: string;
  let folderId: string;
  before(async () => {
    sim = await startSimulator({ seed: { generate: { users: 30, mailboxes: 10 } } });
    client = graphClient(sim);
    report = watchConformance(sim, new GraphSchemas());
    upn = [...sim.tenant.users.values()].find((u) => u.mailbox === 'user')!.userPrincipalName;
  });
  after(() => sim.close());

  it('creates a contact folder, refuses a twin, and finds it by $filter on displayName', async () => {
    const folder = await client
      .api(`/users/${upn}/contactFolders`)
      .headers(immutable)
      .post({ displayName: "Company Directory 'HQ'" });
    folderId = folder.id;
    assert.match(folder.id, /^AAkALg/, 'immutable id when asked for');
    const twin = await rawGraph(sim, 'POST', `/users/${upn}/contactFolders`, {
      displayName: "Company Directory 'HQ'",
    });
    assert.equal(twin.status, 409);
    assert.equal(twin.body.error.code, 'ErrorFolderExists');
    const found = await client
      .api(`/users/${upn}/contactFolders`)
      .headers(immutable)
      .filter("displayName eq 'Company Directory ''HQ'''")
      .get();
    assert.deepEqual(
      found.value.map((f: any) => f.id),
      [folderId],
    );
    const child = await client
      .api(`/users/${upn}/contactFolders/${folderId}/childFolders`)
      .post({ displayName: 'Partners' });
    assert.equal(
      (await client.api(`/users/${upn}/contactFolders/${folderId}/childFolders`).get()).value[0].id,
      child.id,
    );
  });

  it('creates tagged contacts, finds them by the tag, and expands the tag', async () => {
    const created = await client
      .api(`/users/${upn}/contactFolders/${folderId}/contacts`)
      .headers(immutable)
      .post({
        givenName: 'Dana',
        surname: 'Scully',
        displayName: 'Dana Scully',
        emailAddresses: [{ address: 'dana@contoso.example', name: 'Dana Scully' }],
        businessPhones: ['+1 555 0100', '+1 555 0101'],
        businessAddress: {
          street: '1 Main St',
          city: 'Seattle',
          countryOrRegion: 'United States',
          postalCode: '98101',
        },
        categories: ['Company'],
        singleValueExtendedProperties: [{ id: tagId, value: 'user-123' }],
      });
    assert.equal(
      created.singleValueExtendedProperties,
      undefined,
      'create does not echo extended properties',
    );
    const found = await client
      .api(`/users/${upn}/contactFolders/${folderId}/contacts`)
      .headers(immutable)
      .filter(`singleValueExtendedProperties/Any(ep: ep/id eq '${tagId}' and ep/value eq 'user-123')`)
      .expand(`singleValueExtendedProperties($filter=id eq '${tagId}')`)
      .get();
    assert.equal(found.value.length, 1);
    assert.equal(found.value[0].id, created.id);
    assert.deepEqual(found.value[0].singleValueExtendedProperties, [{ id: tagId, value: 'user-123' }]);
    const none = await client
      .api(`/users/${upn}/contactFolders/${folderId}/contacts`)
      .filter(`singleValueExtendedProperties/Any(ep: ep/id eq '${tagId}' and ep/value eq 'user-999')`)
      .get();
    assert.deepEqual(none.value, []);
  });

  it("rejects more than 3 email addresses or 2 business phones with Graph's wording", async () => {
    const emails = await rawGraph(sim, 'POST', `/users/${upn}/contacts`, {
      givenName: 'X',
      emailAddresses: [1, 2, 3, 4].map((i) => ({ address: `x${i}@contoso.example` })),
    });
    assert.equal(emails.status, 400);
    assert.equal(
      emails.body.error.message,
      'The multi value property EmailAddresses has 4 entries, that exceeds the max allowed value of 3',
    );
    const phones = await rawGraph(sim, 'POST', `/users/${upn}/contacts`, {
      givenName: 'X',
      businessPhones: ['1', '2', '3'],
    });
    assert.equal(phones.status, 400);
    assert.equal(
      phones.body.error.message,
      'The multi value property BusinessPhones has 3 entries, that exceeds the max allowed value of 2',
    );
  });

  it('rejects unknown, mistyped and read-only properties', async () => {
    const typo = await rawGraph(sim, 'POST', `/users/${upn}/contacts`, {
      givenName: 'X',
      emailAddress: [{ address: 'x@contoso.example' }],
    });
    assert.equal(typo.status, 400);
    assert.match(typo.body.error.message, /'emailAddress' does not exist on type 'microsoft.graph.contact'/);
    const wrongType = await rawGraph(sim, 'POST', `/users/${upn}/contacts`, { givenName: 42 });
    assert.equal(wrongType.status, 400);
    const readOnly = await rawGraph(sim, 'POST', `/users/${upn}/contacts`, {
      givenName: 'X',
      createdDateTime: '2020-01-01T00:00:00Z',
    });
    assert.equal(readOnly.status, 400);
    const badTag = await rawGraph(sim, 'POST', `/users/${upn}/contacts`, {
      givenName: 'X',
      singleValueExtendedProperties: [{ id: 'SourceId', value: 'x' }],
    });
    assert.equal(badTag.status, 400);
  });

  it('patches, reads by either id, deletes, then answers ErrorItemNotFound', async () => {
    const c = await client.api(`/users/${upn}/contacts`).post({ givenName: 'Fox', surname: 'Mulder' });
    assert.match(c.id, /^AAMk/, 'regular id without the preference');
    const stored = sim.tenant.mailbox(upn)!.contact(c.id)!;
    const patched = await client
      .api(`/users/${upn}/contacts/${stored.immutableId}`)
      .headers(immutable)
      .patch({ jobTitle: 'Agent' });
    assert.equal(patched.jobTitle, 'Agent');
    assert.equal(patched.id, stored.immutableId);
    assert.equal((await client.api(`/users/${upn}/contacts/${c.id}`).get()).jobTitle, 'Agent');
    await client.api(`/users/${upn}/contacts/${c.id}`).delete();
    const gone = await rawGraph(sim, 'GET', `/users/${upn}/contacts/${c.id}`);
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'ErrorItemNotFound');
    const patchGone = await rawGraph(sim, 'PATCH', `/users/${upn}/contacts/${c.id}`, { jobTitle: 'x' });
    assert.equal(patchGone.status, 404);
  });

  it('answers MailboxNotEnabledForRESTAPI for users without an Exchange Online mailbox', async () => {
    for (const u of [...sim.tenant.users.values()].filter((x) => x.mailbox === 'none').slice(0, 3)) {
      const res = await rawGraph(
        sim,
        'GET',
        `/users/${encodeURIComponent(u.userPrincipalName)}/contactFolders`,
      );
      assert.equal(res.status, 404, u.userPrincipalName);
      assert.equal(res.body.error.code, 'MailboxNotEnabledForRESTAPI');
    }
    const unknown = await rawGraph(sim, 'GET', '/users/ghost@contoso.example/contacts');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'ErrorInvalidUser');
  });

  it("answers ErrorAccessDenied for a mailbox outside the app's RBAC scope", async () => {
    const other = [...sim.tenant.users.values()].filter((u) => u.mailbox === 'user')[1]!;
    sim.scopeMailboxes([upn]);
    try {
      const res = await rawGraph(sim, 'GET', `/users/${other.userPrincipalName}/contactFolders`);
      assert.equal(res.status, 403);
      assert.equal(res.body.error.message, 'Access to OData is disabled.');
      assert.equal((await rawGraph(sim, 'GET', `/users/${upn}/contactFolders`)).status, 200);
    } finally {
      sim.scopeMailboxes(null);
    }
  });

  it("tracks a folder's contacts delta: changes and @removed with the ids the client uses", async () => {
    const base = `/users/${upn}/contactFolders/${folderId}/contacts/delta`;
    let page = await client
      .api(`${base}?$select=displayName,givenName`)
      .headers({ ...immutable, Prefer: 'IdType="ImmutableId", odata.maxpagesize=2' })
      .get();
    const initial: any[] = [...page.value];
    while (page['@odata.nextLink']) {
      page = await client.api(page['@odata.nextLink']).headers(immutable).get();
      initial.push(...page.value);
    }
    assert.equal(initial.length, 1);
    const mailbox = sim.tenant.mailbox(upn)!;
    const existing = mailbox.contactsIn(mailbox.folder(folderId)!.id)[0]!;
    // The user edits one contact and deletes it again; adds another by hand.
    mailbox.updateContact(existing, { jobTitle: 'Edited by user' }, [], new Date());
    const added = mailbox.createContact(
      mailbox.folder(folderId)!.id,
      { givenName: 'Hand', surname: 'Made' },
      [],
      new Date(),
    );
    const next = await client.api(page['@odata.deltaLink']).headers(immutable).get();
    assert.deepEqual(
      new Set(next.value.map((c: any) => c.id)),
      new Set([existing.immutableId, added.immutableId]),
    );
    mailbox.deleteContact(existing);
    const third = await client.api(next['@odata.deltaLink']).headers(immutable).get();
    assert.deepEqual(third.value, [
      {
        '@odata.type': '#microsoft.graph.contact',
        id: existing.immutableId,
        '@removed': { reason: 'deleted' },
      },
    ]);
    const notAllowed = await rawGraph(sim, 'GET', `${base}?$expand=singleValueExtendedProperties`);
    assert.equal(notAllowed.status, 400);
  });

  it('deleting a folder removes its contacts; the folder id then answers ErrorItemNotFound', async () => {
    const f = await client.api(`/users/${upn}/contactFolders`).post({ displayName: 'Doomed' });
    await client.api(`/users/${upn}/contactFolders/${f.id}/contacts`).post({ givenName: 'Gone' });
    const mailbox = sim.tenant.mailbox(upn)!;
    mailbox.deleteFolder(f.id); // as a user would in Outlook
    const res = await rawGraph(sim, 'GET', `/users/${upn}/contactFolders/${f.id}`);
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'ErrorItemNotFound');
    assert.equal([...mailbox.contacts.values()].filter((c) => c.data.givenName === 'Gone').length, 0);
  });

  it('uploads a contact photo under 4 MB and serves it back', async () => {
    const c = await client.api(`/users/${upn}/contacts`).post({ givenName: 'Photo' });
    const bytes = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 9, 8, 7]);
    const put = await rawGraph(sim, 'GET', '/users'); // token warm-up for the raw call below
    assert.equal(put.status, 200);
    const token = (
      await (await import('../../support/clients')).appCredential(sim).getToken(`${sim.graphUrl}/.default`)
    ).token;
    const res = await fetch(`${sim.graphUrl}/v1.0/users/${upn}/contacts/${c.id}/photo/$value`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'image/jpeg' },
      body: bytes,
    });
    assert.equal(res.status, 200);
    const meta = await client.api(`/users/${upn}/contacts/${c.id}/photo`).get();
    assert.equal(meta['@odata.mediaContentType'], 'image/jpeg');
    const big = await fetch(`${sim.graphUrl}/v1.0/users/${upn}/contacts/${c.id}/photo/$value`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'image/jpeg' },
      body: Buffer.alloc(4 * 1024 * 1024),
    });
    assert.equal(big.status, 413);
  });

  it('records sendMail for tests to read, and refuses a message without recipients', async () => {
    await client.api(`/users/${upn}/sendMail`).post({
      message: {
        subject: 'Sync report',
        body: { contentType: 'HTML', content: '<p>ok</p>' },
        toRecipients: [{ emailAddress: { address: 'admin@contoso.example' } }],
      },
      saveToSentItems: false,
    });
    const sent = sim.tenant.mailbox(upn)!.sentMail;
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.message.subject, 'Sync report');
    const bad = await rawGraph(sim, 'POST', `/users/${upn}/sendMail`, {
      message: { subject: 'x', toRecipients: [] },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'ErrorInvalidRecipients');
  });

  it('pages contact lists with $top and $skip nextLinks', async () => {
    const f = await client.api(`/users/${upn}/contactFolders`).post({ displayName: 'Paging' });
    for (let i = 0; i < 25; i++)
      sim.tenant.mailbox(upn)!.createContact(f.id, { givenName: `P${i}` }, [], new Date());
    let page = await client.api(`/users/${upn}/contactFolders/${f.id}/contacts`).get();
    const ids: string[] = page.value.map((c: any) => c.id);
    assert.equal(page.value.length, 10, 'default page size is 10');
    while (page['@odata.nextLink']) {
      page = await client.api(page['@odata.nextLink']).get();
      ids.push(...page.value.map((c: any) => c.id));
    }
    assert.equal(new Set(ids).size, 25);
  });

  it("every body answered conforms to Microsoft's OpenAPI description", () => {
    assert.deepEqual(report.violations, []);
    for (const op of [
      'contactFolders.create',
      'contactFolders.list',
      'contacts.create',
      'contacts.list',
      'contacts.update',
      'contacts.get',
      'contacts.delta',
      'contacts.photo.get',
    ]) {
      assert.ok(report.seen.has(op), `${op} was exercised`);
    }
  });
});

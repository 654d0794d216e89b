import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from '@microsoft/microsoft-graph-client';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import { graphClient, rawGraph, startSimulator } from '../../support/clients';
import { GraphSchemas } from '../../support/graph-schemas';
import { watchConformance, type ConformanceReport } from '../../support/conformance';

const create = (id: string, upn: string, name: string, dependsOn?: string[]): Record<string, unknown> => ({
  id,
  method: 'POST',
  url: `/users/${upn}/contacts`,
  headers: { 'Content-Type': 'application/json' },
  body: { givenName: name },
  ...(dependsOn ? { dependsOn } : {}),
});

describe('Graph tenant simulator: $batch, throttling and faults', () => {
  let sim: GraphTenantSimulator;
  let client: Client;
  let schemas: GraphSchemas;
  let report: ConformanceReport;
  let upn: string;
  let other: string;
  before(async () => {
    // Realistic latency, so concurrent sub-requests overlap as in the service.
    sim = await startSimulator({
      seed: { generate: { users: 20, mailboxes: 5 } },
      latency: { meanMs: 30, jitterMs: 5 },
    });
    client = graphClient(sim);
    schemas = new GraphSchemas();
    report = watchConformance(sim, schemas);
    const mailboxes = [...sim.tenant.users.values()].filter((u) => u.mailbox === 'user');
    upn = mailboxes[0]!.userPrincipalName;
    other = mailboxes[1]!.userPrincipalName;
  });
  after(() => sim.close());

  it('runs a serial dependsOn chain of 20 writes to one mailbox without throttling', async () => {
    const requests = Array.from({ length: 20 }, (_, i) =>
      create(String(i + 1), upn, `Chain ${i}`, i > 0 ? [String(i)] : undefined),
    );
    const body = { requests };
    assert.deepEqual(schemas.checkBatch('request', body), []);
    const res = await client.api('/$batch').post(body);
    assert.deepEqual(schemas.checkBatch('response', res), []);
    assert.equal(res.responses.length, 20);
    assert.ok(
      res.responses.every((r: any) => r.status === 201),
      JSON.stringify(res.responses.map((r: any) => r.status)),
    );
  });

  it('answers 429 MailboxConcurrency inside a batch of more than 4 parallel requests to one mailbox', async () => {
    const body = { requests: Array.from({ length: 8 }, (_, i) => create(`p${i}`, upn, `Parallel ${i}`)) };
    const res = await client.api('/$batch').post(body);
    const statuses = res.responses.map((r: any) => r.status);
    assert.equal(statuses.filter((s: number) => s === 201).length, 4, JSON.stringify(statuses));
    const throttled = res.responses.filter((r: any) => r.status === 429);
    assert.equal(throttled.length, 4);
    assert.equal(throttled[0].body.error.code, 'ApplicationThrottled');
    assert.equal(throttled[0].body.error.message, 'Application is over its MailboxConcurrency limit.');
    assert.ok(Number(throttled[0].headers['retry-after']) > 0);
  });

  it('limits per mailbox: parallel requests to different mailboxes are not throttled', async () => {
    const body = {
      requests: [
        ...Array.from({ length: 4 }, (_, i) => create(`a${i}`, upn, `A${i}`)),
        ...Array.from({ length: 4 }, (_, i) => create(`b${i}`, other, `B${i}`)),
      ],
    };
    const res = await client.api('/$batch').post(body);
    assert.ok(res.responses.every((r: any) => r.status === 201));
  });

  it('answers 424 for requests whose dependency failed', async () => {
    const body = {
      requests: [
        {
          id: '1',
          method: 'POST',
          url: `/users/${upn}/contacts`,
          headers: { 'Content-Type': 'application/json' },
          body: { givenName: 'X', emailAddresses: [1, 2, 3, 4].map((i) => ({ address: `a${i}@x.example` })) },
        },
        create('2', upn, 'After failure', ['1']),
      ],
    };
    const res = await client.api('/$batch').post(body);
    const byId = new Map(res.responses.map((r: any) => [r.id, r]));
    assert.equal((byId.get('1') as any).status, 400);
    assert.equal((byId.get('2') as any).status, 424);
  });

  it('refuses a batch that is neither fully sequential nor fully parallel', async () => {
    const mixed = await rawGraph(sim, 'POST', '/$batch', {
      requests: [create('1', upn, 'a'), create('2', upn, 'b', ['1']), create('3', upn, 'c')],
    });
    assert.equal(mixed.status, 400);
    assert.equal(mixed.body.error.message, 'Batch should be either fully sequential or fully parallel.');
  });

  it('refuses more than 20 requests, duplicate ids and bodies without Content-Type', async () => {
    const tooMany = await rawGraph(sim, 'POST', '/$batch', {
      requests: Array.from({ length: 21 }, (_, i) => create(String(i), upn, 'x')),
    });
    assert.equal(tooMany.status, 400);
    const dup = await rawGraph(sim, 'POST', '/$batch', {
      requests: [create('1', upn, 'x'), create('1', upn, 'y')],
    });
    assert.equal(dup.status, 400);
    const noType = await rawGraph(sim, 'POST', '/$batch', {
      requests: [{ id: '1', method: 'POST', url: `/users/${upn}/contacts`, body: { givenName: 'x' } }],
    });
    assert.equal(noType.status, 400);
  });

  it('enforces the request budget per window with a fractional Retry-After, compressed by the time scale', async () => {
    sim.throttle.reset();
    sim.throttle.options = { ...sim.throttle.options, requestsPerWindow: 5, timeScale: 120 }; // window = 5 s: seven requests fit in it even on a loaded CI machine
    try {
      const statuses: number[] = [];
      let retryAfter = '';
      for (let i = 0; i < 7; i++) {
        const r = await rawGraph(sim, 'GET', `/users/${other}/contactFolders`);
        statuses.push(r.status);
        if (r.status === 429) retryAfter = r.headers.get('retry-after') ?? '';
      }
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429]);
      assert.ok(Number(retryAfter) > 0 && Number(retryAfter) <= 5, retryAfter);
      await new Promise((r) => setTimeout(r, Number(retryAfter) * 1000 + 50));
      assert.equal((await rawGraph(sim, 'GET', `/users/${other}/contactFolders`)).status, 200);
    } finally {
      sim.throttle.options = { ...sim.throttle.options, requestsPerWindow: 10_000, timeScale: 1 };
      sim.throttle.reset();
    }
  });

  it('injects 503 bursts the Graph client retries through, and counts them', async () => {
    sim.faults.add({
      kind: 'status',
      status: 503,
      retryAfterSeconds: 0.01,
      times: 2,
      match: { operation: 'contactFolders.list' },
    });
    const since = sim.log.lastSeq;
    const res = await client.api(`/users/${upn}/contactFolders`).get();
    assert.ok(Array.isArray(res.value));
    assert.equal(sim.log.count({ operation: 'contactFolders.list', status: 503 }, since), 2);
    assert.equal(sim.log.count({ operation: 'contactFolders.list', status: 200 }, since), 1);
    sim.faults.clear();
  });

  it('loses a reply after the write took effect (the contact exists, the client saw an error)', async () => {
    sim.faults.add({ kind: 'lostReply', times: 1, match: { operation: 'contacts.create', mailbox: upn } });
    const before = sim.tenant.mailbox(upn)!.contacts.size;
    await assert.rejects(client.api(`/users/${upn}/contacts`).post({ givenName: 'Lost reply' }));
    assert.equal(sim.tenant.mailbox(upn)!.contacts.size, before + 1);
    assert.equal(
      [...sim.tenant.mailbox(upn)!.contacts.values()].filter((c) => c.data.givenName === 'Lost reply').length,
      1,
    );
    sim.faults.clear();
  });

  it('resets the connection before a write (nothing happens) and loses a whole batch reply', async () => {
    sim.faults.add({ kind: 'reset', times: 1, match: { operation: 'contacts.create', inBatch: false } });
    const before = sim.tenant.mailbox(upn)!.contacts.size;
    await assert.rejects(client.api(`/users/${upn}/contacts`).post({ givenName: 'Never' }));
    assert.equal(sim.tenant.mailbox(upn)!.contacts.size, before);
    sim.faults.clear();
    sim.faults.add({ kind: 'lostReply', times: 1, match: { operation: 'contacts.create', inBatch: true } });
    await assert.rejects(client.api('/$batch').post({ requests: [create('1', upn, 'In lost batch')] }));
    assert.equal(
      [...sim.tenant.mailbox(upn)!.contacts.values()].filter((c) => c.data.givenName === 'In lost batch')
        .length,
      1,
    );
    sim.faults.clear();
  });

  it('applies seeded probabilistic faults reproducibly', async () => {
    const run = async (): Promise<number[]> => {
      const s = await startSimulator({ seed: { generate: { users: 5, mailboxes: 2 } }, randomSeed: 42 });
      try {
        s.faults.add({
          kind: 'status',
          status: 504,
          probability: 0.5,
          match: { operation: 'contactFolders.list' },
        });
        const u = [...s.tenant.users.values()].find((x) => x.mailbox === 'user')!.userPrincipalName;
        const out: number[] = [];
        for (let i = 0; i < 12; i++)
          out.push((await rawGraph(s, 'GET', `/users/${u}/contactFolders`)).status);
        return out;
      } finally {
        await s.close();
      }
    };
    const a = await run();
    const b = await run();
    assert.deepEqual(a, b);
    assert.ok(a.includes(504) && a.includes(200), JSON.stringify(a));
  });

  it('faults the token endpoint and Key Vault on demand', async () => {
    sim.faults.add({ kind: 'status', status: 503, times: 1, match: { service: 'login' } });
    const res = await fetch(`${sim.authorityHost}/${sim.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      body: 'grant_type=client_credentials',
    });
    assert.equal(res.status, 503);
    sim.faults.clear();
  });

  it('counts traffic by operation, mailbox and status, with batch sub-requests counted on their own', () => {
    const s = sim.log.summary();
    assert.ok(s.graphRequests > s.httpCalls - s.byOperation.batch!, 'sub-requests outnumber envelopes');
    assert.ok((s.byOperation['contacts.create'] ?? 0) >= 20);
    assert.ok((s.byMailbox[upn.toLowerCase()] ?? 0) >= 20);
    assert.ok((s.byStatus['429'] ?? 0) >= 4);
    assert.ok(s.throttled >= 4);
  });

  it("every body answered conforms to Microsoft's OpenAPI description", () => {
    assert.deepEqual(report.violations, []);
  });
});

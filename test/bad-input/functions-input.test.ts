// Bad input at the app's doors: HTTP bodies and queue messages, generated; and hostile directory data
// carried intact into mailboxes and escaped in report mail and OData filters.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { runPolicyNow, getRunStatus } from '../../src/functions/http-api';
import { mailboxSyncHandler } from '../../src/functions/mailbox-syncs';
import { policyRunHandler } from '../../src/functions/policy-runs';
import { folderContacts, tagOf } from '../support/engine';
import { functionsFixture, type FunctionsFixture } from '../support/functions-app';
import { hostile, mutate, mutationOf } from './policy-file.test';
import { decodeParts } from '../support/mime';

async function count(iterable: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of iterable) n++;
  return n;
}

const ctx = (lines?: string[]): InvocationContext =>
  new InvocationContext({
    invocationId: 'fuzz',
    functionName: 'fuzz',
    ...(lines ? { logHandler: (_l, ...a) => lines.push(a.join(' ')) } : {}),
  });
const post = (policyId: string, body: string): HttpRequest =>
  new HttpRequest({
    url: `http://127.0.0.1/api/policies/${encodeURIComponent(policyId)}/runs`,
    method: 'POST',
    params: { policyId },
    body: { string: body },
  });

describe('bad input at the Functions app', () => {
  let f: FunctionsFixture;
  let admin: string;
  const hostileName = `<img src=x onerror=alert(1)> O'Brien & "Sons" \u202Eevil 🚀 ${'Z'.repeat(10_000)}`;
  before(async () => {
    f = await functionsFixture({
      sim: {
        seed: { generate: { users: 20, mailboxes: 20, awkward: true } },
        latency: { meanMs: 0, jitterMs: 0 },
      },
      policies: (sim) => {
        admin = [...sim.tenant.users.values()].find(
          (u) => u.mailbox === 'user' && u.accountEnabled,
        )!.userPrincipalName;
        return [
          {
            id: 'gal',
            name: "Q'uote <b>",
            connection: 'contoso',
            source: { type: 'directory' },
            targets: { type: 'users', users: [admin] },
            folder: { name: "Directory 'HQ' & <Co>" },
            notify: { recipients: ['it@contoso.example'], sender: admin, when: 'always' },
          },
        ];
      },
    });
  });
  after(() => f.close());

  it('HTTP run requests: every generated body gets 202, 409 or a 400 problem naming the field, never a 500', async () => {
    const valid = { dryRun: true, fullResync: false, mailboxes: ['a@contoso.example'] };
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc.string(),
          mutationOf(valid).map((m) => JSON.stringify(mutate(valid, m))),
        ),
        async (body) => {
          const res = await runPolicyNow(post('gal', body), ctx());
          assert.ok([202, 400, 409].includes(res.status ?? 0), `${res.status} for ${body.slice(0, 200)}`);
          if (res.status === 400) {
            assert.equal((res.headers as Record<string, string>)['content-type'], 'application/problem+json');
            const errors = (res.jsonBody as { errors: { field: string; message: string }[] }).errors;
            assert.ok(errors.length > 0 && errors.every((e) => e.field && e.message));
          }
          if (res.status === 202) {
            // Let the accepted (dry) run finish, so the next request is not refused for overlap.
            await f.runner.drain(60_000);
          }
        },
      ),
      { numRuns: 60, seed: 11 },
    );
  });

  it('HTTP path parameters: hostile policy and run ids are answered 400 or 404 naming the field', async () => {
    await fc.assert(
      fc.asyncProperty(
        hostile.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))),
        async (id) => {
          const res = await runPolicyNow(post(id, '{}'), ctx());
          assert.ok([400, 404].includes(res.status ?? 0) || id === 'gal');
          const run = await getRunStatus(
            new HttpRequest({ url: 'http://127.0.0.1/api/runs/x', method: 'GET', params: { runId: id } }),
            ctx(),
          );
          assert.ok([400, 404].includes(run.status ?? 0));
          assert.equal((run.jsonBody as { errors: { field: string }[] }).errors[0]!.field, 'runId');
        },
      ),
      { numRuns: 80, seed: 12 },
    );
  });

  it('queue messages that can never parse are dropped with a logged reason, touching nothing', async () => {
    const since = f.sim.log.lastSeq;
    const runsBefore = await count(f.app.tables.runs.listEntities());
    const validMailbox = {
      kind: 'mailbox-sync',
      policyId: 'gal',
      runId: '0b7c9a3e-1f2d-4c5b-8a6e-9d0f1e2a3b4c',
      mailboxId: '7d3e2a1b-4c5d-4e6f-8a9b-0c1d2e3f4a5b',
      continuation: 0,
    };
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.jsonValue(),
          fc.string(),
          mutationOf(validMailbox).map((m) => mutate(validMailbox, m)),
        ),
        async (message) => {
          const lines: string[] = [];
          const parsedOk = JSON.stringify(message) === JSON.stringify(validMailbox);
          if (parsedOk) return;
          await mailboxSyncHandler(message, ctx(lines)).catch((e: unknown) =>
            assert.fail(`crashed: ${String(e)}`),
          );
          await policyRunHandler(message, ctx(lines)).catch((e: unknown) =>
            assert.fail(`crashed: ${String(e)}`),
          );
          assert.ok(
            lines.some((l) => l.startsWith('dropped:')) ||
              lines.length === 0 ||
              lines.some((l) => /run failed|not in the policy file|message dropped/.test(l)),
            lines.join('\n'),
          );
        },
      ),
      { numRuns: 150, seed: 13 },
    );
    assert.equal(
      f.sim.log.since(since).filter((e) => e.service === 'graph').length,
      0,
      'no Graph traffic for bad messages',
    );
    const runsAfter = await count(f.app.tables.runs.listEntities());
    assert.ok(runsAfter - runsBefore <= 2, 'no half runs');
  });

  it('hostile directory data is stored intact, and escaped in report mail and in OData filters', async () => {
    const hostileUser = f.sim.tenant.addUser({
      userPrincipalName: 'hostile@contoso.example',
      displayName: hostileName,
      givenName: '"; DROP TABLE',
      surname: null,
      jobTitle: "' or 1 eq 1 or '",
      mail: 'hostile@contoso.example',
      mailbox: 'none',
    });
    const res = await runPolicyNow(post('gal', '{}'), ctx());
    assert.equal(res.status, 202);
    await f.runner.drain(60_000);
    const contact = folderContacts(f.sim, admin, "Directory 'HQ' & <Co>").find(
      (c) => tagOf(c) === `gal|user:${hostileUser.id}`,
    )!;
    assert.ok(contact, 'the folder with quotes and markup in its name was found and used');
    assert.equal(contact.data.displayName, hostileName);
    assert.equal(contact.data.jobTitle, "' or 1 eq 1 or '");
    const { html, text } = decodeParts(String(f.sim.tenant.mailbox(admin)!.sentMail.at(-1)!.message.mime));
    assert.ok(html.includes('Q&#39;uote &lt;b&gt;'), 'the policy name is escaped in the HTML part');
    assert.ok(
      !/<b>|<img/i.test(html.replace(/<\/?(b|h2|h3|ul|li|p|table|tr|th|td|html|body)\b[^>]*>/gi, '')),
      'no raw markup from data in the HTML part',
    );
    assert.ok(text.includes("Q'uote <b>"), 'the text part carries the raw value');
    // A second run finds the same folder again by name (quotes escaped in the filter) and writes nothing.
    const since = f.sim.log.lastSeq;
    const again = await runPolicyNow(post('gal', '{}'), ctx());
    assert.equal(again.status, 202);
    await f.runner.drain(60_000);
    assert.equal(
      f.sim.log
        .since(since)
        .filter((e) => e.operation === 'contactFolders.create' || e.operation === 'contacts.create').length,
      0,
    );
  });
});

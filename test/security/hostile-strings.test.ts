// Issue 16 "Also": the hostile strings of test/bad-input go through the REAL builders of every OData
// $filter, Graph URL path segment, Table key and PowerShell string the code builds, and each comes
// out escaped (reads back as exactly one literal or segment) or refused with a clear error. The
// builders run inside our real adapters; only the SDK clients at the edge record what they are given.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Client } from '@microsoft/microsoft-graph-client';
import type { TableClient } from '@azure/data-tables';
import { hostile } from '../bad-input/policy-file.test';
import { GraphMailboxes, odataString } from '../../src/adapters/graph/mailbox-graph';
import { GraphDirectoryReader } from '../../src/adapters/graph/directory-reader';
import { TableMailboxStore, TableSourceStore } from '../../src/adapters/tables/table-stores';
import { MailboxLocks } from '../../src/adapters/tables/mailbox-locks';
import { psString, upnFilter } from '../../src/cli/scope-script';
import { powerShellLiterals } from './scope-powershell.test';

/** The fixed hostile strings of test/bad-input, sampled random strings, and path tricks. */
const strings: string[] = [
  ...fc.sample(
    hostile.filter((v): v is string => typeof v === 'string'),
    { numRuns: 200, seed: 16 },
  ),
  "O'Brien",
  "' or 1 eq 1 or '",
  '../../etc/passwd',
  '..',
  '.',
  'a/b',
  'a?b#c',
  'a\\b',
  '%2e%2e',
  '%00',
  'x\u0000y\u001fz\u007f',
  'a|b',
  '\u2019; Remove-Mailbox ceo; \u2019',
];
const distinct = [...new Set(strings)];

/** A Graph client that records every URL and $batch sub-request URL, and answers nothing. */
function recordingGraph(): { client: Client; urls: string[] } {
  const urls: string[] = [];
  const fail = (): Promise<never> =>
    Promise.reject(Object.assign(new Error('recorded'), { statusCode: 400 }));
  const request = {
    header: () => request,
    headers: () => request,
    query: () => request,
    get: fail,
    patch: fail,
    put: fail,
    delete: fail,
    post: (body: { requests?: { url: string }[] }) => {
      for (const r of body?.requests ?? []) urls.push(r.url);
      return fail();
    },
  };
  const client = {
    api: (url: string) => {
      urls.push(url);
      return request;
    },
  } as unknown as Client;
  return { client, urls };
}

/** A Table client that records every key and filter it is handed, and finds nothing. */
function recordingTable(): { table: TableClient; keys: string[]; filters: string[] } {
  const keys: string[] = [];
  const filters: string[] = [];
  const missing = (): Promise<never> =>
    Promise.reject(Object.assign(new Error('not found'), { statusCode: 404 }));
  const entity = (e: { partitionKey: string; rowKey: string }) => {
    keys.push(e.partitionKey, e.rowKey);
    return Promise.resolve({ etag: '*' });
  };
  const table = {
    getEntity: (pk: string, rk: string) => {
      keys.push(pk, rk);
      return missing();
    },
    createEntity: entity,
    upsertEntity: entity,
    updateEntity: entity,
    deleteEntity: (pk: string, rk: string) => {
      keys.push(pk, rk);
      return Promise.resolve({});
    },
    submitTransaction: (actions: [string, { partitionKey: string; rowKey: string }][]) => {
      for (const [, e] of actions) keys.push(e.partitionKey, e.rowKey);
      return Promise.resolve({ status: 202, subResponses: [] });
    },
    listEntities: (options?: { queryOptions?: { filter?: string } }) => {
      if (options?.queryOptions?.filter) filters.push(options.queryOptions.filter);
      return (async function* () {})();
    },
  } as unknown as TableClient;
  return { table, keys, filters };
}

/** Reads an OData string literal ('…' with '' for a quote) at the start of `text`. */
function odataLiteral(text: string): { value: string; rest: string } {
  assert.equal(text[0], "'", text);
  let value = '';
  for (let i = 1; i < text.length; i++) {
    if (text[i] === "'" && text[i + 1] === "'") {
      value += "'";
      i++;
    } else if (text[i] === "'") return { value, rest: text.slice(i + 1) };
    else value += text[i];
  }
  assert.fail(`unclosed literal: ${text}`);
}

/** A URL path segment: one segment, that decodes to the value, and is never a dot-segment. */
function assertSegment(segment: string | undefined, value: string): void {
  assert.ok(segment !== undefined);
  assert.ok(!/[/?#]/.test(segment), segment);
  assert.ok(!['.', '..'].includes(segment) && !/^(\.|%2e){1,2}$/i.test(segment), `dot-segment ${segment}`);
  assert.equal(decodeURIComponent(segment), value);
}

const settle = (call: () => Promise<unknown>): Promise<unknown> =>
  (async () => call())().catch((e: unknown) => e);
/** Azure Table keys may not hold / \ # ? or control characters (and at most 1 KiB). */
// eslint-disable-next-line no-control-regex -- control characters are what Table keys forbid
const badKeyChar = /[/\\#?\u0000-\u001f\u007f-\u009f]/;

describe('hostile strings through the real builders', () => {
  it('OData $filter literals: odataString reads back as exactly one literal', () => {
    for (const s of distinct) {
      const { value, rest } = odataLiteral(odataString(s));
      assert.equal(value, s);
      assert.equal(rest, '');
    }
  });

  it('Graph: each path segment is one encoded segment, each $filter one literal (or the call is refused)', async () => {
    for (const s of distinct) {
      const { client, urls } = recordingGraph();
      const mailboxes = new GraphMailboxes(client);
      const calls: (() => Promise<unknown>)[] = [
        () => mailboxes.findFolder(s, s),
        () => mailboxes.getContact(s, s),
        () => mailboxes.findByTag(s, { kind: 'named', id: s }, s),
        () => mailboxes.createFolder(s, 'Directory'),
        () => new GraphDirectoryReader(client).transitiveMemberIds(s),
        () => new GraphDirectoryReader(client).readMailboxPurposes([s]),
      ];
      for (const call of calls) {
        const before = urls.length;
        const outcome = await (async () => call())().catch((e: unknown) => e);
        // Refused before any request (a dot-segment or an empty id): the error says why.
        if (urls.slice(before).every((u) => u === '/$batch') && outcome instanceof Error)
          assert.match(outcome.message, /path segment/, JSON.stringify(s));
      }
      for (const url of urls.filter((u) => u !== '/$batch')) {
        const [path, query = ''] = url.split('?');
        const segments = path!.split('/').slice(1);
        assert.ok(['users', 'groups'].includes(segments[0]!), url);
        assertSegment(segments[1], s);
        if (segments[2] === 'contactFolders' && segments[3]) assertSegment(segments[3], s);
        if (segments[2] === 'contacts' && segments[3]) assertSegment(segments[3], s);
        const filter = new URLSearchParams(query.replace(/\+/g, '%2B')).get('$filter');
        if (filter?.startsWith('displayName eq ')) assert.equal(odataLiteral(filter.slice(15)).value, s);
        if (filter?.includes('ep/value eq ')) {
          const { value, rest } = odataLiteral(filter.slice(filter.indexOf('ep/value eq ') + 12));
          assert.equal(value, s);
          assert.equal(rest, ')');
        }
      }
    }
  });

  it('Table keys: no forbidden character reaches a key, and different ids never share one', async () => {
    const seen = new Map<string, string>();
    for (const s of distinct) {
      const mailboxes = recordingTable();
      await settle(() => new TableMailboxStore(mailboxes.table).load('policy', s));
      await settle(() =>
        new MailboxLocks(mailboxes.table).tryLock('policy', s, 'me', new Date(1e13), new Date(0)),
      );
      const sources = recordingTable();
      await settle(() => new TableSourceStore(sources.table).load('policy'));
      for (const key of [...mailboxes.keys, ...sources.keys])
        assert.doesNotMatch(key, badKeyChar, JSON.stringify(s));
      // The partition key of the mailbox's state and of its lock name this mailbox only.
      const pk = mailboxes.keys[0]!;
      assert.ok(
        !seen.has(pk) || seen.get(pk) === s,
        `${JSON.stringify(s)} and ${JSON.stringify(seen.get(pk))}`,
      );
      seen.set(pk, s);
      // Filters built with the SDK's odata template: one literal per value.
      for (const f of [...mailboxes.filters, ...sources.filters]) {
        const { value, rest } = odataLiteral(f.slice(f.indexOf("'")));
        assert.equal(
          value,
          f.startsWith('PartitionKey eq ') && mailboxes.filters.includes(f) ? pk : 'policy',
        );
        assert.ok(rest === '' || rest.startsWith(' and '), f);
      }
    }
  });

  it('PowerShell: every literal and OPATH filter reads back as the value', () => {
    for (const s of distinct) {
      assert.deepEqual(powerShellLiterals(`X ${psString(s)}`).literals, [s]);
      const outer = powerShellLiterals(`X ${psString(upnFilter([s, s]))}`);
      assert.equal(outer.unclosed, false);
      assert.deepEqual(powerShellLiterals(outer.literals[0]!).literals, [s, s]);
    }
  });
});

// MailboxGraph over Microsoft Graph: contact folders, the folder's contacts delta, tag look-ups, and
// writes through $batch. Outlook allows 4 concurrent requests per app and mailbox and runs a $batch
// either fully in parallel or fully in sequence, so writes go as up to 4 sequential batches of 20 at
// once, each lane paced by Retry-After; a 429 inside a batch (which the SDK does not retry) and the
// 424s after it are sent again.
import { RetryHandlerOptions, type Client } from '@microsoft/microsoft-graph-client';
import { contactFieldNames } from '../../sync/config/schema';
import { fieldsFromGraph, graphFieldNames, mapiPropertyIds } from '../../sync/mapping';
import {
  DeltaExpiredError,
  FolderGoneError,
  GraphRequestError,
  type ContactLookUpOptions,
  type DriftItem,
  type FolderRef,
  type MailboxGraph,
  type PreReadPage,
  type RefusedRead,
  type TaggedContact,
  type WriteOp,
  type WriteOptions,
  type WriteResult,
} from '../../sync/ports';
import { tagPropertyId } from '../../sync/tag';
import { countThrottledInBatch } from './connection';
import { graphCall } from './errors';
import { pathSegment } from './path-segment';

type Json = Record<string, unknown>;

const immutable = 'IdType="ImmutableId"';
const contactSelect = ['id', 'changeKey', 'createdDateTime', 'parentFolderId', ...graphFieldNames].join(',');
/** Our tag and the fields kept in MAPI properties, read along with each contact. */
const expandTag = `singleValueExtendedProperties($filter=${[tagPropertyId, ...mapiPropertyIds]
  .map((id) => `id eq '${id}'`)
  .join(' or ')})`;

/** OData string literal: single quotes doubled. */
export const odataString = (s: string): string => `'${s.replace(/'/g, "''")}'`;

export interface BatchTuning {
  lanes: number;
  batchSize: number;
  /** Attempts per write when failing transiently (or throttled without a Retry-After). */
  maxAttempts: number;
  /**
   * Waits per write on a 429 that says how long (Retry-After): throttling near the 10-minute window
   * is the service pacing us, not a failure, so it has its own, larger bound (and the deadline).
   */
  maxThrottledWaits: number;
  /** Wait when a 429/503 carries no Retry-After (ms). */
  fallbackDelayMs: number;
}

export const defaultBatchTuning: BatchTuning = {
  lanes: 4,
  batchSize: 20,
  maxAttempts: 12,
  maxThrottledWaits: 100,
  fallbackDelayMs: 1000,
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function header(headers: unknown, name: string): string | undefined {
  if (!headers || typeof headers !== 'object') return undefined;
  for (const [k, v] of Object.entries(headers as Json)) if (k.toLowerCase() === name) return String(v);
  return undefined;
}

function driftItemsOf(page: Json): DriftItem[] {
  const items: DriftItem[] = [];
  for (const c of (page.value as Json[] | undefined) ?? []) {
    if (typeof c.id !== 'string') continue;
    if ('@removed' in c) items.push({ contactId: c.id, removed: true });
    else
      items.push({
        contactId: c.id,
        removed: false,
        changeKey: typeof c.changeKey === 'string' ? c.changeKey : '',
        fields: fieldsFromGraph(c, contactFieldNames),
      });
  }
  return items;
}

/** A deltaLink (absolute) as a $batch sub-request URL: relative to the version segment. */
export function relativeToVersion(link: string): string {
  const u = new URL(link);
  return u.pathname.replace(/^\/(v1\.0|beta)(?=\/)/, '') + u.search;
}

/** The If-Match header for a changeKey (Outlook's ETag is the weak W/"<changeKey>"). */
const ifMatch = (changeKey: string | undefined): Record<string, string> =>
  changeKey ? { 'If-Match': `W/"${changeKey}"` } : {};

const errorCode = (body: Json): string => {
  const e = body.error as { code?: unknown } | undefined;
  return typeof e?.code === 'string' ? e.code : '';
};

/** A sub-response's Retry-After in seconds (0 when absent or unreadable). */
function retryAfterOf(r: Json | undefined): number {
  const v = Number(header(r?.headers, 'retry-after'));
  return Number.isFinite(v) && v > 0 ? v : 0;
}

/** A refused read's sub-response as a report line: its error and Graph's request id. */
function refusedRead(contactId: string, r: Json): RefusedRead {
  const err = ((r.body as Json | undefined)?.error ?? {}) as {
    code?: string;
    message?: string;
    innerError?: { 'request-id'?: string };
  };
  const requestId = err.innerError?.['request-id'] ?? header(r.headers, 'request-id');
  return {
    contactId,
    status: r.status as number,
    code: err.code ?? 'Unknown',
    message: err.message ?? `HTTP ${String(r.status)}`,
    ...(requestId ? { requestId } : {}),
  };
}

/** Photo bytes per batch: base64 adds a third, and Graph refuses any request over 4 MB. */
const maxBatchPhotoBytes = 2_800_000;

/** How many queued writes go in the next batch: up to `max`, photos only while they fit. */
function batchLength(queue: readonly { op: WriteOp }[], max: number): number {
  let bytes = 0;
  let n = 0;
  for (const { op } of queue) {
    if (n >= max) break;
    const size = op.kind === 'setPhoto' ? op.size : 0;
    if (n > 0 && bytes + size > maxBatchPhotoBytes) break;
    bytes += size;
    n++;
  }
  return n;
}

/**
 * How many of n writes each lane sends. A lane's batches run one after another, so a write lasts as
 * long as its busiest lane: 200 writes as 10 batches of 20 take 3 rounds on 4 lanes (60 on the
 * busiest), as 4 shares of 50 (20 + 20 + 10) two and a half. Lanes are only opened for at least a
 * full batch each, so a small write stays one `$batch` (the fewest HTTP calls); the even split
 * costs at most lanes - 1 more calls and no Graph budget (sub-requests count, not envelopes).
 */
export function laneShares(n: number, lanes: number, batchSize: number): number[] {
  const used = Math.min(lanes, Math.ceil(n / batchSize));
  return Array.from({ length: used }, (_, i) => Math.floor(n / used) + (i < n % used ? 1 : 0));
}

export class GraphMailboxes implements MailboxGraph {
  /** Requests counted by kind, for run records and benchmarks. */
  readonly stats = { httpCalls: 0, batchRequests: 0, throttled: 0 };

  constructor(
    private readonly client: Client,
    private readonly tuning: BatchTuning = defaultBatchTuning,
  ) {}

  private base(mailboxId: string, folder: FolderRef): string {
    const user = `/users/${pathSegment(mailboxId)}`;
    return folder.kind === 'default'
      ? `${user}/contacts`
      : `${user}/contactFolders/${pathSegment(folder.id)}/contacts`;
  }

  private async get(url: string, prefer = immutable): Promise<Json> {
    this.stats.httpCalls++;
    return graphCall(() => this.client.api(url).header('Prefer', prefer).get() as Promise<Json>);
  }

  async findFolder(mailboxId: string, name: string): Promise<string | undefined> {
    const url = `/users/${pathSegment(mailboxId)}/contactFolders?$filter=${encodeURIComponent(`displayName eq ${odataString(name)}`)}&$select=id,displayName`;
    const page = await this.get(url);
    // $filter on displayName ignores case, as Outlook's folder names do: so does this match.
    const match = ((page.value as Json[] | undefined) ?? []).find(
      (f) => typeof f.displayName === 'string' && f.displayName.toLowerCase() === name.toLowerCase(),
    );
    return typeof match?.id === 'string' ? match.id : undefined;
  }

  async createFolder(mailboxId: string, name: string): Promise<string> {
    this.stats.httpCalls++;
    try {
      const f = await graphCall(
        () =>
          this.client
            .api(`/users/${pathSegment(mailboxId)}/contactFolders`)
            .header('Prefer', immutable)
            .post({ displayName: name }) as Promise<Json>,
      );
      return String(f.id);
    } catch (e) {
      if (e instanceof GraphRequestError && e.status === 409) {
        const id = await this.findFolder(mailboxId, name);
        if (id) return id;
      }
      throw e;
    }
  }

  async folderName(mailboxId: string, folderId: string): Promise<string | undefined> {
    try {
      const f = await this.get(
        `/users/${pathSegment(mailboxId)}/contactFolders/${pathSegment(folderId)}?$select=displayName`,
      );
      return typeof f.displayName === 'string' ? f.displayName : '';
    } catch (e) {
      if (e instanceof GraphRequestError && e.status === 404) return undefined;
      throw e;
    }
  }

  async isContactFolder(mailboxId: string, folderId: string): Promise<boolean> {
    try {
      await this.get(`/users/${pathSegment(mailboxId)}/contactFolders/${pathSegment(folderId)}?$select=id`);
      return true;
    } catch (e) {
      if (e instanceof GraphRequestError && (e.status === 404 || e.status === 400)) return false;
      throw e;
    }
  }

  async renameFolder(mailboxId: string, folderId: string, name: string): Promise<boolean> {
    this.stats.httpCalls++;
    try {
      await graphCall(
        () =>
          this.client
            .api(`/users/${pathSegment(mailboxId)}/contactFolders/${pathSegment(folderId)}`)
            .patch({ displayName: name }) as Promise<unknown>,
      );
      return true;
    } catch (e) {
      if (e instanceof GraphRequestError && e.status === 409) return false;
      throw e;
    }
  }

  /** Deletes a contact folder; false when it was already gone. */
  async deleteFolder(mailboxId: string, folderId: string): Promise<boolean> {
    this.stats.httpCalls++;
    try {
      await graphCall(
        () =>
          this.client
            .api(`/users/${pathSegment(mailboxId)}/contactFolders/${pathSegment(folderId)}`)
            .header('Prefer', immutable)
            .delete() as Promise<unknown>,
      );
      return true;
    } catch (e) {
      if (e instanceof GraphRequestError && e.status === 404) return false;
      throw e;
    }
  }

  async readDrift(
    mailboxId: string,
    folder: FolderRef,
    deltaLink: string | null,
    onPage?: (items: DriftItem[]) => void,
  ): Promise<{ items: DriftItem[]; deltaLink: string }> {
    let url: string | undefined =
      deltaLink ?? `${this.base(mailboxId, folder)}/delta?$select=${contactSelect}`;
    const items: DriftItem[] = [];
    let last: string | undefined;
    while (url) {
      // With onPage, each page is handed over and dropped: a folder of 50,000 is never held whole.
      const pageItems: DriftItem[] = onPage ? [] : items;
      let page: Json;
      try {
        page = await this.get(url, `${immutable}, odata.maxpagesize=1000`);
      } catch (e) {
        if (e instanceof GraphRequestError) {
          if (e.status === 410 || /syncState/i.test(e.code)) throw new DeltaExpiredError(e.message);
          if (
            e.status === 404 &&
            /ItemNotFound|itemNotFound|ErrorFolderNotFound/.test(e.code) &&
            folder.kind === 'named'
          )
            throw new FolderGoneError(e.message);
        }
        throw e;
      }
      pageItems.push(...driftItemsOf(page));
      onPage?.(pageItems);
      url = typeof page['@odata.nextLink'] === 'string' ? page['@odata.nextLink'] : undefined;
      if (typeof page['@odata.deltaLink'] === 'string') last = page['@odata.deltaLink'];
    }
    if (!last) throw new Error('Graph ended a contacts delta round without a deltaLink');
    return { items, deltaLink: last };
  }

  async readDrifts(
    reads: readonly { mailboxId: string; deltaLink: string; folderId?: string }[],
    pageSize = 1000,
  ): Promise<Map<string, PreReadPage>> {
    const out = new Map<string, PreReadPage>();
    // A read with its folder's name takes two sub-requests: chunks hold 20 sub-requests.
    const chunks: (typeof reads)[] = [];
    let chunk: (typeof reads)[number][] = [];
    let size = 0;
    for (const r of reads) {
      const cost = r.folderId ? 2 : 1;
      if (size + cost > 20) {
        chunks.push(chunk);
        chunk = [];
        size = 0;
      }
      chunk.push(r);
      size += cost;
    }
    if (chunk.length > 0) chunks.push(chunk);
    for (let i = 0; i < chunks.length; i += 4) {
      await Promise.all(
        chunks.slice(i, i + 4).map(async (chunk) => {
          this.stats.httpCalls++;
          let response: { responses?: Json[] };
          try {
            response = (await this.client
              .api('/$batch')
              .middlewareOptions([new RetryHandlerOptions(0, 0)])
              .post({
                requests: chunk.flatMap((r, n) => [
                  {
                    id: String(n),
                    method: 'GET',
                    url: relativeToVersion(r.deltaLink),
                    headers: { Prefer: `${immutable}, odata.maxpagesize=${pageSize}` },
                  },
                  ...(r.folderId
                    ? [
                        {
                          id: `f${n}`,
                          method: 'GET',
                          url: `/users/${pathSegment(r.mailboxId)}/contactFolders/${pathSegment(r.folderId)}?$select=displayName`,
                          headers: { Prefer: immutable },
                        },
                      ]
                    : []),
                ]),
              })) as { responses?: Json[] };
          } catch {
            return; // each mailbox reads its own delta then
          }
          const names = new Map<string, string | null>();
          for (const r of response.responses ?? []) {
            const id = String(r.id);
            if (!id.startsWith('f')) continue;
            const body = (r.body ?? {}) as Json;
            if (r.status === 200 && typeof body.displayName === 'string')
              names.set(id.slice(1), body.displayName);
            else if (r.status === 404) names.set(id.slice(1), null);
          }
          for (const r of response.responses ?? []) {
            if (String(r.id).startsWith('f')) continue;
            const read = chunk[Number(r.id)];
            const page = (r.body ?? {}) as Json;
            // An error or an expired token is the mailbox's to handle.
            if (!read || r.status !== 200) continue;
            const next = page['@odata.nextLink'];
            const delta = page['@odata.deltaLink'];
            const link =
              typeof next === 'string'
                ? { nextLink: next }
                : typeof delta === 'string'
                  ? { deltaLink: delta }
                  : undefined;
            // Without its folder's name (the look-up failed) the round is the mailbox's to read.
            const name = names.get(String(r.id));
            if (!link || (read.folderId && name === undefined)) continue;
            out.set(read.mailboxId, {
              items: driftItemsOf(page),
              ...link,
              ...(read.folderId ? { folderName: name } : {}),
            });
          }
        }),
      );
    }
    return out;
  }

  async readSourceContacts(
    mailbox: string,
    folder: string | null,
    deltaLink: string | null,
  ): Promise<{ items: DriftItem[]; deltaLink: string }> {
    const round = await this.readSourceRound(mailbox, folder, deltaLink);
    await this.addTags(mailbox, folder, round.items);
    return round;
  }

  /**
   * Notes each changed item's tag (the delta cannot $expand it): a GET each for a few, one listing of
   * the folder for many.
   */
  private async addTags(mailbox: string, folder: string | null, items: DriftItem[]): Promise<void> {
    const changed = items.filter((i) => !i.removed);
    if (changed.length === 0) return;
    let tags: Map<string, string | null>;
    if (changed.length <= 20) {
      tags = new Map();
      for (const i of changed)
        tags.set(i.contactId, (await this.getContact(mailbox, i.contactId))?.tag ?? null);
    } else {
      const id = folder === null ? undefined : await this.findFolder(mailbox, folder);
      const ref: FolderRef = id ? { kind: 'named', id } : { kind: 'default' };
      tags = new Map((await this.listContacts(mailbox, ref)).map((c) => [c.contactId, c.tag]));
    }
    for (const i of changed) i.tag = tags.get(i.contactId) ?? null;
  }

  private async readSourceRound(
    mailbox: string,
    folder: string | null,
    deltaLink: string | null,
  ): Promise<{ items: DriftItem[]; deltaLink: string }> {
    if (deltaLink) {
      try {
        return await this.readDrift(mailbox, { kind: 'default' }, deltaLink);
      } catch (e) {
        // The folder the token was taken from is gone (deleted, perhaps made again): read in full.
        if (e instanceof GraphRequestError && e.status === 404)
          throw new DeltaExpiredError(`the source folder of ${mailbox} is gone: ${e.message}`);
        throw e;
      }
    }
    let ref: FolderRef = { kind: 'default' };
    if (folder !== null) {
      const id = await this.findFolder(mailbox, folder);
      if (!id)
        throw new GraphRequestError(
          `SourceFolderNotFound: the source mailbox ${mailbox} has no contact folder "${folder}" under Contacts`,
          404,
          'SourceFolderNotFound',
          undefined,
        );
      ref = { kind: 'named', id };
    }
    try {
      return await this.readDrift(mailbox, ref, null);
    } catch (e) {
      if (e instanceof FolderGoneError)
        throw new GraphRequestError(
          `SourceFolderNotFound: the contact folder "${folder ?? 'Contacts'}" of ${mailbox} is gone`,
          404,
          'SourceFolderNotFound',
          undefined,
        );
      throw e;
    }
  }

  /** A 429 inside a $batch answer: kept in the pass stats and in the invocation's Graph traffic. */
  private countThrottled(): void {
    this.stats.throttled++;
    countThrottledInBatch();
  }

  private tagged(c: Json): TaggedContact {
    const props = (c.singleValueExtendedProperties as Json[] | undefined) ?? [];
    const tag = props.find(
      (p) => typeof p.id === 'string' && p.id.toLowerCase() === tagPropertyId.toLowerCase(),
    );
    return {
      contactId: String(c.id),
      changeKey: typeof c.changeKey === 'string' ? c.changeKey : '',
      tag: typeof tag?.value === 'string' ? tag.value : null,
      fields: fieldsFromGraph(c, contactFieldNames),
      ...(typeof c.createdDateTime === 'string' ? { createdDateTime: c.createdDateTime } : {}),
      ...(typeof c.parentFolderId === 'string' ? { folderId: c.parentFolderId } : {}),
    };
  }

  private async listAll(url: string): Promise<TaggedContact[]> {
    const out: TaggedContact[] = [];
    let next: string | undefined = url;
    while (next) {
      const page = await this.get(next);
      for (const c of (page.value as Json[] | undefined) ?? []) out.push(this.tagged(c));
      next = typeof page['@odata.nextLink'] === 'string' ? page['@odata.nextLink'] : undefined;
    }
    return out;
  }

  listContacts(mailboxId: string, folder: FolderRef): Promise<TaggedContact[]> {
    return this.listAll(
      `${this.base(mailboxId, folder)}?$select=${contactSelect}&$expand=${encodeURIComponent(expandTag)}&$top=1000`,
    );
  }

  findByTag(mailboxId: string, folder: FolderRef, tag: string): Promise<TaggedContact[]> {
    const filter = `singleValueExtendedProperties/Any(ep: ep/id eq ${odataString(tagPropertyId)} and ep/value eq ${odataString(tag)})`;
    return this.listAll(
      `${this.base(mailboxId, folder)}?$filter=${encodeURIComponent(filter)}&$select=${contactSelect}&$expand=${encodeURIComponent(expandTag)}`,
    );
  }

  async getContact(mailboxId: string, contactId: string): Promise<TaggedContact | undefined> {
    try {
      return this.tagged(
        await this.get(
          `/users/${pathSegment(mailboxId)}/contacts/${pathSegment(contactId)}?$select=${contactSelect}&$expand=${encodeURIComponent(expandTag)}`,
        ),
      );
    } catch (e) {
      if (e instanceof GraphRequestError && e.status === 404) return undefined;
      throw e;
    }
  }

  async getContacts(
    mailboxId: string,
    ids: readonly string[],
    options: ContactLookUpOptions = {},
  ): Promise<Map<string, TaggedContact | null>> {
    const out = new Map<string, TaggedContact | null>();
    let left = [...ids];
    // Reads a $batch answered 429/5xx are sent again, paced by Retry-After, within the time budget.
    for (let attempt = 1; left.length > 0; attempt++) {
      const retry = await this.readContacts(mailboxId, left, out, options);
      left = retry.ids;
      if (left.length === 0 || attempt >= this.tuning.maxAttempts) break;
      const waitMs = retry.retryAfter > 0 ? retry.retryAfter * 1000 : this.tuning.fallbackDelayMs * attempt;
      if (options.deadline !== undefined && Date.now() + waitMs >= options.deadline) break;
      await sleep(waitMs);
    }
    return out;
  }

  /**
   * One round of contact reads: the ids to read again (throttled, failed) and how soon. Graph runs a
   * $batch's independent sub-requests at once and admits 4 per mailbox, so a $batch carries 4 reads
   * (the write lanes' share) and the next starts when it is answered: none is throttled by our own.
   */
  private async readContacts(
    mailboxId: string,
    ids: readonly string[],
    out: Map<string, TaggedContact | null>,
    { deadline, onRefused }: ContactLookUpOptions,
  ): Promise<{ ids: string[]; retryAfter: number }> {
    const again: string[] = [];
    let retryAfter = 0;
    const chunks: string[][] = [];
    for (let i = 0; i < ids.length; i += this.tuning.lanes) chunks.push(ids.slice(i, i + this.tuning.lanes));
    const user = `/users/${encodeURIComponent(mailboxId)}`;
    for (const chunk of chunks) {
      // Past the pass's time budget no read starts: the ids left out are the caller's to keep.
      if (deadline !== undefined && Date.now() >= deadline) break;
      this.stats.httpCalls++;
      const response = await graphCall(
        () =>
          this.client.api('/$batch').post({
            requests: chunk.map((id, n) => ({
              id: String(n),
              method: 'GET',
              url: `${user}/contacts/${encodeURIComponent(id)}?$select=${contactSelect}&$expand=${encodeURIComponent(expandTag)}`,
              headers: { Prefer: immutable },
            })),
          }) as Promise<{ responses?: Json[] }>,
      );
      for (const r of response.responses ?? []) {
        const id = chunk[Number(r.id)];
        if (id === undefined) continue;
        if (r.status === 200) out.set(id, this.tagged((r.body ?? {}) as Json));
        else if (r.status === 404) out.set(id, null);
        else if (r.status === 400 || r.status === 403) {
          // No answer about the contact (a 403 comes in bursts on items that exist): left out of the
          // answer, so it stays unsettled and the next pass asks again; the caller reports it.
          onRefused?.(refusedRead(id, r));
        } else if (r.status === 429 || (typeof r.status === 'number' && r.status >= 500)) {
          if (r.status === 429) this.countThrottled();
          again.push(id);
          retryAfter = Math.max(retryAfter, retryAfterOf(r));
        }
      }
    }
    return { ids: again, retryAfter };
  }

  private async subRequest(mailboxId: string, op: WriteOp): Promise<Json> {
    const user = `/users/${pathSegment(mailboxId)}`;
    switch (op.kind) {
      case 'setPhoto': {
        const photo = await op.photo();
        return {
          id: op.id,
          method: 'PUT',
          url: `${user}/contacts/${pathSegment(op.contactId)}/photo/$value`,
          // Inside a batch a binary body is base64 with its own Content-Type.
          headers: { 'Content-Type': photo.contentType, Prefer: immutable },
          body: photo.bytes.toString('base64'),
        };
      }
      case 'deletePhoto':
        return {
          id: op.id,
          method: 'DELETE',
          url: `${user}/contacts/${pathSegment(op.contactId)}/photo/$value`,
          headers: { Prefer: immutable },
        };
      case 'create':
        return {
          id: op.id,
          method: 'POST',
          url: this.base(mailboxId, op.folder),
          headers: { 'Content-Type': 'application/json', Prefer: immutable },
          body: op.body(),
        };
      case 'update':
        return {
          id: op.id,
          method: 'PATCH',
          url: `${user}/contacts/${pathSegment(op.contactId)}`,
          headers: { 'Content-Type': 'application/json', Prefer: immutable, ...ifMatch(op.ifMatch) },
          body: op.body(),
        };
      case 'delete':
        return {
          id: op.id,
          method: 'DELETE',
          url: `${user}/contacts/${pathSegment(op.contactId)}`,
          headers: { Prefer: immutable, ...ifMatch(op.ifMatch) },
        };
    }
  }

  async write(mailboxId: string, ops: WriteOp[], options: WriteOptions = {}): Promise<WriteResult[]> {
    const queue = ops.map((op) => ({ op, attempts: 0, throttledWaits: 0 }));
    const results: WriteResult[] = [];
    const shares = laneShares(ops.length, this.tuning.lanes, this.tuning.batchSize);
    // The first failure (a state write, a body) stops every lane: none starts another batch.
    let stopped = false;
    const lane = async (share: number): Promise<void> => {
      let unsent = share;
      while (queue.length > 0 && !stopped) {
        if (options.deadline !== undefined && Date.now() >= options.deadline) return;
        // A lane's own share first (so no lane runs a round longer than the others); retries
        // pushed back to the queue are taken by whichever lane is free.
        const max = unsent > 0 ? Math.min(this.tuning.batchSize, unsent) : this.tuning.batchSize;
        const taken = queue.splice(0, batchLength(queue, max));
        unsent -= taken.length;
        const done: WriteResult[] = [];
        // A body that cannot be built (a photo missing from the store) fails that write alone.
        const built = await Promise.all(
          taken.map(async (q) => {
            try {
              return { q, request: await this.subRequest(mailboxId, q.op) };
            } catch (e) {
              done.push({
                id: q.op.id,
                outcome: 'failed',
                status: 0,
                code: 'BodyUnavailable',
                message: e instanceof Error ? e.message : String(e),
              });
              return undefined;
            }
          }),
        );
        const ready = built.filter((b) => b !== undefined);
        const chunk = ready.map((b) => b.q);
        if (chunk.length === 0) {
          results.push(...done);
          await options.onResults?.(done);
          continue;
        }
        // Fully sequential: each request depends on the one before, so the batch holds one of the
        // mailbox's 4 concurrent slots.
        const body = {
          requests: ready.map((b, i) => ({
            ...b.request,
            ...(i > 0 ? { dependsOn: [chunk[i - 1]!.op.id] } : {}),
          })),
        };
        await options.beforeBatch?.(chunk.map((q) => q.op));
        this.stats.httpCalls++;
        this.stats.batchRequests += chunk.length;
        const again: typeof chunk = [];
        let waitMs = 0;
        let response: { responses?: Json[] } | undefined;
        try {
          // No SDK retry for the envelope: resending creates could make twins; we retry per request.
          response = (await this.client
            .api('/$batch')
            .middlewareOptions([new RetryHandlerOptions(0, 0)])
            .post(body)) as { responses?: Json[] };
        } catch (e) {
          const status = (e as { statusCode?: number }).statusCode;
          for (const q of chunk) {
            if (typeof status === 'number' && status >= 400 && status < 500 && status !== 429) {
              done.push({
                id: q.op.id,
                outcome: 'failed',
                status,
                code: (e as { code?: string }).code ?? 'BadRequest',
                message: e instanceof Error ? e.message : String(e),
              });
            } else if (q.op.kind !== 'create' && ++q.attempts < 3) {
              again.push(q); // PATCH and DELETE are safe to send again
            } else {
              done.push({
                id: q.op.id,
                outcome: 'unknown',
                message: e instanceof Error ? e.message : String(e),
              });
            }
          }
          waitMs = this.tuning.fallbackDelayMs;
        }
        if (response) {
          const byId = new Map((response.responses ?? []).map((r) => [String(r.id), r]));
          for (const q of chunk) {
            const r = byId.get(q.op.id);
            const status = typeof r?.status === 'number' ? r.status : 0;
            const rb = (r?.body ?? {}) as Json;
            if (status >= 200 && status < 300) {
              done.push({
                id: q.op.id,
                outcome: 'ok',
                ...(typeof rb.id === 'string' ? { contactId: rb.id } : {}),
                ...(typeof rb.changeKey === 'string' ? { changeKey: rb.changeKey } : {}),
              });
            } else if (status === 404 && q.op.kind !== 'create') {
              done.push({ id: q.op.id, outcome: 'notFound' });
            } else if (
              (q.op.kind === 'update' || q.op.kind === 'delete') &&
              q.op.ifMatch &&
              (status === 412 || (status === 409 && /IrresolvableConflict/.test(errorCode(rb))))
            ) {
              done.push({ id: q.op.id, outcome: 'conflict' });
            } else if (status === 424) {
              again.push(q); // not executed: a request before it failed
            } else if (q.op.kind === 'create' && (status === 0 || status >= 500)) {
              // It may have run (no sub-response, or a server error after the write): sent again only
              // after its tag was looked up, on the next pass.
              done.push({ id: q.op.id, outcome: 'unknown', message: `HTTP ${status || 'no reply'}` });
            } else if (status === 0) {
              again.push(q); // no sub-response: PATCH and DELETE are safe to send again
            } else if (
              status === 429 && retryAfterOf(r) > 0
                ? ++q.throttledWaits < this.tuning.maxThrottledWaits
                : (status === 429 || status === 503 || status === 504 || status === 500) &&
                  ++q.attempts < this.tuning.maxAttempts
            ) {
              if (status === 429) this.countThrottled();
              const retryAfter = retryAfterOf(r);
              waitMs = Math.max(
                waitMs,
                retryAfter > 0 ? retryAfter * 1000 : this.tuning.fallbackDelayMs * q.attempts,
              );
              again.push(q);
            } else {
              const err = (rb.error ?? {}) as {
                code?: string;
                message?: string;
                innerError?: { 'request-id'?: string };
              };
              const requestId = err.innerError?.['request-id'] ?? header(r?.headers, 'request-id');
              done.push({
                id: q.op.id,
                outcome: 'failed',
                status,
                code: err.code ?? 'Unknown',
                message: err.message ?? `HTTP ${status}`,
                ...(requestId ? { requestId } : {}),
              });
            }
          }
        }
        queue.unshift(...again);
        results.push(...done);
        if (done.length > 0) await options.onResults?.(done);
        if (waitMs > 0) await sleep(waitMs);
      }
    };
    // Settled, not Promise.all: write returns (and the caller may release the mailbox lock) only
    // once no request of any lane is still in flight.
    const lanes = await Promise.allSettled(
      shares.map((share) =>
        lane(share).catch((e: unknown) => {
          stopped = true;
          throw e;
        }),
      ),
    );
    const failure = lanes.find((l) => l.status === 'rejected');
    if (failure) throw failure.reason;
    if (queue.length > 0) {
      const left: WriteResult[] = queue.map((q) => ({ id: q.op.id, outcome: 'notAttempted' }));
      results.push(...left);
      await options.onResults?.(left);
    }
    return results;
  }
}

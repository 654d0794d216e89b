// DirectoryReader over Microsoft Graph: /users/delta and /contacts/delta with $select, and nested
// group membership through transitiveMembers.
import type { Client } from '@microsoft/microsoft-graph-client';
import type { DirectoryEntry } from '../../sync/directory';
import type { CompiledFilter } from '../../sync/filters';
import {
  DeltaExpiredError,
  GraphRequestError,
  type DirectoryChange,
  type DirectoryReader,
  type Photo,
} from '../../sync/ports';
import { graphCall } from './errors';
import { pathSegment } from './path-segment';

const userSelect = [
  'id',
  'userPrincipalName',
  'displayName',
  'givenName',
  'surname',
  'mail',
  'proxyAddresses',
  'businessPhones',
  'mobilePhone',
  'jobTitle',
  'department',
  'companyName',
  'officeLocation',
  'streetAddress',
  'city',
  'state',
  'postalCode',
  'country',
  'usageLocation',
  'accountEnabled',
  'showInAddressList',
  'userType',
  'onPremisesExtensionAttributes',
  'faxNumber',
  'imAddresses',
  'manager',
].join(',');
const orgContactSelect =
  'id,displayName,givenName,surname,mail,companyName,department,jobTitle,proxyAddresses,phones,addresses';
const groupSelect = 'id,displayName,mail,mailEnabled,proxyAddresses';

type Json = Record<string, unknown>;
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const headerOf = (headers: Json, name: string): string | undefined => {
  const v = Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
};

export function userProperties(u: Json): Partial<DirectoryEntry> {
  const p: Partial<DirectoryEntry> = {};
  const strings = [
    'userPrincipalName',
    'displayName',
    'givenName',
    'surname',
    'mail',
    'mobilePhone',
    'jobTitle',
    'department',
    'companyName',
    'officeLocation',
    'streetAddress',
    'city',
    'state',
    'postalCode',
    'country',
    'usageLocation',
    'userType',
    'faxNumber',
  ] as const;
  for (const k of strings) if (k in u) (p as Json)[k] = str(u[k]);
  if ('proxyAddresses' in u)
    p.proxyAddresses = Array.isArray(u.proxyAddresses)
      ? u.proxyAddresses.filter((x): x is string => typeof x === 'string')
      : [];
  if ('businessPhones' in u)
    p.businessPhones = Array.isArray(u.businessPhones)
      ? u.businessPhones.filter((x): x is string => typeof x === 'string')
      : [];
  if ('imAddresses' in u)
    p.imAddresses = Array.isArray(u.imAddresses)
      ? u.imAddresses.filter((x): x is string => typeof x === 'string')
      : [];
  if ('accountEnabled' in u)
    p.accountEnabled = typeof u.accountEnabled === 'boolean' ? u.accountEnabled : null;
  if ('showInAddressList' in u)
    p.showInAddressList = typeof u.showInAddressList === 'boolean' ? u.showInAddressList : null;
  if ('onPremisesExtensionAttributes' in u) {
    const ext = (u.onPremisesExtensionAttributes ?? {}) as Json;
    p.extensionAttributes = Object.fromEntries(
      Object.entries(ext)
        .filter(([k]) => /^extensionAttribute\d+$/.test(k))
        .map(([k, v]) => [k, str(v)]),
    );
  }
  const managerDelta = u['manager@delta'];
  if (Array.isArray(managerDelta)) {
    const current = (managerDelta as Json[]).filter((m) => !('@removed' in m)).at(-1);
    p.managerId = current ? str(current.id) : null;
  }
  return p;
}

export function groupProperties(g: Json): Partial<DirectoryEntry> {
  const p: Partial<DirectoryEntry> = {};
  if ('displayName' in g) p.displayName = str(g.displayName);
  if ('mail' in g) p.mail = str(g.mail);
  if ('proxyAddresses' in g)
    p.proxyAddresses = Array.isArray(g.proxyAddresses)
      ? g.proxyAddresses.filter((x): x is string => typeof x === 'string')
      : [];
  return p;
}

export function orgContactProperties(c: Json): Partial<DirectoryEntry> {
  const p: Partial<DirectoryEntry> = {};
  for (const k of [
    'displayName',
    'givenName',
    'surname',
    'mail',
    'companyName',
    'department',
    'jobTitle',
  ] as const)
    if (k in c) (p as Json)[k] = str(c[k]);
  if ('proxyAddresses' in c)
    p.proxyAddresses = Array.isArray(c.proxyAddresses)
      ? c.proxyAddresses.filter((x): x is string => typeof x === 'string')
      : [];
  if ('phones' in c) {
    const phones = Array.isArray(c.phones) ? (c.phones as Json[]) : [];
    const ofType = (type: string): string[] =>
      phones
        .filter((x) => x.type === type)
        .map((x) => str(x.number))
        .filter((x): x is string => x !== null);
    p.businessPhones = ofType('business');
    p.mobilePhone = ofType('mobile')[0] ?? null;
    p.homePhones = ofType('home');
    p.faxNumber = ofType('businessFax')[0] ?? null;
  }
  if ('addresses' in c) {
    const a = (Array.isArray(c.addresses) ? (c.addresses as Json[]) : [])[0] ?? {};
    p.streetAddress = str(a.street);
    p.city = str(a.city);
    p.state = str(a.state);
    p.postalCode = str(a.postalCode);
    p.country = str(a.countryOrRegion);
    p.officeLocation = str(a.officeLocation);
  }
  return p;
}

export class GraphDirectoryReader implements DirectoryReader {
  constructor(private readonly client: Client) {}

  async readDelta(
    kind: 'user' | 'orgContact' | 'group',
    deltaLink: string | null,
    onChanges: (changes: DirectoryChange[]) => void,
  ): Promise<{ deltaLink: string }> {
    const start =
      kind === 'user'
        ? `/users/delta?$select=${userSelect}`
        : kind === 'orgContact'
          ? `/contacts/delta?$select=${orgContactSelect}`
          : `/groups/delta?$select=${groupSelect}`;
    let url: string | undefined = deltaLink ?? start;
    let last: string | undefined;
    while (url) {
      const changes: DirectoryChange[] = [];
      let page: Json;
      try {
        page = await graphCall(() => this.client.api(url!).get() as Promise<Json>);
      } catch (e) {
        if (
          e instanceof GraphRequestError &&
          (e.status === 410 || /syncStateNotFound|syncStateInvalid|resyncRequired/i.test(e.code))
        )
          throw new DeltaExpiredError(e.message);
        throw e;
      }
      for (const item of (page.value as Json[] | undefined) ?? []) {
        const id = str(item.id);
        if (!id) continue;
        // A group that is (or becomes) not mail-enabled is not an address-book entry.
        const notMailEnabled =
          kind === 'group' &&
          ('mailEnabled' in item || 'mail' in item) &&
          (item.mailEnabled === false || !str(item.mail));
        if ('@removed' in item || notMailEnabled) changes.push({ kind, id, removed: true });
        else
          changes.push({
            kind,
            id,
            removed: false,
            properties:
              kind === 'user'
                ? userProperties(item)
                : kind === 'orgContact'
                  ? orgContactProperties(item)
                  : groupProperties(item),
          });
      }
      onChanges(changes);
      url = str(page['@odata.nextLink']) ?? undefined;
      last = str(page['@odata.deltaLink']) ?? last;
    }
    if (!last) throw new Error('Graph ended a delta round without a deltaLink');
    return { deltaLink: last };
  }

  /**
   * One GET per id through $batch, 20 per batch and up to 4 batches at once (each id is a different
   * user's mailbox, so the per-mailbox limit is not in play). One retry round after a throttle or a
   * server error; the answers (or the last failure) by id.
   */
  private async batchGet(
    ids: readonly string[],
    url: (id: string) => string,
  ): Promise<Map<string, { status: number; body: unknown; headers: Json }>> {
    const out = new Map<string, { status: number; body: unknown; headers: Json }>();
    let todo = [...ids];
    for (let attempt = 0; attempt < 2 && todo.length > 0; attempt++) {
      const retry: string[] = [];
      let waitMs = 0;
      const chunks: string[][] = [];
      for (let i = 0; i < todo.length; i += 20) chunks.push(todo.slice(i, i + 20));
      for (let i = 0; i < chunks.length; i += 4) {
        await Promise.all(
          chunks.slice(i, i + 4).map(async (chunk) => {
            let response: { responses?: Json[] };
            try {
              response = (await this.client.api('/$batch').post({
                requests: chunk.map((id, n) => ({ id: String(n), method: 'GET', url: url(id) })),
              })) as { responses?: Json[] };
            } catch {
              retry.push(...chunk);
              return;
            }
            for (const r of response.responses ?? []) {
              const id = chunk[Number(r.id)];
              if (id === undefined) continue;
              const status = typeof r.status === 'number' ? r.status : 0;
              const headers = (r.headers ?? {}) as Json;
              out.set(id, { status, body: r.body, headers });
              if (status === 429 || status >= 500) {
                const after = Number(headerOf(headers, 'retry-after'));
                if (Number.isFinite(after) && after > 0) waitMs = Math.max(waitMs, after * 1000);
                retry.push(id);
              }
            }
          }),
        );
      }
      todo = retry;
      if (todo.length > 0 && attempt === 0)
        await new Promise((r) => setTimeout(r, Math.min(waitMs || 1000, 30_000)));
    }
    return out;
  }

  /** Photos; Graph returns binary bodies in a batch base64-encoded. 404 (ImageNotFound): no photo. */
  async readUserPhotos(userIds: readonly string[]): Promise<Map<string, Photo | null>> {
    const out = new Map<string, Photo | null>();
    const answers = await this.batchGet(userIds, (id) => `/users/${pathSegment(id)}/photo/$value`);
    for (const [id, a] of answers) {
      const contentType = headerOf(a.headers, 'content-type');
      if (a.status === 200 && typeof a.body === 'string')
        out.set(id, { contentType: contentType || 'image/jpeg', bytes: Buffer.from(a.body, 'base64') });
      else if (a.status === 404) out.set(id, null);
      // Anything else (403: no permission for this mailbox, a throttle twice) stays unknown.
    }
    return out;
  }

  /** Exchange's mailbox purpose (user, shared, room, equipment, ...), 'none' without a mailbox. */
  async readMailboxPurposes(userIds: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const answers = await this.batchGet(
      userIds,
      (id) => `/users/${pathSegment(id)}/mailboxSettings?$select=userPurpose`,
    );
    for (const [id, a] of answers) {
      const purpose = (a.body as { userPurpose?: unknown } | undefined)?.userPurpose;
      if (a.status === 200) out.set(id, typeof purpose === 'string' ? purpose : 'none');
      else if (a.status === 404) out.set(id, 'none');
    }
    return out;
  }

  /** Graph shows hideFromAddressLists only on GET /groups/{id} with $select, never on list or delta. */
  async readGroupsHidden(groupIds: readonly string[]): Promise<Map<string, boolean>> {
    const out = new Map<string, boolean>();
    const answers = await this.batchGet(
      groupIds,
      (id) => `/groups/${encodeURIComponent(id)}?$select=id,hideFromAddressLists`,
    );
    for (const [id, a] of answers) {
      const hide = (a.body as { hideFromAddressLists?: unknown } | undefined)?.hideFromAddressLists;
      if (a.status === 200) out.set(id, hide === true);
    }
    return out;
  }

  /**
   * Users matching a compiled source filter. An advanced query (not, endswith, extension attributes)
   * needs ConsistencyLevel: eventual and $count=true, and then Graph counts; otherwise the ids are paged.
   */
  async countUsers(compiled: CompiledFilter): Promise<number> {
    const filter = encodeURIComponent(compiled.filter);
    if (compiled.advanced) {
      const page = await graphCall(
        () =>
          this.client
            .api(`/users?$filter=${filter}&$count=true&$select=id&$top=1`)
            .header('ConsistencyLevel', 'eventual')
            .get() as Promise<Json>,
      );
      return typeof page['@odata.count'] === 'number' ? page['@odata.count'] : 0;
    }
    let n = 0;
    let url: string | undefined = `/users?$filter=${filter}&$select=id&$top=999`;
    while (url) {
      const page = await graphCall(() => this.client.api(url!).get() as Promise<Json>);
      n += ((page.value as Json[] | undefined) ?? []).length;
      url = str(page['@odata.nextLink']) ?? undefined;
    }
    return n;
  }

  async transitiveMemberIds(groupId: string): Promise<Set<string>> {
    const ids = new Set<string>();
    let url: string | undefined = `/groups/${pathSegment(groupId)}/transitiveMembers?$select=id&$top=999`;
    while (url) {
      const page = await graphCall(() => this.client.api(url!).get() as Promise<Json>);
      for (const m of (page.value as Json[] | undefined) ?? []) if (typeof m.id === 'string') ids.add(m.id);
      url = str(page['@odata.nextLink']) ?? undefined;
    }
    return ids;
  }
}

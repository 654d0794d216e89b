// DirectoryReader over Microsoft Graph: /users/delta and /contacts/delta with $select, and nested
// group membership through transitiveMembers.
import type { Client } from '@microsoft/microsoft-graph-client';
import type { DirectoryEntry } from '../../directory';
import {
  DeltaExpiredError,
  GraphRequestError,
  type DirectoryChange,
  type DirectoryReader,
} from '../../ports';
import { graphCall } from './errors';

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
  'manager',
].join(',');
const orgContactSelect =
  'id,displayName,givenName,surname,mail,companyName,department,jobTitle,proxyAddresses,phones,addresses';
const groupSelect = 'id,displayName,mail,mailEnabled,proxyAddresses';

type Json = Record<string, unknown>;
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

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
    p.businessPhones = phones
      .filter((x) => x.type === 'business')
      .map((x) => str(x.number))
      .filter((x): x is string => x !== null);
    p.mobilePhone =
      phones.map((x) => (x.type === 'mobile' ? str(x.number) : null)).find((x) => x !== null) ?? null;
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
  ): Promise<{ changes: DirectoryChange[]; deltaLink: string }> {
    const start =
      kind === 'user'
        ? `/users/delta?$select=${userSelect}`
        : kind === 'orgContact'
          ? `/contacts/delta?$select=${orgContactSelect}`
          : `/groups/delta?$select=${groupSelect}`;
    let url: string | undefined = deltaLink ?? start;
    const changes: DirectoryChange[] = [];
    let last: string | undefined;
    while (url) {
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
      url = str(page['@odata.nextLink']) ?? undefined;
      last = str(page['@odata.deltaLink']) ?? last;
    }
    if (!last) throw new Error('Graph ended a delta round without a deltaLink');
    return { changes, deltaLink: last };
  }

  async transitiveMemberIds(groupId: string): Promise<Set<string>> {
    const ids = new Set<string>();
    let url: string | undefined =
      `/groups/${encodeURIComponent(groupId)}/transitiveMembers?$select=id&$top=999`;
    while (url) {
      const page = await graphCall(() => this.client.api(url!).get() as Promise<Json>);
      for (const m of (page.value as Json[] | undefined) ?? []) if (typeof m.id === 'string') ids.add(m.id);
      url = str(page['@odata.nextLink']) ?? undefined;
    }
    return ids;
  }
}

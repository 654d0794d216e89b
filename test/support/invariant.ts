// The invariant (issue 15), written once and used by every engine test that wants it: after a run that
// reports success, every target mailbox of a policy holds exactly the policy's source in its folder,
// our tag appears nowhere else, contacts without our tag are untouched, and a second run writes nothing.
//
// The expected state comes from the simulator's tenant (what an admin and the users did) through a
// small reference of selection and mapping written here, never from the product's planner or mapper:
// a bug shared by both would otherwise hide itself.
import type { Policy } from '../../src/sync/config/schema';
import { tagPropertyId } from '../../src/sync/tag';
import type { GraphTenantSimulator } from '../doubles/graph-tenant-simulator/simulator';
import type { Mailbox, SimContact, SimUser, Tenant } from '../doubles/graph-tenant-simulator/tenant';

type Fields = Record<string, unknown>;

/** One source object as the reference sees it: its source key and the contact fields it should give. */
export interface ExpectedContact {
  key: string;
  /** The directory user it stands for (for excludeSelf), if any. */
  userId?: string;
  fields: Fields;
  /** The directory attributes a folder template may name (mail for mailDomain). */
  attrs?: Record<string, string | null>;
}

/** What the policy's semantics allow beyond "exactly the source" (onUserEdit: keep, and so on). */
export interface InvariantAllowances {
  /** A managed contact that may be missing from this mailbox (onUserDelete: keep, a held-back threshold). */
  absent?: (upn: string, key: string) => boolean;
  /** A tagged contact for a source key no longer selected that may stay (onSourceRemoval keep, threshold). */
  extra?: (upn: string, key: string) => boolean;
  /** A managed contact whose fields may differ from the source (onUserEdit: keep; a user's edit). */
  edited?: (upn: string, key: string) => boolean;
}

const tagId = tagPropertyId.toLowerCase();
export const tagOfContact = (c: SimContact): string | undefined => c.extendedProperties.get(tagId)?.value;

const clean = (s: string | null | undefined): string | undefined => {
  const t = s?.trim();
  return t ? t : undefined;
};

const marked = (attrs: Record<string, string | null> | undefined, marker: string): boolean =>
  Object.values(attrs ?? {}).some((v) => v?.trim().toLowerCase() === marker.toLowerCase());

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.values(v as Fields).every(isEmpty);
  return false;
}

/** Stable text for a field value: empties dropped, keys sorted, e-mail addresses compared without case. */
function norm(v: unknown, field?: string): string {
  if (isEmpty(v)) return 'null';
  if (Array.isArray(v)) {
    const items =
      field === 'emailAddresses'
        ? v.map((x: { address?: string; name?: string }) => ({
            address: String(x.address).toLowerCase(),
            name: x.name,
          }))
        : v;
    return `[${items.map((x) => norm(x)).join(',')}]`;
  }
  if (typeof v === 'object') {
    const entries = Object.entries(v as Fields)
      .filter(([, x]) => !isEmpty(x))
      .sort(([a], [b]) => a.localeCompare(b));
    return `{${entries.map(([k, x]) => `${k}:${norm(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

const allFields = [
  'displayName',
  'givenName',
  'surname',
  'emailAddresses',
  'businessPhones',
  'mobilePhone',
  'jobTitle',
  'department',
  'companyName',
  'officeLocation',
  'businessAddress',
  'manager',
  'categories',
  'fileAs',
  'initials',
  'middleName',
  'nickName',
  'title',
  'generation',
  'homePhones',
  'homeAddress',
  'otherAddress',
  'imAddresses',
  'businessHomePage',
  'personalNotes',
  'profession',
  'assistantName',
  'businessFax',
  'private',
] as const;

/**
 * Fields Graph keeps only as MAPI properties: PidTagBusinessFaxNumber (0x3A24, a string) and
 * PidTagSensitivity (0x0036, an integer; 2 is Private).
 */
const mapiProperties: Record<string, string> = { businessFax: 'string 0x3a24', private: 'integer 0x0036' };

/** A field as the simulator holds it on a contact. */
export function contactValue(c: SimContact, field: string): unknown {
  const mapi = mapiProperties[field];
  if (!mapi) return c.data[field];
  const v = c.extendedProperties.get(mapi)?.value;
  return field === 'private' ? v === '2' || undefined : v;
}

/** Fields the policy writes and keeps as the source says (setIfEmpty and never are the user's to change). */
export function checkedFields(policy: Policy): string[] {
  const m = policy.mapping;
  return allFields.filter(
    (f) =>
      // mapping.private marks every contact, whatever include says.
      (f === 'private' || ((m.include as string[] | undefined)?.includes(f) ?? true)) &&
      !(m.exclude as string[]).includes(f) &&
      (m.rules[f] ?? 'overwrite') === 'overwrite',
  );
}

interface Person {
  displayName: string | null;
  givenName: string | null;
  surname: string | null;
  mail: string | null;
  proxyAddresses: string[];
  businessPhones: string[];
  mobilePhone: string | null;
  jobTitle: string | null;
  department: string | null;
  companyName: string | null;
  officeLocation: string | null;
  street: string | null;
  city: string | null;
  state: string | null;
  postalCode: string | null;
  country: string | null;
  managerName: string | null;
  userPrincipalName?: string;
  faxNumber?: string | null;
  imAddresses?: string[];
  homePhones?: string[];
  isGroup?: boolean;
  /** Attribute values `mapping.sources` may name (extension attributes included). */
  attributes: Record<string, string | null>;
}

const firstDistinct = (xs: readonly string[] | undefined, max: number): string[] => {
  const out: string[] = [];
  for (const x of (xs ?? []).map((y) => y.trim())) if (x && !out.includes(x)) out.push(x);
  return out.slice(0, max);
};

/** How Outlook files a contact: "Surname, Given" by default (written apart from the product's code). */
function referenceFileAs(x: Fields, mode: string): string | undefined {
  const s = (k: string): string | undefined => (typeof x[k] === 'string' && x[k] !== '' ? x[k] : undefined);
  const given = s('givenName');
  const sur = s('surname');
  const byName =
    given !== undefined && sur !== undefined
      ? `${sur}, ${given}`
      : (sur ?? given ?? s('displayName') ?? s('companyName'));
  if (mode === 'lastFirst') return byName;
  if (mode === 'firstLast')
    return [given, sur].filter(Boolean).join(' ') || s('displayName') || s('companyName');
  if (mode === 'displayName') return s('displayName') ?? byName;
  if (mode === 'company') return s('companyName') ?? byName;
  let out = mode;
  for (const m of mode.match(/\{[^{}]*\}/g) ?? []) out = out.split(m).join(s(m.slice(1, -1)) ?? '');
  out = out.split(/\s+/).filter(Boolean).join(' ');
  return /[\p{L}\p{N}]/u.test(out) ? out : byName;
}

/** The reference mapping: what a contact made from this directory object should say. */
/** Names from a display name, apart from the product: "Sur, Given", or particles stay with the surname. */
function referenceSplit(name: string | undefined): [string, string] | undefined {
  if (!name) return undefined;
  const parts = name.split(',');
  if (parts.length === 2 && parts[0]!.trim() && parts[1]!.trim()) return [parts[1]!.trim(), parts[0]!.trim()];
  const words = name.split(/\s+/).filter(Boolean);
  if (words.length < 2) return undefined;
  const particles = [
    'van',
    'von',
    'de',
    'der',
    'den',
    'del',
    'della',
    'di',
    'da',
    'du',
    'le',
    'la',
    'dos',
    'das',
    'do',
    'ter',
    'ten',
    'bin',
    'ibn',
    'al',
    'el',
    'بن',
    'ابن',
    'آل',
  ];
  let cut = words.length - 1;
  while (cut > 1 && particles.includes(words[cut - 1]!)) cut -= 1;
  return [words.slice(0, cut).join(' '), words.slice(cut).join(' ')];
}

function referenceFields(p: Person, policy: Policy): Fields {
  let given = clean(p.givenName);
  let sur = clean(p.surname);
  if (policy.mapping.splitDisplayName && !p.isGroup && (!given || !sur)) {
    const split = referenceSplit(clean(p.displayName));
    given = given ?? split?.[0];
    sur = sur ?? split?.[1];
  }
  const displayName =
    clean(p.displayName) ??
    clean([given, sur].filter(Boolean).join(' ')) ??
    clean(p.mail) ??
    clean(p.userPrincipalName);
  const addresses: string[] = [];
  const primary = clean(p.mail);
  if (primary) addresses.push(primary);
  const proxies = p.proxyAddresses.map((x) => x.trim()).filter((x) => /^smtp:/i.test(x));
  for (const x of [
    ...proxies.filter((x) => x.startsWith('SMTP:')),
    ...proxies.filter((x) => !x.startsWith('SMTP:')),
  ]) {
    const a = x.slice(5).trim();
    if (a && !addresses.some((y) => y.toLowerCase() === a.toLowerCase())) addresses.push(a);
  }
  const phones: string[] = [];
  for (const x of p.businessPhones.map((y) => y.trim())) if (x && !phones.includes(x)) phones.push(x);
  const all: Fields = {
    displayName,
    givenName: given,
    surname: sur,
    emailAddresses: addresses.slice(0, 3).map((address) => ({ address, name: displayName ?? address })),
    businessPhones: phones.slice(0, 2),
    mobilePhone: clean(p.mobilePhone),
    jobTitle: clean(p.jobTitle),
    department: clean(p.department),
    companyName: clean(p.companyName),
    officeLocation: clean(p.officeLocation),
    businessAddress: {
      street: clean(p.street),
      city: clean(p.city),
      state: clean(p.state),
      postalCode: clean(p.postalCode),
      countryOrRegion: clean(p.country),
    },
    manager: clean(p.managerName),
    categories: policy.mapping.categories,
    homePhones: firstDistinct(p.homePhones, 2),
    imAddresses: firstDistinct(p.imAddresses, 3),
    businessFax: clean(p.faxNumber),
  };
  for (const [f, attribute] of Object.entries(policy.mapping.sources)) {
    const v = clean(p.attributes[attribute] ?? ((p as unknown as Fields)[attribute] as string | null));
    all[f] = f === 'homePhones' || f === 'imAddresses' ? (v ? [v] : []) : v;
  }
  for (const [f, v] of Object.entries(policy.mapping.constants)) all[f] = clean(v);
  all.fileAs = referenceFileAs(all, policy.mapping.fileAs);
  all.private = policy.mapping.private || undefined;
  return all;
}

/**
 * What the product can know: with `exchange`, Exchange's hidden flags and the custom attributes of mail
 * contacts and groups; without it only Graph (users' showInAddressList is always null there, so hidden
 * users are synced; a group's hideFromAddressLists is on Graph).
 */
export interface ReferenceOptions {
  exchange?: boolean;
}

function memberIds(tenant: Tenant, groups: readonly string[]): Set<string> | null {
  if (groups.length === 0) return null;
  return new Set(groups.flatMap((g) => tenant.transitiveMembers(g)));
}

/** The source the policy selects, by the reference rules (directory sources). */
export function expectedSource(
  sim: GraphTenantSimulator,
  policy: Policy,
  known: ReferenceOptions = {},
): ExpectedContact[] {
  const tenant = sim.tenant;
  const source = policy.source;
  if (source.type === 'mailbox') return expectedMailboxSource(sim, policy);
  if (source.sharedMailboxes !== undefined || source.roomMailboxes !== undefined || policy.photos.enabled)
    throw new Error('invariant: the reference does not model mailbox types or photos');
  const include = memberIds(tenant, source.includeGroups);
  const exclude = memberIds(tenant, source.excludeGroups) ?? new Set<string>();
  // The expression, evaluated apart from the product: a list is all of it; mailDomain is the primary
  // address's domain; every comparison ignores case; an attribute the object lacks fails its test.
  const test = (attrs: Record<string, string | null>, x: unknown): boolean => {
    if (Array.isArray(x)) return x.every((y) => test(attrs, y));
    const node = x as Record<string, unknown>;
    if ('all' in node) return (node.all as unknown[]).every((y) => test(attrs, y));
    if ('any' in node) return (node.any as unknown[]).some((y) => test(attrs, y));
    if ('not' in node) return !test(attrs, node.not);
    const leaf = node as { attribute: string; op: string; value?: string; values?: string[] };
    const raw =
      leaf.attribute === 'mailDomain'
        ? attrs.mail?.includes('@')
          ? attrs.mail.split('@').pop()!
          : null
        : (attrs[leaf.attribute] ?? null);
    if (raw === null) return false;
    const v = raw.toLowerCase();
    const want = (leaf.value ?? '').toLowerCase();
    if (leaf.op === 'equals') return v === want;
    if (leaf.op === 'in') return (leaf.values ?? []).some((y) => y.toLowerCase() === v);
    if (leaf.op === 'startsWith') return v.startsWith(want);
    if (leaf.op === 'endsWith') return v.endsWith(want);
    throw new Error(`invariant: unknown filter op ${leaf.op}`);
  };
  const filterOk = (attrs: Record<string, string | null>): boolean => test(attrs, source.filters);
  const inGroups = (id: string): boolean => (include === null || include.has(id)) && !exclude.has(id);
  const out: ExpectedContact[] = [];
  if (source.includeUsers) {
    for (const u of tenant.users.values()) {
      if (u.userType !== 'Member' || !clean(u.mail)) continue;
      if (!u.accountEnabled && !source.includeDisabled) continue;
      if (known.exchange && u.hiddenFromAddressListsEnabled && !source.includeHidden) continue;
      if (marked(u.onPremisesExtensionAttributes, 'NoContactSync')) continue;
      const attrs: Record<string, string | null> = {
        ...u.onPremisesExtensionAttributes,
        department: u.department,
        companyName: u.companyName,
        country: u.country,
        city: u.city,
        officeLocation: u.officeLocation,
        jobTitle: u.jobTitle,
        usageLocation: u.usageLocation,
        mail: u.mail,
      };
      if (!filterOk(attrs) || !inGroups(u.id)) continue;
      const manager = u.managerId ? tenant.users.get(u.managerId) : undefined;
      out.push({
        key: `user:${u.id}`,
        userId: u.id,
        attrs,
        fields: referenceFields(
          {
            ...u,
            street: u.streetAddress,
            managerName: manager ? (manager.displayName ?? null) : null,
            attributes: {
              ...attrs,
              streetAddress: u.streetAddress,
              state: u.state,
              postalCode: u.postalCode,
            },
          },
          policy,
        ),
      });
    }
  }
  if (source.includeOrgContacts) {
    for (const c of tenant.orgContacts.values()) {
      if (!clean(c.mail)) continue;
      if (known.exchange && c.hiddenFromAddressListsEnabled === true && !source.includeHidden) continue;
      if (known.exchange && marked(c.onPremisesExtensionAttributes, 'NoContactSync')) continue;
      const address = c.addresses[0];
      const attrs: Record<string, string | null> = {
        department: c.department,
        companyName: c.companyName,
        country: address?.countryOrRegion ?? null,
        city: address?.city ?? null,
        officeLocation: address?.officeLocation ?? null,
        jobTitle: c.jobTitle,
        usageLocation: null,
        mail: c.mail,
      };
      if (!filterOk(attrs) || !inGroups(c.id)) continue;
      out.push({
        key: `orgContact:${c.id}`,
        attrs,
        fields: referenceFields(
          {
            ...c,
            businessPhones: c.phones.filter((p) => p.type === 'business').map((p) => p.number),
            mobilePhone: c.phones.find((p) => p.type === 'mobile')?.number ?? null,
            officeLocation: address?.officeLocation ?? null,
            street: address?.street ?? null,
            city: address?.city ?? null,
            state: address?.state ?? null,
            postalCode: address?.postalCode ?? null,
            country: address?.countryOrRegion ?? null,
            managerName: null,
            homePhones: c.phones.filter((p) => p.type === 'home').map((p) => p.number),
            faxNumber: c.phones.find((p) => p.type === 'businessFax')?.number ?? null,
            attributes: { ...attrs, streetAddress: address?.street ?? null },
          },
          policy,
        ),
      });
    }
  }
  if (source.includeDistributionLists) {
    for (const g of tenant.groups.values()) {
      if (!g.mailEnabled || !clean(g.mail)) continue;
      if (g.hideFromAddressLists && !source.includeHidden) continue;
      if (known.exchange && marked(g.customAttributes, 'NoContactSync')) continue;
      const attrs: Record<string, string | null> = { mail: g.mail };
      if (!filterOk(attrs) || !inGroups(g.id)) continue;
      out.push({
        key: `group:${g.id}`,
        attrs,
        fields: referenceFields(
          {
            displayName: g.displayName,
            givenName: null,
            surname: null,
            mail: g.mail,
            proxyAddresses: g.mail ? [`SMTP:${g.mail}`] : [],
            businessPhones: [],
            mobilePhone: null,
            jobTitle: null,
            department: null,
            companyName: null,
            officeLocation: null,
            street: null,
            city: null,
            state: null,
            postalCode: null,
            country: null,
            managerName: null,
            isGroup: true,
            attributes: {},
          },
          policy,
        ),
      });
    }
  }
  return out;
}

/** A mailbox source: the folder's own contacts; contacts carrying any policy's tag are never source. */
function expectedMailboxSource(sim: GraphTenantSimulator, policy: Policy): ExpectedContact[] {
  if (policy.source.type !== 'mailbox') return [];
  const mailbox = sim.tenant.mailbox(policy.source.mailbox);
  if (!mailbox) return [];
  const folder = folderOf(mailbox, policy.source.folder);
  if (!folder) return [];
  return mailbox
    .contactsIn(folder)
    .filter((c) => tagOfContact(c) === undefined)
    .map((c) => {
      const d = c.data;
      const all: Fields = { ...d };
      all.emailAddresses = Array.isArray(d.emailAddresses) ? d.emailAddresses.slice(0, 3) : undefined;
      all.businessPhones = Array.isArray(d.businessPhones) ? d.businessPhones.slice(0, 2) : undefined;
      all.homePhones = Array.isArray(d.homePhones) ? d.homePhones.slice(0, 2) : undefined;
      all.imAddresses = Array.isArray(d.imAddresses) ? d.imAddresses.slice(0, 3) : undefined;
      if (policy.mapping.categories.length > 0) all.categories = policy.mapping.categories;
      for (const [f, v] of Object.entries(policy.mapping.constants)) all[f] = clean(v);
      all.fileAs = clean(d.fileAs as string | undefined) ?? referenceFileAs(all, policy.mapping.fileAs);
      all.private = policy.mapping.private || undefined;
      return { key: `mailboxContact:${c.immutableId}`, fields: all };
    });
}

/** The policy's target mailboxes (UPNs) by the reference rules; only users with an Exchange mailbox. */
export function expectedTargets(sim: GraphTenantSimulator, policy: Policy): SimUser[] {
  const tenant = sim.tenant;
  const t = policy.targets;
  const include = memberIds(tenant, t.groups);
  const exclude = memberIds(tenant, t.excludeGroups) ?? new Set<string>();
  const excludedUpns = new Set(t.excludeUsers.map((u) => u.toLowerCase()));
  const named = new Set(t.users.map((u) => u.toLowerCase()));
  return [...tenant.users.values()].filter(
    (u) =>
      (t.type === 'allMailboxes' ||
        (t.type === 'groups' && include?.has(u.id)) ||
        (t.type === 'users' && named.has(u.userPrincipalName.toLowerCase()))) &&
      u.userType === 'Member' &&
      clean(u.mail) !== undefined &&
      u.accountEnabled &&
      u.mailbox !== 'none' &&
      !marked(u.onPremisesExtensionAttributes, 'NoMailboxSync') &&
      !excludedUpns.has(u.userPrincipalName.toLowerCase()) &&
      !exclude.has(u.id),
  );
}

/** The folder id a policy's folder name names (case-insensitive, as Outlook compares), under Contacts. */
export function folderOf(mailbox: Mailbox, name: string | null): string | undefined {
  if (name === null) return mailbox.contactsFolderId;
  return [...mailbox.folders.values()].find(
    (f) =>
      f.parentFolderId === mailbox.contactsFolderId && f.displayName.toLowerCase() === name.toLowerCase(),
  )?.id;
}

/**
 * A folder template's folder per source key, apart from the product: the value with each run of the
 * characters Outlook refuses in folder names (and braces, control characters) as one "-", spaces
 * collapsed, "-" and spaces trimmed; empty: emptyValue. Names differing only in case are one folder
 * (named by the first in code-unit order); past maxFolders the least populated (then the later by
 * name) share the emptyValue folder. Null for a plain folder name.
 */
export function expectedFolders(policy: Policy, source: ExpectedContact[]): Map<string, string> | null {
  const m = policy.folder.name === null ? null : /^([^{}]*)\{(\w+)\}([^{}]*)$/.exec(policy.folder.name);
  if (!m) return null;
  const [, before, field, after] = m as unknown as [string, string, string, string];
  const refused = '[]/\\&~?*|<>";:+{}';
  const nameOf = (raw: string | null | undefined): string => {
    let v = '';
    for (const ch of raw ?? []) {
      const code = ch.codePointAt(0)!;
      const bad = refused.includes(ch) || code < 0x20 || (code >= 0x7f && code <= 0x9f);
      if (!bad) v += ch;
      else if (!v.endsWith('-')) v += '-';
    }
    v = v.split(/\s+/).join(' ');
    while (v && (v[0] === '-' || v[0] === ' ')) v = v.slice(1);
    while (v && (v.endsWith('-') || v.endsWith(' '))) v = v.slice(0, -1);
    const room = 255 - before.length - after.length;
    const chars = [...(v || policy.folder.emptyValue)];
    return `${before}${chars.length > room ? chars.slice(0, room).join('').trimEnd() : chars.join('')}${after}`;
  };
  const raw = (s: ExpectedContact): string | null => {
    const a = s.attrs ?? {};
    if (field === 'mailDomain') return a.mail?.includes('@') ? a.mail.split('@').pop()! : null;
    return a[field] ?? null;
  };
  const fallback = nameOf(null);
  const named = new Map(source.map((s) => [s.key, nameOf(raw(s))] as const));
  const groups = new Map<string, string[]>();
  for (const name of named.values())
    groups.set(name.toLowerCase(), [...(groups.get(name.toLowerCase()) ?? []), name]);
  const ranked = [...groups.entries()]
    .filter(([k]) => k !== fallback.toLowerCase())
    .sort((a, b) => b[1].length - a[1].length || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const room =
    groups.has(fallback.toLowerCase()) || ranked.length > policy.folder.maxFolders
      ? policy.folder.maxFolders - 1
      : ranked.length;
  const own = new Map(ranked.slice(0, room).map(([k, names]) => [k, [...names].sort()[0]!] as const));
  const out = new Map<string, string>();
  for (const [key, name] of named) out.set(key, own.get(name.toLowerCase()) ?? fallback);
  return out;
}

/** Every contact without our tag, byte for byte (data, extended properties, folder, change key). */
export type UntaggedSnapshot = Map<string, string>;

const contactImage = (c: SimContact): string =>
  JSON.stringify({
    folderId: c.folderId,
    changeKey: c.changeKey,
    data: c.data,
    ext: [...c.extendedProperties.entries()].sort(),
    photo: c.photo ? c.photo.bytes.toString('base64') : null,
  });

export function snapshotUntagged(sim: GraphTenantSimulator): UntaggedSnapshot {
  const out: UntaggedSnapshot = new Map();
  for (const u of sim.tenant.users.values()) {
    const mailbox = u.mailbox === 'none' ? undefined : sim.tenant.mailbox(u.id);
    for (const c of mailbox?.contacts.values() ?? [])
      if (tagOfContact(c) === undefined) out.set(`${u.userPrincipalName}/${c.immutableId}`, contactImage(c));
  }
  return out;
}

/**
 * The violations of the invariant for one policy, as readable lines (empty: it holds). `before` is the
 * snapshot of untagged contacts taken just before the run.
 */
export function invariantViolations(
  sim: GraphTenantSimulator,
  policy: Policy,
  before: UntaggedSnapshot,
  allow: InvariantAllowances & ReferenceOptions = {},
): string[] {
  const problems: string[] = [];
  const source = expectedSource(sim, policy, allow);
  const fields = checkedFields(policy);
  const prefix = `${policy.id}|`;
  const targets = expectedTargets(sim, policy);
  const folders = expectedFolders(policy, source);
  for (const user of targets) {
    const upn = user.userPrincipalName;
    const mailbox = sim.tenant.mailbox(user.id)!;
    const plainFolderId = folders ? undefined : folderOf(mailbox, policy.folder.name);
    const want = new Map(
      source
        .filter((s) => !(policy.targets.excludeSelf && s.userId === user.id))
        .map((s) => [s.key, s] as const),
    );
    const seen = new Map<string, number>();
    for (const c of mailbox.contacts.values()) {
      const tag = tagOfContact(c);
      if (!tag?.startsWith(prefix)) continue;
      const key = tag.slice(prefix.length);
      const folderName = folders ? folders.get(key) : policy.folder.name;
      const folderId = folders ? folderName && folderOf(mailbox, folderName) : plainFolderId;
      if (folders && folderName === undefined) {
        if (!allow.extra?.(upn, key)) problems.push(`${upn}: ${key} is not in the source but has a contact`);
        continue;
      }
      if (c.folderId !== folderId) {
        const where = mailbox.folders.get(c.folderId)?.displayName ?? c.folderId;
        problems.push(
          `${upn}: a contact tagged ${tag} in "${where}", outside the policy's folder ${JSON.stringify(folderName)}`,
        );
        continue;
      }
      seen.set(key, (seen.get(key) ?? 0) + 1);
      const expected = want.get(key);
      if (!expected) {
        if (!allow.extra?.(upn, key)) problems.push(`${upn}: ${key} is not in the source but has a contact`);
        continue;
      }
      if (allow.edited?.(upn, key)) continue;
      for (const f of fields) {
        const have = contactValue(c, f);
        if (norm(have, f) !== norm(expected.fields[f], f))
          problems.push(
            `${upn}: ${key}.${f} is ${norm(have, f)}, the source says ${norm(expected.fields[f], f)}`,
          );
      }
    }
    for (const [key, n] of seen) if (n > 1) problems.push(`${upn}: ${n} contacts for ${key} (twins)`);
    // A folder template leaves no empty folder of its shape behind (a value no contact has any more).
    if (folders) {
      const [before, after] = policy.folder.name!.split(/\{\w+\}/) as [string, string];
      const wanted = new Set([...folders.values()].map((n) => n.toLowerCase()));
      for (const f of mailbox.folders.values())
        if (
          f.parentFolderId === mailbox.contactsFolderId &&
          f.displayName.startsWith(before) &&
          f.displayName.endsWith(after) &&
          !wanted.has(f.displayName.toLowerCase()) &&
          mailbox.contactsIn(f.id).length === 0
        )
          problems.push(`${upn}: the empty folder "${f.displayName}" of a value no contact has is left`);
    }
    for (const key of want.keys())
      if (!seen.has(key) && !allow.absent?.(upn, key)) problems.push(`${upn}: no contact for ${key}`);
  }
  // Contacts without our tag: untouched, and none appeared from our writes. Under
  // `unmanagedContacts` one in the policy's folder may become ours (adopt: it carries the policy's
  // tag now and was checked above as a managed contact) or, under `remove`, be gone from a folder of
  // the policy's own (never the default Contacts folder).
  const after = snapshotUntagged(sim);
  const takeOver = policy.options.unmanagedContacts;
  for (const [id, image] of before) {
    const now = after.get(id);
    if (now === undefined) {
      const [upn, immutableId] = id.split('/') as [string, string];
      const mailbox = sim.tenant.mailbox(upn);
      if (mailbox === undefined) continue;
      const inPolicyFolder =
        (JSON.parse(image) as { folderId: string }).folderId === folderOf(mailbox, policy.folder.name);
      const current = mailbox.contact(immutableId);
      const adopted =
        takeOver !== 'leave' &&
        inPolicyFolder &&
        current !== undefined &&
        tagOfContact(current)?.startsWith(prefix);
      const removed = takeOver === 'remove' && inPolicyFolder && policy.folder.name !== null && !current;
      if (!adopted && !removed) problems.push(`${id}: a user's contact is gone`);
    } else if (now !== image) problems.push(`${id}: a user's contact was changed`);
  }
  for (const id of after.keys())
    if (!before.has(id)) problems.push(`${id}: an untagged contact appeared (written without our tag?)`);
  return problems;
}

/** Graph writes (contacts and folders) answered since `sinceSeq`; report mails do not count. */
export function writesSince(sim: GraphTenantSimulator, sinceSeq: number): string[] {
  return sim.log
    .since(sinceSeq)
    .filter(
      (e) =>
        e.service === 'graph' &&
        e.operation !== 'batch' &&
        e.method !== 'GET' &&
        /^(contacts|contactFolders)\./.test(e.operation),
    )
    .map((e) => `${e.method} ${e.operation} ${e.path} → ${e.status}`);
}

/**
 * The whole invariant: the state holds, and a second run with no change in between writes nothing
 * (and the state still holds after it).
 */
export async function assertInvariant(
  sim: GraphTenantSimulator,
  policy: Policy,
  before: UntaggedSnapshot,
  runAgain: () => Promise<void>,
  allow: InvariantAllowances & ReferenceOptions = {},
): Promise<void> {
  const first = invariantViolations(sim, policy, before, allow);
  if (first.length > 0) throw new Error(`invariant violated after the run:\n  ${first.join('\n  ')}`);
  const mark = sim.log.lastSeq;
  const snapshot = snapshotUntagged(sim);
  await runAgain();
  const writes = writesSince(sim, mark);
  const second = invariantViolations(sim, policy, snapshot, allow);
  if (writes.length > 0 || second.length > 0)
    throw new Error(
      `invariant violated by a second run with no change:\n  ${[...writes.map((w) => `wrote ${w}`), ...second].join('\n  ')}`,
    );
}

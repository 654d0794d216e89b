// From a directory entry to the contact we write: default fields, per-policy include / exclude,
// sources, constants and categories, Graph's limits (≤ 3 email addresses, ≤ 2 business phones, ≤ 2
// home phones, ≤ 3 IM addresses), and a stable content hash of what would be written.
import { createHash } from 'node:crypto';
import { contactFieldNames, type ContactFieldName, type Mapping } from './config/schema';
import { attributeValue, type DirectoryEntry } from './directory';

export interface EmailAddress {
  address: string;
  name: string;
}
export interface PhysicalAddress {
  street?: string;
  city?: string;
  state?: string;
  postalCode?: string;
  countryOrRegion?: string;
}

/** The fields we manage on a contact; an absent field means "empty". */
export interface ContactFields {
  displayName?: string;
  givenName?: string;
  surname?: string;
  emailAddresses?: EmailAddress[];
  businessPhones?: string[];
  mobilePhone?: string;
  jobTitle?: string;
  department?: string;
  companyName?: string;
  officeLocation?: string;
  businessAddress?: PhysicalAddress;
  manager?: string;
  categories?: string[];
  fileAs?: string;
  initials?: string;
  middleName?: string;
  nickName?: string;
  title?: string;
  generation?: string;
  homePhones?: string[];
  homeAddress?: PhysicalAddress;
  otherAddress?: PhysicalAddress;
  imAddresses?: string[];
  businessHomePage?: string;
  personalNotes?: string;
  profession?: string;
  assistantName?: string;
  /** Graph's contact has no fax property: written as the MAPI property (mapiFields). */
  businessFax?: string;
  /** Marked private (the MAPI sensitivity), so delegates do not see it. */
  private?: boolean;
}

export const maxEmailAddresses = 3;
export const maxBusinessPhones = 2;
export const maxHomePhones = 2;
export const maxImAddresses = 3;

/** A field Graph's contact has only as a MAPI property: its extended property id and value text. */
interface MapiField {
  id: string;
  /** The property's value text for a field value (empty: the field is empty). */
  write(v: unknown): string;
  /** The field value for the property's text (undefined: empty). */
  read(text: string): unknown;
}

const mapiString = (id: string): MapiField => ({
  id,
  write: (v) => (typeof v === 'string' ? v : ''),
  read: (text) => text || undefined,
});

/**
 * Fields kept in MAPI properties, written and read as single-value extended properties.
 * PidTagBusinessFaxNumber: tag 0x3A24, PT_UNICODE ([MS-OXPROPS]; learn.microsoft.com
 * office/client-developer/outlook/mapi/pidtagbusinessfaxnumber-canonical-property).
 */
export const mapiFields: Partial<Record<ContactFieldName, MapiField>> = {
  businessFax: mapiString('String 0x3A24'),
  // PidTagSensitivity: tag 0x0036, PtypInteger32; 2 is Private, 0 Normal ([MS-OXCMSG] 2.2.1.13,
  // [MS-OXPROPS] 2.1011; Outlook's ContactItem.Sensitivity is this property).
  private: {
    id: 'Integer 0x0036',
    write: (v) => (v === true ? '2' : '0'),
    read: (t) => t === '2' || undefined,
  },
};

/** The extended property ids of those fields (read along with our tag). */
export const mapiPropertyIds: readonly string[] = Object.values(mapiFields).map((m) => m.id);

/** The fields that are properties of Graph's contact (what $select names). */
export const graphFieldNames: readonly ContactFieldName[] = contactFieldNames.filter(
  (f) => mapiFields[f] === undefined,
);

const addressFieldNames: readonly ContactFieldName[] = ['businessAddress', 'homeAddress', 'otherAddress'];
const listFieldNames: readonly ContactFieldName[] = [
  'emailAddresses',
  'businessPhones',
  'categories',
  'homePhones',
  'imAddresses',
];

const distinct = (values: readonly string[] | undefined, max: number): string[] =>
  [...new Set((values ?? []).map((p) => p.trim()).filter(Boolean))].slice(0, max);

const clean = (s: string | null | undefined): string | undefined => {
  const t = s?.trim();
  return t ? t : undefined;
};

/** Primary mail first, then other SMTP proxy addresses; case-insensitive duplicates dropped. */
export function emailAddressesOf(e: DirectoryEntry, name: string | undefined): EmailAddress[] {
  const primary = clean(e.mail);
  const fromProxies = e.proxyAddresses
    .map((p) => /^smtp:(.+)$/i.exec(p.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(b[0].startsWith('SMTP:')) - Number(a[0].startsWith('SMTP:')))
    .map((m) => m[1]!.trim());
  const seen = new Set<string>();
  const out: EmailAddress[] = [];
  for (const address of [primary, ...fromProxies]) {
    if (!address || seen.has(address.toLowerCase())) continue;
    seen.add(address.toLowerCase());
    out.push({ address, name: name ?? address });
  }
  return out.slice(0, maxEmailAddresses);
}

export function mapEntry(
  e: DirectoryEntry,
  mapping: Mapping,
  managerName: string | undefined,
): ContactFields {
  if (e.kind === 'mailboxContact') return mapMailboxContact(e.contact ?? {}, mapping);
  let given = clean(e.givenName);
  let sur = clean(e.surname);
  if (mapping.splitDisplayName && e.kind !== 'group' && (!given || !sur)) {
    const split = splitName(clean(e.displayName));
    given ??= split?.givenName;
    sur ??= split?.surname;
  }
  const displayName =
    clean(e.displayName) ??
    (clean([given, sur].filter(Boolean).join(' ')) || clean(e.mail) || clean(e.userPrincipalName));
  const phones = distinct(e.businessPhones, maxBusinessPhones);
  const address: PhysicalAddress = {};
  const street = clean(e.streetAddress);
  if (street) address.street = street;
  const city = clean(e.city);
  if (city) address.city = city;
  const state = clean(e.state);
  if (state) address.state = state;
  const postalCode = clean(e.postalCode);
  if (postalCode) address.postalCode = postalCode;
  const country = clean(e.country);
  if (country) address.countryOrRegion = country;
  const all: ContactFields = {
    displayName,
    givenName: given,
    surname: sur,
    emailAddresses: emailAddressesOf(e, displayName),
    businessPhones: phones,
    mobilePhone: clean(e.mobilePhone),
    jobTitle: clean(e.jobTitle),
    department: clean(e.department),
    companyName: clean(e.companyName),
    officeLocation: clean(e.officeLocation),
    businessAddress: Object.keys(address).length > 0 ? address : undefined,
    manager: clean(managerName),
    categories: mapping.categories.length > 0 ? [...mapping.categories] : undefined,
    homePhones: distinct(e.homePhones, maxHomePhones),
    imAddresses: distinct(e.imAddresses, maxImAddresses),
    businessFax: clean(e.faxNumber),
  };
  for (const [field, attribute] of Object.entries(mapping.sources)) {
    const v = clean(attributeValue(e, attribute));
    (all as Record<string, unknown>)[field] =
      field === 'homePhones' || field === 'imAddresses' ? (v ? [v] : undefined) : v;
  }
  for (const [field, value] of Object.entries(mapping.constants)) {
    (all as Record<string, unknown>)[field] = clean(value);
  }
  all.fileAs = fileAsOf(all, mapping.fileAs);
  if (mapping.private) all.private = true;
  const out: ContactFields = {};
  for (const field of managedFields(mapping)) {
    const v = all[field];
    if (!isEmptyValue(v)) (out as Record<string, unknown>)[field] = v;
  }
  return out;
}

/** Lower-case words that belong to the surname that follows them (van den Berg, de la Cruz, bin Salman). */
const surnameParticles = new Set(
  'van von de der den del della di da du le la dos das do ter ten bin ibn al el بن ابن آل'.split(' '),
);

/**
 * Given name and surname from a display name: "Surname, Given", or the last word with the particles
 * before it as the surname. One word (a mononym, or CJK written without spaces) is not split.
 */
export function splitName(
  displayName: string | undefined,
): { givenName: string; surname: string } | undefined {
  if (!displayName) return undefined;
  const comma = /^([^,]+),\s*([^,]+)$/.exec(displayName);
  if (comma) return { surname: comma[1]!.trim(), givenName: comma[2]!.trim() };
  const words = displayName.split(/\s+/);
  if (words.length < 2) return undefined;
  let start = words.length - 1;
  while (start > 1 && surnameParticles.has(words[start - 1]!)) start--;
  return { givenName: words.slice(0, start).join(' '), surname: words.slice(start).join(' ') };
}

/** "Surname, Given" as Outlook files a contact by default; one name alone, else the display name or company. */
function lastFirst(f: ContactFields): string | undefined {
  if (f.surname && f.givenName) return `${f.surname}, ${f.givenName}`;
  return f.surname ?? f.givenName ?? f.displayName ?? f.companyName;
}

/** The file-as text for the mapped fields: a mode, or a template whose empty fields drop out. */
export function fileAsOf(f: ContactFields, mode: Mapping['fileAs']): string | undefined {
  switch (mode) {
    case 'lastFirst':
      return lastFirst(f);
    case 'firstLast':
      return clean([f.givenName, f.surname].filter(Boolean).join(' ')) ?? f.displayName ?? f.companyName;
    case 'displayName':
      return f.displayName ?? lastFirst(f);
    case 'company':
      return f.companyName ?? lastFirst(f);
  }
  const text = mode
    .replace(/\{([^{}]*)\}/g, (_, name: string) => {
      const v = (f as Record<string, unknown>)[name];
      return typeof v === 'string' ? v : '';
    })
    .replace(/\s+/g, ' ')
    .trim();
  // A template whose fields are all empty leaves only its punctuation: file by name instead.
  return /[\p{L}\p{N}]/u.test(text) ? text : lastFirst(f);
}

/** The fields a policy writes at all. */
export function managedFields(mapping: Mapping): ContactFieldName[] {
  return contactFieldNames.filter(
    (f) =>
      // Always ours: turning mapping.private off marks the contacts normal again.
      (f === 'private' ||
        ((mapping.include ? (mapping.include as string[]).includes(f) : true) &&
          !(mapping.exclude as string[]).includes(f))) &&
      mapping.rules[f] !== 'never',
  );
}

export function isEmptyValue(v: unknown): boolean {
  if (v === undefined || v === null || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.values(v as Record<string, unknown>).every(isEmptyValue);
  return false;
}

/** Canonical JSON: sorted keys, empties dropped; equal contents give equal text. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => !isEmptyValue(v))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

export function contentHash(fields: ContactFields): string {
  return createHash('sha256').update(canonical(fields)).digest('base64url').slice(0, 32);
}

export function sameValue(a: unknown, b: unknown): boolean {
  return canonical(normaliseForCompare(a)) === canonical(normaliseForCompare(b));
}

// Exchange keeps what we write, but compare email addresses case-insensitively and ignore their
// display names' case, as Outlook may re-case them.
function normaliseForCompare(v: unknown): unknown {
  if (!Array.isArray(v)) return v;
  return v.map((x: unknown): unknown => {
    if (x && typeof x === 'object' && 'address' in x) {
      const e = x as EmailAddress;
      return { address: String(e.address).toLowerCase(), name: e.name };
    }
    return x;
  });
}

/**
 * The Graph body for these fields: empty fields sent as null / [] so a PATCH clears them; fields kept
 * in MAPI properties go in singleValueExtendedProperties (an empty string clears them).
 */
export function toGraphBody(
  fields: ContactFields,
  only: readonly ContactFieldName[],
): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const f of only) {
    const v = fields[f];
    const mapi = mapiFields[f];
    if (mapi) withExtendedProperty(body, mapi.id, mapi.write(isEmptyValue(v) ? undefined : v));
    else if (!isEmptyValue(v)) body[f] = v;
    else if (listFieldNames.includes(f)) body[f] = [];
    else if (addressFieldNames.includes(f))
      body[f] = { street: null, city: null, state: null, postalCode: null, countryOrRegion: null };
    else body[f] = null;
  }
  return body;
}

/** Adds one single-value extended property to a contact body (our tag, the fax number, ...). */
export function withExtendedProperty(
  body: Record<string, unknown>,
  id: string,
  value: string,
): Record<string, unknown> {
  const props = (body.singleValueExtendedProperties as { id: string; value: string }[] | undefined) ?? [];
  body.singleValueExtendedProperties = [...props, { id, value }];
  return body;
}

/**
 * Graph's contacts delta cannot expand extended properties, so fields kept there are unknown in a
 * delta item: they are taken from what we wrote (a user's edit of them is not seen).
 */
export function withUnreadExtendedFields(read: ContactFields, written: ContactFields): ContactFields {
  const out: ContactFields = { ...read };
  for (const f of Object.keys(mapiFields) as ContactFieldName[]) {
    if (written[f] === undefined) delete out[f];
    else (out as Record<string, unknown>)[f] = written[f];
  }
  return out;
}

/** Reads our managed fields back from a Graph contact (for drift). */
export function fieldsFromGraph(
  contact: Record<string, unknown>,
  fields: readonly ContactFieldName[],
): ContactFields {
  const out: ContactFields = {};
  const extended = Array.isArray(contact.singleValueExtendedProperties)
    ? (contact.singleValueExtendedProperties as { id?: unknown; value?: unknown }[])
    : [];
  for (const f of fields) {
    const mapi = mapiFields[f];
    const text = mapi
      ? extended.find((p) => typeof p.id === 'string' && p.id.toLowerCase() === mapi.id.toLowerCase())?.value
      : undefined;
    const v = mapi ? (typeof text === 'string' ? mapi.read(text) : undefined) : contact[f];
    if (isEmptyValue(v)) continue;
    if (addressFieldNames.includes(f)) {
      const a = v as Record<string, unknown>;
      const addr: PhysicalAddress = {};
      for (const k of ['street', 'city', 'state', 'postalCode', 'countryOrRegion'] as const)
        if (typeof a[k] === 'string' && a[k]) addr[k] = a[k];
      (out as Record<string, unknown>)[f] = addr;
    } else if (f === 'emailAddresses') {
      out.emailAddresses = (v as { address?: string; name?: string }[])
        .filter((x) => x.address)
        .map((x) => ({ address: x.address!, name: x.name ?? x.address! }));
    } else {
      (out as Record<string, unknown>)[f] = v;
    }
  }
  return out;
}

/** A contact from a source mailbox: its own fields, through the policy's mapping and Graph's limits. */
function mapMailboxContact(contact: ContactFields, mapping: Mapping): ContactFields {
  const all: ContactFields = {
    ...contact,
    emailAddresses: contact.emailAddresses?.slice(0, maxEmailAddresses),
    businessPhones: contact.businessPhones?.slice(0, maxBusinessPhones),
    homePhones: contact.homePhones?.slice(0, maxHomePhones),
    imAddresses: contact.imAddresses?.slice(0, maxImAddresses),
    categories: mapping.categories.length > 0 ? [...mapping.categories] : contact.categories,
  };
  for (const [field, value] of Object.entries(mapping.constants))
    (all as Record<string, unknown>)[field] = clean(value);
  // The source contact's own file-as stands; one without gets the policy's.
  all.fileAs = clean(contact.fileAs) ?? fileAsOf(all, mapping.fileAs);
  all.private = mapping.private || undefined;
  const out: ContactFields = {};
  for (const field of managedFields(mapping)) {
    const v = all[field];
    if (!isEmptyValue(v)) (out as Record<string, unknown>)[field] = v;
  }
  return out;
}

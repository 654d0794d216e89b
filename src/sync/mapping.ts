// From a directory entry to the contact we write: default fields, per-policy include / exclude,
// constants and categories, Graph's limits (≤ 3 email addresses, ≤ 2 business phones), and a stable
// content hash of what would be written.
import { createHash } from 'node:crypto';
import { contactFieldNames, type ContactFieldName, type Mapping } from './config/schema';
import type { DirectoryEntry } from './directory';

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
}

export const maxEmailAddresses = 3;
export const maxBusinessPhones = 2;

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
  const given = clean(e.givenName);
  const sur = clean(e.surname);
  const displayName =
    clean(e.displayName) ??
    (clean([given, sur].filter(Boolean).join(' ')) || clean(e.mail) || clean(e.userPrincipalName));
  const phones = [...new Set(e.businessPhones.map((p) => p.trim()).filter(Boolean))].slice(
    0,
    maxBusinessPhones,
  );
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
  };
  for (const [field, value] of Object.entries(mapping.constants)) {
    (all as Record<string, unknown>)[field] = clean(value);
  }
  const out: ContactFields = {};
  for (const field of managedFields(mapping)) {
    const v = all[field];
    if (!isEmptyValue(v)) (out as Record<string, unknown>)[field] = v;
  }
  return out;
}

/** The fields a policy writes at all. */
export function managedFields(mapping: Mapping): ContactFieldName[] {
  return contactFieldNames.filter(
    (f) =>
      (mapping.include ? mapping.include.includes(f) : true) &&
      !mapping.exclude.includes(f) &&
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

/** The Graph body for these fields: empty fields sent as null / [] so a PATCH clears them. */
export function toGraphBody(
  fields: ContactFields,
  only: readonly ContactFieldName[],
): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const f of only) {
    const v = fields[f];
    if (!isEmptyValue(v)) body[f] = v;
    else if (f === 'emailAddresses' || f === 'businessPhones' || f === 'categories') body[f] = [];
    else if (f === 'businessAddress')
      body[f] = { street: null, city: null, state: null, postalCode: null, countryOrRegion: null };
    else body[f] = null;
  }
  return body;
}

/** Reads our managed fields back from a Graph contact (for drift). */
export function fieldsFromGraph(
  contact: Record<string, unknown>,
  fields: readonly ContactFieldName[],
): ContactFields {
  const out: ContactFields = {};
  for (const f of fields) {
    const v = contact[f];
    if (isEmptyValue(v)) continue;
    if (f === 'businessAddress') {
      const a = v as Record<string, unknown>;
      const addr: PhysicalAddress = {};
      for (const k of ['street', 'city', 'state', 'postalCode', 'countryOrRegion'] as const)
        if (typeof a[k] === 'string' && a[k]) addr[k] = a[k];
      out.businessAddress = addr;
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
    categories: mapping.categories.length > 0 ? [...mapping.categories] : contact.categories,
  };
  for (const [field, value] of Object.entries(mapping.constants))
    (all as Record<string, unknown>)[field] = clean(value);
  const out: ContactFields = {};
  for (const field of managedFields(mapping)) {
    const v = all[field];
    if (!isEmptyValue(v)) (out as Record<string, unknown>)[field] = v;
  }
  return out;
}

// How Graph shows and accepts the simulated objects: property lists, JSON views, body validation.
import { GraphFault, badRequest } from './protocol';
import type { Mailbox, SimContact, SimContactFolder, SimGroup, SimOrgContact, SimUser } from './tenant';

export const userProperties = [
  'id',
  'userPrincipalName',
  'displayName',
  'givenName',
  'surname',
  'mail',
  'mailNickname',
  'proxyAddresses',
  'otherMails',
  'businessPhones',
  'mobilePhone',
  'faxNumber',
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
  'preferredLanguage',
  'accountEnabled',
  'showInAddressList',
  'userType',
  'employeeId',
  'onPremisesExtensionAttributes',
  'imAddresses',
  'createdDateTime',
  'deletedDateTime',
] as const;
export const defaultUserProperties = [
  'businessPhones',
  'displayName',
  'givenName',
  'jobTitle',
  'mail',
  'mobilePhone',
  'officeLocation',
  'preferredLanguage',
  'surname',
  'userPrincipalName',
  'id',
];

export function userView(u: SimUser): Record<string, unknown> {
  return {
    id: u.id,
    userPrincipalName: u.userPrincipalName,
    displayName: u.displayName,
    givenName: u.givenName,
    surname: u.surname,
    mail: u.mail,
    mailNickname: u.userPrincipalName.split('@')[0] ?? null,
    proxyAddresses: u.proxyAddresses,
    otherMails: [],
    businessPhones: u.businessPhones,
    mobilePhone: u.mobilePhone,
    faxNumber: u.faxNumber ?? null,
    jobTitle: u.jobTitle,
    department: u.department,
    companyName: u.companyName,
    officeLocation: u.officeLocation,
    streetAddress: u.streetAddress,
    city: u.city,
    state: u.state,
    postalCode: u.postalCode,
    country: u.country,
    usageLocation: u.usageLocation,
    preferredLanguage: null,
    accountEnabled: u.accountEnabled,
    // Always null for users in Graph, whatever Exchange says (see SimUser.hiddenFromAddressListsEnabled).
    showInAddressList: null,
    userType: u.userType,
    employeeId: null,
    onPremisesExtensionAttributes: u.onPremisesExtensionAttributes,
    imAddresses: u.imAddresses ?? [],
    createdDateTime: '2024-01-01T00:00:00Z',
    deletedDateTime: null,
  };
}

export const groupProperties = [
  'id',
  'displayName',
  'mail',
  'mailEnabled',
  'securityEnabled',
  'groupTypes',
  'description',
  'mailNickname',
  'proxyAddresses',
] as const;
export function groupView(g: SimGroup): Record<string, unknown> {
  return {
    id: g.id,
    displayName: g.displayName,
    mail: g.mail,
    mailEnabled: g.mailEnabled,
    securityEnabled: g.securityEnabled,
    groupTypes: g.groupTypes,
    description: null,
    mailNickname: g.mail?.split('@')[0] ?? g.displayName.replace(/\W/g, ''),
    proxyAddresses: g.mail ? [`SMTP:${g.mail}`] : [],
  };
}

export const orgContactProperties = [
  'id',
  'displayName',
  'givenName',
  'surname',
  'mail',
  'mailNickname',
  'companyName',
  'department',
  'jobTitle',
  'proxyAddresses',
  'phones',
  'addresses',
  'onPremisesSyncEnabled',
] as const;
export function orgContactView(c: SimOrgContact): Record<string, unknown> {
  return {
    id: c.id,
    displayName: c.displayName,
    givenName: c.givenName,
    surname: c.surname,
    mail: c.mail,
    mailNickname: c.mail?.split('@')[0] ?? null,
    companyName: c.companyName,
    department: c.department,
    jobTitle: c.jobTitle,
    proxyAddresses: c.proxyAddresses,
    phones: c.phones,
    addresses: c.addresses,
    onPremisesSyncEnabled: null,
  };
}

/** Applies $select (with Graph's 400 for unknown properties). */
export function select(
  view: Record<string, unknown>,
  selectParam: string | null,
  known: readonly string[],
  defaults: readonly string[],
  typeName: string,
): Record<string, unknown> {
  const wanted = selectParam
    ? selectParam
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [...defaults];
  const out: Record<string, unknown> = {};
  for (const name of wanted) {
    const match = known.find((k) => k.toLowerCase() === name.toLowerCase());
    if (!match)
      throw badRequest(
        `Could not find a property named '${name}' on type 'microsoft.graph.${typeName}'.`,
        'Request_BadRequest',
      );
    out[match] = view[match];
  }
  if (!('id' in out)) out.id = view.id;
  return out;
}

export function selectNames(
  selectParam: string | null,
  known: readonly string[],
  typeName: string,
): string[] {
  if (!selectParam) return [...known];
  return selectParam
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((name) => {
      const match = known.find((k) => k.toLowerCase() === name.toLowerCase());
      if (!match && name !== 'manager' && name !== 'members')
        throw badRequest(
          `Could not find a property named '${name}' on type 'microsoft.graph.${typeName}'.`,
          'Request_BadRequest',
        );
      return match ?? name;
    });
}

// ---- Outlook contacts ----

const contactStringProps = [
  'displayName',
  'givenName',
  'middleName',
  'surname',
  'nickName',
  'initials',
  'title',
  'generation',
  'fileAs',
  'jobTitle',
  'companyName',
  'department',
  'officeLocation',
  'profession',
  'businessHomePage',
  'assistantName',
  'manager',
  'mobilePhone',
  'spouseName',
  'personalNotes',
  'yomiGivenName',
  'yomiSurname',
  'yomiCompanyName',
  'birthday',
];
const contactStringArrayProps = ['businessPhones', 'homePhones', 'imAddresses', 'children', 'categories'];
const contactAddressProps = ['homeAddress', 'businessAddress', 'otherAddress'];
const contactEmailProps = ['primaryEmailAddress', 'secondaryEmailAddress', 'tertiaryEmailAddress'];
const contactReadOnly = ['id', 'createdDateTime', 'lastModifiedDateTime', 'changeKey', 'parentFolderId'];
const contactNavigation = [
  'singleValueExtendedProperties',
  'multiValueExtendedProperties',
  'photo',
  'extensions',
];
export const contactProperties = [
  ...contactReadOnly,
  ...contactStringProps,
  ...contactStringArrayProps,
  ...contactAddressProps,
  'emailAddresses',
  ...contactEmailProps,
];
const addressFields = ['street', 'city', 'state', 'countryOrRegion', 'postalCode'];

export interface ContactWrite {
  data: Record<string, unknown>;
  extended: { id: string; value: string }[];
}

const extendedPropertyId =
  /^(String|Integer|Boolean|SystemTime|Binary|Guid|Double|Long|Short|Currency|Object)\s+(\{[0-9a-fA-F-]{36}\}\s+(Name\s+\S.*|Id\s+0x[0-9a-fA-F]+)|0x[0-9a-fA-F]{4})$/;

/** Validates a contact POST or PATCH body as Exchange does; returns what to store. */
export function parseContactBody(body: unknown): ContactWrite {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw badRequest('Empty Payload. JSON content expected.', 'BadRequest');
  }
  const data: Record<string, unknown> = {};
  const extended: { id: string; value: string }[] = [];
  const typeError = (name: string, type: string): GraphFault =>
    badRequest(
      `Cannot convert the literal '${JSON.stringify((body as Record<string, unknown>)[name])}' to the expected type '${type}'. Property '${name}'.`,
      'RequestBodyRead',
    );
  for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
    if (name.includes('@')) continue; // OData annotations such as @odata.type
    if (contactReadOnly.includes(name)) {
      if (name === 'id' || name === 'changeKey') continue; // Exchange ignores these on write
      throw badRequest(
        `The property '${name}' is read-only and cannot be set.`,
        'ErrorInvalidPropertyUpdateSentToServer',
      );
    }
    if (contactStringProps.includes(name)) {
      if (value !== null && typeof value !== 'string') throw typeError(name, 'Edm.String');
      data[name] = value;
    } else if (contactStringArrayProps.includes(name)) {
      if (value !== null && (!Array.isArray(value) || value.some((v) => typeof v !== 'string')))
        throw typeError(name, 'Collection(Edm.String)');
      const list = (value as string[] | null) ?? [];
      if (name === 'businessPhones' && list.length > 2) {
        throw badRequest(
          `The multi value property BusinessPhones has ${list.length} entries, that exceeds the max allowed value of 2`,
          'ErrorInvalidArgument',
        );
      }
      if (name === 'homePhones' && list.length > 2) {
        throw badRequest(
          `The multi value property HomePhones has ${list.length} entries, that exceeds the max allowed value of 2`,
          'ErrorInvalidArgument',
        );
      }
      if (name === 'imAddresses' && list.length > 3) {
        throw badRequest(
          `The multi value property ImAddresses has ${list.length} entries, that exceeds the max allowed value of 3`,
          'ErrorInvalidArgument',
        );
      }
      data[name] = list;
    } else if (contactAddressProps.includes(name)) {
      if (value !== null && (typeof value !== 'object' || Array.isArray(value)))
        throw typeError(name, 'microsoft.graph.physicalAddress');
      for (const [k, v] of Object.entries((value as Record<string, unknown>) ?? {})) {
        if (k.includes('@')) continue;
        if (!addressFields.includes(k))
          throw badRequest(
            `The property '${k}' does not exist on type 'microsoft.graph.physicalAddress'. Make sure to only use property names that are defined by the type or mark the type as open type.`,
            'RequestBodyRead',
          );
        if (v !== null && typeof v !== 'string') throw typeError(name, 'Edm.String');
      }
      data[name] = value ?? {};
    } else if (name === 'emailAddresses' || contactEmailProps.includes(name)) {
      const list = name === 'emailAddresses' ? value : value === null ? [] : [value];
      if (list !== null && !Array.isArray(list))
        throw typeError(name, 'Collection(microsoft.graph.emailAddress)');
      for (const e of (list as unknown[]) ?? []) {
        if (typeof e !== 'object' || e === null) throw typeError(name, 'microsoft.graph.emailAddress');
        for (const [k, v] of Object.entries(e)) {
          if (k.includes('@')) continue;
          if (k !== 'address' && k !== 'name')
            throw badRequest(
              `The property '${k}' does not exist on type 'microsoft.graph.emailAddress'. Make sure to only use property names that are defined by the type or mark the type as open type.`,
              'RequestBodyRead',
            );
          if (v !== null && typeof v !== 'string') throw typeError(name, 'Edm.String');
        }
      }
      if (name === 'emailAddresses' && Array.isArray(list) && list.length > 3) {
        throw badRequest(
          `The multi value property EmailAddresses has ${list.length} entries, that exceeds the max allowed value of 3`,
          'ErrorInvalidArgument',
        );
      }
      data[name] = name === 'emailAddresses' ? (list ?? []) : value;
    } else if (name === 'singleValueExtendedProperties') {
      if (!Array.isArray(value))
        throw typeError(name, 'Collection(microsoft.graph.singleValueLegacyExtendedProperty)');
      for (const p of value as unknown[]) {
        const { id, value: v } = (p ?? {}) as { id?: unknown; value?: unknown };
        if (typeof id !== 'string' || !extendedPropertyId.test(id.trim())) {
          throw badRequest(
            `The extended property id '${String(id)}' is not valid.`,
            'ErrorInvalidExtendedProperty',
          );
        }
        if (typeof v !== 'string')
          throw badRequest(
            'The extended property value must be a string.',
            'ErrorInvalidExtendedPropertyValue',
          );
        // The value is text, but it must read as the property's type (PtypInteger32 for Integer).
        if (/^Integer\s/i.test(id.trim()) && !/^-?\d+$/.test(v))
          throw badRequest(
            `The value '${v}' is not valid for the extended property '${id.trim()}'.`,
            'ErrorInvalidExtendedPropertyValue',
          );
        extended.push({ id: id.trim(), value: v });
      }
    } else if (contactNavigation.includes(name)) {
      throw badRequest(`The navigation property '${name}' cannot be set in this request.`, 'BadRequest');
    } else {
      throw badRequest(
        `The property '${name}' does not exist on type 'microsoft.graph.contact'. Make sure to only use property names that are defined by the type or mark the type as open type.`,
        'RequestBodyRead',
      );
    }
  }
  return { data, extended };
}

/** A contact in Deleted Items (a mail folder) names it as its parent; no other mail folder holds one. */
function mailFolderId(c: SimContact, mailbox: Mailbox, immutable: boolean): string | null {
  const deleted = mailbox.deletedItems;
  if (c.folderId !== deleted.id) return null;
  return immutable ? deleted.immutableId : deleted.id;
}

export function contactView(c: SimContact, mailbox: Mailbox, immutable: boolean): Record<string, unknown> {
  const folder = mailbox.folders.get(c.folderId);
  const view: Record<string, unknown> = {
    '@odata.etag': `W/"${c.changeKey}"`,
    id: immutable ? c.immutableId : c.id,
    createdDateTime: c.createdDateTime,
    lastModifiedDateTime: c.lastModifiedDateTime,
    changeKey: c.changeKey,
    parentFolderId: folder
      ? immutable
        ? folder.immutableId
        : folder.id
      : mailFolderId(c, mailbox, immutable),
  };
  for (const p of contactStringProps) view[p] = c.data[p] ?? null;
  // Exchange keeps the file-as it is given and computes none: a contact created without one reads
  // back with "" (MicrosoftDocs/feedback #2357 shows `"fileAs": ""` on a contact made in Outlook on the web).
  view.fileAs = c.data.fileAs ?? '';
  for (const p of contactStringArrayProps) view[p] = c.data[p] ?? [];
  for (const p of contactAddressProps) view[p] = c.data[p] ?? {};
  view.emailAddresses = c.data.emailAddresses ?? [];
  for (const p of contactEmailProps) view[p] = c.data[p] ?? null;
  if (view.displayName === null) {
    // Exchange composes a display name when none is given.
    const composed = [c.data.givenName, c.data.surname].filter((x) => typeof x === 'string' && x).join(' ');
    view.displayName = composed || '';
  }
  return view;
}

export function folderView(
  f: SimContactFolder,
  immutable: boolean,
  mailbox: Mailbox,
): Record<string, unknown> {
  const parent = mailbox.folders.get(f.parentFolderId);
  return {
    id: immutable ? f.immutableId : f.id,
    displayName: f.displayName,
    parentFolderId: parent ? (immutable ? parent.immutableId : parent.id) : f.parentFolderId,
  };
}

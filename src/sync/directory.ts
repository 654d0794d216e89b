// Directory objects as the sync reads them, and the pure rules that pick the source objects and
// the target mailboxes of a policy.
import type { Policy, SourceAttribute } from './config/schema';
import { matchesExpression } from './filters';
import type { ContactFields } from './mapping';

export interface DirectoryEntry {
  id: string;
  /** A user, an org contact, a mail-enabled group, or a contact in a source mailbox's folder. */
  kind: 'user' | 'orgContact' | 'group' | 'mailboxContact';
  userPrincipalName: string | null;
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
  streetAddress: string | null;
  city: string | null;
  state: string | null;
  postalCode: string | null;
  country: string | null;
  usageLocation: string | null;
  accountEnabled: boolean | null;
  showInAddressList: boolean | null;
  userType: string | null;
  extensionAttributes: Record<string, string | null>;
  managerId: string | null;
  /** Users' faxNumber, org contacts' business fax (absent in snapshots stored before it was read). */
  faxNumber?: string | null;
  /** Users' imAddresses (SIP addresses). */
  imAddresses?: string[];
  /** Org contacts' home phones. */
  homePhones?: string[];
  /** For a mailbox contact: its fields as read from the source folder. */
  contact?: ContactFields;
  /** For a user, when the policy syncs photos: the photo's hash (null: none) and when we looked. */
  photo?: { hash: string | null; checkedAt: string; size?: number; tooLarge?: boolean };
  /** For a user, when a policy asks: Exchange's mailbox purpose (user, shared, room, equipment, ...; none). */
  mailboxPurpose?: string;
  /** Exchange's HiddenFromAddressListsEnabled, when the connection reads Exchange (this run's answer). */
  hiddenInExchange?: boolean;
  /** A NoContactSync mark in Exchange's CustomAttribute1-15 (mail contacts and groups keep theirs there). */
  markedInExchange?: boolean;
}

export const sourceKeyOf = (e: Pick<DirectoryEntry, 'kind' | 'id'>): string => `${e.kind}:${e.id}`;

export function emptyEntry(kind: DirectoryEntry['kind'], id: string): DirectoryEntry {
  return {
    id,
    kind,
    userPrincipalName: null,
    displayName: null,
    givenName: null,
    surname: null,
    mail: null,
    proxyAddresses: [],
    businessPhones: [],
    mobilePhone: null,
    jobTitle: null,
    department: null,
    companyName: null,
    officeLocation: null,
    streetAddress: null,
    city: null,
    state: null,
    postalCode: null,
    country: null,
    usageLocation: null,
    accountEnabled: null,
    showInAddressList: null,
    userType: null,
    extensionAttributes: {},
    managerId: null,
  };
}

const hasMarker = (e: DirectoryEntry, marker: string): boolean =>
  Object.values(e.extensionAttributes).some(
    (v) => typeof v === 'string' && v.trim().toLowerCase() === marker.toLowerCase(),
  );

export const isOptedOutOfContacts = (e: DirectoryEntry): boolean => hasMarker(e, 'NoContactSync');
export const isOptedOutOfMailboxSync = (e: DirectoryEntry): boolean => hasMarker(e, 'NoMailboxSync');

/** A string attribute of a directory object (extension attributes included); null when it has none. */
export function attributeValue(e: DirectoryEntry, attribute: SourceAttribute): string | null {
  if (attribute.startsWith('extensionAttribute')) return e.extensionAttributes[attribute] ?? null;
  const v = (e as unknown as Record<string, unknown>)[attribute];
  return typeof v === 'string' ? v : null;
}

export type ExclusionReason =
  | 'guest'
  | 'noMail'
  | 'disabled'
  | 'hidden'
  | 'NoContactSync'
  | 'filter'
  | 'notInGroups'
  | 'excludedGroup'
  | 'kindNotIncluded'
  | 'sharedMailbox'
  | 'roomMailbox';

/** Whether the policy decides on this user by its mailbox type: in, out, or not (undefined). */
function mailboxTypeRule(e: DirectoryEntry, source: DirectorySourceConfig): 'in' | 'out' | undefined {
  if (e.kind !== 'user') return undefined;
  const wanted =
    e.mailboxPurpose === 'shared'
      ? source.sharedMailboxes
      : e.mailboxPurpose === 'room' || e.mailboxPurpose === 'equipment'
        ? source.roomMailboxes
        : undefined;
  return wanted === undefined ? undefined : wanted ? 'in' : 'out';
}

/** The policy sorts shared / room mailboxes by type, so their mailbox purpose must be known. */
export const needsMailboxPurpose = (source: DirectorySourceConfig): boolean =>
  source.sharedMailboxes !== undefined || source.roomMailboxes !== undefined;

/** Why an entry is out of the policy's source, or undefined when it is in. */
export type DirectorySourceConfig = Extract<Policy['source'], { type: 'directory' }>;

export function sourceExclusion(
  e: DirectoryEntry,
  source: DirectorySourceConfig,
  groups: { include: ReadonlySet<string> | null; exclude: ReadonlySet<string> },
): ExclusionReason | undefined {
  if (e.kind === 'mailboxContact') return 'kindNotIncluded';
  if (e.kind === 'group' && !source.includeDistributionLists) return 'kindNotIncluded';
  if (e.kind === 'user' && !source.includeUsers) return 'kindNotIncluded';
  if (e.kind === 'orgContact' && !source.includeOrgContacts) return 'kindNotIncluded';
  if (e.kind === 'user' && e.userType !== null && e.userType !== 'Member') return 'guest';
  if (!e.mail) return 'noMail';
  const typeRule = mailboxTypeRule(e, source);
  if (typeRule === 'out') return e.mailboxPurpose === 'shared' ? 'sharedMailbox' : 'roomMailbox';
  // A shared or room mailbox the policy takes in is in whatever its sign-in state.
  if (typeRule !== 'in' && e.kind === 'user' && e.accountEnabled === false && !source.includeDisabled)
    return 'disabled';
  if ((e.showInAddressList === false || e.hiddenInExchange === true) && !source.includeHidden)
    return 'hidden';
  if (isOptedOutOfContacts(e) || e.markedInExchange === true) return 'NoContactSync';
  if (!matchesExpression(e, source.filters)) return 'filter';
  if (groups.include && !groups.include.has(e.id)) return 'notInGroups';
  if (groups.exclude.has(e.id)) return 'excludedGroup';
  return undefined;
}

export interface TargetMailbox {
  userId: string;
  userPrincipalName: string;
}

export interface TargetResolution {
  mailboxes: TargetMailbox[];
  /** Users a policy names or would include but that are left out, with the reason. */
  skipped: {
    user: string;
    reason: 'NoMailboxSync' | 'notFound' | 'disabled' | 'guest' | 'noMail' | 'excluded';
  }[];
}

/** The mailboxes a policy writes to. Users without Exchange Online are found out when synced. */
export function resolveTargets(
  entries: Iterable<DirectoryEntry>,
  targets: Policy['targets'],
  groups: { include: ReadonlySet<string> | null; exclude: ReadonlySet<string> },
): TargetResolution {
  const users = [...entries].filter((e) => e.kind === 'user');
  const byUpn = new Map(
    users.filter((u) => u.userPrincipalName).map((u) => [u.userPrincipalName!.toLowerCase(), u]),
  );
  const excluded = new Set(targets.excludeUsers.map((u) => u.toLowerCase()));
  const skipped: TargetResolution['skipped'] = [];
  let candidates: DirectoryEntry[];
  if (targets.type === 'users') {
    candidates = [];
    for (const upn of targets.users) {
      const u = byUpn.get(upn.toLowerCase());
      if (u) candidates.push(u);
      else skipped.push({ user: upn, reason: 'notFound' });
    }
  } else if (targets.type === 'groups') {
    candidates = users.filter((u) => groups.include?.has(u.id));
  } else {
    candidates = users;
  }
  const mailboxes: TargetMailbox[] = [];
  const explicit = targets.type === 'users';
  for (const u of candidates) {
    const name = u.userPrincipalName ?? u.id;
    const reason =
      u.userType !== null && u.userType !== 'Member'
        ? 'guest'
        : !u.mail
          ? 'noMail'
          : u.accountEnabled === false
            ? 'disabled'
            : isOptedOutOfMailboxSync(u)
              ? 'NoMailboxSync'
              : excluded.has(name.toLowerCase()) || groups.exclude.has(u.id)
                ? 'excluded'
                : undefined;
    if (reason) {
      // Only explicit choices and opt-outs are worth reporting; "all mailboxes" skips guests silently.
      if (explicit || reason === 'NoMailboxSync' || reason === 'excluded')
        skipped.push({ user: name, reason });
      continue;
    }
    mailboxes.push({ userId: u.id, userPrincipalName: name });
  }
  mailboxes.sort((a, b) => a.userPrincipalName.localeCompare(b.userPrincipalName));
  return { mailboxes, skipped };
}

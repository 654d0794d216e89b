// The simulated tenant: directory objects with a change log (for delta queries), and mailboxes with
// contact folders and contacts. Tests read and change it directly, as an admin or a user would.
import { seededRandom, type Random } from './random';

export type MailboxKind = 'user' | 'shared' | 'room' | 'none';
export const extensionAttributeNames = Array.from({ length: 15 }, (_, i) => `extensionAttribute${i + 1}`);

export interface SimUser {
  id: string;
  userPrincipalName: string;
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
  faxNumber?: string | null;
  /** Graph's imAddresses (read-only there: the user's SIP addresses). */
  imAddresses?: string[];
  accountEnabled: boolean;
  /**
   * Exchange's HiddenFromAddressListsEnabled, the real flag. Graph's showInAddressList is always null
   * for users (microsoft-graph-docs #5380, msgraph-sdk-php #109), so only the Exchange admin endpoint
   * shows it.
   */
  hiddenFromAddressListsEnabled: boolean;
  userType: 'Member' | 'Guest';
  onPremisesExtensionAttributes: Record<string, string | null>;
  managerId: string | null;
  /** Simulator-only: what kind of Exchange Online mailbox the user has. */
  mailbox: MailboxKind;
  photo: { contentType: string; bytes: Buffer } | null;
}

export interface SimGroup {
  id: string;
  displayName: string;
  mail: string | null;
  mailEnabled: boolean;
  securityEnabled: boolean;
  groupTypes: string[];
  /** Graph's hideFromAddressLists (only on GET /groups/{id} with $select) and Exchange's flag. */
  hideFromAddressLists: boolean;
  /** Exchange's CustomAttribute1-15 of the group (where a NoContactSync mark lives). */
  customAttributes: Record<string, string | null>;
  /** Direct members: user, group or org contact ids. */
  members: Set<string>;
}

export interface SimOrgContact {
  id: string;
  displayName: string | null;
  givenName: string | null;
  surname: string | null;
  mail: string | null;
  companyName: string | null;
  department: string | null;
  jobTitle: string | null;
  proxyAddresses: string[];
  phones: { type: 'business' | 'businessFax' | 'home' | 'mobile'; number: string }[];
  addresses: {
    city: string | null;
    countryOrRegion: string | null;
    officeLocation: string | null;
    postalCode: string | null;
    state: string | null;
    street: string | null;
  }[];
  /** Exchange's CustomAttribute1-15 of the mail contact (not on Graph's orgContact). */
  onPremisesExtensionAttributes?: Record<string, string | null>;
  /** Exchange's HiddenFromAddressListsEnabled (not on Graph's orgContact). */
  hiddenFromAddressListsEnabled?: boolean;
}

export type DirectoryKind = 'user' | 'group' | 'orgContact';

export interface DirectoryChange {
  seq: number;
  at: number;
  kind: DirectoryKind;
  id: string;
  op: 'upsert' | 'delete';
  /** Property names that changed; undefined for a creation (all properties). */
  properties?: string[];
  membersAdded?: string[];
  membersRemoved?: string[];
}

export interface SimContactFolder {
  id: string;
  immutableId: string;
  displayName: string;
  parentFolderId: string;
  wellKnownName?: 'contacts';
}

export interface SimContact {
  id: string;
  immutableId: string;
  folderId: string;
  createdDateTime: string;
  lastModifiedDateTime: string;
  changeKey: string;
  /** The writable contact properties as last written. */
  data: Record<string, unknown>;
  /** Single-value extended properties, keyed by lower-cased property id. */
  extendedProperties: Map<string, { id: string; value: string }>;
  photo: { contentType: string; bytes: Buffer } | null;
}

export interface FolderChange {
  seq: number;
  folderId: string;
  contactId: string;
  immutableId: string;
  op: 'upsert' | 'delete';
}

export interface SentMail {
  from: string;
  at: string;
  message: Record<string, unknown>;
  saveToSentItems: boolean;
}

export class Mailbox {
  readonly folders = new Map<string, SimContactFolder>();
  readonly contacts = new Map<string, SimContact>();
  readonly changes: FolderChange[] = [];
  readonly sentMail: SentMail[] = [];
  readonly rootFolderId: string;
  readonly contactsFolderId: string;
  private changeSeq = 0;

  constructor(
    readonly userId: string,
    private readonly ids: OutlookIds,
  ) {
    this.rootFolderId = ids.folder().id;
    const contacts = ids.folder();
    this.contactsFolderId = contacts.id;
    this.folders.set(contacts.id, {
      id: contacts.id,
      immutableId: contacts.immutableId,
      displayName: 'Contacts',
      parentFolderId: this.rootFolderId,
      wellKnownName: 'contacts',
    });
  }

  get seq(): number {
    return this.changeSeq;
  }

  recordChange(contact: SimContact, op: 'upsert' | 'delete'): void {
    this.changes.push({
      seq: ++this.changeSeq,
      folderId: contact.folderId,
      contactId: contact.id,
      immutableId: contact.immutableId,
      op,
    });
  }

  /** Finds a folder by its regular or immutable id. */
  folder(id: string): SimContactFolder | undefined {
    const direct = this.folders.get(id);
    if (direct) return direct;
    for (const f of this.folders.values()) if (f.immutableId === id) return f;
    return undefined;
  }

  /** Finds a contact by its regular or immutable id. */
  contact(id: string): SimContact | undefined {
    const direct = this.contacts.get(id);
    if (direct) return direct;
    for (const c of this.contacts.values()) if (c.immutableId === id) return c;
    return undefined;
  }

  createFolder(displayName: string, parentFolderId: string): SimContactFolder {
    const ids = this.ids.folder();
    const folder: SimContactFolder = {
      id: ids.id,
      immutableId: ids.immutableId,
      displayName,
      parentFolderId,
    };
    this.folders.set(folder.id, folder);
    return folder;
  }

  /** Deletes a folder with its subfolders and contacts (as Outlook moves it to Deleted Items). */
  deleteFolder(folderId: string): void {
    for (const child of [...this.folders.values()].filter((f) => f.parentFolderId === folderId)) {
      this.deleteFolder(child.id);
    }
    for (const c of [...this.contacts.values()].filter((x) => x.folderId === folderId)) {
      this.deleteContact(c);
    }
    this.folders.delete(folderId);
  }

  createContact(
    folderId: string,
    data: Record<string, unknown>,
    extended: { id: string; value: string }[],
    now: Date,
  ): SimContact {
    const ids = this.ids.item();
    const stamp = now.toISOString().replace(/\.\d+Z$/, 'Z');
    const contact: SimContact = {
      id: ids.id,
      immutableId: ids.immutableId,
      folderId,
      createdDateTime: stamp,
      lastModifiedDateTime: stamp,
      changeKey: this.ids.changeKey(),
      data,
      extendedProperties: new Map(extended.map((e) => [e.id.toLowerCase(), e])),
      photo: null,
    };
    this.contacts.set(contact.id, contact);
    this.recordChange(contact, 'upsert');
    return contact;
  }

  updateContact(
    contact: SimContact,
    patch: Record<string, unknown>,
    extended: { id: string; value: string }[],
    now: Date,
  ): void {
    for (const [k, v] of Object.entries(patch)) contact.data[k] = v;
    for (const e of extended) contact.extendedProperties.set(e.id.toLowerCase(), e);
    contact.lastModifiedDateTime = now.toISOString().replace(/\.\d+Z$/, 'Z');
    contact.changeKey = this.ids.changeKey();
    this.recordChange(contact, 'upsert');
  }

  /**
   * A user moves a contact to another folder in Outlook (Graph v1.0 has no move action for contacts).
   * Exchange gives the item a new regular id; its immutable id stays (it lives as long as the item
   * stays in the mailbox). The source folder's delta reports it removed (by the id it had there),
   * the destination's reports it as new.
   */
  moveContact(contact: SimContact, folderId: string, now: Date): void {
    this.recordChange(contact, 'delete');
    this.contacts.delete(contact.id);
    contact.id = this.ids.item().id;
    contact.folderId = folderId;
    contact.changeKey = this.ids.changeKey();
    contact.lastModifiedDateTime = now.toISOString().replace(/\.\d+Z$/, 'Z');
    this.contacts.set(contact.id, contact);
    this.recordChange(contact, 'upsert');
  }

  /**
   * The mailbox's Deleted Items: a mail folder, not a contact folder, so `contactFolders/{id}` does not
   * find it. Derived from the root's id (drawing it from the seeded ids would shift every later id).
   */
  get deletedItems(): { id: string; immutableId: string } {
    return {
      id: this.rootFolderId.replace(/AAA=$/, 'DeletedItemsAAA='),
      immutableId: this.rootFolderId.replace(/^AAMkAGI2/, 'AAkALgDeletedItems'),
    };
  }

  /**
   * A user deletes a contact in Outlook: Exchange moves it to Deleted Items (a new regular id, the same
   * immutable id, tag and fields). The folder's delta reports it removed; a read by id still finds it,
   * its `parentFolderId` naming Deleted Items.
   */
  deleteContactToDeletedItems(contact: SimContact, now: Date): void {
    this.moveContact(contact, this.deletedItems.id, now);
  }

  deleteContact(contact: SimContact): void {
    this.contacts.delete(contact.id);
    this.recordChange(contact, 'delete');
  }

  contactsIn(folderId: string): SimContact[] {
    return [...this.contacts.values()].filter((c) => c.folderId === folderId);
  }

  /** Exchange compares folder names without case ("company directory" is "Company Directory"). */
  folderByName(displayName: string, parentFolderId?: string): SimContactFolder | undefined {
    const wanted = displayName.toLowerCase();
    return [...this.folders.values()].find(
      (f) =>
        f.displayName.toLowerCase() === wanted &&
        (parentFolderId === undefined || f.parentFolderId === parentFolderId),
    );
  }
}

/** Outlook-style ids: a regular id (changes on move) and an immutable id (does not). */
export class OutlookIds {
  constructor(private readonly random: Random) {}
  folder(): { id: string; immutableId: string } {
    return {
      id: `AAMkAGI2${this.random.token(30)}AAA=`,
      immutableId: `AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A${this.random.token(18)}AAA=`,
    };
  }
  item(): { id: string; immutableId: string } {
    return {
      id: `AAMkAGI2${this.random.token(54)}AAA=`,
      immutableId: `AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A${this.random.token(30)}AAA=`,
    };
  }
  changeKey(): string {
    return `EQAAABYAAA${this.random.token(15)}`;
  }
}

export class Tenant {
  readonly users = new Map<string, SimUser>();
  readonly groups = new Map<string, SimGroup>();
  readonly orgContacts = new Map<string, SimOrgContact>();
  readonly directoryChanges: DirectoryChange[] = [];
  private readonly mailboxes = new Map<string, Mailbox>();
  private seq = 0;
  readonly random: Random;
  readonly outlookIds: OutlookIds;

  constructor(
    readonly tenantId: string,
    readonly domain: string,
    seed: number,
    private readonly clock: () => number = Date.now,
  ) {
    this.random = seededRandom(seed);
    this.outlookIds = new OutlookIds(seededRandom(seed ^ 0x5eed));
  }

  get directorySeq(): number {
    return this.seq;
  }

  private record(change: Omit<DirectoryChange, 'seq' | 'at'>): void {
    this.directoryChanges.push({ ...change, seq: ++this.seq, at: this.clock() });
  }

  /** Finds a user by id or (case-insensitive) user principal name. */
  user(idOrUpn: string): SimUser | undefined {
    const byId = this.users.get(idOrUpn);
    if (byId) return byId;
    const lower = idOrUpn.toLowerCase();
    for (const u of this.users.values()) if (u.userPrincipalName.toLowerCase() === lower) return u;
    return undefined;
  }

  /** The user's Exchange Online mailbox, or undefined when the user has none. */
  mailbox(idOrUpn: string): Mailbox | undefined {
    const user = this.user(idOrUpn);
    if (!user || user.mailbox === 'none') return undefined;
    let mailbox = this.mailboxes.get(user.id);
    if (!mailbox) {
      mailbox = new Mailbox(user.id, this.outlookIds);
      this.mailboxes.set(user.id, mailbox);
    }
    return mailbox;
  }

  addUser(input: Partial<SimUser> & { userPrincipalName: string }): SimUser {
    const user: SimUser = {
      id: input.id ?? this.random.guid(),
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
      accountEnabled: true,
      hiddenFromAddressListsEnabled: false,
      userType: 'Member',
      managerId: null,
      mailbox: 'user',
      photo: null,
      ...input,
      onPremisesExtensionAttributes: {
        ...Object.fromEntries(extensionAttributeNames.map((n) => [n, null])),
        ...(input.onPremisesExtensionAttributes ?? {}),
      },
    };
    if (this.users.has(user.id)) throw new Error(`user ${user.id} exists`);
    this.users.set(user.id, user);
    this.record({ kind: 'user', id: user.id, op: 'upsert' });
    return user;
  }

  /** Changes a user as an admin would; the delta query then reports the changed properties. */
  updateUser(idOrUpn: string, patch: Partial<Omit<SimUser, 'id'>>): SimUser {
    const user = this.user(idOrUpn);
    if (!user) throw new Error(`no user ${idOrUpn}`);
    const changed: string[] = [];
    for (const [key, value] of Object.entries(patch) as [keyof SimUser, unknown][]) {
      if (key === 'onPremisesExtensionAttributes') {
        user.onPremisesExtensionAttributes = {
          ...user.onPremisesExtensionAttributes,
          ...(value as Record<string, string | null>),
        };
      } else {
        (user as unknown as Record<string, unknown>)[key] = value;
      }
      changed.push(key === 'managerId' ? 'manager' : key);
    }
    this.record({ kind: 'user', id: user.id, op: 'upsert', properties: changed });
    return user;
  }

  deleteUser(idOrUpn: string): void {
    const user = this.user(idOrUpn);
    if (!user) throw new Error(`no user ${idOrUpn}`);
    this.users.delete(user.id);
    this.mailboxes.delete(user.id);
    for (const g of this.groups.values()) {
      if (g.members.delete(user.id))
        this.record({ kind: 'group', id: g.id, op: 'upsert', properties: [], membersRemoved: [user.id] });
    }
    this.record({ kind: 'user', id: user.id, op: 'delete' });
  }

  addGroup(
    input: Partial<Omit<SimGroup, 'members'>> & { displayName: string; members?: Iterable<string> },
  ): SimGroup {
    const group: SimGroup = {
      id: input.id ?? this.random.guid(),
      displayName: input.displayName,
      mail: input.mail ?? null,
      mailEnabled: input.mailEnabled ?? false,
      securityEnabled: input.securityEnabled ?? true,
      groupTypes: input.groupTypes ?? [],
      hideFromAddressLists: input.hideFromAddressLists ?? false,
      customAttributes: input.customAttributes ?? {},
      members: new Set(input.members ?? []),
    };
    this.groups.set(group.id, group);
    this.record({ kind: 'group', id: group.id, op: 'upsert' });
    return group;
  }

  updateGroup(id: string, patch: Partial<Omit<SimGroup, 'id' | 'members'>>): void {
    const group = this.groups.get(id);
    if (!group) throw new Error(`no group ${id}`);
    Object.assign(group, patch);
    this.record({ kind: 'group', id, op: 'upsert', properties: Object.keys(patch) });
  }

  deleteGroup(id: string): void {
    this.groups.delete(id);
    this.record({ kind: 'group', id, op: 'delete' });
  }

  addMember(groupId: string, memberId: string): void {
    const group = this.groups.get(groupId);
    if (!group) throw new Error(`no group ${groupId}`);
    group.members.add(memberId);
    this.record({ kind: 'group', id: groupId, op: 'upsert', properties: [], membersAdded: [memberId] });
  }

  removeMember(groupId: string, memberId: string): void {
    const group = this.groups.get(groupId);
    if (!group) throw new Error(`no group ${groupId}`);
    group.members.delete(memberId);
    this.record({ kind: 'group', id: groupId, op: 'upsert', properties: [], membersRemoved: [memberId] });
  }

  /** Members of a group and of every group nested in it, each once. */
  transitiveMembers(groupId: string): string[] {
    const seen = new Set<string>();
    const visitedGroups = new Set<string>();
    const walk = (id: string): void => {
      if (visitedGroups.has(id)) return;
      visitedGroups.add(id);
      for (const m of this.groups.get(id)?.members ?? []) {
        if (!seen.has(m)) seen.add(m);
        if (this.groups.has(m)) walk(m);
      }
    };
    walk(groupId);
    return [...seen];
  }

  addOrgContact(input: Partial<SimOrgContact> & { displayName: string }): SimOrgContact {
    const contact: SimOrgContact = {
      id: input.id ?? this.random.guid(),
      givenName: null,
      surname: null,
      mail: null,
      companyName: null,
      department: null,
      jobTitle: null,
      proxyAddresses: [],
      phones: [],
      addresses: [],
      ...input,
    };
    this.orgContacts.set(contact.id, contact);
    this.record({ kind: 'orgContact', id: contact.id, op: 'upsert' });
    return contact;
  }

  updateOrgContact(id: string, patch: Partial<Omit<SimOrgContact, 'id'>>): void {
    const contact = this.orgContacts.get(id);
    if (!contact) throw new Error(`no org contact ${id}`);
    Object.assign(contact, patch);
    this.record({ kind: 'orgContact', id, op: 'upsert', properties: Object.keys(patch) });
  }

  deleteOrgContact(id: string): void {
    this.orgContacts.delete(id);
    this.record({ kind: 'orgContact', id, op: 'delete' });
  }

  setUserPhoto(idOrUpn: string, photo: { contentType: string; bytes: Buffer } | null): void {
    const user = this.user(idOrUpn);
    if (!user) throw new Error(`no user ${idOrUpn}`);
    user.photo = photo;
  }
}

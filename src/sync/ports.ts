// The I/O the sync core needs, as small interfaces. Real implementations live in adapters/;
// in-memory ones serve unit tests.
import type { ContactFieldName } from './config/schema';
import type { DirectoryEntry } from './directory';
import type { CompiledFilter } from './filters';
import type { ContactFields } from './mapping';
import type { DesiredContact, ManagedContact } from './planner';

/** Raised when a delta token has expired (Graph: 400 syncStateNotFound, 410 Gone): read in full. */
export class DeltaExpiredError extends Error {}
/** Raised when the contact folder no longer exists (the user deleted it). */
export class FolderGoneError extends Error {}

/** A Graph failure with what an admin needs to look it up. */
export class GraphRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly requestId: string | undefined,
  ) {
    super(message);
  }
}

/** A group id the policy names that the directory does not have (404): `field` is its path in the policy. */
export class UnknownGroupError extends GraphRequestError {
  constructor(
    readonly field: string,
    readonly groupId: string,
    cause: GraphRequestError,
  ) {
    super(`${field}: no group ${groupId} in the directory`, cause.status, cause.code, cause.requestId);
  }
}

export type DirectoryChange =
  | { kind: DirectoryEntry['kind']; id: string; removed: true }
  | { kind: DirectoryEntry['kind']; id: string; removed: false; properties: Partial<DirectoryEntry> };

/** A source mailbox's contact folder, read through its contacts delta. */
export interface MailboxSourceReader {
  /**
   * One round of the folder's contacts delta; a full read when deltaLink is null. Each changed item
   * comes with its tag, so managed contacts (ours or another policy's) are never taken as source.
   */
  readSourceContacts(
    mailbox: string,
    folder: string | null,
    deltaLink: string | null,
  ): Promise<{ items: DriftItem[]; deltaLink: string }>;
}

/** A user's photo as Graph serves it. */
export interface Photo {
  contentType: string;
  bytes: Buffer;
}

export interface DirectoryReader {
  /**
   * One delta round: from `deltaLink`, or a full read when null, handing over each page's changes as
   * it arrives (a 50,000-user directory is never held twice). Throws DeltaExpiredError.
   */
  readDelta(
    kind: DirectoryEntry['kind'],
    deltaLink: string | null,
    onChanges: (changes: DirectoryChange[]) => void,
  ): Promise<{ deltaLink: string }>;
  /** Ids of every member of the group, nested membership included. */
  transitiveMemberIds(groupId: string): Promise<Set<string>>;
  /**
   * The users' photos: null for a user without one. A user whose photo could not be read (throttled,
   * failing) is left out of the answer and asked again next run.
   */
  readUserPhotos(userIds: readonly string[]): Promise<Map<string, Photo | null>>;
  /** Exchange's mailbox purpose per user ('none' without a mailbox); unanswered users are left out. */
  readMailboxPurposes(userIds: readonly string[]): Promise<Map<string, string>>;
  /** Graph's hideFromAddressLists per group (only GET /groups/{id} has it); unanswered left out. */
  readGroupsHidden(groupIds: readonly string[]): Promise<Map<string, boolean>>;
  /** How many users Graph finds for a compiled source filter (advanced queries as Graph requires). */
  countUsers?(compiled: CompiledFilter): Promise<number>;
}

/** Directory object ids Exchange hides from address lists, or marks NoContactSync (CustomAttribute1-15). */
export interface RecipientFlags {
  hidden: Set<string>;
  noContactSync: Set<string>;
}

/** Exchange Online's view of recipients: the hidden flag Graph does not show for users. */
export interface RecipientReader {
  readFlagged(): Promise<RecipientFlags>;
}

/** Exchange refused the app (no Exchange.ManageAsApp permission, or no Exchange role assigned). */
export class RecipientsNotPermittedError extends Error {}

/** Photo bytes by content hash, shared by the source refresh (writes) and mailbox workers (reads). */
export interface PhotoStore {
  put(hash: string, photo: Photo): Promise<void>;
  get(hash: string): Promise<Photo | undefined>;
}

export type FolderRef = { kind: 'default' } | { kind: 'named'; id: string };

export interface TaggedContact {
  contactId: string;
  changeKey: string;
  /** Our tag's value, or null for a contact without it (added by hand). */
  tag: string | null;
  fields: ContactFields;
  /** When Exchange created it (ISO 8601): of twins, the oldest is kept. */
  createdDateTime?: string;
  /** The folder it is in (a user may have moved it out of ours). */
  folderId?: string;
}

export interface DriftItem {
  contactId: string;
  removed: boolean;
  changeKey?: string;
  fields?: ContactFields;
  /** Source reads only: the contact's tag value (any policy's), null when it has none. */
  tag?: string | null;
}

export type WriteOp =
  /** Bodies are built when their batch is sent, so a large plan does not hold every body at once. */
  | { id: string; kind: 'create'; folder: FolderRef; body: () => Record<string, unknown> }
  /** ifMatch: the changeKey the write was planned against; another one answers `conflict`. */
  | { id: string; kind: 'update'; contactId: string; body: () => Record<string, unknown>; ifMatch?: string }
  | { id: string; kind: 'delete'; contactId: string; ifMatch?: string }
  /** Photo bytes are read when their batch is sent; `size` lets a batch stay under Graph's 4 MB. */
  | { id: string; kind: 'setPhoto'; contactId: string; size: number; photo: () => Promise<Photo> }
  | { id: string; kind: 'deletePhoto'; contactId: string };

export type WriteResult =
  | { id: string; outcome: 'ok'; contactId?: string; changeKey?: string; requestId?: string }
  | { id: string; outcome: 'notFound' }
  | { id: string; outcome: 'failed'; status: number; code: string; message: string; requestId?: string }
  /** The reply was lost: the write may or may not have happened. */
  | { id: string; outcome: 'unknown'; message: string }
  /** Not sent before the deadline. */
  | { id: string; outcome: 'notAttempted' }
  /** Changed by someone else since it was planned (If-Match failed: 412): re-plan it. */
  | { id: string; outcome: 'conflict' };

export interface WriteOptions {
  /** Stop starting new batches after this instant (epoch ms). */
  deadline?: number;
  /** Called after each batch with its results, before the next batch of that lane starts. */
  onResults?: (results: WriteResult[]) => Promise<void>;
  /** Called with a batch's writes just before it is sent (the intent log of its creates). */
  beforeBatch?: (ops: WriteOp[]) => Promise<void>;
}

/** One mailbox's page of a pre-read delta round: exactly one of `deltaLink` and `nextLink`. */
export interface PreReadPage {
  items: DriftItem[];
  deltaLink?: string;
  nextLink?: string;
  folderName?: string | null;
}

/** A contact read Graph refused (400: an id it will not take, 403): not retried in the pass, reported. */
export interface RefusedRead {
  contactId: string;
  status: number;
  code: string;
  message: string;
  requestId?: string;
}

export interface ContactLookUpOptions {
  deadline?: number;
  /** A refused read is left out of the answer (unsettled); this hears of it, to report it. */
  onRefused?: (read: RefusedRead) => void;
}

export interface MailboxGraph extends MailboxSourceReader {
  findFolder(mailboxId: string, name: string): Promise<string | undefined>;
  createFolder(mailboxId: string, name: string): Promise<string>;
  /** The folder's display name; undefined when it no longer exists. */
  folderName(mailboxId: string, folderId: string): Promise<string | undefined>;
  /**
   * Whether `contactFolders/{id}` finds the folder: false for a mail folder such as Deleted Items (Graph
   * answers 404 or 400 there), where a contact its user deleted in Outlook is kept.
   */
  isContactFolder(mailboxId: string, folderId: string): Promise<boolean>;
  /** Renames the folder; false when another folder already has that name (Graph: 409). */
  renameFolder(mailboxId: string, folderId: string, name: string): Promise<boolean>;
  /**
   * One round of the folder's contacts delta. With `onPage`, each page goes there and `items` comes
   * back empty (a large folder is never held whole). Throws FolderGoneError or DeltaExpiredError.
   */
  readDrift(
    mailboxId: string,
    folder: FolderRef,
    deltaLink: string | null,
    onPage?: (items: DriftItem[]) => void,
  ): Promise<{ items: DriftItem[]; deltaLink: string }>;
  /**
   * The first page (`pageSize` items at most) of the next delta round of many mailboxes' folders at
   * once ($batch, one sub-request per mailbox), for a run's start: with the round's new `deltaLink`,
   * or the `nextLink` the rest of a longer round is read from. A read that failed is left out.
   * With `folderId`, the folder's current name comes along (null: the folder is gone), so a pass
   * sees a renamed folder without a request of its own.
   */
  readDrifts(
    reads: readonly { mailboxId: string; deltaLink: string; folderId?: string }[],
    pageSize?: number,
  ): Promise<Map<string, PreReadPage>>;
  /** Every contact in the folder with our tag (if any). */
  listContacts(mailboxId: string, folder: FolderRef): Promise<TaggedContact[]>;
  /** Contacts in the folder carrying this tag value. */
  findByTag(mailboxId: string, folder: FolderRef, tag: string): Promise<TaggedContact[]>;
  getContact(mailboxId: string, contactId: string): Promise<TaggedContact | undefined>;
  /**
   * Contacts by id, in $batch reads (retried when throttled): null for one that is gone. An id whose
   * read failed (throttled), Graph refused (400, 403: `onRefused` hears of it, never retried here) or
   * was not sent before `deadline` is left out of the answer.
   */
  getContacts(
    mailboxId: string,
    contactIds: readonly string[],
    options?: ContactLookUpOptions,
  ): Promise<Map<string, TaggedContact | null>>;
  write(mailboxId: string, ops: WriteOp[], options?: WriteOptions): Promise<WriteResult[]>;
  /** Deletes a contact folder (cleanup of a folder we created, once empty); false when already gone. */
  deleteFolder(mailboxId: string, folderId: string): Promise<boolean>;
}

export interface FolderState {
  /** null for the default Contacts folder. */
  folderId: string | null;
  folderName: string | null;
  deltaLink: string | null;
  /** Contacts changed by someone else while we caught up the delta: checked on the next run. */
  dirtyContactIds: string[];
  /**
   * Too many to re-check one by one (or to store): the next pass lists the folder once and compares
   * every managed contact instead.
   */
  recheckAll?: boolean;
  /** We created the folder (not found by name): cleanup deletes it once it is empty. */
  created?: boolean;
  /**
   * When the folder's name was last read (ISO 8601): read again only past FOLDER_NAME_CHECK_HOURS,
   * as the delta read alone notices a deleted folder (folder-name-check.ts).
   */
  nameCheckedAt?: string;
  /** The `unmanagedContacts` option last carried out here (take-over): a changed option looks again. */
  takenOver?: 'adopt' | 'remove';
  /**
   * The take-over looks only at contacts Graph says were created up to this instant (ISO 8601): the
   * newest in the folder when the first take-over began. Contacts users add later are never touched.
   */
  takeOverBefore?: string;
  /**
   * Unmanaged contacts whose adopting PATCH Graph refused (400/403), with how often: at
   * adoptRefusalLimit the take-over leaves the contact and creates ours. Oldest first, at most
   * maxAdoptRefusals (take-over.ts); contacts no longer unmanaged in the folder are dropped.
   */
  adoptRefusals?: { contactId: string; refusals: number }[];
  /**
   * Folders this policy wrote into before its folder changed (folder.name edited, switched to or from
   * null, or a name already taken): our tagged contacts there are removed once the new folder is
   * filled, and a named folder left empty is deleted. Null stands for the default Contacts folder. At
   * most maxRetiredFolders (folder-parts.ts): a template leaves up to 200 per-value folders here.
   */
  retired?: (string | null)[];
  /**
   * Under a folder template, the policy's own row holds no contacts: it lists the per-value folders
   * by hash (each with its own state and folder row, folder-parts.ts): 16 characters each, so the
   * list of 200 at most (maxFolders old and new while a template changes) fits one property.
   */
  parts?: string[];
}

/** A create we are about to send: if the reply is lost, the tag finds it. */
export interface PendingContact {
  pending: true;
  hash: string;
  fields: ContactFields;
  /** Fields the user owns, carried from the folder it leaves (`fields` holds their values). */
  keep?: ContactFieldName[];
}

export type StoredContact = (ManagedContact & { pending?: false }) | PendingContact;

export interface MailboxState {
  folder: FolderState | null;
  contacts: Map<string, StoredContact>;
}

export interface MailboxStateStore {
  load(policyId: string, mailboxId: string): Promise<MailboxState>;
  /** The folder row alone (null before the first sync). */
  loadFolder(policyId: string, mailboxId: string): Promise<FolderState | null>;
  saveFolder(policyId: string, mailboxId: string, folder: FolderState): Promise<void>;
  /** Upserts and deletes contact rows (in entity-group transactions where the store has them). */
  apply(
    policyId: string,
    mailboxId: string,
    upserts: [string, StoredContact][],
    deletes: string[],
  ): Promise<void>;
  clear(policyId: string, mailboxId: string): Promise<void>;
  /** Mailbox ids holding state for the policy (cleanup, targets that left). */
  listMailboxes(policyId: string): Promise<string[]>;
}

export interface SourceRow {
  key: string;
  entry: DirectoryEntry;
  /** null when the entry is not part of the policy's source (the reason is kept). */
  desired: DesiredContact | null;
  exclusion: string | null;
}

export interface SourceMeta {
  userDeltaLink: string | null;
  orgContactDeltaLink: string | null;
  groupDeltaLink?: string | null;
  mailboxDeltaLink?: string | null;
  /** The mailbox source the token belongs to (`mailbox/folder`): another one is read in full. */
  mailboxSource?: string | null;
  refreshedAt: string;
}

export interface SourceStore {
  load(policyId: string): Promise<{ meta: SourceMeta | null; rows: Map<string, SourceRow> }>;
  save(policyId: string, upserts: SourceRow[], deletes: string[], meta: SourceMeta): Promise<void>;
  /**
   * The source objects of the policy with their desired contact (what mailbox workers read). Read
   * only: workers of one process may share one snapshot.
   */
  loadDesired(policyId: string): Promise<ReadonlyMap<string, DesiredContact>>;
  /**
   * The policy's selected source objects by e-mail address (a take-over's matching): read once per
   * snapshot and shared by the mailbox workers of one process, as loadDesired is. Without it (a
   * read-only store), every row is loaded.
   */
  loadAddresses?(policyId: string): Promise<SourceAddresses>;
}

/** The source objects by address: primary SMTP addresses, and every address (proxies included). */
export interface SourceAddresses {
  primary: ReadonlyMap<string, ReadonlySet<string>>;
  any: ReadonlyMap<string, ReadonlySet<string>>;
}

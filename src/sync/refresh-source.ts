// Refreshes a policy's source snapshot once per run (not per mailbox): the directory through delta
// queries (users always, for the targets; org contacts and mail-enabled groups on request), or a
// source mailbox's contact folder through its contacts delta. Changes merge into the stored snapshot;
// an expired token leads to a full read and a reconcile, losing nothing.
import { createHash } from 'node:crypto';
import { folderTemplateOf, type Policy } from './config/schema';
import {
  emptyEntry,
  needsMailboxPurpose,
  resolveTargets,
  sourceExclusion,
  sourceKeyOf,
  type DirectoryEntry,
  type TargetResolution,
} from './directory';
import { contentHash, mapEntry, canonical } from './mapping';
import { assignFolders, folderNameOfEntry, overflowNote } from './folder-template';
import type { DesiredContact } from './planner';
import {
  DeltaExpiredError,
  type DirectoryChange,
  type DirectoryReader,
  type MailboxSourceReader,
  type PhotoStore,
  GraphRequestError,
  RecipientsNotPermittedError,
  UnknownGroupError,
  type RecipientFlags,
  type RecipientReader,
  type SourceRow,
  type SourceStore,
} from './ports';

export interface RefreshOptions {
  /** Re-read the directory (or source folder) from scratch: stored entries and delta tokens are ignored. */
  fullRead?: boolean;
  /** Exchange Online, when the connection reads it: hidden flags and NoContactSync marks of recipients. */
  recipients?: RecipientReader;
}

/** Said in the run report and by doctor when hidden users are synced because nobody can tell them apart. */
export const hiddenUsersUnknown =
  'hidden users cannot be told apart: Graph returns showInAddressList null for users, so users hidden from address lists are synced; set exchangeAdmin on the connection (Exchange.ManageAsApp and the View-Only Recipients role) to leave them out';

export interface SourceRefresh {
  desired: Map<string, DesiredContact>;
  targets: TargetResolution;
  stats: {
    directoryObjects: number;
    inSource: number;
    changed: number;
    removed: number;
    fullRead: boolean;
    excluded: Record<string, number>;
    /** When the policy syncs photos: users looked at this run, photos new or changed, still to look at. */
    photos?: { checked: number; changed: number; tooLarge: number; unreadable: number; pending: number };
    /** When the policy sorts shared / room mailboxes by type: purposes looked up, unanswered, still to do. */
    mailboxTypes?: { checked: number; unreadable: number; pending: number };
    /** What the admin should know about this source (hidden users that cannot be told apart, ...). */
    notes: string[];
  };
}

/** Largest photo we copy: it must fit, base64-encoded, in a $batch under Graph's 4 MB request limit. */
export const maxPhotoBytes = 2_500_000;
/** Per-user look-ups (photos, mailbox types) per run, so a first run over a large directory stays short. */
export const maxPhotoChecksPerRun = 5_000;
/** Users looked up at once (4 batches of 20). */
const photoChunk = 80;

export const photoHash = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

type Kind = DirectoryEntry['kind'];

/** One delta round; when the token has expired, a full read instead (full = true). */
async function readRound<T>(
  deltaLink: string | null,
  read: (link: string | null) => Promise<T>,
): Promise<T & { full: boolean }> {
  if (deltaLink) {
    try {
      return { ...(await read(deltaLink)), full: false };
    } catch (e) {
      if (!(e instanceof DeltaExpiredError)) throw e;
    }
  }
  return { ...(await read(null)), full: true };
}

export async function refreshSource(
  policy: Policy,
  reader: DirectoryReader,
  store: SourceStore,
  now: Date,
  mailboxReader?: MailboxSourceReader,
  photoStore?: PhotoStore,
  options: RefreshOptions = {},
): Promise<SourceRefresh> {
  const source = policy.source;
  const directory = source.type === 'directory' ? source : null;
  const { meta: stored, rows } = await store.load(policy.id);
  // A full read starts from nothing: every delta token and entry is read again (rows stay, to diff).
  const meta = options.fullRead ? null : stored;
  const entries = new Map<string, DirectoryEntry>(
    options.fullRead ? [] : [...rows.values()].map((r) => [r.key, r.entry]),
  );
  const notes: string[] = [];
  let fullRead = false;
  let removed = 0;
  /** Entries the delta reported changed this run. */
  const touched = new Set<string>();

  const drop = (kind: Kind): void => {
    for (const key of [...entries.keys()]) if (key.startsWith(`${kind}:`)) entries.delete(key);
  };
  /** Merges one page of changes; `seen` collects the keys a full read returned. */
  const apply = (kind: Kind, changes: DirectoryChange[], seen: Set<string>): void => {
    for (const c of changes) {
      const key = sourceKeyOf(c);
      if (c.removed) {
        if (entries.delete(key)) removed++;
        continue;
      }
      seen.add(key);
      touched.add(key);
      // Look-ups that are not directory data (photo, mailbox type) survive a full read.
      const old = rows.get(key)?.entry;
      const base =
        entries.get(key) ??
        (old && options.fullRead
          ? {
              ...emptyEntry(kind, c.id),
              ...(old.photo ? { photo: old.photo } : {}),
              ...(old.mailboxPurpose !== undefined ? { mailboxPurpose: old.mailboxPurpose } : {}),
            }
          : emptyEntry(kind, c.id));
      entries.set(key, {
        ...base,
        ...c.properties,
        kind,
        id: c.id,
        extensionAttributes: { ...base.extensionAttributes, ...(c.properties.extensionAttributes ?? {}) },
      });
    }
  };
  const finishRound = (kind: Kind, full: boolean, seen: ReadonlySet<string>): void => {
    if (full) {
      fullRead = true;
      // A full read is the whole truth: what it did not return is gone.
      for (const key of [...entries.keys()]) {
        if (key.startsWith(`${kind}:`) && !seen.has(key)) {
          entries.delete(key);
          removed++;
        }
      }
    }
  };
  const directoryKind = async (
    kind: 'user' | 'orgContact' | 'group',
    wanted: boolean,
    link: string | null | undefined,
  ): Promise<string | null> => {
    if (!wanted) {
      drop(kind);
      return null;
    }
    let seen = new Set<string>();
    const round = await readRound(link ?? null, (l) => {
      seen = new Set<string>(); // a full read after an expired token starts over
      return reader.readDelta(kind, l, (page) => apply(kind, page, seen));
    });
    finishRound(kind, round.full, seen);
    return round.deltaLink;
  };

  // Users are read for every policy: the targets are users.
  const userDeltaLink = await directoryKind('user', true, meta?.userDeltaLink);
  const orgContactDeltaLink = await directoryKind(
    'orgContact',
    Boolean(directory?.includeOrgContacts),
    meta?.orgContactDeltaLink,
  );
  const groupDeltaLink = await directoryKind(
    'group',
    Boolean(directory?.includeDistributionLists),
    meta?.groupDeltaLink,
  );

  let mailboxDeltaLink: string | null = null;
  let mailboxSource: string | null = null;
  if (source.type === 'mailbox') {
    if (!mailboxReader) throw new Error(`policy ${policy.id}: a mailbox source needs a mailbox reader`);
    // The stored token reads the mailbox and folder it was taken from: after a policy edit, another
    // source is read in full (its first round replaces every entry of the old one).
    mailboxSource = `${source.mailbox.toLowerCase()}/${source.folder ?? ''}`;
    const link = meta?.mailboxSource === mailboxSource ? (meta.mailboxDeltaLink ?? null) : null;
    const round = await readRound(link, (l) =>
      mailboxReader.readSourceContacts(source.mailbox, source.folder, l),
    );
    // A managed contact (any policy's tag) is never a source object: it was made from one.
    const changes: DirectoryChange[] = round.items.map((i) =>
      i.removed || i.tag
        ? { kind: 'mailboxContact', id: i.contactId, removed: true }
        : {
            kind: 'mailboxContact',
            id: i.contactId,
            removed: false,
            properties: { contact: i.fields ?? {}, displayName: i.fields?.displayName ?? null },
          },
    );
    // A changed contact arrives whole: replace, do not merge.
    for (const c of changes) if (!c.removed) entries.delete(sourceKeyOf(c));
    const seen = new Set<string>();
    apply('mailboxContact', changes, seen);
    finishRound('mailboxContact', round.full, seen);
    mailboxDeltaLink = round.deltaLink;
  } else {
    drop('mailboxContact');
  }

  // Group membership, read once per group per run (nested membership counts).
  const memberCache = new Map<string, Set<string>>();
  const membersOf = async (ids: readonly string[], field: string): Promise<Set<string> | null> => {
    if (ids.length === 0) return null;
    const all = new Set<string>();
    for (const [i, id] of ids.entries()) {
      let m = memberCache.get(id);
      if (!m) {
        m = await reader.transitiveMemberIds(id).catch((e: unknown) => {
          // A mistyped or deleted group: name the field, not just Graph's "Request_ResourceNotFound".
          throw e instanceof GraphRequestError && e.status === 404
            ? new UnknownGroupError(`${field}[${i}]`, id, e)
            : e;
        });
        memberCache.set(id, m);
      }
      m.forEach((x) => all.add(x));
    }
    return all;
  };
  const sourceGroups = {
    include: directory ? await membersOf(directory.includeGroups, 'source.includeGroups') : null,
    exclude:
      (directory ? await membersOf(directory.excludeGroups, 'source.excludeGroups') : null) ??
      new Set<string>(),
  };
  const targetGroups = {
    include: await membersOf(policy.targets.groups, 'targets.groups'),
    exclude: (await membersOf(policy.targets.excludeGroups, 'targets.excludeGroups')) ?? new Set<string>(),
  };

  const typeStats =
    directory && needsMailboxPurpose(directory)
      ? await refreshMailboxPurposes(entries, touched, reader)
      : undefined;
  if (directory) {
    if (directory.includeDistributionLists && !directory.includeHidden)
      await refreshGroupsHidden(entries, touched, reader);
    const flags = await readRecipientFlags(options.recipients, notes);
    if (flags)
      for (const [key, e] of entries)
        if (e.kind !== 'mailboxContact')
          entries.set(key, {
            ...e,
            hiddenInExchange: flags.hidden.has(e.id),
            markedInExchange: flags.noContactSync.has(e.id),
          });
    if (directory.includeUsers && !directory.includeHidden && !flags) notes.push(hiddenUsersUnknown);
  }

  const exclusions = new Map<string, string | null>();
  for (const [key, entry] of entries)
    exclusions.set(
      key,
      (directory
        ? sourceExclusion(entry, directory, sourceGroups)
        : entry.kind === 'mailboxContact'
          ? undefined
          : 'kindNotIncluded') ?? null,
    );
  const photoStats = policy.photos.enabled
    ? await refreshPhotos(policy, entries, exclusions, reader, photoStore, now)
    : undefined;

  const desired = new Map<string, DesiredContact>();
  const upserts: SourceRow[] = [];
  const excluded: Record<string, number> = {};
  for (const [key, entry] of entries) {
    const exclusion = exclusions.get(key) ?? null;
    let want: DesiredContact | null = null;
    if (exclusion === null) {
      const manager = entry.managerId ? entries.get(`user:${entry.managerId}`) : undefined;
      const fields = mapEntry(entry, policy.mapping, manager?.displayName ?? undefined);
      want = { fields, hash: contentHash(fields) };
      const folder = folderNameOfEntry(policy.folder, entry);
      if (folder !== undefined) want.folder = folder;
      // Not looked at yet: leave the contact's photo as it is until we know.
      if (policy.photos.enabled && entry.kind === 'user' && entry.photo) {
        want.photo = entry.photo.hash;
        if (entry.photo.size !== undefined) want.photoSize = entry.photo.size;
      }
      desired.set(key, want);
    } else if (exclusion !== 'kindNotIncluded' || source.type === 'directory') {
      excluded[exclusion] = (excluded[exclusion] ?? 0) + 1;
    }
    const old = rows.get(key);
    if (
      !old ||
      old.exclusion !== exclusion ||
      old.desired?.hash !== want?.hash ||
      old.desired?.photo !== want?.photo ||
      old.desired?.folder !== want?.folder ||
      canonical(old.entry) !== canonical(entry)
    ) {
      upserts.push({ key, entry, desired: want, exclusion });
    }
  }
  const deletes = [...rows.keys()].filter((k) => !entries.has(k));
  const overflow = folderTemplateOf(policy.folder.name)
    ? overflowNote(policy.folder, assignFolders(policy.folder, desired))
    : undefined;
  if (overflow) notes.push(overflow);
  await store.save(policy.id, upserts, deletes, {
    userDeltaLink,
    orgContactDeltaLink,
    groupDeltaLink,
    mailboxDeltaLink,
    mailboxSource,
    refreshedAt: now.toISOString(),
  });

  return {
    desired,
    targets: resolveTargets(entries.values(), policy.targets, targetGroups),
    stats: {
      directoryObjects: entries.size,
      inSource: desired.size,
      changed: upserts.length,
      removed,
      fullRead,
      excluded,
      ...(photoStats ? { photos: photoStats } : {}),
      ...(typeStats ? { mailboxTypes: typeStats } : {}),
      notes,
    },
  };
}

/**
 * Exchange's hidden flags and marks, or undefined when the connection does not read Exchange or
 * Exchange refused (said in `notes`); a transient failure fails the refresh (the queue retries).
 */
async function readRecipientFlags(
  recipients: RecipientReader | undefined,
  notes: string[],
): Promise<RecipientFlags | undefined> {
  if (!recipients) return undefined;
  try {
    return await recipients.readFlagged();
  } catch (e) {
    if (!(e instanceof RecipientsNotPermittedError)) throw e;
    notes.push(`Exchange Online refused to list hidden recipients: ${e.message}`);
    return undefined;
  }
}

/**
 * Graph's hideFromAddressLists of mail-enabled groups not looked at yet or changed this run (Graph
 * shows it only on GET /groups/{id}, 20 to a $batch). Stored as the group's showInAddressList.
 */
async function refreshGroupsHidden(
  entries: Map<string, DirectoryEntry>,
  touched: ReadonlySet<string>,
  reader: DirectoryReader,
): Promise<void> {
  const due = [...entries]
    .filter(([key, e]) => e.kind === 'group' && (e.showInAddressList === null || touched.has(key)))
    .map(([key]) => key);
  await lookUpUsers(
    due,
    entries,
    (ids) => reader.readGroupsHidden(ids),
    (key, entry, hide) => {
      if (hide !== undefined) entries.set(key, { ...entry, showInAddressList: !hide });
    },
  );
}

/**
 * Looks up the mailbox purpose (Exchange's user / shared / room / equipment) of users not known yet,
 * and again of users the delta reported changed (a leaver's mailbox is often converted to shared).
 * Disabled accounts first: shared and room mailboxes usually are.
 */
async function refreshMailboxPurposes(
  entries: Map<string, DirectoryEntry>,
  touched: ReadonlySet<string>,
  reader: DirectoryReader,
): Promise<NonNullable<SourceRefresh['stats']['mailboxTypes']>> {
  const due: string[] = [];
  for (const [key, e] of entries) {
    if (e.kind !== 'user' || !e.mail || (e.userType !== null && e.userType !== 'Member')) continue;
    if (e.mailboxPurpose === undefined || touched.has(key)) due.push(key);
  }
  due.sort(
    (a, b) =>
      Number(entries.get(b)!.accountEnabled === false) - Number(entries.get(a)!.accountEnabled === false),
  );
  const stats = { checked: 0, unreadable: 0, pending: 0 };
  stats.pending = await lookUpUsers(
    due,
    entries,
    (ids) => reader.readMailboxPurposes(ids),
    (key, entry, purpose) => {
      if (purpose === undefined) stats.unreadable++;
      else {
        stats.checked++;
        entries.set(key, { ...entry, mailboxPurpose: purpose });
      }
    },
  );
  return stats;
}

/**
 * Looks at the photos of users in the source that are new to us or due again (Graph gives no change
 * signal for photos), stores each photo by its hash, and notes the hash on the entry. A user without
 * a photo costs one look-up per recheck period, never one per run or per mailbox.
 */
async function refreshPhotos(
  policy: Policy,
  entries: Map<string, DirectoryEntry>,
  exclusions: ReadonlyMap<string, string | null>,
  reader: DirectoryReader,
  store: PhotoStore | undefined,
  now: Date,
): Promise<NonNullable<SourceRefresh['stats']['photos']>> {
  if (!store)
    throw new Error(
      `policy ${policy.id}: photos.enabled needs a photo store (blob storage: set AzureWebJobsStorage__blobServiceUri)`,
    );
  const dueBefore = now.getTime() - policy.photos.recheckHours * 3_600_000;
  const due: string[] = [];
  for (const [key, e] of entries) {
    if (e.kind !== 'user' || exclusions.get(key) !== null) continue;
    if (!e.photo || Date.parse(e.photo.checkedAt) <= dueBefore) due.push(key);
  }
  // Never looked at first, then the longest unchecked.
  due.sort(
    (a, b) =>
      (entries.get(a)!.photo ? Date.parse(entries.get(a)!.photo!.checkedAt) : 0) -
      (entries.get(b)!.photo ? Date.parse(entries.get(b)!.photo!.checkedAt) : 0),
  );
  const checkedAt = now.toISOString();
  const stats = { checked: 0, changed: 0, tooLarge: 0, unreadable: 0, pending: 0 };
  stats.pending = await lookUpUsers(
    due,
    entries,
    (ids) => reader.readUserPhotos(ids),
    async (key, entry, photo) => {
      if (photo === undefined) {
        stats.unreadable++;
        return;
      }
      stats.checked++;
      let next: NonNullable<DirectoryEntry['photo']>;
      if (photo === null) next = { hash: null, checkedAt };
      else if (photo.bytes.length > maxPhotoBytes) {
        stats.tooLarge++;
        next = { hash: null, checkedAt, tooLarge: true };
      } else {
        const hash = photoHash(photo.bytes);
        // Stored on every look (content-addressed, so idempotent): a lost blob heals itself.
        await store.put(hash, photo);
        next = { hash, checkedAt, size: photo.bytes.length };
      }
      if ((entry.photo?.hash ?? null) !== next.hash) stats.changed++;
      entries.set(key, { ...entry, photo: next });
    },
  );
  return stats;
}

/**
 * Per-user look-ups (photos, mailbox types) for the users due, at most maxPhotoChecksPerRun a run,
 * a chunk at a time; each answer (undefined: unanswered) goes to `onAnswer`. Returns how many wait.
 */
async function lookUpUsers<T>(
  due: readonly string[],
  entries: ReadonlyMap<string, DirectoryEntry>,
  read: (userIds: string[]) => Promise<Map<string, T>>,
  onAnswer: (key: string, entry: DirectoryEntry, answer: T | undefined) => void | Promise<void>,
): Promise<number> {
  const batch = due.slice(0, maxPhotoChecksPerRun);
  for (let i = 0; i < batch.length; i += photoChunk) {
    const keys = batch.slice(i, i + photoChunk);
    const answers = await read(keys.map((k) => entries.get(k)!.id));
    for (const key of keys) {
      const entry = entries.get(key)!;
      await onAnswer(key, entry, answers.get(entry.id));
    }
  }
  return due.length - batch.length;
}

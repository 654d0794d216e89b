// Refreshes a policy's source snapshot once per run (not per mailbox): the directory through delta
// queries (users always, for the targets; org contacts and mail-enabled groups on request), or a
// source mailbox's contact folder through its contacts delta. Changes merge into the stored snapshot;
// an expired token leads to a full read and a reconcile, losing nothing.
import type { Policy } from './config/schema';
import {
  emptyEntry,
  resolveTargets,
  sourceExclusion,
  sourceKeyOf,
  type DirectoryEntry,
  type TargetResolution,
} from './directory';
import { contentHash, mapEntry, canonical } from './mapping';
import type { DesiredContact } from './planner';
import {
  DeltaExpiredError,
  type DirectoryChange,
  type DirectoryReader,
  type MailboxSourceReader,
  type SourceRow,
  type SourceStore,
} from './ports';

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
  };
}

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
): Promise<SourceRefresh> {
  const source = policy.source;
  const directory = source.type === 'directory' ? source : null;
  const { meta, rows } = await store.load(policy.id);
  const entries = new Map<string, DirectoryEntry>([...rows.values()].map((r) => [r.key, r.entry]));
  let fullRead = false;
  let removed = 0;

  const drop = (kind: Kind): void => {
    for (const key of [...entries.keys()]) if (key.startsWith(`${kind}:`)) entries.delete(key);
  };
  const apply = (kind: Kind, changes: DirectoryChange[], full: boolean): void => {
    const seen = new Set<string>();
    for (const c of changes) {
      const key = sourceKeyOf(c);
      if (c.removed) {
        if (entries.delete(key)) removed++;
        continue;
      }
      seen.add(key);
      const base = entries.get(key) ?? emptyEntry(kind, c.id);
      entries.set(key, {
        ...base,
        ...c.properties,
        kind,
        id: c.id,
        extensionAttributes: { ...base.extensionAttributes, ...(c.properties.extensionAttributes ?? {}) },
      });
    }
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
    const round = await readRound(link ?? null, (l) => reader.readDelta(kind, l));
    apply(kind, round.changes, round.full);
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
  if (source.type === 'mailbox') {
    if (!mailboxReader) throw new Error(`policy ${policy.id}: a mailbox source needs a mailbox reader`);
    const round = await readRound(meta?.mailboxDeltaLink ?? null, (l) =>
      mailboxReader.readSourceContacts(source.mailbox, source.folder, l),
    );
    const changes: DirectoryChange[] = round.items.map((i) =>
      i.removed
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
    apply('mailboxContact', changes, round.full);
    mailboxDeltaLink = round.deltaLink;
  } else {
    drop('mailboxContact');
  }

  // Group membership, read once per group per run (nested membership counts).
  const memberCache = new Map<string, Set<string>>();
  const membersOf = async (ids: readonly string[]): Promise<Set<string> | null> => {
    if (ids.length === 0) return null;
    const all = new Set<string>();
    for (const id of ids) {
      let m = memberCache.get(id);
      if (!m) {
        m = await reader.transitiveMemberIds(id);
        memberCache.set(id, m);
      }
      m.forEach((x) => all.add(x));
    }
    return all;
  };
  const sourceGroups = {
    include: directory ? await membersOf(directory.includeGroups) : null,
    exclude: (directory ? await membersOf(directory.excludeGroups) : null) ?? new Set<string>(),
  };
  const targetGroups = {
    include: await membersOf(policy.targets.groups),
    exclude: (await membersOf(policy.targets.excludeGroups)) ?? new Set<string>(),
  };

  const desired = new Map<string, DesiredContact>();
  const upserts: SourceRow[] = [];
  const excluded: Record<string, number> = {};
  for (const [key, entry] of entries) {
    const exclusion =
      (directory
        ? sourceExclusion(entry, directory, sourceGroups)
        : entry.kind === 'mailboxContact'
          ? undefined
          : 'kindNotIncluded') ?? null;
    let want: DesiredContact | null = null;
    if (exclusion === null) {
      const manager = entry.managerId ? entries.get(`user:${entry.managerId}`) : undefined;
      const fields = mapEntry(entry, policy.mapping, manager?.displayName ?? undefined);
      want = { fields, hash: contentHash(fields) };
      desired.set(key, want);
    } else if (exclusion !== 'kindNotIncluded' || source.type === 'directory') {
      excluded[exclusion] = (excluded[exclusion] ?? 0) + 1;
    }
    const old = rows.get(key);
    if (
      !old ||
      old.exclusion !== exclusion ||
      old.desired?.hash !== want?.hash ||
      canonical(old.entry) !== canonical(entry)
    ) {
      upserts.push({ key, entry, desired: want, exclusion });
    }
  }
  const deletes = [...rows.keys()].filter((k) => !entries.has(k));
  await store.save(policy.id, upserts, deletes, {
    userDeltaLink,
    orgContactDeltaLink,
    groupDeltaLink,
    mailboxDeltaLink,
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
    },
  };
}

// Refreshes a policy's source snapshot: one directory delta round per run (not per mailbox), merged
// into the stored snapshot; an expired token leads to a full read and a reconcile, losing nothing.
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

async function readKind(
  reader: DirectoryReader,
  kind: DirectoryEntry['kind'],
  deltaLink: string | null,
): Promise<{ changes: DirectoryChange[]; deltaLink: string; full: boolean }> {
  if (deltaLink) {
    try {
      return { ...(await reader.readDelta(kind, deltaLink)), full: false };
    } catch (e) {
      if (!(e instanceof DeltaExpiredError)) throw e;
    }
  }
  return { ...(await reader.readDelta(kind, null)), full: true };
}

export async function refreshSource(
  policy: Policy,
  reader: DirectoryReader,
  store: SourceStore,
  now: Date,
): Promise<SourceRefresh> {
  const source = policy.source;
  const { meta, rows } = await store.load(policy.id);
  const entries = new Map<string, DirectoryEntry>([...rows.values()].map((r) => [r.key, r.entry]));
  let fullRead = false;
  let removed = 0;

  const apply = (
    kind: DirectoryEntry['kind'],
    result: { changes: DirectoryChange[]; full: boolean },
  ): void => {
    const seen = new Set<string>();
    for (const c of result.changes) {
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
    if (result.full) {
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

  const users = await readKind(reader, 'user', meta?.userDeltaLink ?? null);
  apply('user', users);
  let orgContactDeltaLink = meta?.orgContactDeltaLink ?? null;
  if (source.includeOrgContacts) {
    const contacts = await readKind(reader, 'orgContact', orgContactDeltaLink);
    apply('orgContact', contacts);
    orgContactDeltaLink = contacts.deltaLink;
  } else {
    for (const key of [...entries.keys()]) if (key.startsWith('orgContact:')) entries.delete(key);
    orgContactDeltaLink = null;
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
    include: await membersOf(source.includeGroups),
    exclude: (await membersOf(source.excludeGroups)) ?? new Set<string>(),
  };
  const targetGroups = {
    include: await membersOf(policy.targets.groups),
    exclude: (await membersOf(policy.targets.excludeGroups)) ?? new Set<string>(),
  };

  const desired = new Map<string, DesiredContact>();
  const upserts: SourceRow[] = [];
  const excluded: Record<string, number> = {};
  for (const [key, entry] of entries) {
    const exclusion = sourceExclusion(entry, source, sourceGroups) ?? null;
    let want: DesiredContact | null = null;
    if (exclusion === null) {
      const manager = entry.managerId ? entries.get(`user:${entry.managerId}`) : undefined;
      const fields = mapEntry(entry, policy.mapping, manager?.displayName ?? undefined);
      want = { fields, hash: contentHash(fields) };
      desired.set(key, want);
    } else {
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
    userDeltaLink: users.deltaLink,
    orgContactDeltaLink,
    refreshedAt: now.toISOString(),
  });

  return {
    desired,
    targets: resolveTargets(entries.values(), policy.targets, targetGroups),
    stats: {
      directoryObjects: entries.size,
      inSource: desired.size,
      changed: upserts.length,
      removed: removed + deletes.filter((k) => !rows.has(k)).length,
      fullRead,
      excluded,
    },
  };
}

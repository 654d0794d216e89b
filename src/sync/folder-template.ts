// A folder per value: `folder.name` as a template over one field ("Partners – {companyName}"). Each
// source object's folder name is worked out when the source is refreshed; which names get a folder
// of their own (at most `maxFolders`, the most populated first) is decided per run from the whole
// source, so every mailbox gets the same folders.
import { createHash } from 'node:crypto';
import { folderTemplateOf, type Policy } from './config/schema';
import { attributeValue, type DirectoryEntry } from './directory';
import { mailDomainOf } from './filters';
import type { DesiredContact } from './planner';

/** Exchange keeps a folder name to 255 characters (the policy file's limit on folder.name too). */
export const maxFolderNameChars = 255;

/**
 * Characters Outlook refuses in the names of folders it shows as address books (Microsoft's
 * PidTagContactAddressBookFolderName: `[ ] / \ & ~ ? * | < > " ; : +`), control characters, and
 * braces: each run of them in a value becomes one `-`.
 */
// eslint-disable-next-line no-control-regex -- control characters are what folder names refuse
const refused = /[[\]/\\&~?*|<>";:+{}\u0000-\u001f\u007f-\u009f]+/g;

function cleanValue(raw: string | null): string {
  return (raw ?? '')
    .replace(refused, '-')
    .replace(/\s+/g, ' ')
    .replace(/^[\s-]+|[\s-]+$/g, '');
}

/** The folder name for one value (empty: the policy's emptyValue), cut to Exchange's length. */
export function folderNameFor(folder: Policy['folder'], raw: string | null): string | undefined {
  const t = folderTemplateOf(folder.name);
  if (!t) return undefined;
  const value = cleanValue(raw) || folder.emptyValue;
  const room = maxFolderNameChars - t.before.length - t.after.length;
  // Cut by code points, so no surrogate pair is split.
  const cut = [...value].length > room ? [...value].slice(0, room).join('').trimEnd() : value;
  return `${t.before}${cut}${t.after}`;
}

/** A directory object's folder name under the policy's template; undefined for a plain name. */
export function folderNameOfEntry(folder: Policy['folder'], e: DirectoryEntry): string | undefined {
  const t = folderTemplateOf(folder.name);
  if (!t) return undefined;
  const raw = t.field === 'mailDomain' ? mailDomainOf(e.mail) : attributeValue(e, t.field);
  return folderNameFor(folder, raw);
}

/** Exchange compares folder names without case: "ACME" and "Acme" are one folder. */
export const folderKey = (name: string): string => name.normalize('NFC').toLowerCase();

/** A per-value folder's short id: a hash of its key (what the policy's row lists, 16 characters). */
export const partHash = (name: string): string =>
  createHash('sha256').update(folderKey(name)).digest('base64url').slice(0, 16);

/** The state id of one per-value folder: the policy's id, `#`, and the folder's hash. */
export const partStateIdOf = (policyId: string, hash: string): string => `${policyId}#${hash}`;
export const partStateId = (policyId: string, name: string): string =>
  partStateIdOf(policyId, partHash(name));

export interface FolderGroup {
  name: string;
  desired: Map<string, DesiredContact>;
}

export interface FolderAssignment {
  /** By folder key. */
  groups: Map<string, FolderGroup>;
  /** Folder key of each source key. */
  keyOf: Map<string, string>;
  /** Values past maxFolders, put in the emptyValue folder. */
  overflow: number;
  /** The emptyValue folder's name. */
  fallback: string;
}

/**
 * Groups the desired contacts by folder. Names differing only in case share a folder (named by the
 * first in code-point order); past `maxFolders`, the least populated go to the emptyValue folder.
 */
export function assignFolders(
  folder: Policy['folder'],
  desired: ReadonlyMap<string, DesiredContact>,
): FolderAssignment {
  const fallback = folderNameFor(folder, null)!;
  const byKey = new Map<string, { names: Set<string>; keys: string[] }>();
  for (const [k, want] of desired) {
    const name = want.folder ?? fallback;
    const fk = folderKey(name);
    let g = byKey.get(fk);
    if (!g) byKey.set(fk, (g = { names: new Set(), keys: [] }));
    g.names.add(name);
    g.keys.push(k);
  }
  const fallbackKey = folderKey(fallback);
  const ranked = [...byKey.entries()]
    .filter(([fk]) => fk !== fallbackKey)
    .sort(([ka, a], [kb, b]) => b.keys.length - a.keys.length || (ka < kb ? -1 : ka > kb ? 1 : 0));
  // The emptyValue folder takes a place only when it is used.
  const places =
    byKey.has(fallbackKey) || ranked.length > folder.maxFolders ? folder.maxFolders - 1 : ranked.length;
  const own = new Set(ranked.slice(0, places).map(([fk]) => fk));
  const overflow = ranked.length - own.size;
  const groups = new Map<string, FolderGroup>();
  const keyOf = new Map<string, string>();
  for (const [fk, g] of byKey) {
    const target = own.has(fk) ? fk : fallbackKey;
    let group = groups.get(target);
    if (!group) {
      const name = target === fk ? [...g.names].sort()[0]! : fallback;
      groups.set(target, (group = { name, desired: new Map() }));
    }
    for (const k of g.keys) {
      group.desired.set(k, desired.get(k)!);
      keyOf.set(k, target);
    }
  }
  return { groups, keyOf, overflow, fallback };
}

/** The run's note when the template has more values than folders. */
export function overflowNote(folder: Policy['folder'], a: FolderAssignment): string | undefined {
  if (a.overflow === 0) return undefined;
  return `folder.name: ${a.overflow} values past maxFolders (${folder.maxFolders}) share the folder "${a.fallback}" with contacts without a value; raise maxFolders (at most 100) or pick a field with fewer values`;
}

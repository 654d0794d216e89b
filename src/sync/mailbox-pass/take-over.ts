// Step 3b: taking over a folder another tool filled (options.unmanagedContacts). Contacts without any
// tag are matched to source objects by e-mail address (the source's primary SMTP address first, then
// any of its proxy addresses; never by display name); `adopt` tags each match so it becomes ours and
// the plan brings it in line, `remove` does that and deletes the contacts that match nothing: only in
// a folder of the policy's own (never the default Contacts folder) and within the deletion threshold.
import type { DirectoryEntry } from '../directory';
import type { ManagedContact } from '../planner';
import type { FolderRef, SourceAddresses, SourceRow, TaggedContact, WriteOp, WriteResult } from '../ports';
import { parseTag, tagPropertyId, tagValue } from '../tag';
import { MapWithout } from './map-without';
import type { MailboxPass } from './pass';

export type TakeOverAction = 'adopt' | 'remove' | 'leave';

/** One unmanaged contact and what the take-over does (or, in a dry run, would do) with it. */
export interface TakeOverItem {
  action: TakeOverAction;
  name: string;
  address: string;
  /** Why it is left or removed: no source object has its address, a second match, ... */
  reason: 'matched' | 'noMatch' | 'duplicate' | 'defaultFolder' | 'threshold' | 'adoptFailed';
}

export interface TakeOverSummary {
  adopted: number;
  removed: number;
  left: number;
  /**
   * Matches Graph refused to let us tag `adoptRefusalLimit` times (400/403): left unmanaged (never
   * removed), ours created beside them. Absent when none.
   */
  adoptFailed?: number;
  /** Removals the deletion threshold held back (run --force / a full resync applies them). */
  heldBack?: { wanted: number; limit: number };
  /** The first `maxTakeOverItems` contacts and their fate (a dry run's list per mailbox). */
  items: TakeOverItem[];
}

/** Items kept per mailbox (the outcome is stored in one Table property); the counts are complete. */
export const maxTakeOverItems = 25;

/** Refusals of the tagging PATCH after which a match is left as it is and ours is created beside. */
export const adoptRefusalLimit = 3;

/** Contacts whose refusals a folder keeps (~180 characters each, one Table property of 32K). */
export const maxAdoptRefusals = 100;

/** Graph's answers that sending the same PATCH again will not change (not throttling, not an outage). */
const refusedForGood = (status: number): boolean => [400, 403, 405, 422].includes(status);

export type { SourceAddresses } from '../ports';

const add = (m: Map<string, Set<string>>, address: string | null | undefined, key: string): void => {
  const a = address?.trim().toLowerCase();
  if (!a) return;
  const keys = m.get(a) ?? new Set<string>();
  keys.add(key);
  m.set(a, keys);
};

/** The addresses of one directory entry: its mail (primary) and its SMTP proxy addresses. */
function entryAddresses(e: DirectoryEntry): { primary: string | null; all: string[] } {
  if (e.kind === 'mailboxContact') {
    const all = (e.contact?.emailAddresses ?? []).map((x) => x.address);
    return { primary: all[0] ?? null, all };
  }
  const proxies = e.proxyAddresses
    .map((p) => /^smtp:(.+)$/i.exec(p.trim())?.[1])
    .filter((x): x is string => x !== undefined);
  return { primary: e.mail, all: [...(e.mail ? [e.mail] : []), ...proxies] };
}

/** The index from the stored source rows (every proxy address), for the policy's selected objects. */
export function addressesOfRows(rows: Iterable<SourceRow>): SourceAddresses {
  const primary = new Map<string, Set<string>>();
  const any = new Map<string, Set<string>>();
  for (const r of rows) {
    if (!r.desired) continue;
    const a = entryAddresses(r.entry);
    add(primary, a.primary, r.key);
    for (const x of a.all) add(any, x, r.key);
  }
  return { primary, any };
}

/** Without the source rows: the addresses the desired contacts carry (primary first, then proxies). */
export function addressesOfDesired(pass: MailboxPass): SourceAddresses {
  const primary = new Map<string, Set<string>>();
  const any = new Map<string, Set<string>>();
  for (const [key, d] of pass.desired) {
    const list = d.fields.emailAddresses ?? [];
    add(primary, list[0]?.address, key);
    for (const x of list) add(any, x.address, key);
  }
  return { primary, any };
}

/** The one source object an unmanaged contact stands for, or undefined (none, or ambiguous). */
export function matchContact(c: TaggedContact, index: SourceAddresses): string | undefined {
  const addresses = (c.fields.emailAddresses ?? []).map((x) => x.address.trim().toLowerCase());
  for (const byAddress of [index.primary, index.any]) {
    const keys = new Set<string>();
    for (const a of addresses) for (const k of byAddress.get(a) ?? []) keys.add(k);
    if (keys.size === 1) return [...keys][0];
    if (keys.size > 1) return undefined; // two source objects claim it: never guess
  }
  return undefined;
}

interface Decision {
  contact: TaggedContact;
  item: TakeOverItem;
  key?: string;
}

const oldestFirst = (a: TaggedContact, b: TaggedContact): number =>
  (a.createdDateTime ?? '\uffff').localeCompare(b.createdDateTime ?? '\uffff') ||
  a.contactId.localeCompare(b.contactId);

/**
 * What to do with each unmanaged contact (pure): a match is adopted unless a contact of ours (or an
 * older match) already stands for that source object; the rest are removed or left, as the option says.
 */
export function decideTakeOver(
  unmanaged: readonly TaggedContact[],
  index: SourceAddresses,
  desiredKeys: { has(key: string): boolean },
  managedKeys: { has(key: string): boolean },
  option: 'adopt' | 'remove',
  ownFolder: boolean,
  givenUp: { has(contactId: string): boolean } = new Set<string>(),
): Decision[] {
  const decisions: Decision[] = [];
  const taken = new Set<string>();
  const removeOr = (reason: TakeOverItem['reason']): Pick<TakeOverItem, 'action' | 'reason'> =>
    option === 'remove' && ownFolder
      ? { action: 'remove', reason }
      : { action: 'leave', reason: option === 'remove' ? 'defaultFolder' : reason };
  for (const contact of [...unmanaged].sort(oldestFirst)) {
    const first = contact.fields.emailAddresses?.[0]?.address ?? '';
    const base = { name: (contact.fields.displayName ?? '').slice(0, 100), address: first.slice(0, 100) };
    const key = matchContact(contact, index);
    if (givenUp.has(contact.contactId)) {
      // We could not even edit it: never deleted, and it takes no source object from ours.
      decisions.push({ contact, item: { ...base, action: 'leave', reason: 'adoptFailed' } });
    } else if (key === undefined || !desiredKeys.has(key)) {
      decisions.push({ contact, item: { ...base, ...removeOr('noMatch') } });
    } else if (managedKeys.has(key) || taken.has(key)) {
      decisions.push({ contact, key, item: { ...base, ...removeOr('duplicate') } });
    } else {
      taken.add(key);
      decisions.push({ contact, key, item: { ...base, action: 'adopt', reason: 'matched' } });
    }
  }
  return decisions;
}

/** Whether this pass looks at unmanaged contacts: the option is on and something may have changed. */
export function wantsTakeOver(pass: MailboxPass, reconcile: boolean, unknown: number): boolean {
  const option = pass.policy.options.unmanagedContacts;
  if (option === 'leave') return false;
  return reconcile || unknown > 0 || pass.folderState?.takenOver !== option;
}

export async function takeOver(pass: MailboxPass, ref: FolderRef): Promise<void> {
  const option = pass.policy.options.unmanagedContacts;
  if (option === 'leave') return;
  const { graph, mbx, options } = pass;
  const listed = await graph.listContacts(mbx, ref);
  await keepLostAdoptions(pass, listed);
  const before = takeOverBefore(pass, listed);
  if (!options.dryRun && pass.folderState) pass.folderState.takeOverBefore = before;
  const unmanaged = listed.filter((c) => c.tag === null && createdBy(c, before));
  const refusals = refusalsOf(pass, unmanaged);
  const summary: TakeOverSummary = { adopted: 0, removed: 0, left: 0, items: [] };
  if (unmanaged.length > 0) {
    const index = pass.sourceAddresses ? await pass.sourceAddresses() : addressesOfDesired(pass);
    const decisions = decideTakeOver(
      unmanaged,
      index,
      pass.desired,
      pass.contacts,
      option,
      ref.kind === 'named',
      givenUpOn(refusals),
    );
    holdBackRemovals(pass, decisions, listed.length, summary);
    for (const d of decisions) if (summary.items.length < maxTakeOverItems) summary.items.push(d.item);
    if (options.dryRun) {
      // The plan that follows sees the matches as ours (updates rather than creates); nothing is stored.
      for (const d of decisions)
        if (d.item.action === 'adopt') pass.contacts.set(d.key!, adoptedRow(d.contact));
      countPlanned(decisions, summary);
    } else if (!(await writeTakeOver(pass, decisions, summary, refusals))) {
      pass.result.takeOver = summary;
      if (pass.folderState) delete pass.folderState.takenOver; // not finished: the next pass looks again
      return;
    }
  }
  pass.result.takeOver = summary;
  // Held-back removals are looked at again on every pass until a forced one applies them.
  if (!options.dryRun && pass.folderState && !summary.heldBack) pass.folderState.takenOver = option;
}

/**
 * Contacts an earlier pass tagged whose reply was lost: ours already, though the state never heard
 * of them (the delta read after that pass may not show them again). Kept, so none is created beside.
 */
async function keepLostAdoptions(pass: MailboxPass, listed: readonly TaggedContact[]): Promise<void> {
  if (pass.options.dryRun) return;
  const rows: [string, ManagedContact][] = [];
  for (const c of [...listed].sort(oldestFirst)) {
    const key = c.tag === null ? undefined : parseTag(c.tag, pass.policy.id);
    if (key === undefined || pass.contacts.has(key) || !pass.desired.has(key)) continue;
    const row = adoptedRow(c);
    rows.push([key, row]);
    pass.contacts.set(key, row);
  }
  if (rows.length > 0) await pass.store.apply(pass.policy.id, pass.mbx, rows, []);
}

/** Graph's createdDateTime in epoch ms; NaN when absent (such a contact is never ours to judge). */
const createdAt = (c: TaggedContact): number => (c.createdDateTime ? Date.parse(c.createdDateTime) : NaN);

/**
 * Which contacts the take-over may look at: those already there when the first take-over began (up
 * to its newest contact then). Every untagged contact of a folder we created was added by a user.
 */
function takeOverBefore(pass: MailboxPass, listed: readonly TaggedContact[]): string {
  const state = pass.folderState;
  if (state?.takeOverBefore) return state.takeOverBefore;
  // Taken over by a version that kept no instant: what is untagged now may be users' own.
  if (state?.created || state?.takenOver) return new Date(0).toISOString();
  let newest = 0;
  for (const c of listed) if (createdAt(c) > newest) newest = createdAt(c);
  return new Date(newest).toISOString();
}

const createdBy = (c: TaggedContact, instant: string): boolean => createdAt(c) <= Date.parse(instant);

/** Removals beyond the deletion threshold (of the folder's contacts) are all held back, unless forced. */
function holdBackRemovals(
  pass: MailboxPass,
  decisions: Decision[],
  inFolder: number,
  summary: TakeOverSummary,
): void {
  const removals = decisions.filter((d) => d.item.action === 'remove');
  const { percent, minimum } = pass.policy.options.deletionThreshold;
  const limit = Math.max(minimum, Math.floor((inFolder * percent) / 100));
  if (pass.options.force || removals.length <= limit) return;
  summary.heldBack = { wanted: removals.length, limit };
  for (const d of removals) d.item = { ...d.item, action: 'leave', reason: 'threshold' };
}

function countPlanned(decisions: readonly Decision[], summary: TakeOverSummary): void {
  for (const d of decisions) {
    if (d.item.action === 'adopt') summary.adopted++;
    else if (d.item.action === 'remove') summary.removed++;
    else countLeft(d, summary);
  }
}

function countLeft(d: Decision, summary: TakeOverSummary): void {
  if (d.item.reason === 'adoptFailed') summary.adoptFailed = (summary.adoptFailed ?? 0) + 1;
  else summary.left++;
}

/** Refusals per unmanaged contact id, oldest first; only contacts still unmanaged in the folder. */
function refusalsOf(pass: MailboxPass, unmanaged: readonly TaggedContact[]): Map<string, number> {
  const here = new Set(unmanaged.map((c) => c.contactId));
  const kept = (pass.folderState?.adoptRefusals ?? []).filter((r) => here.has(r.contactId));
  return new Map(kept.map((r) => [r.contactId, r.refusals]));
}

const givenUpOn = (refusals: ReadonlyMap<string, number>): Set<string> =>
  new Set([...refusals].filter(([, n]) => n >= adoptRefusalLimit).map(([id]) => id));

/** One more refusal for a contact (moved to the newest end); the oldest beyond the cap are dropped. */
function countRefusal(refusals: Map<string, number>, contactId: string): number {
  const n = (refusals.get(contactId) ?? 0) + 1;
  refusals.delete(contactId);
  refusals.set(contactId, n);
  for (const id of refusals.keys()) {
    if (refusals.size <= maxAdoptRefusals) break;
    refusals.delete(id);
  }
  return n;
}

function storeRefusals(pass: MailboxPass, refusals: ReadonlyMap<string, number>): void {
  if (!pass.folderState) return;
  if (refusals.size === 0) delete pass.folderState.adoptRefusals;
  else pass.folderState.adoptRefusals = [...refusals].map(([contactId, n]) => ({ contactId, refusals: n }));
}

const adoptedRow = (contact: TaggedContact, changeKey?: string): ManagedContact => ({
  contactId: contact.contactId,
  // No hash: the plan compares what is there with the source and writes only the differences.
  hash: '',
  written: contact.fields,
  changeKey: changeKey ?? contact.changeKey,
  keep: [],
  userDeleted: false,
  orphaned: false,
});

/** Tags the adopted contacts and deletes the removed ones; false when some outcome is unknown. */
async function writeTakeOver(
  pass: MailboxPass,
  decisions: readonly Decision[],
  summary: TakeOverSummary,
  refusals: Map<string, number>,
): Promise<boolean> {
  const byOp = new Map<string, Decision>();
  const ops: WriteOp[] = [];
  for (const d of decisions) {
    if (d.item.action === 'leave') {
      countLeft(d, summary);
      continue;
    }
    const id = `${d.item.action === 'adopt' ? 'a' : 'r'}${ops.length}`;
    byOp.set(id, d);
    const tag = tagValue(pass.policy.id, d.key ?? '');
    ops.push(
      d.item.action === 'adopt'
        ? {
            id,
            kind: 'update',
            contactId: d.contact.contactId,
            body: () => ({ singleValueExtendedProperties: [{ id: tagPropertyId, value: tag }] }),
          }
        : { id, kind: 'delete', contactId: d.contact.contactId },
    );
  }
  if (ops.length === 0) {
    storeRefusals(pass, refusals);
    return true;
  }
  let complete = true;
  const notAdopted = new Set<string>();
  const record = async (results: WriteResult[]): Promise<void> => {
    const rows: [string, ManagedContact][] = [];
    for (const r of results) {
      const d = byOp.get(r.id)!;
      if (r.outcome === 'failed' && d.item.action === 'adopt' && refusedForGood(r.status)) {
        if (countRefusal(refusals, d.contact.contactId) >= adoptRefusalLimit) {
          giveUp(pass, d, r, summary);
          continue;
        }
      }
      if (r.outcome === 'unknown' || r.outcome === 'notAttempted' || r.outcome === 'failed') {
        complete = false; // looked at again on the next pass
        if (d.item.action === 'adopt') notAdopted.add(d.key!);
        if (r.outcome === 'unknown')
          pass.result.errors.push({
            ...(d.key ? { sourceKey: d.key } : {}),
            status: 0,
            code: 'ReplyLost',
            message: `taking over "${d.item.name}": ${r.message}; looked at again on the next pass`,
          });
        if (r.outcome !== 'failed') continue;
        pass.result.failed++;
        pass.result.errors.push({
          ...(d.key ? { sourceKey: d.key } : {}),
          status: r.status,
          code: r.code,
          message: `taking over "${d.item.name}": ${r.message}`,
          ...(r.requestId ? { requestId: r.requestId } : {}),
        });
      } else if (d.item.action === 'remove') summary.removed++;
      else if (r.outcome === 'ok') {
        refusals.delete(d.contact.contactId);
        summary.adopted++;
        rows.push([d.key!, adoptedRow(d.contact, r.changeKey)]);
      }
    }
    if (rows.length > 0) await pass.store.apply(pass.policy.id, pass.mbx, rows, []);
    for (const [k, c] of rows) pass.contacts.set(k, c);
  };
  await pass.graph.write(pass.mbx, ops, {
    ...(pass.options.deadline !== undefined ? { deadline: pass.options.deadline } : {}),
    onResults: record,
  });
  storeRefusals(pass, refusals);
  // The old contact still stands for these: creating ours beside it would leave a twin for good.
  if (notAdopted.size > 0) pass.desired = new MapWithout(pass.desired, notAdopted);
  return complete;
}

/** The last refusal: the old contact stays as it is, and the plan creates ours for that person. */
function giveUp(
  pass: MailboxPass,
  d: Decision,
  r: Extract<WriteResult, { outcome: 'failed' }>,
  summary: TakeOverSummary,
): void {
  summary.adoptFailed = (summary.adoptFailed ?? 0) + 1;
  // In place: the summary's item list holds this very object.
  Object.assign(d.item, { action: 'leave', reason: 'adoptFailed' });
  pass.result.errors.push({
    sourceKey: d.key!,
    status: r.status,
    code: 'AdoptFailed',
    message: `could not take over "${d.item.name}" <${d.item.address}>: Graph refused it ${adoptRefusalLimit} times (${r.code}: ${r.message}); it is left as it is and ours is created beside it`,
    ...(r.requestId ? { requestId: r.requestId } : {}),
  });
}

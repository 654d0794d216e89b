// The plan for one mailbox: a pure function from what the source wants, what we manage there, and
// what the user changed (the folder's contacts delta), to creates, updates, deletes and restores.
import type { ContactFieldName, Policy } from './config/schema';
import { isEmptyValue, sameValue, withUnreadExtendedFields, type ContactFields } from './mapping';

export interface DesiredContact {
  fields: ContactFields;
  hash: string;
  /** The photo's content hash, null for none; absent when the policy does not sync photos (or not checked yet). */
  photo?: string | null;
  /** The photo's size in bytes (so writes can pack batches under Graph's request limit). */
  photoSize?: number;
  /** Under a folder template: the folder this contact belongs in (folder-template.ts). */
  folder?: string;
}

/** One managed contact as the state store remembers it. */
export interface ManagedContact {
  contactId: string;
  /** Hash of the desired fields when we last wrote them. */
  hash: string;
  /** What we last wrote (our managed fields). */
  written: ContactFields;
  /** The contact's changeKey after our last write; a different one in the delta means a user edit. */
  changeKey: string;
  /** Fields the user owns now (their edit survives under the policy). */
  keep: ContactFieldName[];
  /** The user deleted it and the policy keeps it deleted. */
  userDeleted: boolean;
  /** The source object is gone and the policy keeps the contact (marked or not). */
  orphaned: boolean;
  /** Hash of the photo we last put on the contact; absent or null when we put none. */
  photo?: string | null;
  /**
   * A PATCH we sent and have no reply for yet (intent log): a changeKey we do not know whose fields
   * are these is our own write, not a user's edit.
   */
  intent?: { written: ContactFields; hash: string };
}

export interface Drift {
  /** Managed contacts the user changed: contact id → their current managed fields and changeKey. */
  changed: ReadonlyMap<string, { fields: ContactFields; changeKey: string }>;
  /** Managed contacts the user deleted (contact ids). */
  deleted: ReadonlySet<string>;
}

export interface PlanOptions {
  fields: readonly ContactFieldName[];
  rules: Policy['mapping']['rules'];
  onUserEdit: 'restore' | 'keep';
  onUserDelete: 'restore' | 'keep';
  onSourceRemoval: 'delete' | 'keep' | 'keepAndMark';
  removalCategory: string;
  deletionThreshold: { percent: number; minimum: number };
  /** A forced run ignores the deletion threshold. */
  force: boolean;
  /** Deletions this pass made before the plan (a take-over's removals): they count against the threshold. */
  deletedBefore?: number;
}

export interface PlannedCreate {
  sourceKey: string;
  /**
   * What to create: its fields are read when the create is sent, so a fill of 50,000 contacts does
   * not hold 50,000 parsed field sets at once.
   */
  desired: DesiredContact;
  /** Recreating a contact the user deleted (or that vanished with its folder). */
  restore: boolean;
  /**
   * Fields the user owns, carried from the folder the contact leaves (a folder per value): `desired`
   * already holds their values, and the created contact keeps them as the user's.
   */
  keep?: ContactFieldName[];
}

export interface PlannedUpdate {
  sourceKey: string;
  contactId: string;
  /** Only the fields to send. */
  patch: ContactFields;
  patchFields: ContactFieldName[];
  /** What we will have written once the patch succeeds. */
  written: ContactFields;
  hash: string;
  keep: ContactFieldName[];
  restore: boolean;
  orphaned: boolean;
  /**
   * The removal mark on categories that are not ours (unmanaged, or kept by the user): added to or
   * taken from the categories the contact holds when written, so the user's own stay.
   */
  mark?: 'add' | 'remove';
}

export interface PlannedDelete {
  sourceKey: string;
  contactId: string;
}

/** A state change that needs no Graph call. */
export interface PlannedStateChange {
  sourceKey: string;
  change: { kind: 'forget' } | { kind: 'set'; contact: ManagedContact };
}

export interface MailboxPlan {
  creates: PlannedCreate[];
  updates: PlannedUpdate[];
  deletes: PlannedDelete[];
  stateChanges: PlannedStateChange[];
  unchanged: number;
  /** Set when deletions were held back by the threshold. */
  deletionsBlocked?: { wanted: number; managed: number; limit: number };
}

const ruleOf = (o: Pick<PlanOptions, 'rules'>, f: ContactFieldName): 'overwrite' | 'setIfEmpty' | 'never' =>
  o.rules[f] ?? 'overwrite';

/**
 * The fields of `desired` to write over `current`, honouring rules and fields the user owns. A
 * setIfEmpty field is written when empty or still holding what we wrote (`ours`); a value someone
 * else put there stays.
 */
function fieldsToWrite(
  desired: ContactFields,
  current: ContactFields,
  o: PlanOptions,
  keep: readonly ContactFieldName[],
  ours: ContactFields,
): ContactFieldName[] {
  return o.fields.filter((f) => {
    if (keep.includes(f)) return false;
    if (sameValue(desired[f], current[f])) return false;
    if (ruleOf(o, f) === 'setIfEmpty' && !isEmptyValue(current[f]) && !sameValue(current[f], ours[f]))
      return false;
    return true;
  });
}

function pick(fields: ContactFields, names: readonly ContactFieldName[]): ContactFields {
  const out: ContactFields = {};
  for (const n of names) if (fields[n] !== undefined) (out as Record<string, unknown>)[n] = fields[n];
  return out;
}

function merge(base: ContactFields, patch: ContactFields, names: readonly ContactFieldName[]): ContactFields {
  const out: ContactFields = { ...base };
  for (const n of names) {
    if (patch[n] === undefined) delete out[n];
    else (out as Record<string, unknown>)[n] = patch[n];
  }
  return out;
}

/**
 * Exchange may recompute displayName when givenName or surname change: a PATCH of either also sends
 * the displayName we want, where displayName is ours to write.
 */
function withDisplayName(
  names: ContactFieldName[],
  want: ContactFields,
  o: PlanOptions,
  keep: readonly ContactFieldName[],
): void {
  if (!names.includes('givenName') && !names.includes('surname')) return;
  if (names.includes('displayName') || keep.includes('displayName')) return;
  if (!o.fields.includes('displayName') || want.displayName === undefined) return;
  if (ruleOf(o, 'displayName') !== 'overwrite') return;
  names.push('displayName');
}

/** Categories we do not write from the source: the removal mark goes on top of what is there. */
const categoriesNotOurs = (o: PlanOptions, keep: readonly ContactFieldName[]): boolean =>
  !o.fields.includes('categories') || keep.includes('categories');

/**
 * A kept contact whose source object came back: the categories we wrote without the removal mark,
 * when categories are not otherwise ours (a managed categories field is rewritten from the source).
 */
function withoutRemovalMark(
  written: ContactFields,
  o: PlanOptions,
  keep: readonly ContactFieldName[],
): string[] | undefined {
  if (!categoriesNotOurs(o, keep)) return undefined;
  const categories = written.categories ?? [];
  return categories.includes(o.removalCategory)
    ? categories.filter((c) => c !== o.removalCategory)
    : undefined;
}

/**
 * The fields the user owns after an edit (`current`, against what we wrote): under onUserEdit keep,
 * every field they changed; under restore only a setIfEmpty field they filled (the rest is restored).
 */
function keptAfterEdit(
  o: Pick<PlanOptions, 'fields' | 'rules' | 'onUserEdit'>,
  current: ContactFields,
  written: ContactFields,
  keep: ContactFieldName[],
): { keep: ContactFieldName[]; restore: boolean } {
  const userChanged = o.fields.filter((f) => !sameValue(current[f], written[f]));
  if (o.onUserEdit === 'keep') return { keep: [...new Set([...keep, ...userChanged])], restore: false };
  const filled = userChanged.filter((f) => ruleOf(o, f) === 'setIfEmpty' && !isEmptyValue(current[f]));
  return { keep: [...new Set([...keep, ...filled])], restore: userChanged.length > 0 };
}

/**
 * The fields a user still owns under the policy's rules now: under onUserEdit restore only a field
 * whose rule is still setIfEmpty (switched back to overwrite, the source's value comes back).
 */
function ownedUnderRules(
  o: Pick<PlanOptions, 'rules' | 'onUserEdit'>,
  keep: ContactFieldName[],
): ContactFieldName[] {
  if (o.onUserEdit === 'keep') return keep;
  const still = keep.filter((f) => ruleOf(o, f) === 'setIfEmpty');
  return still.length === keep.length ? keep : still;
}

/**
 * What a user did to a contact that is leaving for another folder (a folder per value), as its row
 * should remember it so the move carries it: a deletion the policy keeps, or the fields they own
 * now with their values. Undefined when there is nothing to remember.
 */
export function absorbUserChange(
  have: ManagedContact,
  drift: Drift,
  o: Pick<PlanOptions, 'fields' | 'rules' | 'onUserEdit' | 'onUserDelete'>,
): ManagedContact | undefined {
  if (have.userDeleted) return undefined;
  if (drift.deleted.has(have.contactId))
    return o.onUserDelete === 'keep' ? { ...have, userDeleted: true } : undefined;
  const edited = drift.changed.get(have.contactId);
  if (!edited || edited.changeKey === have.changeKey) return undefined;
  const written = have.written;
  const current = withUnreadExtendedFields(edited.fields, written);
  const { keep } = keptAfterEdit(o, current, written, have.keep);
  return { ...have, written: current, keep, changeKey: edited.changeKey };
}

/** The fields a create writes when the user owns some (`keep`, with their values): theirs over the source's. */
export function withKept(
  want: ContactFields,
  keep: readonly ContactFieldName[],
  values: ContactFields,
): ContactFields {
  return merge(want, values, keep);
}

export function planMailbox(
  desired: ReadonlyMap<string, DesiredContact>,
  managed: ReadonlyMap<string, ManagedContact>,
  drift: Drift,
  o: PlanOptions,
): MailboxPlan {
  const plan: MailboxPlan = { creates: [], updates: [], deletes: [], stateChanges: [], unchanged: 0 };
  const pendingDeletes: PlannedDelete[] = [];

  for (const [sourceKey, want] of desired) {
    const have = managed.get(sourceKey);
    if (!have) {
      plan.creates.push({ sourceKey, desired: want, restore: false });
      continue;
    }
    if (drift.deleted.has(have.contactId)) {
      if (o.onUserDelete === 'restore') plan.creates.push({ sourceKey, desired: want, restore: true });
      else
        plan.stateChanges.push({
          sourceKey,
          change: { kind: 'set', contact: { ...have, userDeleted: true } },
        });
      continue;
    }
    if (have.userDeleted) {
      // Kept deleted while the policy says so; restored once it says restore.
      if (o.onUserDelete === 'restore') plan.creates.push({ sourceKey, desired: want, restore: true });
      else plan.unchanged++;
      continue;
    }
    const edited = drift.changed.get(have.contactId);
    if (
      have.hash === want.hash &&
      !edited &&
      have.keep.length === 0 &&
      !have.orphaned &&
      !Object.values(o.rules).includes('setIfEmpty')
    ) {
      // Written with these very fields under overwrite rules and not touched since: nothing to
      // compare (and the stored fields need not even be parsed).
      plan.unchanged++;
      continue;
    }
    // Read once: a stored contact's fields may be parsed anew on every read.
    const haveWritten = have.written;
    const wantFields = want.fields;
    let current = haveWritten;
    let keep = ownedUnderRules(o, have.keep);
    let restore = false;
    if (edited && edited.changeKey !== have.changeKey) {
      current = withUnreadExtendedFields(edited.fields, haveWritten);
      ({ keep, restore } = keptAfterEdit(o, current, haveWritten, keep));
    }
    const names = fieldsToWrite(wantFields, current, o, keep, haveWritten);
    withDisplayName(names, wantFields, o, keep);
    const wasOrphaned = have.orphaned;
    const unmarked = wasOrphaned ? withoutRemovalMark(haveWritten, o, keep) : undefined;
    if (unmarked && !names.includes('categories')) names.push('categories');
    const written = merge(current, wantFields, names);
    if (unmarked) written.categories = unmarked;
    if (names.length === 0) {
      if (
        have.hash !== want.hash ||
        keep !== have.keep ||
        current !== haveWritten ||
        wasOrphaned ||
        (edited && edited.changeKey !== have.changeKey)
      ) {
        plan.stateChanges.push({
          sourceKey,
          change: {
            kind: 'set',
            contact: {
              ...have,
              hash: want.hash,
              written,
              keep: [...keep],
              changeKey: edited?.changeKey ?? have.changeKey,
              orphaned: false,
            },
          },
        });
      }
      plan.unchanged++;
      continue;
    }
    plan.updates.push({
      sourceKey,
      contactId: have.contactId,
      patch: unmarked ? { ...pick(wantFields, names), categories: unmarked } : pick(wantFields, names),
      patchFields: names,
      written,
      hash: want.hash,
      keep: [...keep],
      restore,
      orphaned: false,
      ...(unmarked ? { mark: 'remove' as const } : {}),
    });
  }

  for (const [sourceKey, have] of managed) {
    if (desired.has(sourceKey)) continue;
    if (have.userDeleted || drift.deleted.has(have.contactId)) {
      plan.stateChanges.push({ sourceKey, change: { kind: 'forget' } });
      continue;
    }
    if (have.orphaned) {
      plan.unchanged++;
      continue;
    }
    switch (o.onSourceRemoval) {
      case 'delete':
        pendingDeletes.push({ sourceKey, contactId: have.contactId });
        break;
      case 'keep':
        plan.stateChanges.push({ sourceKey, change: { kind: 'set', contact: { ...have, orphaned: true } } });
        break;
      case 'keepAndMark': {
        const categories = [...new Set([...(have.written.categories ?? []), o.removalCategory])];
        const patch: ContactFields = { categories };
        plan.updates.push({
          sourceKey,
          contactId: have.contactId,
          patch,
          patchFields: ['categories'],
          written: { ...have.written, categories },
          hash: have.hash,
          keep: have.keep,
          restore: false,
          orphaned: true,
          ...(categoriesNotOurs(o, have.keep) ? { mark: 'add' as const } : {}),
        });
        break;
      }
    }
  }

  const managedCount = [...managed.values()].filter((m) => !m.userDeleted).length;
  const limit = Math.max(
    o.deletionThreshold.minimum,
    Math.floor((managedCount * o.deletionThreshold.percent) / 100),
  );
  if (!o.force && pendingDeletes.length > 0 && pendingDeletes.length + (o.deletedBefore ?? 0) > limit) {
    plan.deletionsBlocked = { wanted: pendingDeletes.length, managed: managedCount, limit };
  } else {
    plan.deletes = pendingDeletes;
  }
  return plan;
}

export interface PlannedPhoto {
  sourceKey: string;
  contactId: string;
  /** The photo to put (its hash), or null to remove ours. */
  photo: string | null;
}

/**
 * Contacts whose photo differs from the source's: a new or changed photo is put, a photo removed at
 * the source is removed. Contacts the source has not been looked at for (photo undefined) are left.
 */
export function planPhotos(
  desired: ReadonlyMap<string, DesiredContact>,
  managed: ReadonlyMap<string, ManagedContact>,
): PlannedPhoto[] {
  const out: PlannedPhoto[] = [];
  for (const [sourceKey, want] of desired) {
    if (want.photo === undefined) continue;
    const have = managed.get(sourceKey);
    if (!have || have.userDeleted || have.orphaned) continue;
    if ((have.photo ?? null) === want.photo) continue;
    out.push({ sourceKey, contactId: have.contactId, photo: want.photo });
  }
  return out;
}

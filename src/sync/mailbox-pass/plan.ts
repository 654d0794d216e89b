// Step 4: the plan (pure), and what a dry run reports from it.
import {
  absorbUserChange,
  planMailbox,
  planPhotos,
  withKept,
  type MailboxPlan,
  type ManagedContact,
} from '../planner';
import type { MailboxPass, MutableDrift } from './pass';

export function managedContacts(pass: MailboxPass): Map<string, ManagedContact> {
  const managed = new Map<string, ManagedContact>();
  for (const [k, c] of pass.contacts) if (!c.pending && !pass.held?.has(k)) managed.set(k, c);
  return managed;
}

export function planPass(
  pass: MailboxPass,
  drift: MutableDrift,
  lostWithFolder: ReadonlySet<string>,
): MailboxPlan {
  const { policy } = pass;
  const plan = planMailbox(pass.desired, managedContacts(pass), drift, {
    fields: pass.fields,
    rules: policy.mapping.rules,
    onUserEdit: policy.options.onUserEdit,
    onUserDelete: policy.options.onUserDelete,
    onSourceRemoval: policy.options.onSourceRemoval,
    removalCategory: policy.options.removalCategory,
    deletionThreshold: policy.options.deletionThreshold,
    force: pass.options.force,
    // One threshold per pass: a take-over's removals (or, in a dry run, planned ones) count too.
    deletedBefore: pass.result.takeOver?.removed ?? 0,
  });
  // Contacts that vanished with a deleted folder come back as restores.
  for (const c of plan.creates) if (lostWithFolder.has(c.sourceKey)) c.restore = true;
  carryEdits(pass, plan);
  rememberHeld(pass, drift, plan);
  if (plan.deletionsBlocked) pass.result.deletionsBlocked = plan.deletionsBlocked;
  pass.result.unchanged = plan.unchanged;
  return plan;
}

/** A contact moving in whose user owns some fields is created with their values, still theirs. */
function carryEdits(pass: MailboxPass, plan: MailboxPlan): void {
  if (!pass.carried) return;
  for (const c of plan.creates) {
    const carried = pass.carried.get(c.sourceKey);
    if (!carried) continue;
    const fields = withKept(c.desired.fields, carried.keep, carried.values);
    c.desired = { ...c.desired, fields };
    c.keep = carried.keep;
  }
}

/**
 * Contacts leaving this folder for another value's (held): what their users did since the last read
 * is remembered in their rows, so the move carries it (an edit they own, a deletion kept).
 */
function rememberHeld(pass: MailboxPass, drift: MutableDrift, plan: MailboxPlan): void {
  if (!pass.held) return;
  const o = { ...pass.policy.options, fields: pass.fields, rules: pass.policy.mapping.rules };
  for (const [k, c] of pass.contacts) {
    if (c.pending || !pass.held.has(k)) continue;
    const now = absorbUserChange(c, drift, o);
    if (now) plan.stateChanges.push({ sourceKey: k, change: { kind: 'set', contact: now } });
  }
}

/** A dry run's counts: what the plan would write. */
export function reportPlanned(pass: MailboxPass, plan: MailboxPlan, duplicates: number): void {
  const { result } = pass;
  result.status = 'planned';
  result.created = plan.creates.filter((c) => !c.restore).length;
  result.restored =
    plan.creates.filter((c) => c.restore).length + plan.updates.filter((u) => u.restore).length;
  result.updated = plan.updates.filter((u) => !u.restore).length;
  result.deleted = plan.deletes.length;
  result.duplicatesRemoved = duplicates;
  if (pass.policy.photos.enabled) result.photos = planPhotos(pass.desired, managedContacts(pass)).length;
}

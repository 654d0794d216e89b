// The removal mark (onSourceRemoval: keepAndMark) on categories the policy does not write: put on or
// taken off the categories the contact holds now, read just before the write, so the categories a
// user gave the contact stay.
import type { PlannedUpdate } from '../planner';
import { lookUpOptions, type MailboxPass } from './pass';

/**
 * The updates with their mark applied to the contacts' current categories. An update whose contact
 * could not be read (throttled) is left out, never written blind: `unread` says the pass is partial.
 */
export async function withCurrentCategories(
  pass: MailboxPass,
  updates: PlannedUpdate[],
): Promise<{ updates: PlannedUpdate[]; unread: boolean }> {
  const marked = updates.filter((u) => u.mark);
  if (marked.length === 0) return { updates, unread: false };
  const mark = pass.policy.options.removalCategory;
  const { deadline } = pass.options;
  // Within the time budget: an update left unread waits for the next pass.
  const read = await pass.graph.getContacts(
    pass.mbx,
    marked.map((u) => u.contactId),
    lookUpOptions(pass, deadline),
  );
  const skipped = new Set<PlannedUpdate>();
  for (const u of marked) {
    const found = read.get(u.contactId);
    if (found === undefined) skipped.add(u);
    // A contact gone meanwhile: the write finds it gone.
    if (!found) continue;
    const now = found.fields.categories ?? [];
    const categories = u.mark === 'add' ? [...new Set([...now, mark])] : now.filter((c) => c !== mark);
    u.patch = { ...u.patch, categories };
    u.written = { ...u.written, categories };
  }
  return { updates: updates.filter((u) => !skipped.has(u)), unread: skipped.size > 0 };
}

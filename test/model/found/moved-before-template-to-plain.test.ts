// Issue 15 item 7 (the known gap lane 15b left): a user moves a managed contact out of a per-value
// folder, or deletes one there, and the policy's folder.name goes from a template back to a plain
// name before a run reads it. Nothing read the per-value folders' deltas before their state was
// dropped, so the moved contact kept our tag in the user's folder (a twin of the plain folder's copy
// the next runs may touch) and, under onUserDelete: keep, the deleted one came back. Now each
// per-value folder's delta is read (one read per folder) before the policy forgets it.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

for (const onUserDelete of ['restore', 'keep'] as const)
  test(`model sequence: a contact moved out of a per-value folder, then back to a plain name (onUserDelete: ${onUserDelete})`, () =>
    runSequence(world, {
      onUserEdit: 'restore',
      onUserDelete,
      steps: [
        { t: 'folderTemplate', field: 'department' },
        { t: 'run' },
        { t: 'moveContact', mailbox: 0, contact: 0 },
        { t: 'folderTemplate', field: null },
      ],
    }));

for (const onUserDelete of ['restore', 'keep'] as const)
  test(`model sequence: a contact deleted in a per-value folder, then back to a plain name (onUserDelete: ${onUserDelete})`, () =>
    runSequence(world, {
      onUserEdit: 'restore',
      onUserDelete,
      steps: [
        { t: 'folderTemplate', field: 'department' },
        { t: 'run' },
        { t: 'deleteContact', mailbox: 1, contact: 2 },
        { t: 'folderTemplate', field: null },
      ],
    }));

// Found by the model test (seed 2026120215, full alphabet): a user moves a managed contact out of the
// policy's folder, then the policy's folder changes (a folder template replaces the plain folder)
// before a run reads the move. Nothing read the old folder's removals again, so the moved contact kept
// our tag in the user's folder for good. Now the old folder's delta is read when the policy leaves it
// (whatever onUserDelete says) and a contact found elsewhere is released. The same holds when the
// user deletes the policy's folder after the move (review finding 2): the state's contacts are
// looked up before the folder is recreated.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model sequence: a contact moved, then a folder template replaces the folder', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'restore',
    steps: [
      { t: 'run' },
      { t: 'folderTemplate', field: 'department' },
      { t: 'moveContact', mailbox: 0, contact: 0 },
    ],
  }));

test('model sequence: a contact moved, then the policy moves to the default Contacts folder', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'restore',
    steps: [
      { t: 'run' },
      { t: 'moveContact', mailbox: 1, contact: 1 },
      { t: 'policyFolder', to: 'default', mailbox: 0 },
    ],
  }));

test('model sequence: a contact moved, then its user deletes the policy folder', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'keep',
    steps: [{ t: 'run' }, { t: 'moveContact', mailbox: 0, contact: 1 }, { t: 'deleteFolder', mailbox: 0 }],
  }));

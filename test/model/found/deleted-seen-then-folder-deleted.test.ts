// Issue 15: the deletion of a managed contact seen by a run (onUserDelete: keep) is still honoured
// after the user deletes the whole folder: the folder comes back without that contact.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model sequence: a deletion seen by a run, then the whole folder deleted (onUserDelete: keep)', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'keep',
    steps: [
      { t: 'run' },
      { t: 'deleteContact', mailbox: 0, contact: 0 },
      { t: 'run' },
      { t: 'deleteFolder', mailbox: 0 },
      { t: 'createOwn', mailbox: 0, like: 0 },
    ],
  }));

// Found by the model test (test/model, seed 151202). The deletion is not read before the folder goes,
// and Graph keeps no trace of it: the folder comes back whole (the reference forgets unread deletions
// of a deleted folder). A deletion a run did read stays honoured: deleted-seen-then-folder-deleted.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model sequence: a user deletes a managed contact, then the whole folder (onUserDelete: keep)', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'keep',
    steps: [
      { t: 'run' },
      { t: 'deleteContact', mailbox: 0, contact: 0 },
      { t: 'deleteFolder', mailbox: 0 },
      { t: 'createOwn', mailbox: 0, like: 0 },
    ],
  }));

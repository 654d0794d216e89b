// Found by the model test (test/model). Runs and reports; registered as todo until fixed.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model sequence: a user renames the policy folder', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'restore',
    steps: [{ t: 'run' }, { t: 'renameFolder', mailbox: 0 }],
  }));

// Found by the model test (test/model, full alphabet). Runs and reports; registered as todo until fixed.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model sequence: the policy renames its folder', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'restore',
    steps: [{ t: 'run' }, { t: 'renamePolicyFolder' }],
  }));

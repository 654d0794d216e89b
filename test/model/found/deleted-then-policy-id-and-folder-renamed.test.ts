// Found by the coordinator's long model run (seed 777): a user deletes a managed contact
// (onUserDelete: keep), then the policy's id and its folder are renamed in one edit.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model sequence: a deletion kept, then the policy id and folder renamed together', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'keep',
    steps: [
      { t: 'run' },
      { t: 'deleteContact', mailbox: 0, contact: 0 },
      { t: 'renamePolicyId' },
      { t: 'renamePolicyFolder' },
    ],
  }));

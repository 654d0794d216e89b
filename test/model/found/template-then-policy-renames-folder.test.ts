// Found by the model test (long run, seed 20261203, sequence 52): renaming a templated folder
// appended "+", a character Outlook refuses in a template's own text, so the policy went invalid.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model sequence: a templated folder, then the policy renames it', () =>
  runSequence(world, {
    onUserEdit: 'keep',
    onUserDelete: 'restore',
    steps: [
      { t: 'folderTemplate', field: 'department' },
      { t: 'run' },
      { t: 'editContact', mailbox: 0, contact: 0, value: 1 },
      { t: 'run' },
      { t: 'renamePolicyFolder' },
    ],
  }));

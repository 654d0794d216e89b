// Found with the model test's new command (a user moves a managed contact to a folder of their own; in
// Outlook, as Graph has no move for contacts): the folder's delta reports it removed, so the run
// restored it and left the moved copy carrying our tag outside the policy's folder (a twin by tag), or
// under onUserDelete: keep left it tagged there for good. Now it is looked up, released (our tag
// overwritten: it is the user's), and counts as its user's deletion from the folder.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

for (const onUserDelete of ['restore', 'keep'] as const)
  test(`model sequence: a user moves a managed contact to another folder (onUserDelete: ${onUserDelete})`, () =>
    runSequence(world, {
      onUserEdit: 'restore',
      onUserDelete,
      steps: [{ t: 'run' }, { t: 'moveContact', mailbox: 1, contact: 2 }, { t: 'run' }],
    }));

test('model sequence: a contact moved out of the default Contacts folder (folder.name null)', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'restore',
    steps: [
      { t: 'policyFolder', to: 'default', mailbox: 0 },
      { t: 'run' },
      { t: 'moveContact', mailbox: 0, contact: 0 },
    ],
  }));

// Found by the model test (test/model) once a field's rule joined its alphabet: a job title a user
// set under setIfEmpty was remembered as theirs, and switching the rule back to overwrite never
// brought it back in line with the source.
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model sequence: a user edit kept under setIfEmpty is restored once the rule is overwrite again', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'restore',
    steps: [
      { t: 'rule', field: 'jobTitle', rule: 'setIfEmpty' },
      { t: 'run' },
      { t: 'editContact', mailbox: 0, contact: 0, value: 1 },
      { t: 'run' },
      { t: 'rule', field: 'jobTitle', rule: 'overwrite' },
    ],
  }));

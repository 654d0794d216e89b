// Found by the coordinator's long model run (seed 261202, after 140 sequences in one world): a
// department filter and a group exclusion set in one policy edit, then a member added to the group.
// The engine was right: the world had grown (users added by earlier sequences), so the edit took more
// contacts than the deletion threshold allows and the run held them back, as the policy says. The
// reference did not model the threshold; now a mailbox whose outcome reports deletions held back may
// keep them (and the outcome must show more wanted than the limit).
import { after, before, test } from 'node:test';
import { runSequence, startWorld, type ModelWorld, type Step } from '../model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model sequence: a filter and a group exclusion, then a member added to the group', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'restore',
    steps: [
      { t: 'run' },
      { t: 'policy', filter: 0, excludeGroup: true },
      { t: 'membership', user: 0, add: true },
    ],
  }));

test('model sequence: a filter that drops more contacts than the deletion threshold allows', () =>
  runSequence(world, {
    onUserEdit: 'restore',
    onUserDelete: 'restore',
    steps: [
      ...Array.from({ length: 25 }, (): Step => ({ t: 'addUser', dept: 1 })),
      { t: 'run' },
      { t: 'policy', filter: 0, excludeGroup: false },
    ],
  }));

// The model-based test in CI: a fixed seed over the alphabet that already works (RELIABILITY.md lists
// the commands held out and why). Longer runs: npm run test:model -- --runs N --seed S.
import { after, before, test } from 'node:test';
import { checkModel, ciAlphabet, startWorld, type ModelWorld } from './model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

test('model-based: sequences of directory changes, user actions, policy edits, faults and runs keep the invariant', () =>
  checkModel(world, ciAlphabet, { runs: Number(process.env.MODEL_RUNS ?? 12), seed: 15, maxSteps: 8 }));

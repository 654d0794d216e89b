// npm run test:model -- --runs N --seed S [--steps K] [--alphabet ci|full] [--minutes M]: the model-based test for
// longer than CI runs it. Prints what it explored; on failure, the shrunk sequence as a test to paste.
import { parseArgs } from 'node:util';
import { checkModel, ciAlphabet, fullAlphabet, startWorld } from './model';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '100' },
      seed: { type: 'string', default: String(Date.now() % 1_000_000) },
      steps: { type: 'string', default: '10' },
      alphabet: { type: 'string', default: 'ci' },
      minutes: { type: 'string' },
    },
  });
  const runs = Number(values.runs);
  const seed = Number(values.seed);
  const maxSteps = Number(values.steps);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs: a positive whole number');
  if (!Number.isInteger(seed)) throw new Error('--seed: a whole number');
  if (values.alphabet !== 'ci' && values.alphabet !== 'full') throw new Error('--alphabet: ci or full');
  const minutes = values.minutes === undefined ? undefined : Number(values.minutes);
  if (minutes !== undefined && !(minutes > 0)) throw new Error('--minutes: a positive number');
  const world = await startWorld();
  const started = Date.now();
  world.onSequence = (n, seq) => {
    if (n % 10 === 0)
      console.log(
        `model: sequence ${n} (${seq.steps.length} steps) at ${Math.round((Date.now() - started) / 1000)} s`,
      );
  };
  try {
    await checkModel(world, values.alphabet === 'full' ? fullAlphabet : ciAlphabet, {
      runs,
      seed,
      maxSteps,
      ...(minutes ? { timeLimitMs: minutes * 60_000 } : {}),
    });
    console.log(
      `model: ${world.sequences} sequences (${runs} asked${minutes ? `, time box ${minutes} min` : ''}, seed ${seed}, up to ${maxSteps} steps, ${values.alphabet} alphabet) in ${Math.round((Date.now() - started) / 1000)} s: no failure`,
    );
    return 0;
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    console.error(
      `model: failed after ${world.sequences} sequences (seed ${seed}); rerun with --seed ${seed}`,
    );
    return 1;
  } finally {
    await world.f.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  },
);

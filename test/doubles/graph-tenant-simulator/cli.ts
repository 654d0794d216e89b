// `npm run sim -- [--seed FILE] [--port N] [--latency MS] [--time-scale N]`: starts the Graph tenant
// simulator (a test double) and prints one JSON line with its endpoints; serves until interrupted.
import { parseArgs } from 'node:util';
import { readSeedFile } from './seed';
import { GraphTenantSimulator } from './simulator';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      port: { type: 'string', default: '0' },
      latency: { type: 'string' },
      'time-scale': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write('usage: npm run sim -- [--seed FILE] [--port N] [--latency MS] [--time-scale N]\n');
    return;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`--port: expected 0..65535, got "${values.port}"`);
  const latency = values.latency === undefined ? undefined : Number(values.latency);
  if (latency !== undefined && !(latency >= 0))
    throw new Error(`--latency: expected milliseconds >= 0, got "${values.latency}"`);
  const timeScale = values['time-scale'] === undefined ? undefined : Number(values['time-scale']);
  if (timeScale !== undefined && !(timeScale > 0))
    throw new Error(`--time-scale: expected a number > 0, got "${values['time-scale']}"`);
  const sim = await GraphTenantSimulator.start({
    ...(values.seed ? { seed: readSeedFile(values.seed) } : {}),
    port,
    ...(latency !== undefined ? { latency: { meanMs: latency, jitterMs: latency / 2 } } : {}),
    ...(timeScale !== undefined ? { throttle: { timeScale } } : {}),
  });
  process.stdout.write(JSON.stringify(sim.endpoints()) + '\n');
  const stop = (): void => {
    void sim.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`graph simulator: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(2);
});

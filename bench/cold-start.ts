// npm run bench -- --scenario cold-start: how long a fresh Node 22 process takes from its start until
// every function is registered, loading the deployable artifact (npm run package) the way the
// Functions worker does (test/artifact/fake-worker). Median of 5 runs, each a new process with a cold
// module cache; the source tree (tsc output plus the full node_modules) is timed the same way for
// comparison. The Functions host's own start and the instance allocation in Azure come on top.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { unzipSync } from 'fflate';
import type { FakeWorkerReport } from '../test/artifact/fake-worker';

const repo = resolve(__dirname, '../..');
const runs = 5;
const node22 = existsSync(join(repo, 'node_modules/.bin/node'))
  ? join(repo, 'node_modules/.bin/node')
  : process.execPath;
const fakeWorker = join(repo, 'dist/test/artifact/fake-worker.js');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/** One cold process: milliseconds until registered (in-process) and until it exited (seen from here). */
function once(dir: string): { registeredMs: number; exitMs: number; functions: number } {
  const started = process.hrtime.bigint();
  const r = spawnSync(node22, [fakeWorker, dir, '--register-only'], {
    cwd: dir,
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', HOME: tmpdir() },
  });
  const exitMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`loading ${dir} failed:\n${r.stderr}`);
  const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as FakeWorkerReport;
  return { registeredMs: report.registeredAfterMs, exitMs, functions: report.functions.length };
}

function measure(label: string, dir: string) {
  once(dir); // warms the OS file cache, as an instance that just fetched its package has it
  const samples = Array.from({ length: runs }, () => once(dir));
  return {
    layout: label,
    functions: samples[0]!.functions,
    medianRegisteredMs: Math.round(median(samples.map((s) => s.registeredMs))),
    medianProcessMs: Math.round(median(samples.map((s) => s.exitMs))),
    registeredMs: samples.map((s) => Math.round(s.registeredMs)),
  };
}

function unpackedArtifact(): string {
  const out = mkdtempSync(join(tmpdir(), 'cold-start-out-'));
  const packaged = spawnSync(node22, [join(repo, 'scripts/package.js'), '--out', out], {
    cwd: repo,
    encoding: 'utf8',
  });
  if (packaged.status !== 0) throw new Error(`npm run package failed:\n${packaged.stderr}`);
  const zip = packaged.stdout.trim().split('\n').at(-1)!;
  const dir = mkdtempSync(join(tmpdir(), 'cold-start-app-'));
  for (const [name, bytes] of Object.entries(unzipSync(readFileSync(zip)))) {
    if (name.endsWith('/')) continue;
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), bytes);
  }
  rmSync(out, { recursive: true, force: true });
  return dir;
}

export function coldStart(): Record<string, unknown> {
  const artifact = unpackedArtifact();
  try {
    return {
      scenario: 'cold-start',
      runs,
      results: [
        measure('artifact (bundled)', artifact),
        measure('source tree (tsc output + node_modules)', repo),
      ],
    };
  } finally {
    rmSync(artifact, { recursive: true, force: true });
  }
}

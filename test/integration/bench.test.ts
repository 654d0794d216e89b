import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

describe('npm run bench -- --quick --json', () => {
  it('prints every scenario with its figures, and no mailbox fails', async () => {
    const bench = resolve(__dirname, '../../bench/run.js');
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((done) => {
      const child = spawn(process.execPath, [bench, '--quick', '--json'], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('exit', (c) => done({ code: c, stdout: out }));
    });
    assert.equal(code, 0);
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!);
    assert.deepEqual(
      report.results.map((r: any) => r.scenario),
      ['initial-fill', 'steady-state', 'incremental', 'large-gal', 'wide'],
    );
    for (const r of report.results) {
      assert.equal(r.failedMailboxes, 0, r.scenario);
      for (const k of [
        'graphRequests',
        'lowerBoundRequests',
        'ratioToLowerBound',
        'throttled429',
        'wallSeconds',
        'peakRssMB',
        'tableTransactions',
      ])
        assert.equal(typeof r[k], 'number', `${r.scenario}.${k}`);
      assert.ok(r.requestsByKind && typeof r.requestsByKind === 'object');
    }
    const steady = report.results.find((r: any) => r.scenario === 'steady-state');
    assert.equal(
      steady.contacts.created + steady.contacts.updated + steady.contacts.deleted,
      0,
      'steady state writes nothing',
    );
  });
});

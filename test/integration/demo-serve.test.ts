import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

describe('npm run demo -- --serve', () => {
  it('prints the dashboard URL, serves it until Ctrl-C, then stops', async () => {
    const demo = resolve(__dirname, '../../dev/demo.js');
    const child = spawn(
      process.execPath,
      [demo, '--serve', '--json', '--users', '40', '--mailboxes', '5', '--latency', '0'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<number | null>((done) => child.on('exit', (c) => done(c)));
    try {
      const url = await new Promise<string>((found, failed) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const line = out.split('\n').find((l) => l.startsWith('{"dashboard"'));
          if (line) found((JSON.parse(line) as { dashboard: string }).dashboard);
        });
        void exited.then((c) =>
          failed(new Error(`the demo exited (${c}) before it printed the dashboard URL`)),
        );
      });
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/api\/dashboard\/$/);
      const page = await fetch(url);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<title>Contact sync dashboard<\/title>/);
      const config = (await (await fetch(new URL('/api/dashboard-api/config', url))).json()) as {
        signIn: string;
      };
      assert.equal(config.signIn, 'local');
      // Still serving a moment later: it does not end after the two passes.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await fetch(url)).status, 200);
    } finally {
      child.kill('SIGINT');
    }
    assert.equal(await exited, 130);
  });
});

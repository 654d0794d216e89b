// scripts/package.js on every platform azd runs it from: npm is started so that Windows finds it, and a
// failure to start says why.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const repo = resolve(__dirname, '../../..');
type Command = { cmd: string; args: string[]; shell: boolean };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const script = require(resolve(repo, 'scripts/package.js')) as {
  npmCommand: (args: string[], env?: Record<string, string>, platform?: string) => Command;
  run: (command: Command, cwd: string) => void;
};

describe('the packaging script (scripts/package.js)', () => {
  it("runs npm's own script with this node when npm started it (npm_execpath), on any platform", () => {
    const cli = 'C:\\Program Files\\nodejs\\node_modules\\npm\\bin\\npm-cli.js';
    for (const platform of ['win32', 'linux'])
      assert.deepEqual(script.npmCommand(['ci'], { npm_execpath: cli }, platform), {
        cmd: process.execPath,
        args: [cli, 'ci'],
        shell: false,
      });
  });

  it('starts npm through a shell on Windows (npm.cmd) when npm did not start it', () => {
    assert.deepEqual(script.npmCommand(['ci'], {}, 'win32'), { cmd: 'npm', args: ['ci'], shell: true });
    assert.deepEqual(script.npmCommand(['ci'], {}, 'linux'), { cmd: 'npm', args: ['ci'], shell: false });
    // Another package manager's script is not npm's.
    assert.equal(
      script.npmCommand(['ci'], { npm_execpath: '/usr/lib/yarn/bin/yarn.js' }, 'linux').cmd,
      'npm',
    );
  });

  it('says why a command could not start (the spawn error), not only a null exit status', () => {
    assert.throws(
      () => script.run({ cmd: 'no-such-command-m365', args: ['ci'], shell: false }, repo),
      /no-such-command-m365 ci could not start: .*ENOENT/,
    );
  });

  it("azure.yaml's prepackage hook has a Windows (pwsh) and a POSIX (sh) variant", () => {
    const yaml = readFileSync(resolve(repo, 'azure.yaml'), 'utf8');
    assert.match(
      yaml,
      /^ {6}prepackage:\n {8}windows:\n {10}shell: pwsh\n {10}run: npm run package\n {8}posix:\n {10}shell: sh\n {10}run: npm run package\n/m,
    );
  });
});

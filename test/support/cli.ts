// The admin CLI as an admin runs it: the built bin in a child process, its exit code and output.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const cliBin = resolve(__dirname, '../../../bin/m365-contact-sync.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `env` over this process's environment; an `undefined` value unsets a variable. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [cliBin, ...args], {
      env: Object.fromEntries<string>(
        Object.entries({ ...process.env, ...env }).filter((e): e is [string, string] => e[1] !== undefined),
      ),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => done({ code, stdout, stderr }));
  });
}

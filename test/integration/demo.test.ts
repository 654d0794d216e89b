import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

describe('npm run demo', () => {
  it('fills every mailbox, rolls a renewed certificate, then writes only the changed contacts, ends with a JSON line and stops what it started', async () => {
    const demo = resolve(__dirname, '../../dev/demo.js');
    const { code, stdout, stderr } = await new Promise<{
      code: number | null;
      stdout: string;
      stderr: string;
    }>((done) => {
      const child = spawn(
        process.execPath,
        [demo, '--json', '--users', '80', '--mailboxes', '10', '--latency', '5'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('exit', (c) => done({ code: c, stdout: out, stderr: err }));
    });
    assert.equal(code, 0, stderr);
    // Issue 17 item 7: the local runner is the functions' host, so @azure/functions has no "test mode".
    assert.doesNotMatch(stdout + stderr, /test mode|WARNING/);
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!);
    const [first, second] = summary.passes;
    assert.equal(summary.failedMailboxes, 0);
    assert.ok(first.contacts.created > 100);
    assert.equal(first.mailboxes.failed, 0);
    // The user who left had a mailbox: it left the targets, and its own worker emptied it in pass 2 (issue 17),
    // counted apart from the targets the pass synced.
    assert.equal(first.departed, null);
    assert.equal(second.departed.mailboxes, 1);
    assert.equal(second.departed.succeeded, 1);
    assert.equal(second.departed.named.length, 1);
    assert.ok(second.departed.removed > 0, 'the departed mailbox emptied');
    const mailboxes = second.mailboxes.succeeded;
    assert.equal(
      second.mailboxes.total,
      mailboxes + second.mailboxes.skipped,
      'not counted among the targets',
    );
    // Two users changed, one left, one joined: only those contacts are written in pass 2.
    assert.equal(second.contacts.created, mailboxes);
    assert.equal(second.contacts.deleted, mailboxes, 'the leaver in every mailbox');
    assert.ok(second.contacts.updated <= 2 * mailboxes && second.contacts.updated >= 2 * (mailboxes - 2));
    assert.equal(summary.reportsSent, 2);
    // Key Vault renewed the certificate before pass 2; the rotation rolled it, and pass 2 signed with it.
    assert.notEqual(second.certificateVersion, first.certificateVersion);
    assert.match(summary.certificateRotation.events.join('\n'), /added version .* to the application/);
    assert.match(summary.certificateRotation.events.join('\n'), /rolled: workers now sign with version/);
    assert.equal(summary.certificateRotation.keysOnApplication, 2, 'both keys during the overlap');
    // Issue 17: the old tool's folders in three mailboxes are taken over, not doubled ...
    assert.deepEqual(summary.oldTool, { mailboxes: 3, contacts: 30 });
    assert.deepEqual(summary.takeOver, { adopted: 24, removed: 6, left: 0 });
    // ... and the demo ends with a clean remove dry run: every mailbox, only the folders we created.
    assert.equal(summary.removeDryRun.failed, 0);
    assert.equal(summary.removeDryRun.mailboxes, mailboxes);
    assert.equal(summary.removeDryRun.folders, mailboxes - 3);
    assert.ok(summary.removeDryRun.contacts > 100);
    // It keeps its policy file and writes the report mails it sent, as .eml, where it says.
    assert.ok(JSON.parse(readFileSync(summary.policyFile, 'utf8')).policies.length > 0);
    assert.equal(summary.reportFiles.length, summary.reportsSent);
    for (const file of summary.reportFiles as string[]) {
      assert.match(file, /report-\d+\.eml$/);
      assert.match(readFileSync(file, 'utf8'), /^Subject: /m);
    }
  });
});

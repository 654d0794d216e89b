// Issue 17 through the CLI binary: a take-over's dry run lists per mailbox what it would adopt and
// leave (item 1), `remove` with its dry run and confirmation (item 2), and a run whose deletions the
// threshold held back says so first, exits 1 and names `run --force` (item 3).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { simulatorConnection, startSimulator } from '../../support/clients';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { startAll } from '../../support/start-all';
import { folderContacts, tagOf } from '../../support/engine';
import { writesSince } from '../../support/invariant';
import { runCli as cli } from '../../support/cli';

const lastJson = (stdout: string): Record<string, any> =>
  JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, any>;

describe('the CLI: take-over, held-back deletions, remove (issue 17 items 1-3)', () => {
  let sim: GraphTenantSimulator;
  let azurite: AzuriteHandle;
  let config: string;
  let env: Record<string, string>;
  let a: SimUser;
  let b: SimUser;
  let others: SimUser[];
  before(async () => {
    [sim, azurite] = await startAll(
      startSimulator({ seed: { generate: { users: 16, mailboxes: 16, awkward: false } } }),
      startAzurite(),
    );
    const mailboxUsers = [...sim.tenant.users.values()].filter(
      (u) => u.mailbox === 'user' && u.accountEnabled,
    );
    [a, b] = [mailboxUsers[0]!, mailboxUsers[1]!];
    others = mailboxUsers.slice(2);
    // The old tool's folder in a: three colleagues and someone the directory does not know.
    const mailbox = sim.tenant.mailbox(a.id)!;
    const folder = mailbox.createFolder('Company Directory', mailbox.contactsFolderId);
    for (const u of others.slice(0, 3))
      mailbox.createContact(
        folder.id,
        { displayName: u.displayName, emailAddresses: [{ address: u.mail!, name: u.displayName! }] },
        [],
        new Date(),
      );
    mailbox.createContact(
      folder.id,
      { displayName: 'Outside Person', emailAddresses: [{ address: 'outsider@fabrikam.example' }] },
      [],
      new Date(),
    );
    config = join(mkdtempSync(join(tmpdir(), 'cli17-')), 'policies.json');
    writeFileSync(
      config,
      JSON.stringify({
        connections: [simulatorConnection(sim, 'contoso', 'pemFile')],
        policies: [
          {
            id: 'takeover',
            name: 'Take-over',
            connection: 'contoso',
            source: { type: 'directory' },
            targets: { type: 'users', users: [a.userPrincipalName] },
            folder: { name: 'Company Directory' },
            options: { unmanagedContacts: 'adopt' },
          },
          {
            id: 'held',
            name: 'Held',
            connection: 'contoso',
            source: { type: 'directory' },
            targets: { type: 'users', users: [b.userPrincipalName] },
            folder: { name: 'Held' },
            options: { deletionThreshold: { percent: 0, minimum: 2 } },
          },
        ],
      }),
    );
    env = { NODE_EXTRA_CA_CERTS: sim.caCertPath, CONTACTSYNC_STORAGE: azurite.connectionString };
  });
  after(async () => {
    await Promise.all([sim.close(), azurite.close()]);
  });

  it('run --dry-run lists per mailbox what a take-over would adopt and leave, and writes nothing; run adopts', async () => {
    const mark = sim.log.lastSeq;
    const dry = await cli(['run', '--config', config, '--policy', 'takeover', '--dry-run'], env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(
      dry.stdout,
      new RegExp(`${a.userPrincipalName}: unmanaged contacts: 3 adopted, 0 removed, 1 left`),
    );
    for (const u of others.slice(0, 3))
      assert.match(dry.stdout, new RegExp(`adopt +${u.displayName} <${u.mail!.replace(/\./g, '\\.')}>`));
    assert.match(dry.stdout, /leave +Outside Person <outsider@fabrikam\.example> \(noMatch\)/);
    assert.deepEqual(writesSince(sim, mark), []);

    const real = await cli(['run', '--config', config, '--policy', 'takeover', '--json'], env);
    assert.equal(real.code, 0, real.stderr);
    assert.deepEqual(lastJson(real.stdout).takeOver, { adopted: 3, removed: 0, left: 1 });
    const folder = folderContacts(sim, a.userPrincipalName, 'Company Directory');
    assert.equal(folder.filter((c) => tagOf(c) === undefined).length, 1, 'only the outsider is not ours');
    assert.equal(lastJson(real.stdout).contacts.created, 15 - 3, 'the adopted three are not created again');
  });

  it('deletions the threshold holds back: said first, in the JSON as heldBack, exit 1, naming run --force; --force applies them', async () => {
    const filled = await cli(['run', '--config', config, '--policy', 'held'], env);
    assert.equal(filled.code, 0, filled.stderr);
    for (const u of others.slice(5, 10)) sim.tenant.deleteUser(u.id);
    const held = await cli(['run', '--config', config, '--policy', 'held', '--json'], env);
    assert.equal(held.code, 1, 'held-back deletions are not a success');
    assert.match(held.stderr, /HELD BACK: 5 deletions in 1 mailbox were held back .*run --force/);
    const summary = lastJson(held.stdout);
    assert.deepEqual(summary.heldBack, { mailboxes: 1, deletions: 5 });
    assert.equal(summary.contacts.deleted, 0);
    const text = await cli(['run', '--config', config, '--policy', 'held'], env);
    assert.equal(text.code, 1);
    const lines = text.stdout.trim().split('\n');
    const summaryAt = lines.findIndex((l) => /^Run [0-9a-f-]+:/.test(l));
    assert.match(lines[summaryAt - 1] ?? '', /^HELD BACK: 5 deletions/, 'said before the summary');
    const forced = await cli(['run', '--config', config, '--policy', 'held', '--force', '--json'], env);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(lastJson(forced.stdout).contacts.deleted, 5);
    assert.deepEqual(lastJson(forced.stdout).heldBack, { mailboxes: 0, deletions: 0 });
  });

  it('remove: a dry run first, a confirmation (--yes without a terminal), only tagged contacts go; the folder only if we created it', async () => {
    const dry = await cli(['remove', '--config', config, '--policy', 'takeover', '--dry-run'], env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /1 contact without the policy's tag left/);
    assert.match(
      dry.stdout,
      /Dry run: would remove 15 contacts of policy "takeover" from 1 mailbox \(0 folders\)/,
    );
    const unconfirmed = await cli(['remove', '--config', config, '--policy', 'takeover'], env);
    assert.equal(unconfirmed.code, 2);
    assert.match(unconfirmed.stderr, /--dry-run first, then confirm with --yes/);
    assert.equal(
      folderContacts(sim, a.userPrincipalName, 'Company Directory').length,
      16,
      'nothing removed yet',
    );

    const done = await cli(['remove', '--config', config, '--policy', 'takeover', '--yes'], env);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /Removed 15 contacts of policy "takeover" from 1 mailbox \(0 folders\)/);
    const left = folderContacts(sim, a.userPrincipalName, 'Company Directory');
    assert.deepEqual(
      left.map((c) => c.data.displayName),
      ['Outside Person'],
      "the old tool's folder keeps what was not ours",
    );

    const unknown = await cli(
      ['remove', '--config', config, '--policy', 'held', '--mailbox', 'nobody@contoso.example', '--yes'],
      env,
    );
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /nobody@contoso\.example: no such user/);
    const own = await cli(
      ['remove', '--config', config, '--policy', 'held', '--mailbox', b.userPrincipalName, '--yes', '--json'],
      env,
    );
    assert.equal(own.code, 0, own.stderr);
    assert.equal(lastJson(own.stdout).totals.folders, 1, 'the folder we created goes once empty');
    assert.equal(folderContacts(sim, b.userPrincipalName, 'Held').length, 0);
  });

  it('history: runs lists the CLI runs newest first, run-status shows one with its mailboxes, mailbox finds the last outcome by UPN', async () => {
    const listed = await cli(['runs', '--policy', 'held', '--last', '2', '--json'], env);
    assert.equal(listed.code, 0, listed.stderr);
    const runs = lastJson(`{"r":${listed.stdout.trim()}}`).r as {
      runId: string;
      trigger: string;
      options: { fullResync: boolean };
    }[];
    assert.equal(runs.length, 2);
    assert.deepEqual(
      runs.map((r) => r.trigger),
      ['cli', 'cli'],
    );
    assert.equal(runs[0]!.options.fullResync, true, 'the newest is the forced run');
    const text = await cli(['runs', '--last', '50'], env);
    assert.match(text.stdout, /takeover {2}cli/);
    assert.match(text.stdout, /held {2}cli/);

    const status = await cli(['run-status', runs[1]!.runId], env);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`${b.userPrincipalName}: succeeded, .*5 deletions held back`));
    assert.equal((await cli(['run-status', '00000000-0000-4000-8000-000000000000'], env)).code, 1);

    const mine = await cli(['mailbox', b.userPrincipalName.toUpperCase()], env);
    assert.equal(mine.code, 0, mine.stderr);
    assert.match(
      mine.stdout,
      new RegExp(`^held: run ${runs[0]!.runId} .*: ${b.userPrincipalName}: succeeded`, 'm'),
    );
    const nobody = await cli(['mailbox', 'nobody@contoso.example'], env);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stdout, /no run has covered nobody@contoso\.example/);
  });

  it('honest output: --mailbox naming no target exits 1; a source that selects nothing warns and deletes nothing', async () => {
    const stray = await cli(
      ['run', '--config', config, '--policy', 'held', '--mailbox', 'nobody@contoso.example'],
      env,
    );
    assert.equal(stray.code, 1);
    assert.match(stray.stderr, /--mailbox nobody@contoso\.example: not a target of policy "held"/);

    const zero = (filters: unknown[]): string => {
      const file = join(mkdtempSync(join(tmpdir(), 'cli17-zero-')), 'policies.json');
      writeFileSync(
        file,
        JSON.stringify({
          connections: [simulatorConnection(sim, 'contoso', 'pemFile')],
          policies: [
            {
              id: 'zero',
              name: 'Zero',
              connection: 'contoso',
              source: { type: 'directory', filters },
              targets: { type: 'users', users: [b.userPrincipalName] },
              folder: { name: 'Zero' },
              options: { deletionThreshold: { percent: 100, minimum: 1000 } },
            },
          ],
        }),
      );
      return file;
    };
    const filled = await cli(['run', '--config', zero([]), '--policy', 'zero', '--json'], env);
    assert.equal(filled.code, 0, filled.stderr);
    const had = folderContacts(sim, b.userPrincipalName, 'Zero').length;
    assert.ok(had > 5);
    // A filter that matches nobody: the threshold alone (100 %) would let every contact go.
    const none = await cli(
      [
        'run',
        '--config',
        zero([{ attribute: 'department', op: 'equals', value: 'No such department' }]),
        '--policy',
        'zero',
      ],
      env,
    );
    assert.equal(none.code, 1, none.stdout);
    assert.match(none.stdout, /note: the policy selects no source objects: no contact is deleted/);
    assert.match(none.stdout, new RegExp(`HELD BACK: ${had} deletions in 1 mailbox were held back`));
    assert.equal(folderContacts(sim, b.userPrincipalName, 'Zero').length, had, 'nothing deleted');
  });

  it('mailboxes leaving the targets beyond their limit: HELD BACK first, in the JSON, exit 1; no target left names remove --policy', async () => {
    const three = others.slice(11, 14);
    assert.equal(three.length, 3);
    const departFile = (targets: string[]): string => {
      const file = join(mkdtempSync(join(tmpdir(), 'cli17-depart-')), 'policies.json');
      writeFileSync(
        file,
        JSON.stringify({
          connections: [simulatorConnection(sim, 'contoso', 'pemFile')],
          policies: [
            {
              id: 'depart',
              name: 'Depart',
              connection: 'contoso',
              source: { type: 'directory' },
              targets: { type: 'users', users: targets },
              folder: { name: 'Depart' },
            },
          ],
        }),
      );
      return file;
    };
    const filled = await cli(
      ['run', '--config', departFile(three.map((u) => u.userPrincipalName)), '--policy', 'depart'],
      env,
    );
    assert.equal(filled.code, 0, filled.stderr);
    const one = departFile([three[0]!.userPrincipalName]);
    const held = await cli(['run', '--config', one, '--policy', 'depart'], env);
    assert.equal(held.code, 1, 'two of three mailboxes left at once: held back, not a success');
    const lines = held.stdout.trim().split('\n');
    const summaryAt = lines.findIndex((l) => /^Run [0-9a-f-]+:/.test(l));
    assert.match(
      lines[summaryAt - 1] ?? '',
      /^HELD BACK: 2 mailboxes that left the policy's targets were not cleaned .*run --force/,
      'said before the summary',
    );
    for (const u of three.slice(1))
      assert.ok(folderContacts(sim, u.userPrincipalName, 'Depart').length > 0, 'their contacts stay');
    const json = await cli(['run', '--config', one, '--policy', 'depart', '--json'], env);
    assert.equal(json.code, 1);
    assert.deepEqual(lastJson(json.stdout).heldBack, {
      mailboxes: 0,
      deletions: 0,
      departedMailboxes: 2,
      noTarget: false,
    });
    const had = folderContacts(sim, three[1]!.userPrincipalName, 'Depart').length;
    const forced = await cli(['run', '--config', one, '--policy', 'depart', '--force'], env);
    assert.equal(forced.code, 0, forced.stdout);
    for (const u of three.slice(1))
      assert.equal(folderContacts(sim, u.userPrincipalName, 'Depart').length, 0);
    // The departed mailboxes are counted apart: the run targeted one mailbox and emptied two that left.
    const departedNames = three
      .slice(1)
      .map((u) => u.userPrincipalName)
      .sort();
    const [, forcedRun] =
      /^Run ([0-9a-f-]+): 1 mailbox \(1 ok, 0 failed, 0 skipped\)$/m.exec(forced.stdout) ?? [];
    assert.ok(forcedRun, forced.stdout);
    const departedText =
      /^departed: 2 mailboxes left the policy's targets: 2 emptied \((\d+) contacts removed\): (.*)$/m.exec(
        forced.stdout,
      );
    assert.ok(departedText, forced.stdout);
    assert.equal(Number(departedText[1]), 2 * had);
    assert.deepEqual(departedText[2]!.split(', ').sort(), departedNames);
    assert.match(
      forced.stdout,
      /contacts: 0 created, 0 updated, 0 deleted/,
      'their removals are not deletions',
    );
    // Each departed mailbox's progress line says it left, so its removals are not read as deletions.
    for (const upn of departedNames)
      assert.match(
        forced.stdout,
        new RegExp(`^\\[\\d+/\\d+\\] ${upn.replace(/\./g, '\\.')} \\(left the targets\\): `, 'm'),
      );
    const status = await cli(['run-status', forcedRun, '--json'], env);
    const recorded = lastJson(status.stdout);
    assert.deepEqual(recorded.mailboxes, { succeeded: 1, failed: 0, skipped: 0 });
    assert.equal(recorded.contacts.deleted, 0);
    assert.deepEqual(
      { ...recorded.departed, named: [...recorded.departed.named].sort() },
      { mailboxes: 2, succeeded: 2, failed: 0, skipped: 0, removed: 2 * had, named: departedNames },
    );
    const statusText = await cli(['run-status', forcedRun], env);
    assert.match(statusText.stdout, /^departed: 2 mailboxes left the policy's targets: 2 emptied/m);
    assert.match(
      statusText.stdout,
      new RegExp(`^  ${three[1]!.userPrincipalName} \\(left the targets\\): succeeded`, 'm'),
    );
    const listed = await cli(['runs', '--policy', 'depart', '--last', '1'], env);
    assert.match(
      listed.stdout,
      new RegExp(
        `^${forcedRun} .*mailboxes 1 ok / 0 failed / 0 skipped .* departed 2 \\(-${2 * had}\\)`,
        'm',
      ),
    );

    const none = await cli(
      ['run', '--config', departFile(['nobody@contoso.example']), '--policy', 'depart', '--force'],
      env,
    );
    assert.equal(none.code, 1);
    assert.match(none.stdout, /^HELD BACK: 1 mailbox left .* no target is left: .*remove --policy depart/m);
    assert.ok(folderContacts(sim, three[0]!.userPrincipalName, 'Depart').length > 0, 'even forced');
  });
});

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import { simulatorConnection, startSimulator } from '../../support/clients';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { startAll } from '../../support/start-all';
import { folderContacts, tagCounts } from '../../support/engine';
import { hostCredential } from '../../support/clients';
import { App } from '../../../src/app/composition';
import { parseSettings } from '../../../src/app/settings';
import { startRun } from '../../../src/app/use-cases';
import { runCli as cli } from '../../support/cli';

describe('the admin CLI', () => {
  let sim: GraphTenantSimulator;
  let azurite: AzuriteHandle;
  let dir: string;
  let config: string;
  let env: Record<string, string>;
  let targets: string[];
  before(async () => {
    [sim, azurite] = await startAll(
      startSimulator({ seed: { generate: { users: 30, mailboxes: 5 } } }),
      startAzurite(),
    );
    dir = mkdtempSync(join(tmpdir(), 'cli-'));
    config = join(dir, 'policies.json');
    targets = [...sim.tenant.users.values()]
      .filter((u) => u.mailbox === 'user' && u.accountEnabled)
      .slice(0, 3)
      .map((u) => u.userPrincipalName);
    writeFileSync(
      config,
      JSON.stringify({
        connections: [
          simulatorConnection(sim, 'contoso', 'pemFile'),
          simulatorConnection(sim, 'vaulted', 'keyVault'),
        ],
        policies: [
          {
            id: 'gal',
            name: 'GAL',
            connection: 'contoso',
            source: { type: 'directory' },
            targets: { type: 'users', users: targets },
            folder: { name: 'Company Directory' },
          },
          {
            id: 'via-vault',
            name: 'Via Key Vault',
            connection: 'vaulted',
            source: { type: 'directory' },
            targets: { type: 'users', users: [targets[0]!, "o'neil@contoso.example"] },
            folder: { name: 'Vault' },
          },
        ],
      }),
    );
    // TLS trust as Node's; the Key Vault credential of a workstation from the environment.
    env = {
      NODE_EXTRA_CA_CERTS: sim.caCertPath,
      AZURE_TENANT_ID: sim.tenantId,
      AZURE_CLIENT_ID: sim.hostIdentity.clientId,
      AZURE_CLIENT_SECRET: sim.hostIdentity.clientSecret,
      AZURE_AUTHORITY_HOST: sim.authorityHost,
      CONTACTSYNC_STORAGE: azurite.connectionString,
      // The simulator's Key Vault is local and cannot pass the SDK's challenge-resource check.
      CONTACTSYNC_LOCAL_KEY_VAULT: 'allow',
    };
  });
  after(async () => {
    await Promise.all([sim.close(), azurite.close()]);
  });

  it('has --help for each command', async () => {
    for (const args of [
      ['--help'],
      ['validate', '--help'],
      ['preview', '--help'],
      ['run', '--help'],
      ['doctor', '--help'],
      ['cert', 'create', '--help'],
      ['cert', 'show', '--help'],
      ['scope', '--help'],
      ['setup', '--help'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /Usage: m365-contact-sync/);
    }
  });

  it('answers usage errors with exit 2', async () => {
    assert.equal((await cli(['run', '--config', config])).code, 2, 'missing --policy');
    assert.equal((await cli(['frobnicate'])).code, 2);
    assert.equal(
      (await cli(['cert', 'create', '--vault', sim.keyVaultUrl, '--name', 'x', '--months', '0'], env)).code,
      2,
    );
  });

  it('validate: 0 for a good file; 2 with JSON paths for a bad one', async () => {
    const good = await cli(['validate', config]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /2 valid policies, 0 invalid/);
    const bad = join(dir, 'bad.json');
    writeFileSync(
      bad,
      JSON.stringify({
        connections: [{ id: 'c', tenantId: 'nope', clientId: sim.clientId, certificate: { pemFile: 'x' } }],
        policies: [],
      }),
    );
    const r = await cli(['validate', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /connections\[0\]\.tenantId: must be a GUID/);
    const badPolicy = join(dir, 'bad-policy.json');
    const file = JSON.parse(readFileSync(config, 'utf8'));
    file.policies[0].folder = { name: ' spaced ' };
    writeFileSync(badPolicy, JSON.stringify(file));
    const p = await cli(['validate', badPolicy]);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /policies\[0\]\.folder\.name/);
    assert.equal((await cli(['validate', join(dir, 'missing.json')])).code, 2);
  });

  it('preview: counts and samples of source objects and target mailboxes', async () => {
    const r = await cli(['preview', '--config', config, '--policy', 'gal', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.ok(out.sourceObjects > 0);
    assert.equal(out.targetMailboxes, 3);
    assert.deepEqual([...out.targetSamples].sort(), [...targets].sort());
    const missing = await cli(['preview', '--config', config, '--policy', 'nope'], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no policy "nope"/);
  });

  it('run --dry-run writes nothing; run --json fills the mailboxes and ends with the summary line', async () => {
    const dry = await cli(['run', '--config', config, '--policy', 'gal', '--dry-run', '--json'], env);
    assert.equal(dry.code, 0, dry.stderr);
    const planned = JSON.parse(dry.stdout.trim().split('\n').at(-1)!);
    assert.equal(planned.dryRun, true);
    assert.ok(planned.contacts.created > 0);
    assert.equal(folderContacts(sim, targets[0]!, 'Company Directory').length, 0);
    const r = await cli(['run', '--config', config, '--policy', 'gal', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.deepEqual(Object.keys(summary), [
      'policy',
      'runId',
      'dryRun',
      'mailboxes',
      'contacts',
      'graphRequests',
      // Issue 17: deletions the threshold held back, and the run's notes.
      'heldBack',
      'notes',
    ]);
    assert.deepEqual(Object.keys(summary.mailboxes), ['total', 'succeeded', 'failed', 'skipped']);
    assert.deepEqual(Object.keys(summary.contacts), [
      'created',
      'updated',
      'deleted',
      'unchanged',
      'restored',
    ]);
    assert.equal(summary.mailboxes.total, 3);
    assert.equal(summary.contacts.created, planned.contacts.created);
    assert.ok(summary.graphRequests >= summary.contacts.created, 'every write counted');
    for (const t of targets) assert.ok(tagCounts(folderContacts(sim, t, 'Company Directory')).size > 0);
    const again = JSON.parse(
      (await cli(['run', '--config', config, '--policy', 'gal', '--json'], env)).stdout
        .trim()
        .split('\n')
        .at(-1)!,
    );
    assert.equal(again.contacts.created, 0, 'state kept in --storage / CONTACTSYNC_STORAGE');
    assert.equal(again.contacts.unchanged, summary.contacts.created);
  });

  it('run --mailbox limits the run; a failed mailbox exits 1; the Key Vault certificate works', async () => {
    sim.scopeMailboxes([targets[1]!]);
    try {
      const r = await cli(
        ['run', '--config', config, '--policy', 'via-vault', '--mailbox', targets[0]!],
        env,
      );
      assert.equal(r.code, 1);
      assert.match(r.stderr, /Access to OData is disabled.*RBAC for Applications/);
    } finally {
      sim.scopeMailboxes(null);
    }
    const ok = await cli(
      ['run', '--config', config, '--policy', 'via-vault', '--mailbox', targets[0]!, '--json'],
      env,
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout.trim().split('\n').at(-1)!).mailboxes.total, 1);
    const noStorage = await cli(
      [
        'run',
        '--config',
        config,
        '--policy',
        'gal',
        '--storage',
        'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;',
      ],
      env,
    );
    assert.equal(noStorage.code, 2);
    assert.match(noStorage.stderr, /storage is not reachable/);
  });

  it('doctor: one line per check, and the fix for a missing permission', async () => {
    const healthy = await cli(['doctor', '--config', config], env);
    assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
    assert.match(healthy.stdout, /OK {3}contoso: permission User\.Read\.All/);
    assert.match(
      healthy.stdout,
      /OK {3}contoso: certificate expires in 3\d\d days \(\d{4}-\d\d-\d\d, thumbprint [0-9A-F]{40}\)/,
    );
    sim.setPermissions(['User.Read.All']);
    try {
      const sick = await cli(['doctor', '--config', config], env);
      assert.equal(sick.code, 1);
      assert.match(sick.stdout, /FAIL contoso: permission Contacts\.ReadWrite: missing/);
      assert.match(
        sick.stdout,
        /fix: .*or add the application permission Contacts\.ReadWrite with admin consent/,
      );
    } finally {
      sim.setPermissions([
        'User.Read.All',
        'GroupMember.Read.All',
        'OrgContact.Read.All',
        'Contacts.ReadWrite',
        'Mail.Send',
      ]);
    }
  });

  it('cert create makes a PEM certificate in Key Vault and writes the .cer; cert show prints expiry and thumbprints', async () => {
    const out = join(dir, 'app.cer');
    const created = await cli(
      ['cert', 'create', '--vault', sim.keyVaultUrl, '--name', 'cli-cert', '--out', out],
      env,
    );
    assert.equal(created.code, 0, created.stderr);
    assert.ok(existsSync(out));
    const cer = new X509Certificate(readFileSync(out));
    assert.match(cer.subject, /m365-contact-sync/);
    assert.equal(sim.vault.secrets.get('cli-cert')!.at(-1)!.contentType, 'application/x-pem-file');
    const policy = sim.vault.certificates.get('cli-cert')!.at(-1)!.policy;
    assert.deepEqual(
      [policy.validityMonths, policy.exportable, policy.lifetimeActions],
      [12, true, [{ trigger: { lifetime_percentage: 80 }, action: { action_type: 'AutoRenew' } }]],
      'Key Vault renews at 80 % of a 12-month life; the key is exportable (PEM)',
    );
    assert.match(created.stdout, /applicationObjectId/, 'says how to turn on rotation');
    const shown = await cli(['cert', 'show', '--vault', sim.keyVaultUrl, '--name', 'cli-cert'], env);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`thumbprint SHA-1 ${cer.fingerprint.replace(/:/g, '')}`));
    assert.match(shown.stdout, /expires \d{4}-/);
    const missing = await cli(['cert', 'show', '--vault', sim.keyVaultUrl, '--name', 'nope'], env);
    assert.equal(missing.code, 1);
  });

  it("scope prints RBAC for Applications PowerShell for the policy's mailboxes, quoting safely", async () => {
    const r = await cli(['scope', '--config', config, '--policy', 'via-vault']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /New-ManagementScope -Name 'ContactSync-via-vault' -RecipientRestrictionFilter /);
    assert.ok(r.stdout.includes("UserPrincipalName -eq ''o''''neil@contoso.example''"), r.stdout);
    assert.match(
      r.stdout,
      /New-ManagementRoleAssignment -App \$sp\.AppId -Role 'Application Contacts\.ReadWrite' -CustomResourceScope 'ContactSync-via-vault'/,
    );
  });

  it("run drives the Functions app's use-cases: refused (exit 3) while the app holds the policy, recorded as a run, the policy's dryRun and enabled hold", async () => {
    const file = JSON.parse(readFileSync(config, 'utf8'));
    const gal = file.policies[0];
    file.policies.push(
      { ...gal, id: 'held', name: 'Dry by policy', folder: { name: 'Held' }, options: { dryRun: true } },
      { ...gal, id: 'off', name: 'Disabled', folder: { name: 'Off' }, enabled: false },
      { ...gal, id: 'shared', name: 'Shared with the app', folder: { name: 'Shared' } },
    );
    const shared = join(dir, 'shared.json');
    writeFileSync(shared, JSON.stringify(file));
    // The Functions app, on the same storage, starts a run of "shared" and holds its lease.
    const app = new App({
      settings: parseSettings({ AzureWebJobsStorage: azurite.connectionString, POLICY_FILE: shared }),
      credential: hostCredential(sim),
      disableChallengeResourceVerification: true,
    });
    const held = await startRun(app, (await app.policy('shared'))!.policy, 'http', {
      dryRun: false,
      fullResync: false,
      mailboxes: [],
    });
    assert.ok(held.started);
    const refused = await cli(['run', '--config', shared, '--policy', 'shared'], env);
    assert.equal(refused.code, 3, refused.stdout + refused.stderr);
    assert.match(refused.stderr, new RegExp(`"shared" is already running \\(run ${held.runId}`));
    assert.equal(folderContacts(sim, targets[0]!, 'Shared').length, 0, 'the refused run wrote nothing');
    // Once the app's run has finished, the CLI runs, and its run is a run record like the app's.
    await app.runStore.failRun(held.runId, 'test over');
    const ok = await cli(['run', '--config', shared, '--policy', 'shared', '--json'], env);
    assert.equal(ok.code, 0, ok.stderr);
    const summary = JSON.parse(ok.stdout.trim().split('\n').at(-1)!);
    const state = await app.runStore.getPolicyState('shared');
    assert.equal(state.lastRunId, summary.runId);
    assert.equal(state.leaseRunId, null, 'the lease is released');
    const record = (await app.runStore.getRun(summary.runId))!;
    assert.equal(record.trigger, 'cli');
    assert.equal(record.status, 'completed');
    assert.equal(record.contacts.created, summary.contacts.created);
    assert.ok(summary.contacts.created > 0);
    // A policy's dryRun: true holds without --dry-run; a disabled policy exits 2 naming it.
    const dry = await cli(['run', '--config', shared, '--policy', 'held', '--json'], env);
    assert.equal(dry.code, 0, dry.stderr);
    const planned = JSON.parse(dry.stdout.trim().split('\n').at(-1)!);
    assert.equal(planned.dryRun, true);
    assert.ok(planned.contacts.created > 0);
    assert.equal(folderContacts(sim, targets[0]!, 'Held').length, 0, 'nothing written');
    const off = await cli(['run', '--config', shared, '--policy', 'off'], env);
    assert.equal(off.code, 2);
    assert.match(off.stderr, /policy "off" is disabled/);
    const badMailbox = await cli(
      ['run', '--config', shared, '--policy', 'shared', '--mailbox', 'nobody'],
      env,
    );
    assert.equal(badMailbox.code, 2);
    assert.match(badMailbox.stderr, /--mailbox #1: must be a user principal name/);
  });
});

// `setup` through the real CLI (a child process) against the simulator, from a tenant with no app
// registration: the admin signs in with the device code flow (the simulator's test hook approves
// the code the CLI prints), then `run` and `doctor` work with what setup made and nothing else.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import { startSimulator } from '../../support/clients';
import { startAzurite, type AzuriteHandle } from '../../../dev/azurite';
import { startAll } from '../../support/start-all';
import { folderContacts } from '../../support/engine';
import { parsePolicyFile } from '../../../src/sync/config/policy-file';
import { neededPermissions } from '../../../src/app/diagnostics';
import { setupSteps } from '../../../src/cli/setup';
import { BlobServiceClient, BlockBlobClient } from '@azure/storage-blob';
import { startRbacBlobStorage, type RbacBlobStorage } from '../../support/storage-rbac';
import { watchApplicationConformance } from '../../support/conformance';
import { GraphSchemas } from '../../support/graph-schemas';

const bin = resolve(__dirname, '../../../../bin/m365-contact-sync.js');

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

describe('setup: from an empty tenant to a policy that syncs', () => {
  let sim: GraphTenantSimulator;
  let azurite: AzuriteHandle;
  let storage: RbacBlobStorage;
  let conformance: ReturnType<typeof watchApplicationConformance>;
  let dir: string;
  let env: Record<string, string>;
  let admin: string;
  let adminId: string;
  let newcomer: string;

  before(async () => {
    [sim, azurite] = await startAll(
      startSimulator({
        registerApp: false,
        deviceCodeIntervalSeconds: 1,
        seed: { generate: { users: 16, mailboxes: 3, awkward: false } },
      }),
      startAzurite(),
    );
    dir = mkdtempSync(join(tmpdir(), 'setup-'));
    conformance = watchApplicationConformance(sim, new GraphSchemas());
    // The policy blob: Azurite over HTTPS (bearer tokens only over HTTPS) behind Azure RBAC.
    storage = await startRbacBlobStorage(sim, dir);
    await new BlobServiceClient(storage.accountUrl, storage.sharedKey).getContainerClient('config').create();
    const caBundle = join(dir, 'ca-bundle.pem');
    writeFileSync(caBundle, readFileSync(sim.caCertPath, 'utf8') + storage.caPem);
    const people = [...sim.tenant.users.values()].filter((u) => u.accountEnabled && u.mailbox === 'user');
    admin = people[0]!.userPrincipalName;
    adminId = people[0]!.id;
    newcomer = people[1]!.userPrincipalName;
    // Least privilege: consent to Graph's application permissions needs Privileged Role Administrator;
    // creating (and, as its owner, updating) an app registration needs no role.
    sim.assignDirectoryRole(admin, 'Privileged Role Administrator');
    // Key Vault through the same sign-in: Azure RBAC on the vault for the users who run setup.
    for (const user of [admin, newcomer])
      sim.grantUserVaultRoles(user, ['secrets-read', 'certificates-write']);
    env = {
      NODE_EXTRA_CA_CERTS: caBundle,
      // Key Vault as the admin's workstation reaches it (here: the host identity may create certificates).
      AZURE_TENANT_ID: sim.tenantId,
      AZURE_CLIENT_ID: sim.hostIdentity.clientId,
      AZURE_CLIENT_SECRET: sim.hostIdentity.clientSecret,
      AZURE_AUTHORITY_HOST: sim.authorityHost,
      CONTACTSYNC_STORAGE: azurite.connectionString,
      CONTACTSYNC_LOCAL_KEY_VAULT: 'allow',
    };
  });
  after(async () => {
    await Promise.all([sim.close(), azurite.close(), storage?.close()]);
  });

  /** The CLI as a process; `user` signs in with the code it prints; SIGINT once `interruptAt` starts. */
  function cli(args: string[], user?: string, interruptAt?: string, without: string[] = []): Promise<Result> {
    return new Promise((done) => {
      const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
      for (const name of without) delete childEnv[name];
      const child = spawn(process.execPath, [bin, ...args], {
        env: childEnv,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      let approved = false;
      let interrupted = false;
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        const code = /enter the code (\S+) to authenticate/.exec(stdout)?.[1];
        if (code && user && !approved) {
          approved = true;
          sim.approveDeviceCode(code, user);
        }
        if (interruptAt && !interrupted && stdout.includes(`] ${interruptAt}\n`)) {
          interrupted = true;
          child.kill('SIGINT');
        }
      });
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (code, signal) => done({ code, signal, stdout, stderr }));
    });
  }

  const setupArgs = (name: string, out: string, ...extra: string[]): string[] => [
    'setup',
    '--yes',
    '--vault',
    sim.keyVaultUrl,
    '--authority-host',
    sim.authorityHost,
    '--graph-endpoint',
    sim.graphUrl,
    '--app-name',
    name,
    '--certificate',
    name,
    '--out',
    out,
    ...extra,
  ];

  /** One app registration of that name, its service principal, exactly the policy's permissions, one key. */
  function assertOneOfEverything(name: string, file: string): void {
    const apps = sim.appRegistrations().filter((a) => a.displayName === name);
    assert.equal(apps.length, 1, `one app registration named ${name}`);
    const app = apps[0]!;
    assert.ok(app.servicePrincipalId, 'it has a service principal');
    const loaded = parsePolicyFile(readFileSync(file, 'utf8'));
    assert.deepEqual(loaded.invalidPolicies, []);
    const wanted = neededPermissions(loaded.policies).map((n) => n.permission);
    assert.deepEqual([...app.roles].sort(), [...wanted].sort(), 'granted exactly what doctor lists');
    const listed = app.requiredResourceAccess.flatMap((r) => r.resourceAccess.map((a) => a.id));
    assert.equal(listed.length, wanted.length, 'each permission listed once on the registration');
    assert.equal(app.certificates.length, 1, 'one key on the registration');
    const connection = [...loaded.connections.values()][0]!;
    assert.equal(connection.clientId, app.clientId);
    assert.equal(connection.applicationObjectId, app.objectId);
    assert.equal(connection.tenantId, sim.tenantId);
    assert.ok(
      'keyVaultUrl' in connection.certificate && connection.certificate.keyId === app.certificates[0]!.keyId,
    );
  }

  let file: string;
  it('setup --yes: creates the registration, grants what the policy needs, uploads the key, writes a valid file; run and doctor succeed', async () => {
    assert.equal(sim.appRegistrations().length, 0, 'the tenant starts with no app registration');
    file = join(dir, 'policies.json');
    const r = await cli(setupArgs('m365-contact-sync', file), admin);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const [i, name] of setupSteps.entries())
      assert.match(r.stdout, new RegExp(`\\[${i + 1}/${setupSteps.length}\\] ${name}`));
    assert.match(r.stdout, /created app registration "m365-contact-sync"/);
    assert.match(r.stdout, /New-ManagementRoleAssignment/, 'the RBAC for Applications commands are printed');
    assertOneOfEverything('m365-contact-sync', file);

    const run = await cli(['run', '--config', file, '--policy', 'company-directory', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout.trim().split('\n').at(-1)!);
    assert.equal(summary.mailboxes.failed, 0);
    assert.ok(summary.contacts.created > 0);
    const mailbox = [...sim.tenant.users.values()].find((u) => u.mailbox === 'user' && u.accountEnabled)!;
    assert.ok(folderContacts(sim, mailbox.userPrincipalName, 'Company Directory').length > 0);
    const doctor = await cli(['doctor', '--config', file]);
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
  });

  it('a second setup creates and changes nothing', async () => {
    const before = readFileSync(file, 'utf8');
    const mark = sim.log.lastSeq;
    const r = await cli(setupArgs('m365-contact-sync', file), admin);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const writes = sim.log
      .since(mark)
      .filter((e) => e.service !== 'login' && e.method !== 'GET')
      .map((e) => `${e.method} ${e.path} ${e.status}`);
    assert.deepEqual(writes, [], 'no write reached Graph or Key Vault');
    assert.equal(readFileSync(file, 'utf8'), before, 'the policy file is unchanged');
    assert.match(r.stdout, /found app registration/);
    assert.match(r.stdout, /every permission already granted/);
    assertOneOfEverything('m365-contact-sync', file);
  });

  it('a user without the consent role stops at admin consent, naming the role; once given it, a re-run finishes', async () => {
    const out = join(dir, 'newcomer.json');
    const first = await cli(setupArgs('sync-newcomer', out), newcomer);
    assert.equal(first.code, 1, first.stdout + first.stderr);
    assert.match(first.stderr, /admin consent.*Privileged Role Administrator/s);
    const app = sim.appRegistrations().filter((a) => a.displayName === 'sync-newcomer');
    assert.equal(app.length, 1);
    assert.equal(app[0]!.roles.size, 0, 'nothing granted');
    sim.assignDirectoryRole(newcomer, 'Privileged Role Administrator');
    const second = await cli(setupArgs('sync-newcomer', out), newcomer);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stdout, /found app registration "sync-newcomer"/);
    assertOneOfEverything('sync-newcomer', out);
  });

  const blobText = async (url: string): Promise<string | undefined> => {
    try {
      return (await new BlockBlobClient(url, storage.sharedKey).downloadToBuffer()).toString('utf8');
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  };
  const uploadStep = `\\[${setupSteps.indexOf('policy upload') + 1}/${setupSteps.length}\\] policy upload\\n`;

  it("--policy-blob-url: the file goes to the policy blob over HTTPS with the signed-in admin's own token (RBAC on the user), never a key; a second run leaves the blob alone", async () => {
    const name = 'sync-upload';
    const out = join(dir, `${name}.json`);
    const url = `${storage.accountUrl}/config/${name}.json`;
    storage.roles.set(adminId, 'Storage Blob Data Contributor');
    const mark = storage.requests.length;
    const r = await cli(setupArgs(name, out, '--policy-blob-url', url), admin);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`${uploadStep}  uploaded `));
    const sent = storage.requests.slice(mark);
    assert.equal(await blobText(url), readFileSync(out, 'utf8'), 'the blob holds the file');
    assert.ok(
      sent.some((q) => q.method === 'PUT' && q.status === 201),
      JSON.stringify(sent),
    );
    assert.ok(
      sent.every((q) => q.auth === 'bearer'),
      'every request carries the Entra token, none a key',
    );
    assert.deepEqual(
      [...new Set(sent.map((q) => q.principal))],
      [adminId],
      'every request is made as the user who signed in with the device code',
    );
    const again = storage.requests.length;
    const second = await cli(setupArgs(name, out, '--policy-blob-url', url), admin);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stdout, /the policy blob already holds/);
    assert.ok(!storage.requests.slice(again).some((q) => q.method === 'PUT'), 'nothing written');
  });

  it('a signed-in admin without Storage Blob Data Contributor stops at the upload naming the role, the container and the account, the file written; once granted, a re-run uploads it', async () => {
    const name = 'sync-upload-role';
    const out = join(dir, `${name}.json`);
    const url = `${storage.accountUrl}/config/${name}.json`;
    storage.roles.set(adminId, 'Storage Blob Data Reader');
    // Another principal on the workstation (an Azure CLI or service principal sign-in) may write: not who uploads.
    storage.roles.set(sim.hostIdentity.clientId, 'Storage Blob Data Contributor');
    const first = await cli(setupArgs(name, out, '--policy-blob-url', url), admin);
    storage.roles.delete(sim.hostIdentity.clientId);
    assert.equal(first.code, 1, first.stdout + first.stderr);
    assert.match(first.stderr, /setup stopped at "policy upload"/);
    assert.match(first.stderr, new RegExp(`${admin.replace(/[.]/g, '\\.')} may not write`));
    assert.match(
      first.stderr,
      /Storage Blob Data Contributor role on the container "config" of the storage account "devstoreaccount1"/,
    );
    assert.match(
      first.stderr,
      new RegExp(
        `az role assignment create --role "Storage Blob Data Contributor" --assignee ${admin.replace(/[.]/g, '\\.')} --scope .*/blobServices/default/containers/config"`,
      ),
    );
    assert.match(first.stderr, /AuthorizationPermissionMismatch/);
    assert.equal(await blobText(url), undefined, 'nothing uploaded');
    assert.equal(parsePolicyFile(readFileSync(out, 'utf8')).policies.length, 1, 'the policy file is written');
    storage.roles.set(adminId, 'Storage Blob Data Contributor');
    const second = await cli(setupArgs(name, out, '--policy-blob-url', url), admin);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.equal(await blobText(url), readFileSync(out, 'utf8'));
  });

  it('a sign-in client that cannot reach Azure Storage stops at sign in, before anything is created, saying which client to use', async () => {
    const name = 'sync-graph-tools';
    const out = join(dir, `${name}.json`);
    const url = `${storage.accountUrl}/config/${name}.json`;
    const graphTools = '14d82eec-204b-4c2f-b7e8-296a70dab67e';
    const r = await cli(
      setupArgs(name, out, '--policy-blob-url', url, '--sign-in-client-id', graphTools),
      admin,
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /setup stopped at "sign in"/);
    assert.match(r.stderr, new RegExp(`client ${graphTools}.*preauthorized.*AADSTS65002`, 's'));
    assert.match(r.stderr, /without --sign-in-client-id/);
    assert.doesNotMatch(r.stderr, /authentication\(\) method/, 'no SDK advice the admin cannot follow');
    assert.equal(sim.appRegistrations().filter((a) => a.displayName === name).length, 0, 'nothing created');
  });

  it('with no Azure sign-in on the computer (no Azure CLI, no environment credential), setup from an empty tenant succeeds: Key Vault is reached through the device-code sign-in', async () => {
    const name = 'sync-no-azure-login';
    const out = join(dir, `${name}.json`);
    const r = await cli(setupArgs(name, out), admin, undefined, [
      'AZURE_CLIENT_ID',
      'AZURE_CLIENT_SECRET',
      'AZURE_TENANT_ID',
      'PATH',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`creating ${name} in `));
    assert.doesNotMatch(r.stdout + r.stderr, /az login|FAIL/);
    assertOneOfEverything(name, out);
  });

  it('without Key Vault rights setup stops at the certificate naming the role and the vault; once granted, a re-run finishes', async () => {
    const name = 'sync-no-vault';
    const out = join(dir, `${name}.json`);
    // The workstation's identity may write the vault; the signed-in admin may not: setup uses the admin.
    sim.grantUserVaultRoles(admin, []);
    const r = await cli(setupArgs(name, out), admin);
    sim.grantUserVaultRoles(admin, ['secrets-read', 'certificates-write']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /setup stopped at "certificate"/);
    for (const role of ['Key Vault Certificates Officer', 'Key Vault Secrets User'])
      assert.match(
        r.stderr,
        new RegExp(
          `az role assignment create --role "${role}" --assignee-object-id ${adminId} --assignee-principal-type User `,
        ),
        'a command for this user by object id',
      );
    assert.match(r.stderr, new RegExp(sim.keyVaultUrl.replace(/[.]/g, '\\.')));
    assert.match(r.stderr, /run setup again/);
    const again = await cli(setupArgs(name, out), admin);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assertOneOfEverything(name, out);
  });

  it('a policy blob holding a policy the file lacks is not overwritten: setup names it and stops', async () => {
    const name = 'sync-upload-merge';
    const out = join(dir, `${name}.json`);
    const url = `${storage.accountUrl}/config/${name}.json`;
    storage.roles.set(adminId, 'Storage Blob Data Contributor');
    const theirs = JSON.stringify({ connections: [], policies: [{ id: 'hand-made' }] });
    await new BlockBlobClient(url, storage.sharedKey).upload(theirs, theirs.length);
    const r = await cli(setupArgs(name, out, '--policy-blob-url', url), admin);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /differs from .*policy "hand-made" only in the blob.*run setup with --upload/s);
    assert.equal(await blobText(url), theirs, 'the blob is as it was');
  });

  it("--yes never overwrites edits made in the blob, setup's own policy and top-level settings included; --upload replaces it after naming them", async () => {
    const name = 'sync-upload-own';
    const out = join(dir, `${name}.json`);
    const url = `${storage.accountUrl}/config/${name}.json`;
    storage.roles.set(adminId, 'Storage Blob Data Contributor');
    const first = await cli(setupArgs(name, out, '--policy-blob-url', url), admin);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const file = JSON.parse(readFileSync(out, 'utf8')) as { policies: Record<string, unknown>[] };
    const edited = JSON.stringify({
      ...file,
      deletedPolicyGraceDays: 365,
      policies: [{ ...file.policies[0]!, folder: { name: 'Edited in Azure' } }],
    });
    await new BlockBlobClient(url, storage.sharedKey).upload(edited, edited.length);
    const r = await cli(setupArgs(name, out, '--policy-blob-url', url), admin);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /"deletedPolicyGraceDays" only in the blob/);
    assert.match(r.stderr, /policy "company-directory" differs/);
    assert.equal(await blobText(url), edited, 'the blob is as it was');
    const forced = await cli(setupArgs(name, out, '--policy-blob-url', url, '--upload'), admin);
    assert.equal(forced.code, 0, forced.stdout + forced.stderr);
    assert.match(
      forced.stdout,
      /replacing the policy blob \(--upload\); it differed: .*deletedPolicyGraceDays/,
    );
    assert.equal(await blobText(url), readFileSync(out, 'utf8'));
  });

  it('a policy edited in the blob since is not overwritten with the older copy in the file', async () => {
    const name = 'sync-upload-edited';
    const out = join(dir, `${name}.json`);
    const url = `${storage.accountUrl}/config/${name}.json`;
    storage.roles.set(adminId, 'Storage Blob Data Contributor');
    const first = await cli(setupArgs(name, out, '--policy-blob-url', url), admin);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    // Another policy, in the file and (edited since) in the blob.
    const file = JSON.parse(readFileSync(out, 'utf8')) as { policies: Record<string, unknown>[] };
    const other = { ...file.policies[0]!, id: 'other', folder: { name: 'Other' } };
    writeFileSync(out, JSON.stringify({ ...file, policies: [...file.policies, other] }, null, 2) + '\n');
    const edited = JSON.stringify({
      ...file,
      policies: [...file.policies, { ...other, folder: { name: 'Renamed' } }],
    });
    await new BlockBlobClient(url, storage.sharedKey).upload(edited, edited.length);
    const r = await cli(setupArgs(name, out, '--policy-blob-url', url), admin);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /policy "other" differs/);
    assert.equal(await blobText(url), edited, 'the blob is as it was');
  });

  /** Graph writes since `mark`, as "METHOD path status". */
  const graphWrites = (mark: number): string[] =>
    sim.log
      .since(mark)
      .filter((e) => e.service !== 'login' && e.service !== 'vault' && e.method !== 'GET')
      .map((e) => `${e.method} ${e.path} ${e.status}`);

  it('a registration holding an earlier version of the certificate gets the renewed one by addKey, with a proof signed by the old one; its old key stays', async () => {
    const name = 'sync-renewed';
    const out = join(dir, `${name}.json`);
    const first = await cli(setupArgs(name, out), admin);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const [old] = sim.appRegistrations().find((a) => a.displayName === name)!.certificates;
    await sim.vault.renewCertificate(name);
    const mark = sim.log.lastSeq;
    const second = await cli(setupArgs(name, out), admin);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stdout, /added \(addKey, the other keys kept\)/);
    const app = sim.appRegistrations().find((a) => a.displayName === name)!;
    const writes = graphWrites(mark);
    assert.ok(
      writes.some((w) => /^POST \S*\/applications\/[^/]+\/addKey 200$/.test(w)),
      writes.join('\n'),
    );
    assert.ok(!writes.some((w) => /^PATCH \S*\/applications/.test(w)), 'keyCredentials never replaced');
    assert.equal(app.certificates.length, 2, 'the old key and the new one');
    assert.equal(app.certificates[0]!.keyId, old!.keyId, 'the old key is kept');
    const connection = [...parsePolicyFile(readFileSync(out, 'utf8')).connections.values()][0]!;
    assert.ok('keyVaultUrl' in connection.certificate);
    assert.equal(connection.certificate.keyId, app.certificates[1]!.keyId, 'the file names the new key');
  });

  it('a registration whose key is a disabled version of the certificate: setup stops at the key upload saying to enable it, writes nothing; enabled again, a re-run adds the key', async () => {
    const name = 'sync-disabled';
    const out = join(dir, `${name}.json`);
    const first = await cli(setupArgs(name, out), admin);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const oldVersion = sim.vault.certificates.get(name)!.at(-1)!.version;
    await sim.vault.renewCertificate(name);
    sim.vault.setCertificateVersionEnabled(name, oldVersion, false);
    const file = readFileSync(out, 'utf8');
    const mark = sim.log.lastSeq;
    const r = await cli(setupArgs(name, out), admin);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /setup stopped at "key upload"/);
    assert.match(
      r.stderr,
      new RegExp(`version ${oldVersion} \\(thumbprint [0-9A-F]+\\) is disabled in Key Vault`),
    );
    assert.ok(
      r.stderr.includes(
        `az keyvault certificate set-attributes --id ${sim.keyVaultUrl.replace(/\/$/, '')}/certificates/${name}/${oldVersion} --enabled true`,
      ),
      `the command names the real version: ${r.stderr}`,
    );
    assert.doesNotMatch(r.stderr, /<vault>|<version>/, 'no placeholders');
    assert.deepEqual(graphWrites(mark), [], 'nothing written to the registration');
    assert.equal(readFileSync(out, 'utf8'), file, 'the policy file is unchanged');
    sim.vault.setCertificateVersionEnabled(name, oldVersion, true);
    const again = await cli(setupArgs(name, out), admin);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /added \(addKey, the other keys kept\)/);
  });

  it('a registration whose key is a version without an exportable private key: setup stops at the key upload saying so; a non-exportable certificate is refused before anything is uploaded', async () => {
    const name = 'sync-non-exportable';
    const out = join(dir, `${name}.json`);
    const first = await cli(setupArgs(name, out), admin);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    // The version on the registration kept its key in the vault (it was created non-exportable).
    const [v1] = sim.vault.secrets.get(name)!;
    v1!.value = v1!.value.replace(/-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----\n/, '');
    await sim.vault.renewCertificate(name);
    const file = readFileSync(out, 'utf8');
    const mark = sim.log.lastSeq;
    const stopped = await cli(setupArgs(name, out), admin);
    assert.equal(stopped.code, 1, stopped.stdout + stopped.stderr);
    assert.match(stopped.stderr, /setup stopped at "key upload"/);
    assert.match(stopped.stderr, /has no exportable private key/);
    assert.deepEqual(graphWrites(mark), [], 'nothing written to the registration');
    assert.equal(readFileSync(out, 'utf8'), file, 'the policy file is unchanged');
    // The certificate itself non-exportable: refused at its step.
    const latest = sim.vault.certificates.get(name)!.at(-1)!;
    latest.policy = { ...latest.policy, exportable: false };
    const r = await cli(setupArgs(name, out), admin);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /setup stopped at "certificate"/);
    assert.match(r.stderr, /non-exportable key: the deployed app reads its private key/);
    assert.match(r.stderr, /--certificate/);
    assert.deepEqual(graphWrites(mark), [], 'nothing written to the registration');
  });

  it('a registration whose only key has not started yet: setup does not sign addKey with it, and stops saying why', async () => {
    const name = 'sync-not-started';
    const out = join(dir, `${name}.json`);
    const first = await cli(setupArgs(name, out), admin);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const app = sim.appRegistrations().find((a) => a.displayName === name)!;
    app.certificates[0]!.startDateTime = new Date(Date.now() + 86_400_000);
    await sim.vault.renewCertificate(name);
    const mark = sim.log.lastSeq;
    const r = await cli(setupArgs(name, out), admin);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /setup stopped at "key upload"/);
    assert.match(r.stderr, /no certificate valid now, only expired or not yet started ones/);
    assert.deepEqual(graphWrites(mark), [], 'no addKey with a key Graph would refuse');
  });

  it('a registration holding a certificate setup cannot sign for stops, saying why and what to do, and keeps its keys', async () => {
    const name = 'sync-foreign';
    const out = join(dir, `${name}.json`);
    const first = await cli(setupArgs(name, out), admin);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const before = sim
      .appRegistrations()
      .find((a) => a.displayName === name)!
      .certificates.map((c) => c.keyId);
    const file = readFileSync(out, 'utf8');
    const mark = sim.log.lastSeq;
    // Another certificate in Key Vault: none of its versions is the key on the registration.
    const args = setupArgs(name, out);
    args[args.indexOf('--certificate') + 1] = `${name}-other`;
    const r = await cli(args, admin);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /setup stopped at "key upload"/);
    assert.match(r.stderr, /private keys are not versions of this certificate in Key Vault/);
    assert.match(r.stderr, /addKey needs a proof signed by one of them/);
    assert.match(r.stderr, /setup does not replace an app registration's keys/);
    assert.match(r.stderr, /Certificates & secrets/);
    assert.deepEqual(graphWrites(mark), [], 'nothing written to the registration');
    const after = sim
      .appRegistrations()
      .find((a) => a.displayName === name)!
      .certificates.map((c) => c.keyId);
    assert.deepEqual(after, before, 'its keys are as they were');
    assert.equal(readFileSync(out, 'utf8'), file, 'the policy file is unchanged');
  });

  it('Ctrl-C at each step, the policy upload, mailbox scope and doctor included, then setup again: it finishes, with one of everything and the file in the blob', async () => {
    storage.roles.set(adminId, 'Storage Blob Data Contributor');
    for (const [i, step] of setupSteps.slice(1).entries()) {
      const name = `sync-interrupted-${i}`;
      const out = join(dir, `${name}.json`);
      const url = `${storage.accountUrl}/config/${name}.json`;
      const args = setupArgs(name, out, '--policy-blob-url', url);
      const stopped = await cli(args, admin, step);
      assert.notEqual(stopped.code, 0, `${step}: the first run was stopped\n${stopped.stdout}`);
      assert.match(stopped.stderr, new RegExp(`stopped during "${step}"`));
      const finished = await cli(args, admin);
      assert.equal(finished.code, 0, `${step}: ${finished.stdout}${finished.stderr}`);
      assertOneOfEverything(name, out);
      const blob = (await new BlockBlobClient(url, storage.sharedKey).downloadToBuffer()).toString('utf8');
      assert.equal(blob, readFileSync(out, 'utf8'), `${step}: the blob holds the file`);
    }
  });

  it("every app registration request setup sent, and each answer, matched Microsoft's OpenAPI (Applications.yml)", () => {
    for (const op of [
      'applications.create',
      'applications.update',
      'servicePrincipals.create',
      'servicePrincipals.appRoleAssignedTo.create',
      'applications.addKey',
    ])
      assert.ok(conformance.checked.has(op), `${op} was sent and checked`);
    assert.deepEqual(conformance.violations, []);
  });
});

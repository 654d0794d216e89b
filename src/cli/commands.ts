// The admin CLI's commands. Each returns an exit code: 0 fine, 1 a mailbox (or check) failed, 2 usage
// or configuration error.
import { readFile, writeFile } from 'node:fs/promises';
import { X509Certificate, createHash } from 'node:crypto';
import { CertificateClient } from '@azure/keyvault-certificates';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { SingleBar, Presets } from 'cli-progress';
import { parsePolicyFile, PolicyFileError, type LoadedPolicyFile } from '../sync/config/policy-file';
import type { Connection, Policy } from '../sync/config/schema';
import {
  createCredential,
  createGraphClient,
  endpointsOf,
  loadCertificate,
  RequestCounter,
} from '../sync/adapters/graph/connection';
import { GraphDirectoryReader } from '../sync/adapters/graph/directory-reader';
import { exchangeRecipients } from '../sync/adapters/exchange/recipient-reader';
import { GraphMailboxes } from '../sync/adapters/graph/mailbox-graph';
import { MemoryMailboxStore, MemoryPhotoStore, MemorySourceStore } from '../sync/adapters/memory/stores';
import {
  TableMailboxStore,
  TableSourceStore,
  ensureTable,
  tableNames,
} from '../sync/adapters/tables/table-stores';
import { refreshSource } from '../sync/refresh-source';
import { BlobPhotoStore, photoContainerName } from '../sync/adapters/blob/photo-store';
import { runPolicy } from '../sync/run-policy';
import { hiddenUsersCheck, neededPermissions } from '../app/diagnostics';
import { cliCredential, vaultOptions } from './credentials';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  isTTY: boolean;
}

export class UsageError extends Error {}

async function loadConfig(io: Io, file: string): Promise<LoadedPolicyFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    io.err(`cannot read ${file}: ${(e as Error).message}`);
    return undefined;
  }
  try {
    return parsePolicyFile(text);
  } catch (e) {
    if (e instanceof PolicyFileError) {
      for (const i of e.issues) io.err(`${file}: ${i.path}: ${i.message}`);
      return undefined;
    }
    throw e;
  }
}

async function findPolicy(
  io: Io,
  file: string,
  policyId: string,
): Promise<{ loaded: LoadedPolicyFile; policy: Policy; connection: Connection } | undefined> {
  const loaded = await loadConfig(io, file);
  if (!loaded) return undefined;
  const policy = loaded.policies.find((p) => p.id === policyId);
  if (!policy) {
    const invalid = loaded.invalidPolicies.find((p) => p.policyId === policyId);
    if (invalid) for (const i of invalid.issues) io.err(`${file}: ${i.path}: ${i.message}`);
    else
      io.err(
        `${file}: no policy "${policyId}" (policies: ${loaded.policies.map((p) => p.id).join(', ') || 'none'})`,
      );
    return undefined;
  }
  return { loaded, policy, connection: loaded.connections.get(policy.connection)! };
}

async function graphFor(connection: Connection, counter?: RequestCounter) {
  const vault =
    'keyVaultUrl' in connection.certificate ? vaultOptions(connection.certificate.keyVaultUrl) : {};
  const cert = await loadCertificate(connection, () => cliCredential(), vault);
  const credential = createCredential(connection, cert);
  const client = createGraphClient(connection, credential, counter);
  return {
    client,
    credential,
    directory: new GraphDirectoryReader(client),
    mailboxes: new GraphMailboxes(client),
    ...(connection.exchangeAdmin ? { recipients: exchangeRecipients(connection, credential) } : {}),
    certificateVersion: cert.version,
  };
}

export async function validate(io: Io, file: string): Promise<number> {
  const loaded = await loadConfig(io, file);
  if (!loaded) return 2;
  for (const bad of loaded.invalidPolicies)
    for (const i of bad.issues) io.err(`${file}: ${i.path}: ${i.message}`);
  io.out(
    `${file}: ${loaded.connections.size} connection(s), ${loaded.policies.length} valid polic${loaded.policies.length === 1 ? 'y' : 'ies'}, ${loaded.invalidPolicies.length} invalid`,
  );
  return loaded.invalidPolicies.length > 0 ? 2 : 0;
}

export async function preview(io: Io, file: string, policyId: string, json: boolean): Promise<number> {
  const found = await findPolicy(io, file, policyId);
  if (!found) return 2;
  const graph = await graphFor(found.connection);
  // A preview reads the directory in full and keeps nothing.
  const refreshed = await refreshSource(
    found.policy,
    graph.directory,
    new MemorySourceStore(),
    new Date(),
    graph.mailboxes,
    new MemoryPhotoStore(),
    graph.recipients ? { recipients: graph.recipients } : {},
  );
  const result = {
    policy: policyId,
    sourceObjects: refreshed.desired.size,
    excluded: refreshed.stats.excluded,
    sourceSamples: [...refreshed.desired.values()].slice(0, 10).map((d) => d.fields.displayName ?? ''),
    targetMailboxes: refreshed.targets.mailboxes.length,
    targetSamples: refreshed.targets.mailboxes.slice(0, 10).map((m) => m.userPrincipalName),
    skippedTargets: refreshed.targets.skipped,
  };
  if (json) {
    io.out(JSON.stringify(result));
    return 0;
  }
  io.out(`Source objects: ${result.sourceObjects}`);
  for (const [reason, n] of Object.entries(result.excluded)) io.out(`  left out (${reason}): ${n}`);
  io.out(`  e.g. ${result.sourceSamples.join('; ')}`);
  io.out(`Target mailboxes: ${result.targetMailboxes}`);
  io.out(`  e.g. ${result.targetSamples.join('; ')}`);
  for (const s of result.skippedTargets) io.out(`  skipped ${s.user}: ${s.reason}`);
  return 0;
}

export interface RunFlags {
  config: string;
  policy: string;
  dryRun: boolean;
  mailbox: string[];
  storage?: string;
  json: boolean;
}

export async function run(
  io: Io,
  flags: RunFlags,
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const found = await findPolicy(io, flags.config, flags.policy);
  if (!found) return 2;
  const storage = flags.storage ?? env.CONTACTSYNC_STORAGE ?? 'UseDevelopmentStorage=true';
  const table = (name: string): TableClient =>
    TableClient.fromConnectionString(storage, name, {
      allowInsecureConnection: /UseDevelopmentStorage|https?:\/\/(127\.0\.0\.1|localhost)/i.test(storage),
    });
  const sources = table(tableNames.sources);
  const mailboxTable = table(tableNames.mailboxes);
  let photoStore: BlobPhotoStore | undefined;
  try {
    await Promise.all([ensureTable(sources), ensureTable(mailboxTable)]);
    if (found.policy.photos.enabled) {
      const photos = BlobServiceClient.fromConnectionString(storage).getContainerClient(photoContainerName);
      await photos.createIfNotExists();
      photoStore = new BlobPhotoStore(photos);
    }
  } catch (e) {
    io.err(
      `storage is not reachable (${(e as Error).message.split('\n')[0]}); pass --storage CONNECTION or set CONTACTSYNC_STORAGE`,
    );
    return 2;
  }
  const counter = new RequestCounter();
  const graph = await graphFor(found.connection, counter);
  const bar =
    io.isTTY && !flags.json
      ? new SingleBar(
          { format: 'mailboxes [{bar}] {value}/{total} {mailbox}', hideCursor: true },
          Presets.shades_classic,
        )
      : undefined;
  let started = false;
  const record = await runPolicy(
    found.policy,
    {
      directory: graph.directory,
      mailboxes: graph.mailboxes,
      ...(graph.recipients ? { recipients: graph.recipients } : {}),
      sourceStore: new TableSourceStore(sources),
      mailboxStore: flags.dryRun
        ? new MemoryMailboxStoreOver(new TableMailboxStore(mailboxTable))
        : new TableMailboxStore(mailboxTable),
      ...(photoStore ? { photoStore } : {}),
    },
    {
      dryRun: flags.dryRun,
      mailboxes: flags.mailbox,
      onMailboxDone: (r, done, total) => {
        if (bar) {
          if (!started) bar.start(total, 0, { mailbox: '' });
          started = true;
          bar.update(done, { mailbox: r.mailbox });
        } else if (!flags.json) {
          io.out(
            `[${done}/${total}] ${r.mailbox}: ${r.status}, ${r.created} created, ${r.updated} updated, ${r.deleted} deleted, ${r.restored} restored, ${r.unchanged} unchanged${r.errors.length ? `; ${r.errors[0]!.code}: ${r.errors[0]!.message}` : ''}`,
          );
        }
      },
    },
  );
  bar?.stop();
  const summary = {
    policy: record.policy,
    runId: record.runId,
    dryRun: record.dryRun,
    mailboxes: record.mailboxes,
    contacts: {
      created: record.contacts.created,
      updated: record.contacts.updated,
      deleted: record.contacts.deleted,
      unchanged: record.contacts.unchanged,
      restored: record.contacts.restored,
    },
    graphRequests: counter.graphRequests,
  };
  if (!flags.json) {
    io.out(
      `${record.dryRun ? 'Dry run' : 'Run'} ${record.runId}: ${record.mailboxes.total} mailboxes (${record.mailboxes.succeeded} ok, ${record.mailboxes.failed} failed, ${record.mailboxes.skipped} skipped)`,
    );
    io.out(
      `contacts: ${summary.contacts.created} created, ${summary.contacts.updated} updated, ${summary.contacts.deleted} deleted, ${summary.contacts.restored} restored, ${summary.contacts.unchanged} unchanged; ${counter.graphRequests} Graph requests`,
    );
    for (const r of record.results.filter((x) => x.status === 'failed'))
      for (const e of r.errors)
        io.err(
          `${r.mailbox}: ${e.code} (${e.status}) ${e.message}${e.requestId ? ` request-id ${e.requestId}` : ''}`,
        );
    for (const s of record.skippedTargets) io.out(`skipped ${s.user}: ${s.reason}`);
  }
  if (flags.json) io.out(JSON.stringify(summary));
  return record.mailboxes.failed > 0 ? 1 : 0;
}

/** A dry run reads real state but writes none of it back. */
class MemoryMailboxStoreOver extends MemoryMailboxStore {
  constructor(private readonly real: TableMailboxStore) {
    super();
  }
  override async load(policyId: string, mailboxId: string) {
    const key = `${policyId}|${mailboxId}`;
    if (!this.folders.has(key) && !this.contacts.has(key)) {
      const state = await this.real.load(policyId, mailboxId);
      if (state.folder) this.folders.set(key, state.folder);
      this.contacts.set(key, state.contacts);
    }
    return super.load(policyId, mailboxId);
  }
}

export async function doctor(io: Io, file: string): Promise<number> {
  const loaded = await loadConfig(io, file);
  if (!loaded) return 2;
  let ok = true;
  const line = (good: boolean, text: string, fix?: string): void => {
    ok &&= good;
    io.out(`${good ? 'OK  ' : 'FAIL'} ${text}${!good && fix ? `\n     fix: ${fix}` : ''}`);
  };
  for (const bad of loaded.invalidPolicies)
    line(
      false,
      `policy ${bad.policyId ?? `#${bad.index}`}: ${bad.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      `correct the policy file, then run \`validate\``,
    );
  for (const connection of loaded.connections.values()) {
    const where =
      'pemFile' in connection.certificate
        ? connection.certificate.pemFile
        : `${connection.certificate.keyVaultUrl} / ${connection.certificate.name}`;
    let graph;
    try {
      graph = await graphFor(connection);
      line(true, `${connection.id}: certificate read from ${where}`);
    } catch (e) {
      line(
        false,
        `${connection.id}: certificate from ${where}: ${(e as Error).message.split('\n')[0]}`,
        'grant yourself (or the managed identity) Key Vault Secrets User on the vault; create the certificate as PEM with `cert create`',
      );
      continue;
    }
    let roles: string[] = [];
    try {
      const token = await graph.credential.getToken(`${endpointsOf(connection).graphEndpoint}/.default`);
      roles = (
        (JSON.parse(Buffer.from(token.token.split('.')[1]!, 'base64url').toString()) as { roles?: string[] })
          .roles ?? []
      ).map(String);
      line(true, `${connection.id}: token issued for tenant ${connection.tenantId}`);
    } catch (e) {
      line(
        false,
        `${connection.id}: token: ${(e as Error).message.split('\n')[0]}`,
        'upload the certificate (`cert show` writes the .cer) to the app registration; check tenantId and clientId',
      );
      continue;
    }
    for (const need of neededPermissions(loaded.policies.filter((p) => p.connection === connection.id))) {
      const granted = roles.includes(need.permission);
      line(
        granted,
        `${connection.id}: permission ${need.permission}${granted ? '' : ' is missing'} (${need.why})`,
        `add the application permission ${need.permission} and grant admin consent`,
      );
    }
    const hidden = await hiddenUsersCheck(connection, loaded.policies, graph.recipients);
    if (hidden?.warning) io.out(`WARN ${connection.id}: ${hidden.detail}\n     fix: ${hidden.fix}`);
    else if (hidden) line(hidden.ok, `${connection.id}: ${hidden.name}: ${hidden.detail}`, hidden.fix);
    try {
      await graph.client.api('/users?$top=1&$select=id').get();
      line(true, `${connection.id}: Microsoft Graph answered`);
    } catch (e) {
      line(
        false,
        `${connection.id}: Microsoft Graph: ${(e as Error).message.split('\n')[0]}`,
        'check network access to Graph and the User.Read.All permission',
      );
    }
  }
  return ok ? 0 : 1;
}

function thumbprints(derBase64: string): { sha1: string; sha256: string; notAfter: string; subject: string } {
  const der = Buffer.from(derBase64, 'base64');
  const cert = new X509Certificate(der);
  return {
    sha1: createHash('sha1').update(der).digest('hex').toUpperCase(),
    sha256: createHash('sha256').update(der).digest('hex').toUpperCase(),
    notAfter: new Date(cert.validTo).toISOString(),
    subject: cert.subject,
  };
}

export async function certCreate(
  io: Io,
  opts: { vault: string; name: string; subject: string; months: number; out: string },
): Promise<number> {
  const client = new CertificateClient(opts.vault, cliCredential(), vaultOptions(opts.vault));
  const poller = await client.beginCreateCertificate(
    opts.name,
    {
      issuerName: 'Self',
      subject: opts.subject,
      contentType: 'application/x-pem-file',
      exportable: true,
      keyType: 'RSA',
      keySize: 2048,
      validityInMonths: opts.months,
      lifetimeActions: [{ action: 'AutoRenew', lifetimePercentage: 80 }],
    },
    { intervalInMs: 1000 },
  );
  const cert = await poller.pollUntilDone();
  if (!cert.cer) throw new Error('Key Vault returned no certificate');
  await writeFile(opts.out, Buffer.from(cert.cer));
  const t = thumbprints(Buffer.from(cert.cer).toString('base64'));
  io.out(`created ${opts.name} in ${opts.vault} (PEM, exportable, auto-renews at 80 % of its lifetime)`);
  io.out(`expires ${t.notAfter}; thumbprint (SHA-1) ${t.sha1}`);
  io.out(`wrote ${opts.out}: upload it to the app registration (Certificates & secrets > Certificates)`);
  return 0;
}

export async function certShow(io: Io, opts: { vault: string; name: string; out?: string }): Promise<number> {
  const client = new CertificateClient(opts.vault, cliCredential(), vaultOptions(opts.vault));
  const cert = await client.getCertificate(opts.name);
  if (!cert.cer) throw new Error('Key Vault returned no certificate');
  const t = thumbprints(Buffer.from(cert.cer).toString('base64'));
  const days = Math.floor((new Date(t.notAfter).getTime() - Date.now()) / 86_400_000);
  io.out(`${opts.name} version ${cert.properties.version ?? ''}: ${t.subject}`);
  io.out(`expires ${t.notAfter} (in ${days} days)${days < 30 ? ' — renew soon' : ''}`);
  io.out(`thumbprint SHA-1 ${t.sha1}`);
  io.out(`thumbprint SHA-256 ${t.sha256}`);
  if (opts.out) {
    await writeFile(opts.out, Buffer.from(cert.cer));
    io.out(`wrote ${opts.out}`);
  }
  return 0;
}

/** PowerShell for Exchange RBAC for Applications limiting the app to the policy's target mailboxes. */
export async function scope(io: Io, file: string, policyId: string): Promise<number> {
  const found = await findPolicy(io, file, policyId);
  if (!found) return 2;
  const { policy, connection } = found;
  const ps = (s: string): string => `'${s.replace(/'/g, "''")}'`;
  const name = `ContactSync-${policy.id}`;
  const lines = [
    '# Run in Exchange Online PowerShell (Connect-ExchangeOnline) as an Exchange administrator.',
    `# Limits app ${connection.clientId} to the target mailboxes of policy "${policy.id}".`,
    `$appId = ${ps(connection.clientId)}`,
    '$sp = Get-MgServicePrincipal -Filter "appId eq \'$appId\'"  # Microsoft Graph PowerShell, for the object id',
    `New-ServicePrincipal -AppId $appId -ObjectId $sp.Id -DisplayName ${ps('m365-contact-sync')}`,
  ];
  let filter: string;
  if (policy.targets.type === 'groups') {
    lines.push('# Members of the target groups (mail-enabled groups; use their distinguished names):');
    filter = policy.targets.groups
      .map((g) => `MemberOfGroup -eq '<distinguished name of group ${g}>'`)
      .join(' -or ');
  } else if (policy.targets.type === 'users') {
    filter = policy.targets.users
      .map((u) => `UserPrincipalName -eq '${u.replace(/'/g, "''")}'`)
      .join(' -or ');
  } else {
    lines.push('# The policy targets all mailboxes: a scope of all user mailboxes.');
    filter = "RecipientTypeDetails -eq 'UserMailbox'";
  }
  lines.push(`New-ManagementScope -Name ${ps(name)} -RecipientRestrictionFilter ${ps(filter)}`);
  lines.push(
    `New-ManagementRoleAssignment -App $sp.AppId -Role ${ps('Application Contacts.ReadWrite')} -CustomResourceScope ${ps(name)}`,
  );
  lines.push(
    '# Then remove the tenant-wide Contacts.ReadWrite application permission from the app registration,',
  );
  lines.push('# or the scope does not narrow anything. Check one mailbox:');
  lines.push(
    `Test-ServicePrincipalAuthorization -Identity $sp.AppId -Resource ${ps(policy.targets.users[0] ?? '<a target mailbox>')}`,
  );
  for (const l of lines) io.out(l);
  return 0;
}

// The admin CLI's commands. Each returns an exit code: 0 fine, 1 a mailbox (or check) failed, 2 usage
// or configuration error (a disabled policy too), 3 a run refused because the policy is running.
import { readFile, writeFile } from 'node:fs/promises';
import { X509Certificate, createHash, randomUUID } from 'node:crypto';
import { CertificateClient, type CertificatePolicy } from '@azure/keyvault-certificates';
import { TableClient } from '@azure/data-tables';
import { tableNames } from '../adapters/tables/table-stores';
import { RotationStore, pinsCertificate } from '../adapters/tables/rotation-store';
import { storageIsLocal } from '../adapters/local-address';
import { SingleBar, Presets } from 'cli-progress';
import { parsePolicyFile, PolicyFileError, type LoadedPolicyFile } from '../sync/config/policy-file';
import type { Connection, Policy } from '../sync/config/schema';
import {
  createCredential,
  createGraphClient,
  endpointsOf,
  loadCertificate,
  RequestCounter,
  certificateFacts,
  rotationEnabled,
} from '../adapters/graph/connection';
import { GraphDirectoryReader } from '../adapters/graph/directory-reader';
import { exchangeRecipients } from '../adapters/exchange/recipient-reader';
import { GraphMailboxes } from '../adapters/graph/mailbox-graph';
import { MemorySourceStore } from '../adapters/memory/stores';
import { refreshSource } from '../sync/refresh-source';
import { failedMailboxes, isFinal, type MailboxOutcome } from '../sync/runs';
import { departedLine, heldBack, heldBackLine, isHeldBack, targetedMailboxes } from '../sync/report';
import { count } from '../sync/plural';
import { runOptionsSchema } from '../sync/messages';
import { App, queueNames } from '../app/composition';
import { InProcessQueues } from '../app/in-process-queues';
import { logger } from '../app/logging';
import { parseSettings } from '../app/settings';
import { processMailboxSync, processPolicyRun, processPoison, startRun } from '../app/use-cases';
import { hiddenUsersCheck, mailSendWarning, namingMissing, permissionChecks } from '../app/diagnostics';
import { tlsCause, tlsDetail, tlsFix } from '../app/access-checks';
import { expiryErrorDays, expiryWarningDays } from '../app/cert-rotation';
import type { TokenCredential } from '@azure/identity';
import { cliCredential, vaultOptions } from './credentials';
import { scopeScript } from './scope-script';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  isTTY: boolean;
  /** Asks a question on a terminal (absent when stdin is not one). */
  ask?(question: string): Promise<string>;
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

/** `vaultCredential`: who reads the certificate from Key Vault (setup's sign-in); else the workstation's. */
async function graphFor(
  connection: Connection,
  counter?: RequestCounter,
  version?: string,
  vaultCredential?: TokenCredential,
) {
  const vault =
    'keyVaultUrl' in connection.certificate ? vaultOptions(connection.certificate.keyVaultUrl) : {};
  const cert = await loadCertificate(connection, () => vaultCredential ?? cliCredential(), vault, version);
  const credential = createCredential(connection, cert);
  const client = createGraphClient(connection, credential, counter);
  return {
    client,
    credential,
    directory: new GraphDirectoryReader(client),
    mailboxes: new GraphMailboxes(client),
    ...(connection.exchangeAdmin ? { recipients: exchangeRecipients(connection, credential) } : {}),
    certificateVersion: cert.version,
    certificatePem: cert.pem,
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
  // A preview reads the directory in full and keeps nothing; photos are not looked at.
  const refreshed = await refreshSource(
    { ...found.policy, photos: { ...found.policy.photos, enabled: false } },
    graph.directory,
    new MemorySourceStore(),
    new Date(),
    graph.mailboxes,
    undefined,
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
  /** Ignore the deletion threshold (HTTP's fullResync). */
  force?: boolean;
}

/** Exit code of a run refused because another run (the Functions app's, or another CLI's) holds the policy. */
export const exitRefused = 3;

/**
 * One run of a policy, in this process, through the Functions app's composition root and use-cases:
 * it takes the policy's lease and each mailbox's lock in the shared storage, and is recorded as a run.
 */
export async function run(
  io: Io,
  flags: RunFlags,
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const found = await findPolicy(io, flags.config, flags.policy);
  if (!found) return 2;
  if (!found.policy.enabled) {
    io.err(`${flags.config}: policy "${flags.policy}" is disabled ("enabled": false); it does not run`);
    return 2;
  }
  const requested = runOptionsSchema.safeParse({
    dryRun: flags.dryRun,
    mailboxes: flags.mailbox,
    fullResync: flags.force === true,
  });
  if (!requested.success) {
    for (const i of requested.error.issues)
      io.err(`--mailbox ${i.path.length > 1 ? `#${Number(i.path[1]) + 1}` : ''}: ${i.message}`);
    return 2;
  }
  const storage = flags.storage ?? env.CONTACTSYNC_STORAGE ?? 'UseDevelopmentStorage=true';
  const queues = new InProcessQueues();
  const counter = new RequestCounter();
  let app: App;
  try {
    const certificate = found.connection.certificate;
    app = new App({
      settings: parseSettings({ AzureWebJobsStorage: storage, POLICY_FILE: flags.config }),
      credential: cliCredential(env),
      transport: queues,
      requestCounter: counter,
      ...('keyVaultUrl' in certificate ? vaultOptions(certificate.keyVaultUrl) : {}),
    });
    await app.ensureStorage();
  } catch (e) {
    io.err(
      `storage is not reachable (${(e as Error).message.split('\n')[0]}); pass --storage CONNECTION or set CONTACTSYNC_STORAGE`,
    );
    return 2;
  }
  const started = await startRun(app, found.policy, 'cli', requested.data);
  if (!started.started) {
    io.err(
      started.reason === 'running'
        ? `policy "${flags.policy}" is already running (run ${started.heldBy}, in the Functions app or another CLI); overlapping runs are refused: try again when it has finished`
        : `policy "${flags.policy}" is disabled; it does not run`,
    );
    return started.reason === 'running' ? exitRefused : 2;
  }
  const runId = started.runId;
  const log = logger({
    log: () => undefined,
    warn: (l: string) => io.err(l),
    error: (l: string) => io.err(l),
  });
  const progress = mailboxProgress(io, flags.json, app, runId);
  await queues.drain(
    async (queue, message) => {
      if (queue === queueNames.policyRuns) return processPolicyRun(app, message, log);
      await processMailboxSync(app, message, log, randomUUID());
      await progress.seen((message as { mailboxId: string }).mailboxId);
    },
    async (queue, message) => {
      await processPoison(app, message, queue, log);
      if (queue === queueNames.mailboxSyncs)
        await progress.seen((message as { mailboxId: string }).mailboxId);
    },
    { concurrency: 8, maxAttempts: 5, retryDelayMs: 1_000 },
  );
  progress.stop();
  const record = (await app.runStore.getRun(runId))!;
  const outcomes = await app.runStore.listOutcomes(runId);
  const summary = {
    policy: record.policyId,
    runId,
    dryRun: record.options.dryRun,
    mailboxes: {
      total: targetedMailboxes(record),
      succeeded: record.mailboxes.succeeded,
      failed: record.mailboxes.failed,
      skipped: record.mailboxes.skipped,
    },
    contacts: {
      created: record.contacts.created,
      updated: record.contacts.updated,
      deleted: record.contacts.deleted,
      unchanged: record.contacts.unchanged,
      restored: record.contacts.restored,
    },
    graphRequests: counter.graphRequests,
    heldBack: heldBack(outcomes, record),
    // Mailboxes that left the targets and were emptied: not among `mailboxes` or `contacts`.
    ...(record.departed ? { departed: record.departed } : {}),
    ...takeOverOf(outcomes),
    notes: record.notes ?? [],
  };
  if (record.error) io.err(`run failed: ${record.error}`);
  // Said first (on stderr beside JSON): a run that left deletions undone did not do all it was asked.
  if (isHeldBack(summary.heldBack)) {
    const line = `HELD BACK: ${heldBackLine(summary.heldBack, record.policyId)}`;
    if (flags.json) io.err(line);
    else io.out(line);
  }
  if (!flags.json) {
    io.out(
      `${summary.dryRun ? 'Dry run' : 'Run'} ${runId}: ${count(summary.mailboxes.total, 'mailbox')} (${summary.mailboxes.succeeded} ok, ${summary.mailboxes.failed} failed, ${summary.mailboxes.skipped} skipped)`,
    );
    if (record.departed) io.out(`departed: ${departedLine(record.departed, record.options.dryRun)}`);
    io.out(
      `contacts: ${summary.contacts.created} created, ${summary.contacts.updated} updated, ${summary.contacts.deleted} deleted, ${summary.contacts.restored} restored, ${summary.contacts.unchanged} unchanged; ${counter.graphRequests} Graph requests`,
    );
    printTakeOver(io, outcomes);
    for (const n of summary.notes) io.out(`note: ${n}`);
    for (const s of record.skippedTargets) io.out(`skipped ${s.user}: ${s.reason}`);
    if (record.skippedCount > record.skippedTargets.length)
      io.out(`and ${record.skippedCount - record.skippedTargets.length} more skipped`);
  }
  for (const o of outcomes.filter((x) => x.status === 'failed')) {
    const errors = o.result?.errors ?? [];
    if (errors.length === 0) io.err(`${o.userPrincipalName}: ${o.lastError ?? 'failed'}`);
    for (const e of errors)
      io.err(
        `${o.userPrincipalName}: ${e.code} (${e.status}) ${e.message}${e.requestId ? ` request-id ${e.requestId}` : ''}`,
      );
  }
  // A --mailbox that names no target of the policy did not run: that is not a success.
  const skippedNames = new Set(record.skippedTargets.map((x) => x.user.toLowerCase()));
  const notRun = flags.mailbox.filter((m) => skippedNames.has(m.toLowerCase()));
  for (const m of notRun)
    io.err(`--mailbox ${m}: not a target of policy "${flags.policy}"; nothing was done there`);
  if (flags.json) io.out(JSON.stringify(summary));
  return record.status === 'failed' ||
    failedMailboxes(record) > 0 ||
    isHeldBack(summary.heldBack) ||
    notRun.length > 0
    ? 1
    : 0;
}

/** Take-over totals for the JSON summary (absent when the policy leaves unmanaged contacts alone). */
function takeOverOf(outcomes: readonly MailboxOutcome[]): {
  takeOver?: { adopted: number; removed: number; left: number; adoptFailed?: number };
} {
  const all = outcomes.flatMap((o) => (o.result?.takeOver ? [o.result.takeOver] : []));
  if (all.length === 0) return {};
  const sum = (k: 'adopted' | 'removed' | 'left' | 'adoptFailed'): number =>
    all.reduce((n, t) => n + (t[k] ?? 0), 0);
  const failed = sum('adoptFailed');
  const takeOver = { adopted: sum('adopted'), removed: sum('removed'), left: sum('left') };
  return { takeOver: failed ? { ...takeOver, adoptFailed: failed } : takeOver };
}

/** Per mailbox, what a take-over adopted, removed and left (in a dry run: would), each contact listed. */
function printTakeOver(io: Io, outcomes: readonly MailboxOutcome[]): void {
  for (const o of outcomes) {
    const t = o.result?.takeOver;
    const failed = t?.adoptFailed ?? 0;
    if (!t || t.adopted + t.removed + t.left + failed === 0) continue;
    io.out(
      `${o.userPrincipalName}: unmanaged contacts: ${t.adopted} adopted, ${t.removed} removed, ${t.left} left${failed ? `, ${failed} could not be adopted (left, ours created)` : ''}${t.heldBack ? ` (${t.heldBack.wanted} removals held back, limit ${t.heldBack.limit})` : ''}`,
    );
    for (const x of t.items)
      io.out(
        `  ${x.action.padEnd(6)} ${x.name} <${x.address}>${x.reason === 'matched' ? '' : ` (${x.reason})`}`,
      );
    const listed = t.adopted + t.removed + t.left + failed;
    if (listed > t.items.length) io.out(`  and ${listed - t.items.length} more`);
  }
}

/** A progress bar on a terminal, else one line per finished mailbox (none with --json). */
function mailboxProgress(io: Io, json: boolean, app: App, runId: string) {
  const bar =
    io.isTTY && !json
      ? new SingleBar(
          { format: 'mailboxes [{bar}] {value}/{total} {mailbox}', hideCursor: true },
          Presets.shades_classic,
        )
      : undefined;
  const shown = new Set<string>();
  return {
    async seen(mailboxId: string): Promise<void> {
      const o = await app.runStore.getOutcome(runId, mailboxId);
      if (!o || !isFinal(o.status) || shown.has(mailboxId)) return;
      shown.add(mailboxId);
      const total = (await app.runStore.getRun(runId))?.expected ?? 0;
      const r = o.result;
      if (bar) {
        if (shown.size === 1) bar.start(total, 0, { mailbox: '' });
        bar.update(shown.size, { mailbox: o.userPrincipalName });
      } else if (!json) {
        io.out(
          `[${shown.size}/${total}] ${o.userPrincipalName}${o.departed ? ' (left the targets)' : ''}: ${o.status}${r ? `, ${r.created} created, ${r.updated} updated, ${r.deleted} deleted, ${r.restored} restored, ${r.unchanged} unchanged` : ''}${o.lastError ? `; ${o.lastError}` : ''}`,
        );
      }
    },
    stop: (): void => bar?.stop(),
  };
}

/** `vaultCredential`: Key Vault as `setup`'s signed-in admin; without it, the workstation's sign-in. */
export async function doctor(io: Io, file: string, vaultCredential?: TokenCredential): Promise<number> {
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
      // With rotation on, workers sign with the version the rotation pinned, not Key Vault's newest.
      const rotation = await pinnedVersion(connection);
      let pinned = rotation.version;
      if (rotation.notice) io.out(`WARN ${connection.id}: ${rotation.notice}`);
      graph = await graphFor(connection, undefined, pinned, vaultCredential).catch((e: unknown) => {
        if (!pinned || (e as { statusCode?: number }).statusCode !== 404) throw e;
        io.out(
          `WARN ${connection.id}: the rotation's version ${pinned} is not in Key Vault; workers sign with the newest version and the rotation starts over at its next check`,
        );
        pinned = undefined;
        return graphFor(connection, undefined, undefined, vaultCredential);
      });
      line(true, `${connection.id}: certificate read from ${where}`);
      if (pinned) {
        const newest = await loadCertificate(
          connection,
          () => vaultCredential ?? cliCredential(),
          'keyVaultUrl' in connection.certificate ? vaultOptions(connection.certificate.keyVaultUrl) : {},
        );
        if (newest.version !== pinned)
          io.out(
            `INFO ${connection.id}: certificate renewed, not yet rolled: Key Vault's newest version ${newest.version} goes onto the application at the daily rotation check; workers sign with version ${pinned} until then (nothing to upload)`,
          );
      }
      expiryLine(io, connection, graph.certificatePem, line);
    } catch (e) {
      const tls = await tlsCause(
        e,
        'keyVaultUrl' in connection.certificate ? connection.certificate.keyVaultUrl : undefined,
      );
      line(
        false,
        `${connection.id}: certificate from ${where}: ${tlsDetail(e, (e as Error).message.split('\n')[0]!, tls)}`,
        tls
          ? tlsFix
          : "grant yourself Key Vault Secrets User on the vault (the managed identity gets it on the certificate's secret: `azd env set AZURE_CERTIFICATE_NAME <name>`, `azd provision`); create the certificate as PEM with `cert create`",
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
      const tls = await tlsCause(
        e,
        `${endpointsOf(connection).authorityHost}/${connection.tenantId}/v2.0/.well-known/openid-configuration`,
      );
      line(
        false,
        `${connection.id}: token: ${tlsDetail(e, (e as Error).message.split('\n')[0]!, tls)}`,
        tls
          ? tlsFix
          : 'upload the certificate (`cert show` writes the .cer) to the app registration; check tenantId and clientId',
      );
      continue;
    }
    for (const c of await permissionChecks(graph.client, connection, loaded.policies, roles, loaded)) {
      if (c.warning)
        io.out(`WARN ${connection.id}: ${c.name}: ${c.detail}${c.fix ? `\n     fix: ${c.fix}` : ''}`);
      else line(c.ok, `${connection.id}: ${c.name}: ${c.detail}`, c.fix);
    }
    const mailSend = mailSendWarning(roles, loaded.policies, connection.id);
    if (mailSend) io.out(`WARN ${connection.id}: ${mailSend.detail}\n     fix: ${mailSend.fix}`);
    const hidden = await hiddenUsersCheck(connection, loaded.policies, graph.recipients);
    if (hidden?.warning) io.out(`WARN ${connection.id}: ${hidden.detail}\n     fix: ${hidden.fix}`);
    else if (hidden) line(hidden.ok, `${connection.id}: ${hidden.name}: ${hidden.detail}`, hidden.fix);
    try {
      await graph.client.api('/users?$top=1&$select=id').get();
      line(true, `${connection.id}: Microsoft Graph answered`);
    } catch (e) {
      const tls = await tlsCause(e, endpointsOf(connection).graphEndpoint);
      const check = namingMissing(
        {
          name: 'graph',
          ok: false,
          detail: tlsDetail(e, (e as Error).message.split('\n')[0]!, tls),
          fix: tls ? tlsFix : 'check network access to Graph and the User.Read.All permission',
        },
        e,
        roles,
      );
      line(false, `${connection.id}: Microsoft Graph: ${check.detail}`, check.fix);
    }
  }
  return ok ? 0 : 1;
}

/**
 * The rotation's active version (read from the app's storage when CONTACTSYNC_STORAGE is set); none,
 * with a notice, when the row is of another certificate (the rotation starts over).
 */
async function pinnedVersion(connection: Connection): Promise<{ version?: string; notice?: string }> {
  const storage = process.env.CONTACTSYNC_STORAGE ?? process.env.AzureWebJobsStorage;
  if (!rotationEnabled(connection) || !storage) return {};
  const table = TableClient.fromConnectionString(storage, tableNames.policies, {
    allowInsecureConnection: storageIsLocal(storage),
  });
  const found = await new RotationStore(table).get(connection.id).catch(() => undefined);
  if (!found) return {};
  if (pinsCertificate(found.state, connection)) return { version: found.state.activeVersion };
  return {
    notice: `the rotation state is of another certificate (${found.state.certificateName ?? '?'}); workers sign with the newest version and the rotation starts over at its next check`,
  };
}

/** Days to expiry: WARN within 30 days, FAIL within 7, with what to do. */
function expiryLine(
  io: Io,
  connection: Connection,
  pem: string,
  line: (good: boolean, text: string, fix?: string) => void,
): void {
  const facts = certificateFacts(pem);
  const days = Math.floor((facts.notAfter.getTime() - Date.now()) / 86_400_000);
  const rotation = rotationEnabled(connection) ? 'on' : 'off (set applicationObjectId on the connection)';
  const text = `${connection.id}: certificate expires in ${days} days (${facts.notAfter.toISOString().slice(0, 10)}, thumbprint ${facts.thumbprint}); rotation ${rotation}`;
  const fix = rotationEnabled(connection)
    ? 'Key Vault has not renewed it: check the certificate and its issuer in Key Vault (`az keyvault certificate pending show`), renew it by hand if the issuer failed; the app rolls the new version onto the application at its next daily check'
    : 'renew it in Key Vault and upload the new .cer (`cert show --out`)';
  if (days <= expiryErrorDays) line(false, text, fix);
  else if (days <= expiryWarningDays) io.out(`WARN ${text}\n     fix: ${fix}`);
  else line(true, text);
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

/** The app certificate's Key Vault policy: PEM (what the app reads), exportable, auto-renewing at 80 %. */
export function certificatePolicy(subject: string, months: number): CertificatePolicy {
  return {
    issuerName: 'Self',
    subject,
    contentType: 'application/x-pem-file',
    exportable: true,
    keyType: 'RSA',
    keySize: 2048,
    validityInMonths: months,
    lifetimeActions: [{ action: 'AutoRenew', lifetimePercentage: 80 }],
  };
}

export async function certCreate(
  io: Io,
  opts: { vault: string; name: string; subject: string; months: number; out: string },
): Promise<number> {
  const client = new CertificateClient(opts.vault, cliCredential(), vaultOptions(opts.vault));
  const poller = await client.beginCreateCertificate(
    opts.name,
    certificatePolicy(opts.subject, opts.months),
    {
      intervalInMs: 1000,
    },
  );
  const cert = await poller.pollUntilDone();
  if (!cert.cer) throw new Error('Key Vault returned no certificate');
  await writeFile(opts.out, Buffer.from(cert.cer));
  const t = thumbprints(Buffer.from(cert.cer).toString('base64'));
  io.out(`created ${opts.name} in ${opts.vault} (PEM, exportable, auto-renews at 80 % of its lifetime)`);
  io.out(`expires ${t.notAfter}; thumbprint (SHA-1) ${t.sha1}`);
  io.out(`wrote ${opts.out}: upload it to the app registration (Certificates & secrets > Certificates)`);
  io.out(
    "then set the connection's applicationObjectId (the registration's Object ID) and certificate.keyId (the uploaded Certificate ID): the app rolls every renewal onto its registration itself",
  );
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
  for (const l of scopeScript(found.policy, found.connection, found.loaded.policies)) io.out(l);
  return 0;
}

// Health ("Test Connection") and preview ("Counter"): what an admin checks before trusting a schedule.
import { decodeJwt } from 'jose';
import type { Connection, Policy } from '../sync/config/schema';
import { createCredential, createGraphClient, endpointsOf } from '../adapters/graph/connection';
import { hiddenUsersUnknown, refreshSource } from '../sync/refresh-source';
import { compileUserFilter, noFilter } from '../sync/filters';
import { exchangeRecipients } from '../adapters/exchange/recipient-reader';
import { RecipientsNotPermittedError, type RecipientReader, type SourceStore } from '../sync/ports';
import { certificateStatus, chooseSigningCertificate, type SigningChoice } from './cert-rotation';
import type { App } from './composition';
import type { Client } from '@microsoft/microsoft-graph-client';
import type { LoadedPolicyFile } from '../sync/config/policy-file';
import {
  contactsAccessCheck,
  groupChecks,
  senderChecks,
  status,
  tlsCause,
  tlsDetail,
  tlsFailure,
  tlsFix,
} from './access-checks';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** What to do about it, when not ok (or when ok with a warning). */
  fix?: string;
  /** Works, but is wider than it should be, or not as an admin would expect: reported, without failing the check. */
  warning?: boolean;
  /** The signing certificate's days to expiry (the certificate expiry check). */
  daysLeft?: number;
}

export interface ConnectionHealth {
  connection: string;
  ok: boolean;
  checks: Check[];
}

/** Permissions the policies on a connection need, with why. */
export function neededPermissions(policies: readonly Policy[]): { permission: string; why: string }[] {
  const out = [
    { permission: 'User.Read.All', why: 'read users and their changes (/users/delta)' },
    { permission: 'Contacts.ReadWrite', why: "write contacts into users' mailboxes" },
  ];
  const directory = policies.map((p) => p.source).filter((s) => s.type === 'directory');
  const groupScoped =
    directory.some((s) => s.includeGroups.length + s.excludeGroups.length > 0) ||
    policies.some((p) => p.targets.groups.length + p.targets.excludeGroups.length > 0);
  if (groupScoped || directory.some((s) => s.includeDistributionLists))
    out.push({
      permission: 'GroupMember.Read.All',
      why: 'read group membership for scoping, and mail-enabled groups',
    });
  if (directory.some((s) => s.sharedMailboxes !== undefined || s.roomMailboxes !== undefined))
    out.push({
      permission: 'MailboxSettings.Read',
      why: 'tell shared and room mailboxes from users (mailboxSettings.userPurpose)',
    });
  if (directory.some((s) => s.includeOrgContacts))
    out.push({ permission: 'OrgContact.Read.All', why: 'read mail contacts from the GAL' });
  if (policies.some((p) => p.notify.when !== 'never' && p.notify.recipients.length > 0))
    out.push({ permission: 'Mail.Send', why: 'send run reports' });
  return out;
}

/** The report senders of the policies on a connection (Mail.Send is granted per app, not per policy). */
export function reportSenders(policies: readonly Policy[], connectionId: string): string[] {
  const senders = policies
    .filter(
      (p) => p.connection === connectionId && p.notify.when !== 'never' && p.notify.recipients.length > 0,
    )
    .map((p) => p.notify.sender)
    .filter((s): s is string => s !== undefined);
  // UPNs compare case-insensitively; the first spelling is kept.
  return senders.filter((s, i) => senders.findIndex((t) => t.toLowerCase() === s.toLowerCase()) === i);
}

/**
 * Mail.Send in the app's token is tenant-wide: whoever edits the policy file can make `notify.sender`
 * any mailbox (the CEO's). Once RBAC for Applications limits it to the senders (`scope` prints the
 * assignment) and the tenant-wide grant is removed, the token no longer carries it.
 */
export function mailSendWarning(
  roles: readonly string[],
  policies: readonly Policy[],
  connectionId: string,
): Check | undefined {
  if (!roles.includes('Mail.Send')) return undefined;
  const senders = reportSenders(policies, connectionId);
  return {
    name: 'Mail.Send scope',
    ok: true,
    warning: true,
    detail:
      senders.length > 0
        ? `Mail.Send is granted tenant-wide: the app can send mail as any mailbox, not only ${senders.join(', ')}`
        : 'Mail.Send is granted tenant-wide, and no policy on this connection sends reports',
    fix:
      senders.length > 0
        ? 'limit it to the sender mailboxes with the RBAC for Applications assignment `m365-contact-sync scope` prints, then remove the tenant-wide Mail.Send grant'
        : 'remove the Mail.Send application permission from the app registration',
  };
}

const explain = (e: unknown): string =>
  e instanceof Error ? e.message.split('\n')[0]!.slice(0, 500) : String(e);

/** A failed check; a TLS failure (found in the error, or by asking `url`) gets the TLS fix, not `fix`. */
async function failed(
  name: string,
  e: unknown,
  prefix: string,
  url: string | undefined,
  fix: string,
): Promise<Check> {
  const tls = await tlsCause(e, url);
  return { name, ok: false, detail: tlsDetail(e, prefix + explain(e), tls), fix: tls ? tlsFix : fix };
}

/** Directory permissions a check reads with: a 403 while one is missing from the token names it. */
const readsWith: Record<string, string[]> = {
  'permission Contacts.ReadWrite': ['User.Read.All'],
  'report sender': ['User.Read.All'],
  group: ['GroupMember.Read.All'],
  graph: ['User.Read.All'],
};

/** Broader roles that include a directory permission (Directory.Read.All reads users and groups). */
const includedBy: Record<string, string[]> = {
  'User.Read.All': ['Directory.Read.All'],
  'GroupMember.Read.All': ['Group.Read.All', 'Directory.Read.All'],
};

/** A check refused (403) while a permission it reads with is missing from the token says which. */
export function namingMissing(check: Check, e: unknown, roles: readonly string[]): Check {
  if (check.ok || status(e) !== 403) return check;
  const missing = (readsWith[check.name] ?? []).filter(
    (p) => !roles.includes(p) && !(includedBy[p] ?? []).some((r) => roles.includes(r)),
  );
  if (missing.length === 0) return check;
  const list = missing.join(', ');
  return {
    ...check,
    detail: `${check.detail}: refused because the application permission ${list} is missing from the token`,
    fix: `add the application permission ${list} to the app registration and grant admin consent`,
  };
}

/**
 * Each permission the connection's policies need, by name: the token's roles, except what Exchange RBAC
 * for Applications may grant without the token showing it (Contacts.ReadWrite: tested on a target
 * mailbox; Mail.Send: see the sender checks); then the report senders' mailboxes and the group ids.
 */
export async function permissionChecks(
  client: Client,
  connection: Connection,
  allPolicies: readonly Policy[],
  roles: readonly string[],
  loaded: Pick<LoadedPolicyFile, 'policyIndex'> = {},
): Promise<Check[]> {
  const policies = allPolicies.filter((p) => p.connection === connection.id);
  const checks: Check[] = [];
  const guarded = async (name: string, run: () => Promise<Check[]>): Promise<void> => {
    try {
      checks.push(...(await run()));
    } catch (e) {
      const check: Check = {
        name,
        ok: false,
        detail: tlsDetail(e, explain(e)),
        ...(tlsFailure(e) ? { fix: tlsFix } : {}),
      };
      checks.push(namingMissing(check, e, roles));
    }
  };
  for (const need of neededPermissions(policies)) {
    if (need.permission === 'Contacts.ReadWrite') {
      await guarded('permission Contacts.ReadWrite', async () => [
        await contactsAccessCheck(client, policies, roles),
      ]);
      continue;
    }
    // Absent from the token, Mail.Send may come from RBAC for Applications: the sender check says so.
    if (need.permission === 'Mail.Send' && !roles.includes('Mail.Send')) continue;
    const granted =
      roles.includes(need.permission) ||
      (need.permission === 'User.Read.All' && roles.includes('Directory.Read.All'));
    checks.push({
      name: `permission ${need.permission}`,
      ok: granted,
      detail: granted ? `granted (${need.why})` : `missing: needed to ${need.why}`,
      ...(granted
        ? {}
        : {
            fix: `add the application permission ${need.permission} to the app registration and grant admin consent`,
          }),
    });
  }
  await guarded('report sender', () => senderChecks(client, loaded, policies, roles, connection.clientId));
  await guarded('group', () => groupChecks(client, loaded, policies));
  return checks;
}

export async function checkConnection(
  app: App,
  connection: Connection,
  policies: readonly Policy[],
  loaded: Pick<LoadedPolicyFile, 'policyIndex'> = {},
): Promise<ConnectionHealth> {
  const checks: Check[] = [];
  const add = (c: Check): boolean => {
    checks.push(c);
    return c.ok;
  };
  const source =
    'pemFile' in connection.certificate
      ? `PEM file ${connection.certificate.pemFile}`
      : `Key Vault ${connection.certificate.keyVaultUrl} certificate "${connection.certificate.name}"`;
  let choice;
  try {
    choice = await chooseSigningCertificate(app, connection);
    add({ name: 'certificate', ok: true, detail: `read from ${source} (version ${choice.cert.version})` });
  } catch (e) {
    add(
      await failed(
        'certificate',
        e,
        `cannot read ${source}: `,
        'keyVaultUrl' in connection.certificate ? connection.certificate.keyVaultUrl : undefined,
        "create the certificate with content type PEM (`m365-contact-sync cert create`), then grant the Function App's managed identity 'Key Vault Secrets User' on its secret (`azd env set AZURE_CERTIFICATE_NAME <name>` and `azd provision`)",
      ),
    );
    return { connection: connection.id, ok: false, checks };
  }
  checks.push(await expiryCheck(app, connection, choice));
  const cert = choice.cert;
  // A credential of its own from the certificate just read (Key Vault is read once per check): its
  // token shows the permissions granted now, and the workers' cached clients are left alone.
  const credential = createCredential(connection, cert);
  const clients = { credential, client: createGraphClient(connection, credential) };
  const { graphEndpoint } = endpointsOf(connection);
  let roles: string[] = [];
  try {
    const token = await clients.credential.getToken(`${graphEndpoint}/.default`);
    roles = ((decodeJwt(token.token).roles as string[] | undefined) ?? []).map(String);
    add({ name: 'token', ok: true, detail: `app-only token for ${graphEndpoint} issued` });
  } catch (e) {
    add(
      await failed(
        'token',
        e,
        '',
        `${endpointsOf(connection).authorityHost}/${connection.tenantId}/v2.0/.well-known/openid-configuration`,
        'upload the certificate (.cer from `m365-contact-sync cert show`) to the app registration, and check tenantId and clientId',
      ),
    );
    return { connection: connection.id, ok: false, checks };
  }
  for (const c of await permissionChecks(clients.client, connection, policies, roles, loaded)) add(c);
  const mailSend = mailSendWarning(roles, policies, connection.id);
  if (mailSend) add(mailSend);
  const recipients = connection.exchangeAdmin ? exchangeRecipients(connection, credential) : undefined;
  const hidden = await hiddenUsersCheck(connection, policies, recipients);
  if (hidden) add(hidden);
  try {
    await clients.client.api('/users?$top=1&$select=id').get();
    add({ name: 'graph', ok: true, detail: `${graphEndpoint} answered` });
  } catch (e) {
    const check = await failed(
      'graph',
      e,
      '',
      graphEndpoint,
      'check the network path to Microsoft Graph and the User.Read.All permission',
    );
    add(namingMissing(check, e, roles));
  }
  return { connection: connection.id, ok: checks.every((c) => c.ok), checks };
}

/** Days to expiry of the certificate workers sign with: a warning at 30 days, an error at 7. */
async function expiryCheck(app: App, connection: Connection, signing: SigningChoice): Promise<Check> {
  try {
    const status = await certificateStatus(app, connection, signing);
    return {
      name: 'certificate expiry',
      ok: status.level !== 'error' && !status.problem,
      ...(status.level === 'warning' ? { warning: true } : {}),
      detail: `${status.level === 'ok' ? '' : `${status.level}: `}${status.summary}; rotation ${status.rotation}`,
      ...(status.fix ? { fix: status.fix } : {}),
      daysLeft: status.daysLeft,
    };
  } catch (e) {
    return { name: 'certificate expiry', ok: false, detail: explain(e) };
  }
}

export const exchangeAdminFix =
  "add the application permission Exchange.ManageAsApp (Office 365 Exchange Online) with admin consent, and give the app's service principal the View-Only Recipients role in Exchange Online (New-ServicePrincipal, then New-ManagementRoleAssignment -App <id> -Role 'View-Only Recipients')";

/**
 * Whether hidden users can be told apart for the connection's policies that leave them out: only
 * through Exchange Online (Graph shows showInAddressList null for users). Undefined when no policy cares.
 */
export async function hiddenUsersCheck(
  connection: Connection,
  policies: readonly Policy[],
  recipients: RecipientReader | undefined,
): Promise<Check | undefined> {
  const cares = policies.some(
    (p) =>
      p.connection === connection.id &&
      p.source.type === 'directory' &&
      p.source.includeUsers &&
      !p.source.includeHidden,
  );
  if (!cares && !connection.exchangeAdmin) return undefined;
  if (!connection.exchangeAdmin || !recipients)
    return {
      name: 'hidden users',
      ok: true,
      warning: true,
      detail: hiddenUsersUnknown,
      fix: `set "exchangeAdmin": true on connection ${connection.id}, and ${exchangeAdminFix}`,
    };
  try {
    const flags = await recipients.readFlagged();
    return {
      name: 'hidden users',
      ok: true,
      detail: `Exchange Online lists hidden recipients (${flags.hidden.size} hidden, ${flags.noContactSync.size} marked NoContactSync)`,
    };
  } catch (e) {
    return {
      name: 'hidden users',
      ok: false,
      detail: `${e instanceof RecipientsNotPermittedError ? '' : 'Exchange Online failed: '}${explain(e)}`,
      fix: exchangeAdminFix,
    };
  }
}

export async function health(
  app: App,
): Promise<{ ok: boolean; connections: ConnectionHealth[]; invalidPolicies: unknown[] }> {
  const loaded = await app.policies();
  const connections = await Promise.all(
    [...loaded.connections.values()].map((c) => checkConnection(app, c, loaded.policies, loaded)),
  );
  return {
    ok: connections.every((c) => c.ok) && loaded.invalidPolicies.length === 0,
    connections,
    invalidPolicies: loaded.invalidPolicies,
  };
}

export interface Preview {
  policy: string;
  source: {
    objects: number;
    excluded: Record<string, number>;
    samples: { key: string; displayName: string | undefined }[];
    /** The source filter as Graph evaluates it for users, and how many users Graph finds (null: local only). */
    graphFilter?: { filter: string; advanced: boolean; users: number } | null;
  };
  targets: { mailboxes: number; skipped: { user: string; reason: string }[]; samples: string[] };
}

/** The stored snapshot to start from, with every write kept out: a preview changes nothing. */
export const readOnly = (store: SourceStore): SourceStore => ({
  load: (policyId) => store.load(policyId),
  loadDesired: (policyId) => store.loadDesired(policyId),
  save: () => Promise.resolve(),
});

export async function preview(
  app: App,
  policy: Policy,
  connection: Connection,
  sampleSize = 10,
): Promise<Preview> {
  const graph = await app.graph(connection);
  // Reads the directory's changes since the last run into memory; photos are not looked at.
  const refreshed = await refreshSource(
    { ...policy, photos: { ...policy.photos, enabled: false } },
    graph.directory,
    readOnly(app.sourceStore),
    app.now(),
    graph.mailboxes,
    app.photoStore,
    graph.recipients ? { recipients: graph.recipients } : {},
  );
  const compiled = policy.source.type === 'directory' ? compileUserFilter(policy.source.filters) : undefined;
  const graphFilter =
    compiled && graph.directory.countUsers
      ? { ...compiled, users: await graph.directory.countUsers(compiled) }
      : compiled === undefined && policy.source.type === 'directory' && !noFilter(policy.source.filters)
        ? null
        : undefined;
  return {
    policy: policy.id,
    source: {
      ...(graphFilter !== undefined ? { graphFilter } : {}),
      objects: refreshed.desired.size,
      excluded: refreshed.stats.excluded,
      samples: [...refreshed.desired.entries()]
        .slice(0, sampleSize)
        .map(([key, d]) => ({ key, displayName: d.fields.displayName })),
    },
    targets: {
      mailboxes: refreshed.targets.mailboxes.length,
      skipped: refreshed.targets.skipped,
      samples: refreshed.targets.mailboxes.slice(0, sampleSize).map((m) => m.userPrincipalName),
    },
  };
}

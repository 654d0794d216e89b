// Health ("Test Connection") and preview ("Counter"): what an admin checks before trusting a schedule.
import { decodeJwt } from 'jose';
import type { Connection, Policy } from '../sync/config/schema';
import { endpointsOf, loadCertificate } from '../sync/adapters/graph/connection';
import { hiddenUsersUnknown, refreshSource } from '../sync/refresh-source';
import { RecipientsNotPermittedError, type RecipientReader } from '../sync/ports';
import type { App } from './composition';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** What to do about it, when not ok (or when ok with a warning). */
  fix?: string;
  /** Works, but not as an admin would expect (e.g. hidden users are synced). */
  warning?: boolean;
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

const explain = (e: unknown): string =>
  e instanceof Error ? e.message.split('\n')[0]!.slice(0, 500) : String(e);

export async function checkConnection(
  app: App,
  connection: Connection,
  policies: readonly Policy[],
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
  try {
    const cert = await loadCertificate(connection, () => app.vaultCredential, app.vaultOptions());
    add({ name: 'certificate', ok: true, detail: `read from ${source} (version ${cert.version})` });
  } catch (e) {
    add({
      name: 'certificate',
      ok: false,
      detail: `cannot read ${source}: ${explain(e)}`,
      fix: "grant the Function App's managed identity the 'Key Vault Secrets User' role on the vault, and create the certificate with content type PEM (`m365-contact-sync cert create`)",
    });
    return { connection: connection.id, ok: false, checks };
  }
  const clients = await app.rebuild(connection);
  const { graphEndpoint } = endpointsOf(connection);
  let roles: string[] = [];
  try {
    const token = await clients.credential.getToken(`${graphEndpoint}/.default`);
    roles = ((decodeJwt(token!.token).roles as string[] | undefined) ?? []).map(String);
    add({ name: 'token', ok: true, detail: `app-only token for ${graphEndpoint} issued` });
  } catch (e) {
    add({
      name: 'token',
      ok: false,
      detail: explain(e),
      fix: 'upload the certificate (.cer from `m365-contact-sync cert show`) to the app registration, and check tenantId and clientId',
    });
    return { connection: connection.id, ok: false, checks };
  }
  for (const need of neededPermissions(policies.filter((p) => p.connection === connection.id))) {
    const granted =
      roles.includes(need.permission) ||
      (need.permission === 'User.Read.All' && roles.includes('Directory.Read.All'));
    add({
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
  const hidden = await hiddenUsersCheck(connection, policies, clients.recipients);
  if (hidden) add(hidden);
  try {
    await clients.client.api('/users?$top=1&$select=id').get();
    add({ name: 'graph', ok: true, detail: `${graphEndpoint} answered` });
  } catch (e) {
    add({
      name: 'graph',
      ok: false,
      detail: explain(e),
      fix: 'check the network path to Microsoft Graph and the User.Read.All permission',
    });
  }
  return { connection: connection.id, ok: checks.every((c) => c.ok), checks };
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
    [...loaded.connections.values()].map((c) => checkConnection(app, c, loaded.policies)),
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
  };
  targets: { mailboxes: number; skipped: { user: string; reason: string }[]; samples: string[] };
}

export async function preview(
  app: App,
  policy: Policy,
  connection: Connection,
  sampleSize = 10,
): Promise<Preview> {
  const graph = await app.graph(connection);
  const refreshed = await refreshSource(
    policy,
    graph.directory,
    app.sourceStore,
    app.now(),
    graph.mailboxes,
    app.photoStore,
    graph.recipients ? { recipients: graph.recipients } : {},
  );
  return {
    policy: policy.id,
    source: {
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

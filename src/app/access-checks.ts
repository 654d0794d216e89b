// What `doctor` and /api/health check beyond the token's roles: mailbox access granted by Exchange RBAC
// for Applications (never in the token), the report senders' mailboxes, the group ids the policies
// name, and a TLS failure told apart from a certificate the app registration does not know.
import { request as httpsRequest } from 'node:https';
import type { Client } from '@microsoft/microsoft-graph-client';
import type { Policy } from '../sync/config/schema';
import { policyPath, type LoadedPolicyFile } from '../sync/config/policy-file';
import { GraphRequestError } from '../sync/ports';
import { graphCall } from '../adapters/graph/errors';
import { pathSegment } from '../adapters/graph/path-segment';
import type { Check } from './diagnostics';

type Get = (url: string) => Promise<Record<string, unknown>>;

export const graphGet =
  (client: Client): Get =>
  (url) =>
    graphCall(() => client.api(url).get() as Promise<Record<string, unknown>>);

/** Node's (OpenSSL's) codes for a server certificate it could not verify. */
const tlsCodes = [
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
];
/** The same failures as their messages read, for wrappers (MSAL) that keep only the text. */
const tlsPhrases = [
  /unable to verify the first certificate/i,
  /self[- ]signed certificate/i,
  /unable to get (local )?issuer certificate/i,
  /certificate has expired/i,
  /Hostname\/IP does not match certificate's altnames/i,
];

/** The TLS failure behind an error (its code, or the phrase), walking `cause`; undefined when it is not one. */
export function tlsFailure(e: unknown): string | undefined {
  for (let x: unknown = e, depth = 0; x && depth < 8; depth++) {
    const { code, message, cause } = x as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof code === 'string' && tlsCodes.includes(code)) return code;
    const text = typeof message === 'string' ? message : typeof x === 'string' ? x : '';
    const named = tlsCodes.find((c) => text.includes(c));
    if (named) return named;
    const phrase = tlsPhrases.map((p) => p.exec(text)?.[0]).find(Boolean);
    if (phrase) return phrase;
    x = cause;
  }
  return undefined;
}

export const tlsFix =
  'this is TLS, not the app registration: the HTTPS certificate Microsoft Entra ID, Graph or Key Vault presented is not trusted here (a TLS-inspecting proxy or a private certificate authority). Trust that CA with NODE_EXTRA_CA_CERTS=/path/to/ca.pem (in Azure: an app setting), or let the proxy pass login.microsoftonline.com, graph.microsoft.com and *.vault.azure.net through untouched';

/**
 * Whether a request to `url` fails on TLS: MSAL reports a failed TLS handshake as
 * "endpoints_resolution_error" or "network_error" without its cause, so ask the server directly
 * (through the same trust store: NODE_EXTRA_CA_CERTS applies here too).
 */
export function tlsProbe(url: string, timeoutMs = 10_000): Promise<string | undefined> {
  return new Promise((done) => {
    try {
      const req = httpsRequest(url, { method: 'GET', timeout: timeoutMs }, (res) => {
        res.resume();
        done(undefined);
      });
      req.on('timeout', () => {
        req.destroy();
        done(undefined);
      });
      req.on('error', (e) => done(tlsFailure(e)));
      req.end();
    } catch {
      done(undefined);
    }
  });
}

/** The TLS failure behind `e`, from the error itself or, when it hides it, by asking `url`. */
export async function tlsCause(e: unknown, url: string | undefined): Promise<string | undefined> {
  return tlsFailure(e) ?? (url?.startsWith('https:') ? await tlsProbe(url) : undefined);
}

/** The error as one line, saying TLS when it is TLS (`tls`: what tlsCause found). */
export function tlsDetail(e: unknown, line: string, tls = tlsFailure(e)): string {
  return tls ? `TLS: the server certificate is not trusted (${tls}): ${line}` : line;
}

export const status = (e: unknown): number | undefined =>
  e instanceof GraphRequestError ? e.status : (e as { statusCode?: number }).statusCode;
const code = (e: unknown): string | undefined =>
  e instanceof GraphRequestError ? e.code : (e as { code?: string }).code;

/** Users of some groups, nested members included (one page: enough to leave them out of a sample). */
async function groupMembers(get: Get, groupIds: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const id of groupIds) {
    const page = await get(
      `/groups/${pathSegment(id)}/transitiveMembers/microsoft.graph.user?$select=userPrincipalName&$top=999`,
    ).catch(() => ({ value: [] }));
    for (const u of (page.value as { userPrincipalName?: unknown }[] | undefined) ?? [])
      if (typeof u.userPrincipalName === 'string') out.add(u.userPrincipalName.toLowerCase());
  }
  return out;
}

/** Listed target users (at most 50), else a sample of the targets, less every exclusion; the source mailbox first. */
async function sampleMailboxes(get: Get, policy: Policy): Promise<string[]> {
  const t = policy.targets;
  const out = new Set([
    ...t.excludeUsers.map((u) => u.toLowerCase()),
    ...(await groupMembers(get, t.excludeGroups)),
  ]);
  const keep = (upns: unknown[]): string[] =>
    upns.filter((u): u is string => typeof u === 'string' && !out.has(u.toLowerCase()));
  const source = policy.source.type === 'mailbox' ? [policy.source.mailbox] : [];
  if (t.type === 'users') return [...source, ...keep(t.users).slice(0, 50)];
  const url =
    t.type === 'groups'
      ? `/groups/${pathSegment(t.groups[0]!)}/transitiveMembers/microsoft.graph.user?$select=userPrincipalName&$top=20`
      : '/users?$select=userPrincipalName&$top=20';
  const page = await get(url).catch(() => ({ value: [] }));
  const upns = ((page.value as { userPrincipalName?: unknown }[] | undefined) ?? []).map(
    (u) => u.userPrincipalName,
  );
  return [...source, ...keep(upns)];
}

/** A contact id of the right shape that no mailbox holds: a write to it is judged, then finds nothing. */
const absentContactId = 'AAMkAGNvbnRhY3Qtc3luYy1kb2N0b3ItcHJvYmUAAAA';

type Access = 'granted' | 'readOnly' | 'denied' | 'noMailbox';

/**
 * Whether the app may write contacts in a mailbox, changing nothing: a read of its contact folders
 * (404: no mailbox; 403: no access), then an empty PATCH of a contact that does not exist, which the
 * service authorizes before it looks the item up (403: read-only; 404: the write was allowed).
 */
async function mailboxAccess(get: Get, patch: Get, upn: string): Promise<Access> {
  const user = pathSegment(upn);
  try {
    await get(`/users/${user}/contactFolders?$top=1&$select=id`);
  } catch (e) {
    if (status(e) === 403) return 'denied';
    if (status(e) === 404) return 'noMailbox';
    throw e;
  }
  try {
    await patch(`/users/${user}/contacts/${absentContactId}`);
    return 'granted';
  } catch (e) {
    if (status(e) === 403) return 'readOnly';
    if (status(e) === 404 || status(e) === 400) return 'granted';
    throw e;
  }
}

/**
 * Contacts.ReadWrite in the token is tenant-wide. Once the README's scoping step removes that grant,
 * Exchange RBAC for Applications grants it per mailbox and the token no longer shows it: then each
 * policy's listed target users (or a sample of its targets) are tested for a write that changes nothing.
 */
export async function contactsAccessCheck(
  client: Client,
  policies: readonly Policy[],
  roles: readonly string[],
): Promise<Check> {
  const name = 'permission Contacts.ReadWrite';
  if (roles.includes('Contacts.ReadWrite'))
    return { name, ok: true, detail: "granted in the token (tenant-wide: every mailbox's contacts)" };
  const get = graphGet(client);
  const patch: Get = (url) => graphCall(() => client.api(url).patch({}) as Promise<Record<string, unknown>>);
  const seen = new Map<string, Access>();
  for (const p of policies) {
    let tested = 0;
    for (const upn of await sampleMailboxes(get, p)) {
      // Every listed user; of a group or all mailboxes, two that have a mailbox.
      if (p.targets.type !== 'users' && tested >= 2) break;
      const key = upn.toLowerCase();
      if (!seen.has(key)) seen.set(key, await mailboxAccess(get, patch, upn));
      if (seen.get(key) !== 'noMailbox') tested++;
    }
  }
  const of = (a: Access): string[] => [...seen].filter(([, x]) => x === a).map(([u]) => u);
  const [granted, readOnly, denied] = [of('granted'), of('readOnly'), of('denied')];
  const scopeFix =
    'assign "Application Contacts.ReadWrite" over the target mailboxes with RBAC for Applications (`m365-contact-sync scope` prints it), or add the application permission Contacts.ReadWrite with admin consent';
  const refused = [
    ...(denied.length > 0 ? [`${denied.join(', ')} (ErrorAccessDenied)`] : []),
    ...(readOnly.length > 0 ? [`${readOnly.join(', ')} (read only: a write was denied)`] : []),
  ].join('; ');
  if (granted.length > 0 && refused === '')
    return {
      name,
      ok: true,
      detail: `not in the token: granted by Exchange RBAC for Applications (a test write that changes nothing was allowed in ${granted.join(', ')})`,
    };
  if (granted.length > 0)
    return {
      name,
      ok: true,
      warning: true,
      detail: `granted by Exchange RBAC for Applications for ${granted.join(', ')}, but not for ${refused}: targets outside its scope fail every run`,
      fix: "add those mailboxes to the management scope (`m365-contact-sync scope` prints it), or exclude them from the policy's targets",
    };
  return {
    name,
    ok: false,
    detail:
      refused !== ''
        ? `missing: not in the token, and refused for ${refused}, so RBAC for Applications does not grant it there either`
        : 'missing: not in the token, and no target mailbox was found to test RBAC for Applications with',
    fix: scopeFix,
  };
}

/**
 * Each report sender: a user of the tenant with an Exchange Online mailbox. Mail.Send cannot be tested
 * without sending mail: absent from the token it may be granted by RBAC for Applications (what `scope`
 * prints), so that is a warning with the PowerShell that tells, not a failure.
 */
export async function senderChecks(
  client: Client,
  loaded: Pick<LoadedPolicyFile, 'policyIndex'>,
  policies: readonly Policy[],
  roles: readonly string[],
  clientId: string,
): Promise<Check[]> {
  const get = graphGet(client);
  const checks: Check[] = [];
  const seen = new Set<string>();
  for (const p of policies) {
    const sender = p.notify.sender;
    if (p.notify.when === 'never' || p.notify.recipients.length === 0 || !sender) continue;
    if (seen.has(sender.toLowerCase())) continue;
    seen.add(sender.toLowerCase());
    const where = policyPath(loaded, p.id, 'notify.sender');
    const name = `report sender ${sender}`;
    try {
      await get(`/users/${pathSegment(sender)}?$select=id`);
    } catch (e) {
      if (status(e) !== 404) throw e;
      checks.push({
        name,
        ok: false,
        detail: `${where}: no user ${sender} in the tenant: no report can be sent`,
        fix: `name an existing mailbox (a shared mailbox will do) in ${where}`,
      });
      continue;
    }
    try {
      await get(`/users/${pathSegment(sender)}/contactFolders?$top=1&$select=id`);
    } catch (e) {
      if (code(e) === 'MailboxNotEnabledForRESTAPI' || status(e) === 404) {
        checks.push({
          name,
          ok: false,
          detail: `${where}: ${sender} has no Exchange Online mailbox: no report can be sent`,
          fix: `license the user or name a mailbox (a shared mailbox will do) in ${where}`,
        });
        continue;
      }
      if (status(e) !== 403) throw e;
      // 403 comes before the mailbox is looked at when the app may not read this mailbox's contacts
      // (no Contacts grant, or a scope that leaves the sender out, as it should): it proves nothing.
      checks.push({
        name,
        ok: true,
        warning: true,
        detail: `${where}: whether ${sender} has an Exchange Online mailbox could not be checked (reading its contact folders was refused: ${e instanceof Error ? e.message : String(e)}); without one no report can be sent`,
        fix: `check in the Microsoft 365 admin center that ${sender} has a mailbox (a licensed user or a shared mailbox); Mail.Send: ${mailSendFix(clientId, sender)}`,
      });
      continue;
    }
    checks.push(
      roles.includes('Mail.Send')
        ? { name, ok: true, detail: `${sender} has a mailbox; Mail.Send is in the token` }
        : {
            name,
            ok: true,
            warning: true,
            detail: `${sender} has a mailbox; Mail.Send is not in the token: granted by RBAC for Applications, or missing (it cannot be tested without sending mail)`,
            fix: mailSendFix(clientId, sender),
          },
    );
  }
  return checks;
}

const mailSendFix = (clientId: string, sender: string): string =>
  `in Exchange Online PowerShell: Test-ServicePrincipalAuthorization -Identity '${clientId}' -Resource '${sender.replace(/['\u2018-\u201B]/g, '$&$&')}' must list "Application Mail.Send" InScope True; else run what \`m365-contact-sync scope\` prints`;

/** Every group id the policies name exists; an unknown one is named by its JSON path. */
export async function groupChecks(
  client: Client,
  loaded: Pick<LoadedPolicyFile, 'policyIndex'>,
  policies: readonly Policy[],
): Promise<Check[]> {
  const get = graphGet(client);
  const checks: Check[] = [];
  const known = new Map<string, boolean>();
  for (const p of policies) {
    const lists: [string, readonly string[]][] = [
      ['targets.groups', p.targets.groups],
      ['targets.excludeGroups', p.targets.excludeGroups],
      ...(p.source.type === 'directory'
        ? ([
            ['source.includeGroups', p.source.includeGroups],
            ['source.excludeGroups', p.source.excludeGroups],
          ] as [string, readonly string[]][])
        : []),
    ];
    for (const [field, ids] of lists)
      for (const [i, id] of ids.entries()) {
        if (!known.has(id))
          known.set(
            id,
            await get(`/groups/${pathSegment(id)}?$select=id`).then(
              () => true,
              (e: unknown) => {
                if (status(e) === 404) return false;
                throw e;
              },
            ),
          );
        if (!known.get(id))
          checks.push({
            name: 'group',
            ok: false,
            detail: `${policyPath(loaded, p.id, `${field}[${i}]`)}: no group ${id} in the tenant`,
            fix: "use the group's Object ID from Entra ID (Groups > the group > Overview)",
          });
      }
  }
  return checks;
}

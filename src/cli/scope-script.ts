// The Exchange Online PowerShell that `scope` prints: RBAC for Applications limiting the app's
// Contacts.ReadWrite to a policy's target mailboxes, and its Mail.Send to the report senders the
// policies on that connection name. Every value goes into a single-quoted string literal.
import type { Connection, Policy } from '../sync/config/schema';
import { reportSenders } from '../app/diagnostics';

/**
 * PowerShell ends a single-quoted string at ' and at the typographic quotes U+2018-U+201B too
 * (CharExtensions.IsSingleQuote); doubling each one, as PowerShell's own
 * CodeGeneration.EscapeSingleQuotedStringContent does, keeps it inside the literal.
 */
const singleQuotes = /['\u2018-\u201B]/g;

/** The content of a single-quoted literal (PowerShell, or the OPATH filter inside one). */
export function escapeSingleQuoted(value: string): string {
  return value.replace(singleQuotes, '$&$&');
}

/** A PowerShell single-quoted string literal that reads back as exactly `value`. */
export function psString(value: string): string {
  return `'${escapeSingleQuoted(value)}'`;
}

/** An OPATH recipient filter matching any of these user principal names. */
export function upnFilter(upns: readonly string[]): string {
  return upns.map((u) => `UserPrincipalName -eq '${escapeSingleQuoted(u)}'`).join(' -or ');
}

/** A PowerShell array literal of single-quoted strings. */
const psArray = (values: readonly string[]): string => `@(${values.map(psString).join(', ')})`;

/**
 * Group targets and excludeGroups resolve to their members, nested ones included, in the admin's
 * session through Microsoft Graph PowerShell: the policy counts nested members of any Entra ID group,
 * while Exchange's MemberOfGroup filter sees only mail-enabled groups (by distinguished name) and
 * their direct members. Each UPN is escaped for the OPATH literal as `escapeSingleQuoted` does.
 */
function resolvedMembers(policy: Policy, source: string[]): string[] {
  const t = policy.targets;
  const lines = [
    "# The policy counts nested members of any Entra ID group; Exchange's MemberOfGroup filter sees only",
    '# mail-enabled groups and their direct members. So the scope lists the members, resolved now:',
    '# the list is a snapshot: run this script again when group membership changes (it updates the scope).',
    'function Get-ContactSyncMembers([string[]]$GroupIds) {',
    '  $GroupIds | ForEach-Object { Get-MgGroupTransitiveMemberAsUser -GroupId $_ -All -Property userPrincipalName } |',
    '    ForEach-Object { $_.UserPrincipalName }',
    '}',
  ];
  const included =
    t.type === 'groups'
      ? `@(Get-ContactSyncMembers ${psArray(t.groups)})`
      : t.type === 'users'
        ? psArray(t.users)
        : undefined;
  lines.push(
    `$excluded = @(Get-ContactSyncMembers ${psArray(t.excludeGroups)}) + ${psArray(t.excludeUsers)}`,
  );
  const quoteUpn = `ForEach-Object { "UserPrincipalName -eq '" + ($_ -replace ${psString("['\\u2018-\\u201B]")}, '$0$0') + "'" }`;
  if (included) {
    lines.push(
      `$upns = @(${included} | Where-Object { $excluded -notcontains $_ } | Sort-Object -Unique)`,
      "if ($upns.Count -eq 0) { throw 'The policy targets no member of its groups: nothing to scope.' }",
      `$filter = (@($upns + ${psArray(source)}) | ${quoteUpn}) -join ' -or '`,
    );
  } else {
    lines.push(
      '$filter = "RecipientTypeDetails -eq \'UserMailbox\'"',
      `if ($excluded.Count -gt 0) { $filter = "($filter) -and -not (" + (($excluded | ${quoteUpn}) -join ' -or ') + ')' }`,
      ...(source.length > 0 ? [`$filter = "($filter) -or " + (${psArray(source)} | ${quoteUpn})`] : []),
    );
  }
  return lines;
}

/** Creates the scope, or updates its filter when a run of this script made it before. */
function upsertScope(name: string, filterArgument: string): string[] {
  return [
    `if (Get-ManagementScope -Identity ${psString(name)} -ErrorAction SilentlyContinue) {`,
    `  Set-ManagementScope -Identity ${psString(name)} -RecipientRestrictionFilter ${filterArgument}`,
    '} else {',
    `New-ManagementScope -Name ${psString(name)} -RecipientRestrictionFilter ${filterArgument}`,
    '}',
  ];
}

/** The role over the scope, named after it, made once. */
function ensureAssignment(role: string, scope: string): string[] {
  return [
    `if (-not (Get-ManagementRoleAssignment -Identity ${psString(scope)} -ErrorAction SilentlyContinue)) {`,
    `New-ManagementRoleAssignment -App $sp.AppId -Role ${psString(role)} -CustomResourceScope ${psString(scope)} -Name ${psString(scope)}`,
    '}',
  ];
}

function contactsScope(policy: Policy): string[] {
  const name = `ContactSync-${policy.id}`;
  const t = policy.targets;
  // The source shared mailbox is read with the same permission: it is in the scope too.
  const source = policy.source.type === 'mailbox' ? [policy.source.mailbox] : [];
  const out = new Set(t.excludeUsers.map((u) => u.toLowerCase()));
  const included = t.users.filter((u) => !out.has(u.toLowerCase()));
  const lines: string[] = [];
  let filterArgument: string;
  let probe: string;
  if (t.type === 'groups' || t.excludeGroups.length > 0) {
    lines.push(...resolvedMembers(policy, source));
    filterArgument = '$filter';
    probe = t.type === 'allMailboxes' ? psString('<a target mailbox>') : '$upns[0]';
  } else {
    let filter: string;
    if (t.type === 'users') filter = upnFilter(included);
    else {
      lines.push('# The policy targets all mailboxes: a scope of all user mailboxes.');
      filter = "RecipientTypeDetails -eq 'UserMailbox'";
      // The mailboxes the policy leaves out stay out of the app's reach too.
      if (t.excludeUsers.length > 0) filter = `(${filter}) -and -not (${upnFilter(t.excludeUsers)})`;
    }
    if (source.length > 0) filter = `(${filter}) -or ${upnFilter(source)}`;
    filterArgument = psString(filter);
    probe = psString(included[0] ?? source[0] ?? '<a target mailbox>');
  }
  lines.push(
    ...upsertScope(name, filterArgument),
    ...ensureAssignment('Application Contacts.ReadWrite', name),
    '# Then remove the tenant-wide Contacts.ReadWrite application permission from the app registration,',
    '# or the scope does not narrow anything. Check one mailbox:',
    `Test-ServicePrincipalAuthorization -Identity $sp.AppId -Resource ${probe}`,
  );
  return lines;
}

function mailSendScope(connection: Connection, senders: readonly string[]): string[] {
  if (senders.length === 0)
    return [
      `# No policy on connection "${connection.id}" sends reports: remove Mail.Send from the app registration.`,
    ];
  const name = `ContactSync-senders-${connection.id}`;
  return [
    `# Mail.Send: only the report senders the policies on connection "${connection.id}" name (once per`,
    '# connection; when a sender changes, update the scope with Set-ManagementScope).',
    ...upsertScope(name, psString(upnFilter(senders))),
    ...ensureAssignment('Application Mail.Send', name),
    '# Then remove the tenant-wide Mail.Send application permission: until then the app (and whoever',
    '# edits the policy file) can send mail as any mailbox. Check the sender:',
    `Test-ServicePrincipalAuthorization -Identity $sp.AppId -Resource ${psString(senders[0]!)}`,
  ];
}

/** The whole script for one policy; `policies` are all valid policies of the file (for the senders). */
export function scopeScript(policy: Policy, connection: Connection, policies: readonly Policy[]): string[] {
  return [
    '# Run in PowerShell 7 with the ExchangeOnlineManagement and Microsoft.Graph modules, as an Exchange',
    `# administrator. Limits app ${connection.clientId} to the target mailboxes of policy "${policy.id}".`,
    '# Microsoft Graph PowerShell: the service principal (and group members); Exchange Online: the scopes.',
    `Connect-MgGraph -TenantId ${psString(connection.tenantId)} -Scopes 'Application.Read.All', 'GroupMember.Read.All' -NoWelcome`,
    'Connect-ExchangeOnline -ShowBanner:$false',
    `$appId = ${psString(connection.clientId)}`,
    '$sp = Get-MgServicePrincipal -Filter "appId eq \'$appId\'"',
    'if (-not (Get-ServicePrincipal -Identity $appId -ErrorAction SilentlyContinue)) {',
    `New-ServicePrincipal -AppId $appId -ObjectId $sp.Id -DisplayName ${psString('m365-contact-sync')}`,
    '}',
    ...contactsScope(policy),
    ...mailSendScope(connection, reportSenders(policies, connection.id)),
  ];
}

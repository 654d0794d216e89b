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

function contactsScope(policy: Policy): string[] {
  const name = `ContactSync-${policy.id}`;
  const lines: string[] = [];
  let filter: string;
  const out = new Set(policy.targets.excludeUsers.map((u) => u.toLowerCase()));
  const included = policy.targets.users.filter((u) => !out.has(u.toLowerCase()));
  if (policy.targets.type === 'groups') {
    lines.push('# Members of the target groups (mail-enabled groups; use their distinguished names):');
    filter = policy.targets.groups
      .map((g) => `MemberOfGroup -eq '<distinguished name of group ${g}>'`)
      .join(' -or ');
  } else if (policy.targets.type === 'users') {
    filter = upnFilter(included);
  } else {
    lines.push('# The policy targets all mailboxes: a scope of all user mailboxes.');
    filter = "RecipientTypeDetails -eq 'UserMailbox'";
  }
  // The mailboxes the policy leaves out stay out of the app's reach too.
  const excluded = policy.targets.excludeUsers;
  if (policy.targets.type !== 'users' && excluded.length > 0)
    filter = `(${filter}) -and -not (${upnFilter(excluded)})`;
  lines.push(
    `New-ManagementScope -Name ${psString(name)} -RecipientRestrictionFilter ${psString(filter)}`,
    `New-ManagementRoleAssignment -App $sp.AppId -Role ${psString('Application Contacts.ReadWrite')} -CustomResourceScope ${psString(name)}`,
    '# Then remove the tenant-wide Contacts.ReadWrite application permission from the app registration,',
    '# or the scope does not narrow anything. Check one mailbox:',
    `Test-ServicePrincipalAuthorization -Identity $sp.AppId -Resource ${psString(included[0] ?? '<a target mailbox>')}`,
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
    `New-ManagementScope -Name ${psString(name)} -RecipientRestrictionFilter ${psString(upnFilter(senders))}`,
    `New-ManagementRoleAssignment -App $sp.AppId -Role ${psString('Application Mail.Send')} -CustomResourceScope ${psString(name)}`,
    '# Then remove the tenant-wide Mail.Send application permission: until then the app (and whoever',
    '# edits the policy file) can send mail as any mailbox. Check the sender:',
    `Test-ServicePrincipalAuthorization -Identity $sp.AppId -Resource ${psString(senders[0]!)}`,
  ];
}

/** The whole script for one policy; `policies` are all valid policies of the file (for the senders). */
export function scopeScript(policy: Policy, connection: Connection, policies: readonly Policy[]): string[] {
  return [
    '# Run in Exchange Online PowerShell (Connect-ExchangeOnline) as an Exchange administrator.',
    `# Limits app ${connection.clientId} to the target mailboxes of policy "${policy.id}".`,
    `$appId = ${psString(connection.clientId)}`,
    '$sp = Get-MgServicePrincipal -Filter "appId eq \'$appId\'"  # Microsoft Graph PowerShell, for the object id',
    `New-ServicePrincipal -AppId $appId -ObjectId $sp.Id -DisplayName ${psString('m365-contact-sync')}`,
    ...contactsScope(policy),
    ...mailSendScope(connection, reportSenders(policies, connection.id)),
  ];
}

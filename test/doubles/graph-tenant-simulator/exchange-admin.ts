// Exchange Online's admin REST endpoint as the ExchangeOnlineManagement module calls it:
// POST /adminapi/beta/{tenant}/InvokeCommand with {"CmdletInput": {"CmdletName", "Parameters"}}, an
// app-only token for https://outlook.office365.com carrying Exchange.ManageAsApp, an X-AnchorMailbox
// header, and OData paging (Prefer: odata.maxpagesize, @odata.nextLink, POSTed again with the same
// body). Only Get-Recipient is modelled, with an OPATH -Filter of `-or`-joined `Name -eq value` terms.
// Sources: the request shape of the module's REST mode (michev.info, "All you need to know about
// Exchange Online Admin API", parts 1 and 2; GreyCorbel/ExoHelper), app-only roles
// (learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2).
import type { IdentityProvider } from './identity';
import { exchangeResource } from './identity';
import type { SimRequest, SimResponse } from './protocol';
import type { Tenant } from './tenant';

/** Exchange roles whose cmdlets include Get-Recipient. */
export const recipientReadingRoles = [
  'View-Only Recipients',
  'Mail Recipients',
  'View-Only Configuration',
  'Organization Management',
];

const customAttributes = Array.from({ length: 15 }, (_, i) => `CustomAttribute${i + 1}`);
const recipientProperties = [
  'ExternalDirectoryObjectId',
  'Identity',
  'Name',
  'DisplayName',
  'PrimarySmtpAddress',
  'RecipientType',
  'RecipientTypeDetails',
  'HiddenFromAddressListsEnabled',
  ...customAttributes,
];

type Recipient = Record<string, unknown>;

const error = (status: number, code: string, message: string): SimResponse => ({
  status,
  body: { error: { code, message } },
});

interface Term {
  name: string;
  op: 'eq' | 'like';
  value: string | boolean;
}

/** The OPATH subset: `A -eq $true -or B -eq 'y' -or C -like '*z*'`; undefined when outside it. */
function parseFilter(filter: string): Term[] | undefined {
  const terms = filter.split(/\s+-or\s+/i).map((t) => t.trim().replace(/^\((.*)\)$/, '$1'));
  const out: Term[] = [];
  for (const t of terms) {
    const m = /^([A-Za-z0-9]+)\s+-(eq|like)\s+(\$true|\$false|'((?:[^']|'')*)')$/i.exec(t);
    if (!m) return undefined;
    const name = recipientProperties.find((p) => p.toLowerCase() === m[1]!.toLowerCase());
    const op = m[2]!.toLowerCase() as Term['op'];
    if (!name || (op === 'like' && m[4] === undefined)) return undefined;
    out.push({
      name,
      op,
      value: m[4] !== undefined ? m[4].replace(/''/g, "'") : m[3]!.toLowerCase() === '$true',
    });
  }
  return out;
}

function matchesTerm(r: Recipient, t: Term): boolean {
  const v = r[t.name];
  if (typeof t.value === 'boolean') return v === t.value;
  if (typeof v !== 'string') return false;
  if (t.op === 'eq') return v.toLowerCase() === t.value.toLowerCase();
  const pattern = t.value
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${pattern}$`, 'is').test(v);
}

export class ExchangeAdminFake {
  constructor(
    private readonly identity: IdentityProvider,
    private readonly tenant: Tenant,
  ) {}

  /** Every mail-enabled recipient: mailbox users, mail contacts, mail-enabled groups. */
  recipients(): Recipient[] {
    const out: Recipient[] = [];
    const attrs = (a: Record<string, string | null> | undefined): Recipient =>
      Object.fromEntries(customAttributes.map((c, i) => [c, a?.[`extensionAttribute${i + 1}`] ?? null]));
    for (const u of this.tenant.users.values()) {
      if (u.mailbox === 'none' || !u.mail) continue;
      out.push({
        ExternalDirectoryObjectId: u.id,
        Identity: u.userPrincipalName,
        Name: u.userPrincipalName.split('@')[0],
        DisplayName: u.displayName,
        PrimarySmtpAddress: u.mail,
        RecipientType: 'UserMailbox',
        RecipientTypeDetails:
          u.mailbox === 'shared' ? 'SharedMailbox' : u.mailbox === 'room' ? 'RoomMailbox' : 'UserMailbox',
        HiddenFromAddressListsEnabled: u.hiddenFromAddressListsEnabled,
        ...attrs(u.onPremisesExtensionAttributes),
      });
    }
    for (const c of this.tenant.orgContacts.values()) {
      if (!c.mail) continue;
      out.push({
        ExternalDirectoryObjectId: c.id,
        Identity: c.displayName,
        Name: c.displayName,
        DisplayName: c.displayName,
        PrimarySmtpAddress: c.mail,
        RecipientType: 'MailContact',
        RecipientTypeDetails: 'MailContact',
        HiddenFromAddressListsEnabled: c.hiddenFromAddressListsEnabled ?? false,
        ...attrs(c.onPremisesExtensionAttributes),
      });
    }
    for (const g of this.tenant.groups.values()) {
      if (!g.mailEnabled || !g.mail) continue;
      out.push({
        ExternalDirectoryObjectId: g.id,
        Identity: g.displayName,
        Name: g.displayName,
        DisplayName: g.displayName,
        PrimarySmtpAddress: g.mail,
        RecipientType: 'MailUniversalDistributionGroup',
        RecipientTypeDetails: g.groupTypes.includes('Unified')
          ? 'GroupMailbox'
          : 'MailUniversalDistributionGroup',
        HiddenFromAddressListsEnabled: g.hideFromAddressLists,
        ...attrs(g.customAttributes),
      });
    }
    return out;
  }

  async handle(req: SimRequest, origin: string): Promise<SimResponse> {
    const m = /^\/adminapi\/beta\/([^/]+)\/InvokeCommand$/i.exec(req.path);
    if (!m) return error(404, 'NotFound', `No route for ${req.method} ${req.path}`);
    if (req.method !== 'POST') return error(405, 'MethodNotAllowed', 'InvokeCommand takes POST');
    const auth = await this.identity.verifyAccessToken(req.headers.authorization, exchangeResource);
    if ('error' in auth)
      return { ...error(401, 'Unauthorized', auth.error), headers: { 'www-authenticate': 'Bearer' } };
    if (!auth.roles.includes('Exchange.ManageAsApp'))
      return error(401, 'Unauthorized', 'The token lacks the Exchange.ManageAsApp application permission.');
    const tenant = decodeURIComponent(m[1]!).toLowerCase();
    if (tenant !== this.tenant.tenantId.toLowerCase() && tenant !== this.tenant.domain.toLowerCase())
      return error(400, 'BadRequest', `Tenant ${tenant} does not match the token's tenant.`);
    if (!req.headers['x-anchormailbox'])
      return error(400, 'BadRequest', 'The X-AnchorMailbox header is required.');
    const app = this.identity.apps.get(auth.appId);
    const input = (req.body as { CmdletInput?: { CmdletName?: unknown; Parameters?: unknown } } | undefined)
      ?.CmdletInput;
    if (!input || typeof input.CmdletName !== 'string')
      return error(400, 'BadRequest', 'The request body needs CmdletInput.CmdletName.');
    if (input.CmdletName.toLowerCase() !== 'get-recipient')
      return error(400, 'BadRequest', `The simulator models Get-Recipient only, not ${input.CmdletName}.`);
    if (![...(app?.exchangeRbacRoles ?? [])].some((r) => recipientReadingRoles.includes(r)))
      return error(
        403,
        'Forbidden',
        "The term 'Get-Recipient' is not recognized: no role assigned to the application's service principal includes it (assign View-Only Recipients).",
      );
    const params = (input.Parameters ?? {}) as Record<string, unknown>;
    let rows = this.recipients();
    if (params.Filter !== undefined) {
      const terms = typeof params.Filter === 'string' ? parseFilter(params.Filter) : undefined;
      if (!terms) return error(400, 'BadRequest', `Invalid filter syntax: ${JSON.stringify(params.Filter)}`);
      rows = rows.filter((r) => terms.some((t) => matchesTerm(r, t)));
    }
    if (params.ResultSize !== undefined && params.ResultSize !== 'Unlimited') {
      const n = Number(params.ResultSize);
      if (!Number.isInteger(n) || n < 1) return error(400, 'BadRequest', 'ResultSize: a number or Unlimited');
      rows = rows.slice(0, n);
    }
    const selected = req.query.get('$select');
    let names = recipientProperties;
    if (selected) {
      names = [];
      for (const s of selected.split(',').map((x) => x.trim())) {
        const name = recipientProperties.find((p) => p.toLowerCase() === s.toLowerCase());
        if (!name)
          return error(400, 'BadRequest', `Could not find a property named '${s}' on type 'Recipient'.`);
        names.push(name);
      }
    }
    const size = Math.min(
      Number(/odata\.maxpagesize=(\d+)/i.exec(req.headers.prefer ?? '')?.[1] ?? 1000) || 1000,
      1000,
    );
    const skip = Number(req.query.get('$skiptoken') ?? 0) || 0;
    const page = rows
      .slice(skip, skip + size)
      .map((r) => Object.fromEntries(names.map((n) => [n, r[n] ?? null])));
    const body: Record<string, unknown> = {
      '@odata.context': `${origin}/adminapi/beta/${m[1]}/$metadata#Collection(Exchange.GenericHashTable)`,
      value: page,
    };
    if (skip + size < rows.length) {
      const next = new URL(`${origin}${req.path}`);
      if (selected) next.searchParams.set('$select', selected);
      next.searchParams.set('$skiptoken', String(skip + size));
      body['@odata.nextLink'] = next.toString();
    }
    return { status: 200, body };
  }
}

// RecipientReader over Exchange Online's admin REST endpoint, the route the ExchangeOnlineManagement
// module itself uses: POST {endpoint}/adminapi/beta/{tenant}/InvokeCommand with a CmdletInput body,
// here Get-Recipient. App-only, it needs the Exchange.ManageAsApp application permission (Office 365
// Exchange Online) and an Exchange role for the app's service principal (View-Only Recipients).
// Graph cannot replace it: showInAddressList is null for users, and org contacts and groups carry no
// NoContactSync mark there.
import type { TokenCredential } from '@azure/identity';
import type { Connection } from '../../sync/config/schema';
import { exchangeEndpointsOf } from '../graph/connection';
import {
  GraphRequestError,
  RecipientsNotPermittedError,
  type RecipientFlags,
  type RecipientReader,
} from '../../sync/ports';

const customAttributes = Array.from({ length: 15 }, (_, i) => `CustomAttribute${i + 1}`);

/**
 * Only recipients that matter come back: hidden ones and marked ones (OPATH compares without case;
 * -like, as a mark may carry spaces, which the exact check below trims).
 */
export const flaggedRecipientsFilter = [
  'HiddenFromAddressListsEnabled -eq $true',
  ...customAttributes.map((a) => `${a} -like '*NoContactSync*'`),
].join(' -or ');

const select = ['ExternalDirectoryObjectId', 'HiddenFromAddressListsEnabled', ...customAttributes].join(',');

/** The system mailbox app-only calls are routed by (what the module sends as X-AnchorMailbox). */
const anchorMailbox = (tenantId: string): string =>
  `APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@${tenantId}`;

type Json = Record<string, unknown>;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ExchangeRecipientReader implements RecipientReader {
  constructor(
    private readonly credential: TokenCredential,
    /** e.g. https://outlook.office365.com */
    private readonly endpoint: string,
    /** The token audience, e.g. https://outlook.office365.com */
    private readonly resource: string,
    private readonly tenantId: string,
  ) {}

  async readFlagged(): Promise<RecipientFlags> {
    let token;
    try {
      token = await this.credential.getToken(`${this.resource}/.default`);
    } catch (e) {
      throw new RecipientsNotPermittedError(
        `no token for Exchange Online (${this.resource}): ${(e as Error).message.split('\n')[0]}`,
      );
    }
    if (!token) throw new RecipientsNotPermittedError(`no token for Exchange Online (${this.resource})`);
    const body = JSON.stringify({
      CmdletInput: {
        CmdletName: 'Get-Recipient',
        Parameters: { ResultSize: 'Unlimited', Filter: flaggedRecipientsFilter },
      },
    });
    const headers = {
      authorization: `Bearer ${token.token}`,
      'content-type': 'application/json',
      'x-anchormailbox': anchorMailbox(this.tenantId),
      'x-responseformat': 'json',
      prefer: 'odata.maxpagesize=1000',
    };
    const flags: RecipientFlags = { hidden: new Set(), noContactSync: new Set() };
    let url: string | undefined =
      `${this.endpoint}/adminapi/beta/${encodeURIComponent(this.tenantId)}/InvokeCommand?$select=${select}`;
    while (url) {
      const page = await this.post(url, headers, body);
      for (const r of (page.value as Json[] | undefined) ?? []) {
        const id = r.ExternalDirectoryObjectId;
        if (typeof id !== 'string' || !id) continue;
        if (r.HiddenFromAddressListsEnabled === true) flags.hidden.add(id);
        if (
          customAttributes.some(
            (a) => typeof r[a] === 'string' && r[a].trim().toLowerCase() === 'nocontactsync',
          )
        )
          flags.noContactSync.add(id);
      }
      url = typeof page['@odata.nextLink'] === 'string' ? page['@odata.nextLink'] : undefined;
    }
    return flags;
  }

  /** One page; throttling and server errors are waited out a few times, refusals are reported. */
  private async post(url: string, headers: Record<string, string>, body: string): Promise<Json> {
    for (let attempt = 1; ; attempt++) {
      const res = await fetch(url, { method: 'POST', headers, body });
      const text = await res.text();
      let json: Json = {};
      try {
        json = text ? (JSON.parse(text) as Json) : {};
      } catch {
        /* an HTML error page: reported by status below */
      }
      if (res.ok) return json;
      const error = (json.error ?? {}) as { code?: unknown; message?: unknown };
      const code = typeof error.code === 'string' ? error.code : 'ExchangeError';
      const detail = typeof error.message === 'string' ? error.message : text.slice(0, 200);
      const message = `Exchange Online ${res.status} ${code}: ${detail}`;
      if (res.status === 401 || res.status === 403) throw new RecipientsNotPermittedError(message);
      if ((res.status === 429 || res.status >= 500) && attempt < 4) {
        const after = Number(res.headers.get('retry-after'));
        await sleep(Math.min(Number.isFinite(after) && after > 0 ? after * 1000 : 1000 * attempt, 30_000));
        continue;
      }
      throw new GraphRequestError(message, res.status, code, res.headers.get('request-id') ?? undefined);
    }
  }
}

/** The reader for a connection (exchangeAdmin), on the app's own certificate credential. */
export function exchangeRecipients(
  connection: Connection,
  credential: TokenCredential,
): ExchangeRecipientReader {
  const { endpoint, resource } = exchangeEndpointsOf(connection);
  return new ExchangeRecipientReader(credential, endpoint, resource, connection.tenantId);
}

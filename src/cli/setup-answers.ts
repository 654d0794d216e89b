// `setup`'s questions: each has a flag; `--yes` takes the defaults; on a terminal the rest are asked
// with @inquirer/prompts (maintained successor of Inquirer.js; its 7.x line ships CommonJS, which
// this project compiles to, where 8.x is ESM only). Without a terminal a missing answer is a usage
// error naming its flag. The answers then give the first policy and the permissions it needs.
import { confirm, input, select } from '@inquirer/prompts';
import type { PolicyInput } from '../sync/config/schema';
import { isLoopbackUrl } from '../adapters/local-address';

export interface SetupFlags {
  tenant?: string;
  appName?: string;
  vault?: string;
  certificate?: string;
  source?: string;
  sourceGroup?: string;
  sourceMailbox?: string;
  target?: string;
  targetGroup?: string;
  folder?: string;
  out?: string;
  policyId?: string;
  connectionId?: string;
  authorityHost?: string;
  graphEndpoint?: string;
  signInClientId?: string;
  policyBlobUrl?: string;
  /** --upload / --no-upload: upload the policy file to the policy blob without asking, or never. */
  upload?: boolean;
  yes?: boolean;
}

export interface SetupAnswers {
  tenant: string;
  appName: string;
  vault: string;
  certificate: string;
  source: { type: 'directory' } | { type: 'group'; group: string } | { type: 'mailbox'; mailbox: string };
  target: { type: 'everyone' } | { type: 'group'; group: string };
  folder: string;
  out: string;
  policyId: string;
  connectionId: string;
  authorityHost?: string;
  graphEndpoint?: string;
  /**
   * The public client the admin signs in through. Default: Microsoft Azure CLI's (also
   * @azure/identity's default), preauthorized for the Graph scopes setup needs and for Azure Storage,
   * so one sign-in serves both; Microsoft Graph Command Line Tools (14d82eec-…) reaches Graph only.
   */
  signInClientId: string;
  /** Where the deployed app reads the policy file (POLICY_BLOB_URL); setup offers to upload it there. */
  policyBlobUrl?: string;
}

export class MissingAnswerError extends Error {}

export const defaultSignInClientId = '04b07795-8ddb-461a-bbee-02f9e1bf7b46';

const guid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Asker {
  text(
    flag: string,
    message: string,
    fallback?: string,
    check?: (v: string) => string | true,
  ): Promise<string>;
  choice<T extends string>(flag: string, message: string, options: readonly T[], fallback: T): Promise<T>;
}

/** Flags first, then defaults (--yes), then a prompt on a terminal; else a usage error naming the flag. */
function asker(flags: SetupFlags, interactive: boolean): Asker {
  const given = (flag: string): string | undefined =>
    (flags as Record<string, string | undefined>)[
      flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
    ];
  return {
    async text(flag, message, fallback, check) {
      const value = given(flag) ?? (flags.yes ? fallback : undefined);
      if (value !== undefined) {
        const ok = check?.(value) ?? true;
        if (ok !== true) throw new MissingAnswerError(`--${flag}: ${ok}`);
        return value;
      }
      if (!interactive) throw new MissingAnswerError(`--${flag} is needed (${message})`);
      return input({
        message,
        ...(fallback ? { default: fallback } : {}),
        ...(check ? { validate: check } : {}),
      });
    },
    async choice(flag, message, options, fallback) {
      const value = given(flag) ?? (flags.yes ? fallback : undefined);
      if (value !== undefined) {
        if (!options.includes(value as never))
          throw new MissingAnswerError(`--${flag}: one of ${options.join(', ')}`);
        return value as (typeof options)[number];
      }
      if (!interactive)
        throw new MissingAnswerError(`--${flag} is needed (${message}: ${options.join(', ')})`);
      return select({ message, choices: options.map((value) => ({ value })), default: fallback });
    },
  };
}

const isGuid = (v: string): string | true => guid.test(v) || 'a group object id (GUID)';
const isUpn = (v: string): string | true => /^[^@\s]+@[^@\s]+$/.test(v) || 'a mailbox address (UPN)';
const isHttps = (v: string): string | true => /^https:\/\/[^/\s]+/.test(v) || 'an https URL';

export async function askSetup(
  flags: SetupFlags,
  interactive: boolean,
  env: Record<string, string | undefined>,
): Promise<SetupAnswers> {
  const ask = asker(flags, interactive);
  const vault = await ask.text('vault', "the deployment's Key Vault URL", env.AZURE_KEY_VAULT_URL, isHttps);
  const sourceKind = await ask.choice(
    'source',
    'Whose entries go into the address book',
    ['directory', 'group', 'mailbox'] as const,
    'directory',
  );
  const source =
    sourceKind === 'group'
      ? {
          type: 'group' as const,
          group: await ask.text('source-group', 'the source group id', undefined, isGuid),
        }
      : sourceKind === 'mailbox'
        ? {
            type: 'mailbox' as const,
            mailbox: await ask.text(
              'source-mailbox',
              'the shared mailbox whose contacts are copied',
              undefined,
              isUpn,
            ),
          }
        : { type: 'directory' as const };
  const targetKind = await ask.choice(
    'target',
    'Which mailboxes receive it',
    ['everyone', 'group'] as const,
    'everyone',
  );
  const target =
    targetKind === 'group'
      ? {
          type: 'group' as const,
          group: await ask.text('target-group', 'the target group id', undefined, isGuid),
        }
      : { type: 'everyone' as const };
  const folder = await ask.text(
    'folder',
    'the contact folder name',
    'Company Directory',
    (v) => (v.trim() === v && v !== '' && !/[\\/]/.test(v)) || 'no leading or trailing spaces, no / or \\',
  );
  return {
    tenant: flags.tenant ?? 'organizations',
    appName: flags.appName ?? 'm365-contact-sync',
    vault,
    certificate: flags.certificate ?? 'm365-contact-sync',
    source,
    target,
    folder,
    out: flags.out ?? 'policies.json',
    policyId: flags.policyId ?? 'company-directory',
    connectionId: flags.connectionId ?? 'main',
    ...(flags.authorityHost ? { authorityHost: flags.authorityHost } : {}),
    ...(flags.graphEndpoint ? { graphEndpoint: flags.graphEndpoint } : {}),
    signInClientId: flags.signInClientId ?? defaultSignInClientId,
    ...policyBlob(flags.policyBlobUrl ?? env.POLICY_BLOB_URL, env),
  };
}

/** Azure Storage's blob endpoints in each cloud: the admin's Storage token goes to no other host. */
const azureBlobHost = /\.blob\.core\.(windows\.net|usgovcloudapi\.net|chinacloudapi\.cn)$/i;

function policyBlob(
  url: string | undefined,
  env: Record<string, string | undefined>,
): { policyBlobUrl?: string } {
  if (!url) return {};
  const ok = isHttps(url);
  if (ok !== true) throw new MissingAnswerError(`--policy-blob-url: ${ok}`);
  // Tests and the demo use a local storage front; like the local Key Vault, only loopback and only then.
  const local = env.CONTACTSYNC_LOCAL_KEY_VAULT === 'allow' && isLoopbackUrl(url);
  if (!azureBlobHost.test(new URL(url).hostname) && !local)
    throw new MissingAnswerError(
      `--policy-blob-url: ${new URL(url).hostname} is not an Azure Storage blob endpoint (<account>.blob.core.windows.net): setup sends your sign-in's Storage token only there`,
    );
  return { policyBlobUrl: url };
}

/** Upload the policy file? --upload / --no-upload, else yes with --yes, else asked on a terminal. */
export async function confirmUpload(
  file: string,
  url: string,
  flags: SetupFlags,
  interactive: boolean,
): Promise<boolean> {
  if (flags.upload !== undefined) return flags.upload;
  if (flags.yes || !interactive) return Boolean(flags.yes);
  return confirm({ message: `Upload ${file} to ${url}, where the deployed app reads it?`, default: true });
}

/** The first policy, from the answers. */
export function firstPolicy(a: SetupAnswers): PolicyInput {
  return {
    id: a.policyId,
    name: a.folder,
    connection: a.connectionId,
    source:
      a.source.type === 'mailbox'
        ? { type: 'mailbox', mailbox: a.source.mailbox }
        : { type: 'directory', ...(a.source.type === 'group' ? { includeGroups: [a.source.group] } : {}) },
    targets:
      a.target.type === 'group' ? { type: 'groups', groups: [a.target.group] } : { type: 'allMailboxes' },
    folder: { name: a.folder },
    mapping: {},
  };
}

/** Asks before overwriting a policy file setup did not write (never asked with --yes or no terminal). */
export async function confirmOverwrite(file: string, interactive: boolean, yes: boolean): Promise<boolean> {
  if (yes || !interactive) return yes;
  return confirm({
    message: `${file} differs from what setup would write: replace its connection and policy?`,
    default: true,
  });
}

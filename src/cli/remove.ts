// `remove`: delete every contact a policy wrote (and the folders it created, once empty), in all its
// mailboxes or the ones named, through the same use-case as the operators' HTTP route. A dry run
// lists what would go; the real one asks for the policy id to be typed (or --yes).
import { readFile } from 'node:fs/promises';
import { App } from '../app/composition';
import { InProcessQueues } from '../app/in-process-queues';
import { logger } from '../app/logging';
import { removePolicy, RemoveError, type RemoveSummary } from '../app/remove-policy';
import { parseSettings } from '../app/settings';
import { parsePolicyFile } from '../sync/config/policy-file';
import { cliCredential, vaultOptions } from './credentials';
import type { Io } from './commands';
import { count } from '../sync/plural';

export interface RemoveFlags {
  config: string;
  policy: string;
  mailbox: string[];
  dryRun: boolean;
  yes: boolean;
  storage?: string;
  json: boolean;
}

/** The App of a workstation command: the policy file from disk, state in the given storage. */
export async function workstationApp(
  io: Io,
  config: string,
  storage: string | undefined,
  env: Record<string, string | undefined>,
): Promise<App | undefined> {
  // A Key Vault certificate of any connection is read with the same (local-fake aware) options.
  const vault = parsePolicyFileSafe(await readFile(config, 'utf8').catch(() => ''));
  try {
    const app = new App({
      settings: parseSettings({
        AzureWebJobsStorage: storage ?? env.CONTACTSYNC_STORAGE ?? 'UseDevelopmentStorage=true',
        POLICY_FILE: config,
      }),
      credential: cliCredential(env),
      transport: new InProcessQueues(),
      ...(vault ? vaultOptions(vault, env) : {}),
    });
    await app.ensureStorage();
    return app;
  } catch (e) {
    io.err(
      `storage is not reachable (${(e as Error).message.split('\n')[0]}); pass --storage CONNECTION or set CONTACTSYNC_STORAGE`,
    );
    return undefined;
  }
}

function parsePolicyFileSafe(text: string): string | undefined {
  try {
    for (const c of parsePolicyFile(text).connections.values())
      if ('keyVaultUrl' in c.certificate) return c.certificate.keyVaultUrl;
  } catch {
    /* the use-case reports a bad file */
  }
  return undefined;
}

export async function remove(
  io: Io,
  flags: RemoveFlags,
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  if (!flags.dryRun && !flags.yes && !io.ask) {
    io.err(
      `remove deletes every contact of policy "${flags.policy}": run it with --dry-run first, then confirm with --yes`,
    );
    return 2;
  }
  const app = await workstationApp(io, flags.config, flags.storage, env);
  if (!app) return 2;
  const log = logger({
    log: () => undefined,
    warn: (l: string) => io.err(l),
    error: (l: string) => io.err(l),
  });
  const request = { policyId: flags.policy, mailboxes: flags.mailbox, dryRun: true };
  let summary: RemoveSummary;
  try {
    summary = await removePolicy(app, { ...request, dryRun: flags.dryRun || !flags.yes }, log);
    if (!flags.dryRun && !flags.yes) {
      // Shown first, then confirmed by typing the policy id.
      print(io, summary, false);
      const typed = await io.ask!(`Type the policy id (${flags.policy}) to delete these contacts: `);
      if (typed.trim() !== flags.policy) {
        io.err('not confirmed; nothing was deleted');
        return 2;
      }
      summary = await removePolicy(app, { ...request, dryRun: false }, log);
    }
  } catch (e) {
    if (e instanceof RemoveError) {
      io.err(e.message);
      return 2;
    }
    throw e;
  }
  print(io, summary, flags.json);
  return summary.totals.failed > 0 || summary.notFound.length > 0 ? 1 : 0;
}

function print(io: Io, s: RemoveSummary, json: boolean): void {
  for (const w of s.warnings) io.err(`warning: ${w}`);
  for (const upn of s.notFound) io.err(`${upn}: no such user`);
  if (json) {
    io.out(JSON.stringify(s));
    return;
  }
  for (const m of s.mailboxes)
    io.out(
      `${m.userPrincipalName}: ${count(m.contacts, 'contact')}${m.folderRemoved ? ' and the folder' : ''}${m.othersLeft ? ` (${count(m.othersLeft, 'contact')} without the policy's tag left)` : ''}${m.status === 'failed' ? `; FAILED: ${m.errors.map((x) => `${x.code} ${x.message}`).join('; ')}` : ''}`,
    );
  const t = s.totals;
  io.out(
    `${s.dryRun ? 'Dry run: would remove' : 'Removed'} ${count(t.contacts, 'contact')} of policy "${s.policyId}" from ${count(t.mailboxes, 'mailbox')} (${count(t.folders, 'folder')})${t.failed ? `; ${count(t.failed, 'mailbox')} failed` : ''}`,
  );
}

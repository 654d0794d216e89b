// m365-contact-sync: validate, preview and run a policy from a workstation, check connections, manage
// the app's certificate in Key Vault, and print the Exchange mailbox scoping.
import { Command, CommanderError, Option } from 'commander';
import { createInterface } from 'node:readline/promises';
import * as commands from './commands';
import { setup } from './setup';
import { MissingAnswerError, type SetupFlags } from './setup-answers';
import { remove } from './remove';
import * as history from './history';

/** A question on the terminal (confirmations); none when stdin is not a terminal. */
async function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

export async function main(
  argv: string[],
  io: commands.Io = {
    out: (l) => process.stdout.write(l + '\n'),
    err: (l) => process.stderr.write(l + '\n'),
    isTTY: Boolean(process.stdout.isTTY),
    ...(process.stdin.isTTY ? { ask } : {}),
  },
): Promise<number> {
  let code = 0;
  const program = new Command()
    .name('m365-contact-sync')
    .description('Keep a company address book in every Exchange Online mailbox.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showHelpAfterError();

  program
    .command('validate')
    .description('check a policy file; errors name the JSON path (exit 2 on error)')
    .argument('<policy-file>')
    .action(async (file: string) => {
      code = await commands.validate(io, file);
    });

  program
    .command('preview')
    .description('count and sample the source objects and target mailboxes of a policy')
    .requiredOption('--config <file>', 'policy file')
    .requiredOption('--policy <id>', 'policy id')
    .option('--json', 'print JSON')
    .action(async (o: { config: string; policy: string; json?: boolean }) => {
      code = await commands.preview(io, o.config, o.policy, Boolean(o.json));
    });

  program
    .command('run')
    .description(
      "run a policy once in this process, under the Functions app's lease, locks and run records (exit 3: it is running elsewhere)",
    )
    .requiredOption('--config <file>', 'policy file')
    .requiredOption('--policy <id>', 'policy id')
    .option('--dry-run', "report what would change, change nothing (a policy's dryRun: true always holds)")
    .addOption(
      new Option('--mailbox <upn>', 'only this mailbox (repeatable)').argParser(
        (v: string, prev: string[] = []) => [...prev, v],
      ),
    )
    .option(
      '--storage <connection>',
      'Azure Storage connection string for state (default: CONTACTSYNC_STORAGE, else Azurite)',
    )
    .option('--json', 'end with a JSON summary line')
    .option('--force', 'apply deletions the deletion threshold would hold back (a full resync)')
    .action(
      async (o: {
        config: string;
        policy: string;
        force?: boolean;
        dryRun?: boolean;
        mailbox?: string[];
        storage?: string;
        json?: boolean;
      }) => {
        code = await commands.run(io, {
          config: o.config,
          policy: o.policy,
          dryRun: Boolean(o.dryRun),
          mailbox: o.mailbox ?? [],
          ...(o.storage ? { storage: o.storage } : {}),
          json: Boolean(o.json),
          force: Boolean(o.force),
        });
      },
    );

  program
    .command('remove')
    .description(
      'delete every contact a policy wrote (and the folders it created, once empty), in all its mailboxes or those named; a dry run first, then a confirmation',
    )
    .requiredOption('--config <file>', 'policy file')
    .requiredOption('--policy <id>', 'policy id (also one deleted from the file that has run before)')
    .addOption(
      new Option('--mailbox <upn>', 'only this mailbox (repeatable)').argParser(
        (v: string, prev: string[] = []) => [...prev, v],
      ),
    )
    .option('--dry-run', 'list what would be removed, remove nothing')
    .option('--yes', 'confirm without asking (scripts)')
    .option(
      '--storage <connection>',
      'Azure Storage connection string for state (default: CONTACTSYNC_STORAGE, else Azurite)',
    )
    .option('--json', 'print the summary as JSON')
    .action(
      async (o: {
        config: string;
        policy: string;
        mailbox?: string[];
        dryRun?: boolean;
        yes?: boolean;
        storage?: string;
        json?: boolean;
      }) => {
        code = await remove(io, {
          config: o.config,
          policy: o.policy,
          mailbox: o.mailbox ?? [],
          dryRun: Boolean(o.dryRun),
          yes: Boolean(o.yes),
          ...(o.storage ? { storage: o.storage } : {}),
          json: Boolean(o.json),
        });
      },
    );

  const storageOption = [
    '--storage <connection>',
    'Azure Storage connection string for state (default: CONTACTSYNC_STORAGE, else Azurite)',
  ] as const;
  program
    .command('runs')
    .description('the last runs (CLI runs too), newest first')
    .option('--policy <id>', 'only this policy')
    .option('--last <n>', 'how many', '10')
    .option(...storageOption)
    .option('--json', 'print JSON')
    .action(async (o: { policy?: string; last: string; storage?: string; json?: boolean }) => {
      const last = Number(o.last);
      if (!Number.isInteger(last) || last < 1 || last > 1000)
        throw new commands.UsageError('--last: a whole number from 1 to 1000');
      code = await history.runs(io, {
        ...(o.policy ? { policy: o.policy } : {}),
        last,
        ...(o.storage ? { storage: o.storage } : {}),
        json: Boolean(o.json),
      });
    });
  program
    .command('run-status')
    .description("a run's status, totals, notes and each mailbox's outcome")
    .argument('<run-id>')
    .option(...storageOption)
    .option('--json', 'print JSON')
    .action(async (runId: string, o: { storage?: string; json?: boolean }) => {
      code = await history.runStatus(io, {
        runId,
        ...(o.storage ? { storage: o.storage } : {}),
        json: Boolean(o.json),
      });
    });
  program
    .command('mailbox')
    .description("a mailbox's last outcome under each policy (exit 1: no run has covered it)")
    .argument('<upn>')
    .option(...storageOption)
    .option('--json', 'print JSON')
    .action(async (upn: string, o: { storage?: string; json?: boolean }) => {
      code = await history.mailbox(io, {
        upn,
        ...(o.storage ? { storage: o.storage } : {}),
        json: Boolean(o.json),
      });
    });

  program
    .command('doctor')
    .description(
      'check every connection: certificate, token, permissions, Graph (one line each, with the fix)',
    )
    .requiredOption('--config <file>', 'policy file')
    .action(async (o: { config: string }) => {
      code = await commands.doctor(io, o.config);
    });

  const cert = program.command('cert').description("the app's certificate in Key Vault");
  cert
    .command('create')
    .description(
      'create a PEM, exportable, auto-renewing certificate and write the .cer for the app registration',
    )
    .requiredOption('--vault <url>', 'Key Vault URL')
    .requiredOption('--name <name>', 'certificate name')
    .option('--subject <subject>', 'certificate subject', 'CN=m365-contact-sync')
    .option('--months <n>', 'validity in months', '12')
    .option('--out <file>', 'where to write the .cer', 'm365-contact-sync.cer')
    .action(async (o: { vault: string; name: string; subject: string; months: string; out: string }) => {
      const months = Number(o.months);
      if (!Number.isInteger(months) || months < 1 || months > 120)
        throw new commands.UsageError('--months: a whole number of months from 1 to 120');
      code = await commands.certCreate(io, {
        vault: o.vault,
        name: o.name,
        subject: o.subject,
        months,
        out: o.out,
      });
    });
  cert
    .command('show')
    .description('show expiry and thumbprints (and write the .cer with --out)')
    .requiredOption('--vault <url>', 'Key Vault URL')
    .requiredOption('--name <name>', 'certificate name')
    .option('--out <file>', 'write the .cer here')
    .action(async (o: { vault: string; name: string; out?: string }) => {
      code = await commands.certShow(io, { vault: o.vault, name: o.name, ...(o.out ? { out: o.out } : {}) });
    });

  program
    .command('scope')
    .description(
      "print the Exchange RBAC for Applications PowerShell limiting the app to a policy's target mailboxes",
    )
    .requiredOption('--config <file>', 'policy file')
    .requiredOption('--policy <id>', 'policy id')
    .action(async (o: { config: string; policy: string }) => {
      code = await commands.scope(io, o.config, o.policy);
    });

  program
    .command('setup')
    .description(
      'create the app registration, grant its permissions, put its certificate in Key Vault and write policies.json (device code sign-in; safe to run again)',
    )
    .option('--yes', 'take the default for every question not given as a flag (for pipelines)')
    .option('--tenant <id>', 'tenant id or domain to sign in to (default: the account you sign in with)')
    .option('--app-name <name>', 'app registration name (default m365-contact-sync)')
    .option('--vault <url>', "the deployment's Key Vault URL (default: AZURE_KEY_VAULT_URL, as azd sets it)")
    .option('--certificate <name>', 'certificate name in Key Vault (default m365-contact-sync)')
    .option('--source <kind>', 'directory | group | mailbox (default directory)')
    .option('--source-group <id>', 'with --source group: the group whose members are listed')
    .option('--source-mailbox <upn>', 'with --source mailbox: the shared mailbox whose contacts are copied')
    .option('--target <kind>', 'everyone | group (default everyone)')
    .option('--target-group <id>', 'with --target group: the group whose members receive the contacts')
    .option('--folder <name>', 'contact folder name (default "Company Directory")')
    .option('--out <file>', 'policy file to write (default policies.json)')
    .option('--policy-id <id>', 'id of the first policy (default company-directory)')
    .option('--connection-id <id>', 'id of the connection (default main)')
    .option('--authority-host <url>', 'Entra ID authority (sovereign clouds, tests)')
    .option('--graph-endpoint <url>', 'Microsoft Graph root (sovereign clouds, tests)')
    .option(
      '--sign-in-client-id <id>',
      'public client to sign in through (default: Microsoft Azure CLI, for Graph and Azure Storage)',
    )
    .option(
      '--policy-blob-url <url>',
      'where the deployed app reads the policy file (default: POLICY_BLOB_URL)',
    )
    .option('--upload', 'upload the policy file to the policy blob without asking')
    .option('--no-upload', 'do not upload the policy file')
    .action(async (o: SetupFlags) => {
      try {
        code = await setup(io, o, commands.doctor);
      } catch (e) {
        if (e instanceof MissingAnswerError) throw new commands.UsageError(e.message);
        throw e;
      }
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof commands.UsageError) {
      io.err(e.message);
      return 2;
    }
    io.err(`error: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (require.main === module || /bin[\\/]m365-contact-sync(\.js)?$/.test(process.argv[1] ?? '')) {
  void main(process.argv.slice(2)).then((code) => process.exit(code));
}

// DEV TOOL: `npm run demo` — the product on a laptop, no Azure account needed. Azurite (in memory) and
// the Graph tenant simulator play Microsoft's cloud; the real registered functions run through the
// local runner (timer ticks, queue polling with the host's semantics) and the HTTP bridge.
// Pass 1 is a timer-triggered full fill; then a few directory users change, Key Vault renews the app's
// certificate and the daily rotation rolls it onto the app registration, and pass 2, started over
// HTTP, writes only those changes, signing with the new key. `-- --json` makes the last line JSON;
// `-- --serve` keeps the functions and the dashboard running until Ctrl-C.
// It starts with an old tool's folder in three mailboxes (taken over) and ends with a remove dry run.
// First: the functions' registrations reach this stand-in host, not @azure/functions' test mode.
import './functions-host';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SingleBar, Presets } from 'cli-progress';
import { InvocationContext, type Timer } from '@azure/functions';
import { certificateRotationTick } from '../src/functions/cert-rotation';
import { failedMailboxes, type RunSummary } from '../src/sync/runs';
import { departedLine, targetedMailboxes } from '../src/sync/report';
import { count } from '../src/sync/plural';
import { serve, startDemoEnvironment } from './demo-env';
import type { GraphTenantSimulator } from '../test/doubles/graph-tenant-simulator/simulator';

interface PassSummary {
  pass: string;
  trigger: string;
  mailboxes: { total: number; succeeded: number; failed: number; skipped: number };
  /** Mailboxes that left the targets and were emptied in this pass (counted apart from `mailboxes`). */
  departed: RunSummary['departed'] | null;
  contacts: { created: number; updated: number; deleted: number; unchanged: number; restored: number };
  graphRequests: number;
  throttled: number;
  seconds: number;
  /** The Key Vault version of the certificate the pass signed its tokens with. */
  certificateVersion: string;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      users: { type: 'string', default: '500' },
      mailboxes: { type: 'string', default: '50' },
      latency: { type: 'string', default: '20' },
      'log-file': { type: 'string' },
      serve: { type: 'boolean', default: false },
    },
  });
  const json = values.json;
  const say = (line: string): void => {
    if (!json) process.stdout.write(line + '\n');
  };
  const cleanups: (() => Promise<void> | void)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  };
  let stopping = false;
  process.once('SIGINT', () => {
    stopping = true;
    void cleanup().then(() => process.exit(130));
  });
  process.once('SIGTERM', () => {
    stopping = true;
    void cleanup().then(() => process.exit(143));
  });
  try {
    const env = await startDemoEnvironment({
      users: Number(values.users),
      mailboxes: Number(values.mailboxes),
      latency: Number(values.latency),
      ...(values['log-file'] ? { logFile: values['log-file'] } : {}),
      keepFiles: true,
      say,
    });
    cleanups.push(() => env.close());
    const { app, sim, runner, admin, dir, policyFile } = env;
    const http = { url: env.url };
    say(`  dashboard: ${env.dashboardUrl} (local sign-in; open it to watch the runs)`);

    const oldTool = seedOldToolFolders(sim);
    say(
      `  an old sync tool left a "Company Directory" folder in ${oldTool.mailboxes} mailboxes (${oldTool.contacts} contacts without our tag, a few matching nobody)`,
    );

    const passes: PassSummary[] = [];
    const watch = async (label: string, trigger: string, runId: () => Promise<string>): Promise<void> => {
      const since = sim.log.lastSeq;
      const started = Date.now();
      const id = await runId();
      const bar =
        !json && process.stdout.isTTY
          ? new SingleBar(
              { format: `${label} [{bar}] {value}/{total} mailboxes`, hideCursor: true },
              Presets.shades_classic,
            )
          : undefined;
      let shown = -1;
      const progress = async (): Promise<RunSummary | undefined> => {
        const run = await app.runStore.getRun(id);
        if (run && run.expected > 0 && run.done !== shown) {
          if (bar) {
            if (shown < 0) bar.start(run.expected, 0);
            bar.update(run.done);
          } else say(`  ${label}: ${run.done}/${run.expected} mailboxes done`);
          shown = run.done;
        }
        return run;
      };
      const timer = setInterval(() => void progress(), 250);
      await runner.drain(600_000);
      clearInterval(timer);
      const run = (await progress())!;
      bar?.stop();
      const traffic = sim.log.summary(since);
      passes.push({
        pass: label,
        trigger,
        mailboxes: { total: targetedMailboxes(run), ...run.mailboxes },
        departed: run.departed ?? null,
        contacts: {
          created: run.contacts.created,
          updated: run.contacts.updated,
          deleted: run.contacts.deleted,
          unchanged: run.contacts.unchanged,
          restored: run.contacts.restored,
        },
        graphRequests: traffic.graphRequests,
        throttled: traffic.throttled,
        seconds: Math.round((Date.now() - started) / 100) / 10,
        certificateVersion: (await app.graph((await app.policies()).connections.get('demo-tenant')!))
          .certificateVersion,
      });
    };

    say('\nPass 1: the scheduler fires (timer tick), the policy fans out to every mailbox ...');
    await watch('pass 1', 'timer', async () => {
      await runner.tick();
      return (await app.runStore.getPolicyState('company-directory')).lastRunId!;
    });
    const firstRun = (await app.runStore.getPolicyState('company-directory')).lastRunId!;
    const takeOver = { adopted: 0, removed: 0, left: 0 };
    for (const o of await app.runStore.listOutcomes(firstRun))
      for (const k of ['adopted', 'removed', 'left'] as const) takeOver[k] += o.result?.takeOver?.[k] ?? 0;
    say(
      `  take-over of the old tool's folders: ${takeOver.adopted} contacts adopted (matched by e-mail address), ${takeOver.removed} removed, ${takeOver.left} left`,
    );

    const people = [...sim.tenant.users.values()].filter(
      (u) => u.mail && u.accountEnabled && u.userType === 'Member',
    );
    const [promoted, mover, leaver] = people.slice(3, 6);
    sim.tenant.updateUser(promoted!.id, { jobTitle: 'Head of Sales' });
    sim.tenant.updateUser(mover!.id, { officeLocation: 'CPH-1', city: 'Copenhagen', country: 'Denmark' });
    sim.tenant.updateUser(leaver!.id, { accountEnabled: false });
    const hire = sim.tenant.addUser({
      userPrincipalName: `new.hire@${sim.tenant.domain}`,
      displayName: 'New Hire',
      givenName: 'New',
      surname: 'Hire',
      mail: `new.hire@${sim.tenant.domain}`,
      jobTitle: 'Analyst',
      mailbox: 'none',
    });
    say(
      `\nDirectory changes: ${promoted!.displayName} promoted, ${mover!.displayName} moved office, ${leaver!.displayName} left (disabled), ${hire.displayName} joined (no mailbox yet).`,
    );

    // Key Vault's auto-renewal (at 80 % of the certificate's life) happens between the passes; the
    // daily "certificate-rotation" timer puts the new key on the app registration and switches to it.
    const renewed = await sim.renewInKeyVault();
    const rotationLog: string[] = [];
    await certificateRotationTick(
      { isPastDue: false, scheduleStatus: { last: '', next: '', lastUpdated: '' } } as Timer,
      new InvocationContext({
        invocationId: 'demo-rotation',
        functionName: 'certificate-rotation',
        logHandler: (_level, ...args) => rotationLog.push(args.map(String).join(' ')),
      }),
    );
    const rotation = (await app.rotationStore.get('demo-tenant'))!.state;
    // Workers see a switch within CERTIFICATE_CHECK_MINUTES; the demo does not wait that long.
    await app.rebuild((await app.policies()).connections.get('demo-tenant')!);
    say(
      `Certificate: Key Vault renewed it (new thumbprint ${renewed.thumbprint}); the rotation timer added the new key to the app registration (key ${rotation.activeKeyId ?? '?'}) and switched to it; the old key goes on ${rotation.removeAfter?.slice(0, 10) ?? '?'}.`,
    );
    say(
      'Pass 2: started over HTTP (POST /api/policies/company-directory/runs): only the changes are written ...',
    );
    await watch('pass 2', 'http', async () => {
      const res = await fetch(`${http.url}/api/policies/company-directory/runs`, {
        method: 'POST',
        body: '{}',
      });
      const body = (await res.json()) as { runId?: string; detail?: string };
      if (res.status !== 202 || !body.runId)
        throw new Error(`run request failed: ${res.status} ${body.detail ?? ''}`);
      return body.runId;
    });

    const reports = sim.tenant.mailbox(admin)!.sentMail.length;
    const reportDir = join(dir, 'reports');
    mkdirSync(reportDir);
    // A MIME report is written as .eml (any mail client opens it); a JSON message as it was sent.
    const reportFiles = sim.tenant.mailbox(admin)!.sentMail.map((m, i) => {
      const mime = (m.message as { mime?: unknown }).mime;
      const file = join(reportDir, `report-${i + 1}.${typeof mime === 'string' ? 'eml' : 'json'}`);
      writeFileSync(file, typeof mime === 'string' ? mime : JSON.stringify(m, null, 2));
      return file;
    });
    // What uninstalling would remove: the operators' route, as a dry run (nothing is deleted).
    // Queued as a run (202 and its id); the totals are read from the run record when it is done.
    const queued = (await (
      await fetch(`${http.url}/api/policies/company-directory/removal`, { method: 'POST', body: '{}' })
    ).json()) as { runId: string };
    await runner.drain(600_000);
    const removalRun = (await app.runStore.getRun(queued.runId))!;
    const removalOutcomes = await app.runStore.listOutcomes(queued.runId);
    const removal = {
      totals: {
        mailboxes: removalRun.expected,
        contacts: removalRun.contacts.deleted,
        folders: removalOutcomes.filter((o) => o.result?.removal?.folderRemoved).length,
        failed: removalRun.mailboxes.failed,
      },
    };
    if (!json) {
      const head = [
        'pass',
        'trigger',
        'mailboxes ok/failed/skipped',
        'created',
        'updated',
        'deleted',
        'unchanged',
        'Graph requests',
        '429s answered',
        'time',
        'certificate',
      ];
      const rows = passes.map((p) =>
        [
          p.pass,
          p.trigger,
          `${p.mailboxes.succeeded}/${p.mailboxes.failed}/${p.mailboxes.skipped}`,
          p.contacts.created,
          p.contacts.updated,
          p.contacts.deleted,
          p.contacts.unchanged,
          p.graphRequests,
          p.throttled,
          `${p.seconds} s`,
          p.certificateVersion === passes[0]!.certificateVersion
            ? `v1 ${p.certificateVersion.slice(0, 8)}`
            : `rolled to v2 ${p.certificateVersion.slice(0, 8)}`,
        ].map(String),
      );
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
      say('\nSummary');
      say(line(head));
      say(widths.map((w) => '-'.repeat(w)).join('  '));
      for (const r of rows) say(line(r));
      say(
        `\nCertificate rotation before pass 2: ${rotationLog.map((l) => l.replace(/^\[[^\]]*\] certificate demo-tenant: /, '')).join('; ')}.`,
      );
      for (const p of passes)
        if (p.departed)
          say(`\n${p.pass}: ${departedLine(p.departed, false)} (not among its mailboxes above).`);
      say(
        `\nremove --dry-run (POST /api/policies/company-directory/removal): would remove ${count(removal.totals.contacts, 'contact')} from ${count(removal.totals.mailboxes, 'mailbox')} and ${count(removal.totals.folders, 'folder')} we created; the old tool's folders stay (not ours), users' own contacts are never touched.`,
      );
      say(`\n${count(reports, 'report mail')} sent from ${admin}, written to ${reportDir}.`);
      say(`Policy file: ${policyFile}.${values.serve ? '' : ' Everything started has been stopped.'}`);
    }
    const failed = passes.reduce((n, p) => n + failedMailboxes(p), 0);
    if (json)
      process.stdout.write(
        JSON.stringify({
          passes,
          reportsSent: reports,
          failedMailboxes: failed,
          certificateRotation: {
            renewedThumbprint: renewed.thumbprint,
            events: rotationLog,
            keysOnApplication: sim.applicationKeyIds().length,
          },
          oldTool,
          takeOver,
          removeDryRun: removal.totals,
          policyFile,
          reportFiles,
        }) + '\n',
      );
    if (values.serve) {
      // A line of its own (JSON with --json) so scripts and tests can find the address.
      process.stdout.write(
        json
          ? JSON.stringify({ dashboard: env.dashboardUrl }) + '\n'
          : `\nDashboard: ${env.dashboardUrl} (local sign-in). Serving until Ctrl-C ...\n`,
      );
      await serve(env, () => stopping);
      return 130;
    }
    say(
      `Dashboard: served at ${env.dashboardUrl} while the demo ran; npm run demo -- --serve keeps it open.`,
    );
    await cleanup();
    return failed > 0 ? 1 : 0;
  } catch (e) {
    await cleanup();
    process.stderr.write(`demo failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}

/**
 * The folder an old sync tool (contactSync, CiraSync, ...) filled in three mailboxes: contacts of
 * colleagues without our tag, addresses in another case, and two people the directory does not know.
 */
function seedOldToolFolders(sim: GraphTenantSimulator): { mailboxes: number; contacts: number } {
  const people = [...sim.tenant.users.values()].filter((u) => u.mail && u.accountEnabled);
  const owners = people.filter((u) => u.mailbox === 'user').slice(0, 3);
  let contacts = 0;
  for (const owner of owners) {
    const mailbox = sim.tenant.mailbox(owner.id)!;
    const folder = mailbox.createFolder('Company Directory', mailbox.contactsFolderId);
    const entries = [
      ...people
        .filter((u) => u.id !== owner.id)
        .slice(0, 8)
        .map((u) => ({ name: u.displayName ?? u.mail!, address: u.mail!.toUpperCase() })),
      { name: 'Former Contractor', address: 'contractor@old-agency.example' },
      { name: 'Old Reception', address: 'reception@old-office.example' },
    ];
    for (const e of entries) {
      mailbox.createContact(
        folder.id,
        {
          displayName: e.name,
          emailAddresses: [{ address: e.address, name: e.name }],
          companyName: 'Old tool',
        },
        [],
        new Date(),
      );
      contacts++;
    }
  }
  return { mailboxes: owners.length, contacts };
}

void main().then((code) => process.exit(code));

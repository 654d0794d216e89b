// The run report mail: an HTML part with every value escaped, and a plain-text part, as one MIME
// message (Graph's sendMail accepts MIME), so any mail client shows something readable.
import escapeHtml from 'escape-html';
import { createTransport } from 'nodemailer';
import type { Policy } from './config/schema';
import { count } from './plural';
import {
  departedNames,
  failedMailboxes,
  type DepartedCounts,
  type MailboxOutcome,
  type RunSummary,
} from './runs';

export interface Report {
  subject: string;
  text: string;
  html: string;
}

function duration(run: RunSummary): string {
  if (!run.finishedAt) return 'still running';
  const s = Math.round((new Date(run.finishedAt).getTime() - new Date(run.startedAt).getTime()) / 1000);
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}

export function hasErrors(run: RunSummary, outcomes: readonly MailboxOutcome[]): boolean {
  return (
    run.status === 'failed' ||
    failedMailboxes(run) > 0 ||
    isHeldBack(heldBack(outcomes, run)) ||
    outcomes.some((o) => (o.result?.errors.length ?? 0) > 0)
  );
}

/** The connection's certificate as the run saw it: days to expiry, keys rolled or removed, what to do. */
export interface CertificateNote {
  level: 'ok' | 'warning' | 'error';
  summary: string;
  fix?: string;
}

/** What the thresholds held back: deletions in mailboxes, and mailboxes that left the targets. */
export interface HeldBack {
  mailboxes: number;
  deletions: number;
  /** Mailboxes that left the policy's targets and keep its contacts (absent when none). */
  departedMailboxes?: number;
  /** No target is left: no run removes them, forced or not. */
  noTarget?: boolean;
}

/** Deletions the threshold held back (the plan's, and a take-over's removals), and departed mailboxes. */
export function heldBack(
  outcomes: readonly MailboxOutcome[],
  run?: Pick<RunSummary, 'departedHeldBack'>,
): HeldBack {
  let mailboxes = 0;
  let deletions = 0;
  for (const o of outcomes) {
    const n = (o.result?.deletionsBlocked?.wanted ?? 0) + (o.result?.takeOver?.heldBack?.wanted ?? 0);
    if (n > 0) mailboxes++;
    deletions += n;
  }
  const departed = run?.departedHeldBack;
  return {
    mailboxes,
    deletions,
    ...(departed ? { departedMailboxes: departed.mailboxes, noTarget: departed.noTarget } : {}),
  };
}

export const isHeldBack = (h: HeldBack): boolean => h.deletions > 0 || (h.departedMailboxes ?? 0) > 0;

/** The sentence every output leads with when a threshold held work back. */
export function heldBackLine(h: HeldBack, policyId?: string): string {
  const parts: string[] = [];
  if (h.deletions > 0)
    parts.push(
      `${count(h.deletions, 'deletion')} in ${count(h.mailboxes, 'mailbox')} ${h.deletions === 1 ? 'was' : 'were'} held back by the deletion threshold`,
    );
  const departed = h.departedMailboxes ?? 0;
  if (departed > 0)
    parts.push(
      h.noTarget
        ? `${count(departed, 'mailbox')} left the policy's targets and no target is left: their contacts stay, even in a forced run (to remove them: m365-contact-sync remove --policy ${policyId ?? 'ID'})`
        : `${count(departed, 'mailbox')} that left the policy's targets ${departed === 1 ? 'was' : 'were'} not cleaned (more than the threshold allows at once)`,
    );
  const forcible = h.deletions > 0 || (departed > 0 && !h.noTarget);
  return `${parts.join('; ')}${forcible ? '; a forced run applies them (CLI: run --force; HTTP: "fullResync": true)' : ''}`;
}

/** Mailboxes a run targeted: those that left the targets (and were emptied by it) are counted apart. */
export const targetedMailboxes = (run: Pick<RunSummary, 'expected' | 'departed'>): number =>
  run.expected - (run.departed?.mailboxes ?? 0);

/** "2 mailboxes left the policy's targets: 1 emptied (40 contacts removed), 1 failed: a@x, b@x". */
export function departedLine(d: DepartedCounts, dryRun: boolean): string {
  const counts = [
    `${d.succeeded} ${dryRun ? 'would be emptied' : 'emptied'} (${count(d.removed, 'contact')} ${dryRun ? 'to remove' : 'removed'})`,
    ...(d.failed ? [`${d.failed} failed`] : []),
    ...(d.skipped ? [`${d.skipped} skipped`] : []),
    ...(d.mailboxes > d.succeeded + d.failed + d.skipped
      ? [`${d.mailboxes - d.succeeded - d.failed - d.skipped} not done yet`]
      : []),
  ];
  return `${count(d.mailboxes, 'mailbox')} left the policy's targets: ${counts.join(', ')}${d.mailboxes ? `: ${departedNames(d)}` : ''}`;
}

/** Take-over counts over the mailboxes (options.unmanagedContacts), undefined when none ran. */
function takeOverTotals(outcomes: readonly MailboxOutcome[]): string | undefined {
  const t = { adopted: 0, removed: 0, left: 0, adoptFailed: 0 };
  let any = false;
  for (const o of outcomes) {
    const x = o.result?.takeOver;
    if (!x) continue;
    any = true;
    t.adopted += x.adopted;
    t.removed += x.removed;
    t.left += x.left;
    t.adoptFailed += x.adoptFailed ?? 0;
  }
  const failed = t.adoptFailed ? `, ${t.adoptFailed} could not be adopted (left, ours created)` : '';
  return any ? `${t.adopted} adopted, ${t.removed} removed, ${t.left} left${failed}` : undefined;
}

/** Lines a report lists per section; the rest are counted ("and N more"). */
export const maxReportLines = 50;

const more = (n: number): { mailbox: string; text: string }[] =>
  n > 0 ? [{ mailbox: '…', text: `and ${n.toLocaleString('en-US')} more` }] : [];

/** The first `maxReportLines` items, then one line counting the rest (of `total`, if known). */
function capped<T>(items: readonly T[], total = items.length): { shown: readonly T[]; left: number } {
  const shown = items.slice(0, maxReportLines);
  return { shown, left: Math.max(0, total - shown.length) };
}

export function buildReport(
  policy: Policy,
  run: RunSummary,
  outcomes: readonly MailboxOutcome[],
  certificate?: CertificateNote,
): Report {
  const problems = outcomes.filter((o) => o.status === 'failed' || (o.result?.errors.length ?? 0) > 0);
  const blocked = outcomes.filter((o) => o.result?.deletionsBlocked || o.result?.takeOver?.heldBack);
  const held = heldBack(outcomes, run);
  const lead = isHeldBack(held) ? heldBackLine(held, policy.id) : undefined;
  const takeOver = takeOverTotals(outcomes);
  const state =
    run.status === 'failed'
      ? 'FAILED'
      : problems.length > 0
        ? 'completed with errors'
        : lead
          ? 'completed, deletions held back'
          : 'completed';
  const subject = `Contact sync ${state}: ${policy.name}${run.options.dryRun ? ' (dry run)' : ''}`;
  const c = run.contacts;
  const rows: [string, string][] = [
    ['Policy', `${policy.name} (${policy.id})`],
    ['Run', run.runId],
    [
      'Trigger',
      run.trigger + (run.options.dryRun ? ', dry run' : '') + (run.options.fullResync ? ', full resync' : ''),
    ],
    ['Started', run.startedAt],
    ['Duration', duration(run)],
    [
      'Mailboxes',
      `${targetedMailboxes(run)} targeted: ${run.mailboxes.succeeded} succeeded, ${run.mailboxes.failed} failed, ${run.mailboxes.skipped} skipped`,
    ],
    ...(run.departed
      ? [['Departed mailboxes', departedLine(run.departed, run.options.dryRun)] as [string, string]]
      : []),
    [
      'Contacts',
      `${c.created} created, ${c.updated} updated, ${c.deleted} deleted, ${c.restored} restored, ${c.unchanged} unchanged, ${c.failed} failed`,
    ],
    ...(takeOver ? [['Unmanaged contacts (take-over)', takeOver] as [string, string]] : []),
  ];
  if (certificate)
    rows.push([
      'Certificate',
      `${certificate.level === 'ok' ? '' : `${certificate.level.toUpperCase()}: `}${certificate.summary}${certificate.fix ? `. What to do: ${certificate.fix}` : ''}`,
    ]);
  const allErrorLines = problems.flatMap((o) => {
    const errs = o.result?.errors ?? [];
    if (errs.length === 0) return [{ mailbox: o.userPrincipalName, text: o.lastError ?? 'failed' }];
    const shown = errs.slice(0, 20);
    return [
      ...shown.map((x) => ({
        mailbox: o.userPrincipalName,
        text: `${x.code} (${x.status}): ${x.message}${x.requestId ? ` [request-id ${x.requestId}]` : ''}${x.sourceKey ? ` [${x.sourceKey}]` : ''}`,
      })),
      ...more(errs.length - shown.length + (o.errorsLeftOut ?? 0)).map((x) => ({
        ...x,
        mailbox: o.userPrincipalName,
        text: `${x.text} errors`,
      })),
    ];
  });
  const errorsCapped = capped(allErrorLines);
  const errorLines = [
    ...errorsCapped.shown,
    ...more(errorsCapped.left).map((x) => ({ ...x, text: `${x.text} lines` })),
  ];
  const blockedCapped = capped(blocked);
  const blockedLines = [
    ...blockedCapped.shown.map((o) => ({
      mailbox: o.userPrincipalName,
      text: [
        o.result!.deletionsBlocked
          ? `${o.result!.deletionsBlocked.wanted} of ${o.result!.deletionsBlocked.managed} contacts`
          : undefined,
        o.result!.takeOver?.heldBack
          ? `${o.result!.takeOver.heldBack.wanted} unmanaged contacts to remove (limit ${o.result!.takeOver.heldBack.limit})`
          : undefined,
      ]
        .filter(Boolean)
        .join('; '),
    })),
    ...more(blockedCapped.left),
  ];
  const skippedCapped = capped(
    run.skippedTargets,
    Math.max(run.skippedCount ?? 0, run.skippedTargets.length),
  );
  const skippedLines = [
    ...skippedCapped.shown.map((s) => ({ mailbox: s.user, text: s.reason })),
    ...more(skippedCapped.left),
  ];
  const text = [
    subject,
    '',
    ...(lead ? [`HELD BACK: ${lead}`, ''] : []),
    ...rows.map(([k, v]) => `${k}: ${v}`),
    ...(run.error ? ['', `Error: ${run.error}`] : []),
    ...(errorLines.length ? ['', 'Errors:', ...errorLines.map((x) => `- ${x.mailbox}: ${x.text}`)] : []),
    ...(blockedLines.length
      ? [
          '',
          'Deletions held back by the threshold (run a full resync to apply them):',
          ...blockedLines.map((x) => `- ${x.mailbox}: ${x.text}`),
        ]
      : []),
    ...(skippedLines.length
      ? ['', 'Targets left out:', ...skippedLines.map((s) => `- ${s.mailbox}: ${s.text}`)]
      : []),
    ...(run.notes?.length ? ['', 'Source notes:', ...run.notes.map((n) => `- ${n}`)] : []),
  ].join('\n');
  const e = escapeHtml;
  const list = (title: string, items: { mailbox: string; text: string }[]): string =>
    items.length
      ? `<h3>${e(title)}</h3><ul>${items.map((x) => `<li><b>${e(x.mailbox)}</b>: ${e(x.text)}</li>`).join('')}</ul>`
      : '';
  const html = [
    '<!DOCTYPE html><html><body style="font-family:Segoe UI,Arial,sans-serif">',
    `<h2>${e(subject)}</h2>`,
    lead ? `<p style="color:#a4262c"><b>Held back:</b> ${e(lead)}</p>` : '',
    `<table cellpadding="4" style="border-collapse:collapse">${rows.map(([k, v]) => `<tr><th align="left">${e(k)}</th><td>${e(v)}</td></tr>`).join('')}</table>`,
    run.error ? `<p><b>Error:</b> ${e(run.error)}</p>` : '',
    list('Errors', errorLines),
    list('Deletions held back by the threshold', blockedLines),
    list('Targets left out', skippedLines),
    run.notes?.length
      ? `<h3>Source notes</h3><ul>${run.notes.map((n) => `<li>${e(n)}</li>`).join('')}</ul>`
      : '',
    '</body></html>',
  ].join('\n');
  return { subject, text, html };
}

/** The report as base64 MIME for Graph's sendMail. */
export async function reportMime(report: Report, from: string, to: readonly string[]): Promise<string> {
  // nodemailer's stream transport only composes the MIME message; Graph sends it.
  const composer = createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
  const info = await composer.sendMail({
    from,
    to: [...to],
    subject: report.subject,
    text: report.text,
    html: report.html,
  });
  return (info.message as Buffer).toString('base64');
}

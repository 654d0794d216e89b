// DEV TOOL: the dependency audit in `npm test` (npm run audit:deps). It asks the npm registry's
// advisory database through `npm audit` and fails on a known advisory at or above the bar: high for
// what ships (production dependencies), critical for the dev and test tools. It fails closed: an
// answer it cannot read, and an HTTP error of the advisory endpoint (5xx, 401, 403, 429), fail the
// build. Only npm's own report that the endpoint could not be reached, or that the registry does not
// offer it (404, 405, 501: an offline or read-only mirrored registry), prints NOT RUN and passes,
// unless DEPENDENCY_AUDIT=required, which makes that a failure too.
import { spawnSync } from 'node:child_process';
import { z } from 'zod';

export const severities = ['info', 'low', 'moderate', 'high', 'critical'] as const;
export type Severity = (typeof severities)[number];

export interface Finding {
  name: string;
  severity: Severity;
  /** Advisory titles and urls, or the packages the problem comes through. */
  via: string[];
  fixAvailable: boolean;
}

export type AuditVerdict =
  | { kind: 'clean'; counts: Record<Severity, number>; dependencies: number | null }
  | { kind: 'failed'; findings: Finding[]; counts: Record<Severity, number> }
  /** npm said the advisory endpoint could not be reached or refused the request. */
  | { kind: 'unavailable'; reason: string }
  /** The advisory endpoint answered with an HTTP error (a 5xx, 401, 403, 429, ...): a failure. */
  | { kind: 'endpointError'; reason: string }
  /** Anything else this check cannot read: a failure, never a pass. */
  | { kind: 'unreadable'; reason: string };

const severity = z.enum(severities);
const report = z.object({
  auditReportVersion: z.literal(2),
  vulnerabilities: z.record(
    z.string(),
    z.object({
      name: z.string(),
      severity,
      via: z.array(
        z.union([z.string(), z.object({ title: z.string().optional(), url: z.string().optional() })]),
      ),
      fixAvailable: z.unknown().optional(),
    }),
  ),
  metadata: z.object({
    vulnerabilities: z.object(
      Object.fromEntries(severities.map((s) => [s, z.number()])) as Record<Severity, z.ZodNumber>,
    ),
    dependencies: z.object({ total: z.number() }).partial().optional(),
  }),
});
/** What `npm audit --json` prints when it could not get an answer (e.g. 405 from a mirror). */
const failure = z.object({
  message: z.string().optional(),
  uri: z.string().optional(),
  statusCode: z.number().optional(),
  error: z.object({ code: z.string().optional(), summary: z.string().optional() }).optional(),
});
const advisoryEndpoint = '/-/npm/v1/security/';
const networkCodes = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)\b/;

/**
 * Statuses by which a registry says it does not offer the advisory endpoint at all: 405 from the
 * read-only mirror this workplace reaches (RELIABILITY.md), 404 and 501 from mirrors without it.
 * Any other HTTP error (a 5xx, 401, 403, 429) is the registry failing or refusing us: a failure.
 */
const endpointNotOffered = new Set([404, 405, 501]);

/**
 * Why the advisory endpoint did not answer, if npm's failure says exactly that; an HTTP error of
 * the endpoint that is not one of the documented "not offered" statuses; else undefined.
 */
function endpointUnreachable(json: unknown): { unavailable: string } | { error: string } | undefined {
  const f = failure.safeParse(json);
  if (!f.success) return undefined;
  const { message, uri, statusCode, error } = f.data;
  const aboutEndpoint = `${uri ?? ''} ${message ?? ''}`.includes(advisoryEndpoint);
  if (aboutEndpoint && statusCode !== undefined) {
    const why = `HTTP ${statusCode}${message ? `: ${message}` : ''}`;
    return endpointNotOffered.has(statusCode) ? { unavailable: message ?? why } : { error: why };
  }
  // npm's wording for a request that never got an HTTP answer (DNS, refused, reset, timeout).
  if (aboutEndpoint && /^request to \S+ failed, reason: /.test(message!) && networkCodes.test(message!))
    return { unavailable: message! };
  if (error?.code && networkCodes.test(error.code))
    return { unavailable: [message, error.code].filter(Boolean).join('; ') };
  return undefined;
}

/** Judges the JSON `npm audit --json` printed: anything at or above `failAt` fails. */
export function judgeAudit(output: string, failAt: Severity): AuditVerdict {
  let json: unknown;
  try {
    json = JSON.parse(output);
  } catch {
    return {
      kind: 'unreadable',
      reason: `npm audit printed no JSON: ${JSON.stringify(output.slice(0, 200))}`,
    };
  }
  const parsed = report.safeParse(json);
  if (!parsed.success) {
    const unreachable = endpointUnreachable(json);
    if (unreachable && 'error' in unreachable) return { kind: 'endpointError', reason: unreachable.error };
    return unreachable
      ? { kind: 'unavailable', reason: unreachable.unavailable }
      : {
          kind: 'unreadable',
          reason: `npm audit answered in a shape this check does not know: ${JSON.stringify(json).slice(0, 200)}`,
        };
  }
  const bar = severities.indexOf(failAt);
  const findings: Finding[] = Object.values(parsed.data.vulnerabilities)
    .filter((v) => severities.indexOf(v.severity) >= bar)
    .map((v) => ({
      name: v.name,
      severity: v.severity,
      via: v.via.map((x) =>
        typeof x === 'string' ? `via ${x}` : `${x.title ?? 'advisory'} ${x.url ?? ''}`.trim(),
      ),
      fixAvailable: v.fixAvailable !== undefined && v.fixAvailable !== false,
    }))
    .sort(
      (a, b) =>
        severities.indexOf(b.severity) - severities.indexOf(a.severity) || a.name.localeCompare(b.name),
    );
  const counts = parsed.data.metadata.vulnerabilities;
  return findings.length > 0
    ? { kind: 'failed', findings, counts }
    : { kind: 'clean', counts, dependencies: parsed.data.metadata.dependencies?.total ?? null };
}

function runNpmAudit(args: string[]): string {
  const r = spawnSync('npm', ['audit', '--json', ...args], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 120_000,
  });
  // Not being able to run npm is this machine's fault, not the registry's: unreadable, so it fails.
  if (r.error) return `npm audit could not run: ${r.error.message}`;
  return r.stdout;
}

function main(): void {
  const scopes: { label: string; args: string[]; failAt: Severity }[] = [
    { label: 'production dependencies', args: ['--omit=dev'], failAt: 'high' },
    { label: 'all dependencies (dev and test tools)', args: [], failAt: 'critical' },
  ];
  const required = process.env.DEPENDENCY_AUDIT === 'required';
  let failed = false;
  for (const scope of scopes) {
    const verdict = judgeAudit(runNpmAudit(scope.args), scope.failAt);
    switch (verdict.kind) {
      case 'clean':
        process.stdout.write(
          `audit: ${scope.label}: no ${scope.failAt}-or-worse advisory (${severities
            .map((s) => `${s} ${verdict.counts[s]}`)
            .join(', ')}; ${verdict.dependencies ?? '?'} packages)\n`,
        );
        break;
      case 'failed':
        failed = true;
        process.stderr.write(
          `audit: ${scope.label}: ${verdict.findings.length} package(s) at ${scope.failAt} or worse\n`,
        );
        for (const f of verdict.findings)
          process.stderr.write(
            `  ${f.severity.padEnd(8)} ${f.name}${f.fixAvailable ? ' (fix available: npm audit fix)' : ''}\n` +
              f.via.map((v) => `           ${v}\n`).join(''),
          );
        break;
      case 'unreadable':
        failed = true;
        process.stderr.write(
          `audit: ${scope.label}: FAILED: npm audit's answer could not be read (${verdict.reason})\n`,
        );
        break;
      case 'endpointError':
        failed = true;
        process.stderr.write(
          `audit: ${scope.label}: FAILED: the registry's advisory endpoint answered ${verdict.reason}\n`,
        );
        break;
      case 'unavailable':
        if (required) failed = true;
        process.stderr.write(
          `audit: ${scope.label}: NOT RUN: the registry's advisory endpoint did not answer (${verdict.reason})` +
            (required ? '; DEPENDENCY_AUDIT=required makes that a failure\n' : '\n'),
        );
        break;
    }
  }
  process.exitCode = failed ? 1 : 0;
}

if (require.main === module) main();

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { judgeAudit } from '../../dev/dependency-audit';

const counts = (c: Partial<Record<string, number>>) => ({
  info: 0,
  low: 0,
  moderate: 0,
  high: 0,
  critical: 0,
  total: 0,
  ...c,
});

/** The shape `npm audit --json` (npm 7 and later) prints when the advisory endpoint answered. */
function report(
  vulns: { name: string; severity: string; via?: unknown[]; fixAvailable?: unknown }[],
): string {
  return JSON.stringify({
    auditReportVersion: 2,
    vulnerabilities: Object.fromEntries(
      vulns.map((v) => [
        v.name,
        {
          name: v.name,
          severity: v.severity,
          isDirect: false,
          via: v.via ?? [
            { title: `Bad thing in ${v.name}`, url: `https://github.com/advisories/GHSA-${v.name}` },
          ],
          effects: [],
          range: '<9.9.9',
          nodes: [`node_modules/${v.name}`],
          fixAvailable: v.fixAvailable ?? true,
        },
      ]),
    ),
    metadata: {
      vulnerabilities: counts(
        vulns.reduce<Record<string, number>>(
          (acc, v) => ({ ...acc, [v.severity]: (acc[v.severity] ?? 0) + 1 }),
          {
            total: vulns.length,
          },
        ),
      ),
      dependencies: { prod: 120, dev: 500, optional: 3, peer: 0, peerOptional: 0, total: 620 },
    },
  });
}

/** What npm 11 printed here when the registry refused the advisory request. */
const refused = JSON.stringify({
  message: '405 Method Not Allowed - POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk',
  method: 'POST',
  statusCode: 405,
  body: '',
  error: { summary: '', detail: '' },
});

/** The same shape for another HTTP status of the advisory endpoint. */
const endpointAnswer = (status: number, text: string): string =>
  JSON.stringify({
    message: `${status} ${text} - POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk`,
    method: 'POST',
    statusCode: status,
    body: '',
    error: { summary: '', detail: '' },
  });

/** What npm 11 printed for an advisory endpoint that refused the connection, or a name that does not resolve. */
const unreachable = {
  message:
    'request to http://127.0.0.1:9/-/npm/v1/security/advisories/bulk failed, reason: connect ECONNREFUSED 127.0.0.1:9',
  error: { summary: '', detail: '' },
};
const offline = {
  message:
    'request to https://nonexistent.invalid/-/npm/v1/security/advisories/bulk failed, reason: getaddrinfo ENOTFOUND nonexistent.invalid',
  error: { summary: '', detail: '' },
};

describe('dependency audit: the verdict on what npm audit printed', () => {
  it('passes a report without advisories, with the counts and the number of packages', () => {
    const v = judgeAudit(report([]), 'high');
    assert.equal(v.kind, 'clean');
    assert.equal(v.kind === 'clean' && v.dependencies, 620);
  });

  it('fails on an advisory at the bar or above, naming package, severity and advisory', () => {
    const v = judgeAudit(
      report([
        { name: 'left-pad', severity: 'moderate' },
        { name: 'tar', severity: 'high' },
        { name: 'xml2js', severity: 'critical', via: ['sax'], fixAvailable: false },
      ]),
      'high',
    );
    assert.equal(v.kind, 'failed');
    assert.deepEqual(
      v.kind === 'failed' && v.findings.map((f) => [f.name, f.severity, f.via[0], f.fixAvailable]),
      [
        ['xml2js', 'critical', 'via sax', false],
        ['tar', 'high', 'Bad thing in tar https://github.com/advisories/GHSA-tar', true],
      ],
    );
  });

  it('lets advisories below the bar pass (dev tools are held to critical)', () => {
    assert.equal(judgeAudit(report([{ name: 'tar', severity: 'high' }]), 'critical').kind, 'clean');
    assert.equal(judgeAudit(report([{ name: 'tar', severity: 'critical' }]), 'critical').kind, 'failed');
  });

  it('calls only an unreachable or refusing advisory endpoint unavailable', () => {
    const v = judgeAudit(refused, 'high');
    assert.equal(v.kind, 'unavailable');
    assert.match(v.kind === 'unavailable' ? v.reason : '', /405.*advisories\/bulk/);
    for (const answer of [unreachable, offline, { error: { code: 'EAI_AGAIN', summary: '' } }])
      assert.equal(judgeAudit(JSON.stringify(answer), 'high').kind, 'unavailable', JSON.stringify(answer));
  });

  it('fails on any other HTTP error from the advisory endpoint (5xx, 401, 403, 429): never NOT RUN', () => {
    for (const [status, text] of [
      [500, 'Internal Server Error'],
      [502, 'Bad Gateway'],
      [503, 'Service Unavailable'],
      [401, 'Unauthorized'],
      [403, 'Forbidden'],
      [429, 'Too Many Requests'],
    ] as const) {
      const v = judgeAudit(endpointAnswer(status, text), 'high');
      assert.equal(v.kind, 'endpointError', `${status}`);
      assert.match(v.kind === 'endpointError' ? v.reason : '', new RegExp(`HTTP ${status}`));
    }
    // A registry that does not offer the endpoint at all (read-only mirrors): NOT RUN.
    for (const [status, text] of [
      [404, 'Not Found'],
      [405, 'Method Not Allowed'],
      [501, 'Not Implemented'],
    ] as const)
      assert.equal(judgeAudit(endpointAnswer(status, text), 'high').kind, 'unavailable', `${status}`);
  });

  it('fails closed on an answer it cannot read: never clean, never NOT RUN', () => {
    for (const output of [
      'npm ERR! network',
      '',
      'npm audit could not run: spawn npm ENOENT',
      JSON.stringify({ auditReportVersion: 2 }),
      JSON.stringify({ auditReportVersion: 3, vulnerabilities: {}, metadata: {} }),
      JSON.stringify({ message: 'something else went wrong', error: { code: 'ENOLOCK', summary: '' } }),
      JSON.stringify({
        message: '500 Internal Server Error - GET https://registry.npmjs.org/left-pad',
        statusCode: 500,
      }),
      JSON.stringify([]),
      'null',
    ]) {
      assert.equal(judgeAudit(output, 'high').kind, 'unreadable', output);
    }
  });
});

describe('dependency audit: the command and its exit code', () => {
  const script = resolve(__dirname, '../../dev/dependency-audit.js');
  /** Runs the audit with an `npm` on PATH that prints `output` for every audit it is asked for. */
  function audit(output: string, env: Record<string, string> = {}): { status: number | null; text: string } {
    const dir = mkdtempSync(join(tmpdir(), 'fake-npm-'));
    try {
      writeFileSync(join(dir, 'answer.json'), output);
      writeFileSync(join(dir, 'npm'), `#!/bin/sh\ncat "${join(dir, 'answer.json')}"\nexit 1\n`);
      chmodSync(join(dir, 'npm'), 0o755);
      const r = spawnSync(process.execPath, [script], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${dir}${delimiter}${process.env.PATH ?? ''}`, ...env },
      });
      return { status: r.status, text: r.stdout + r.stderr };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('exits 1 and lists the package when a high advisory is found', () => {
    const r = audit(report([{ name: 'tar', severity: 'high' }]));
    assert.equal(r.status, 1);
    assert.match(r.text, /production dependencies: 1 package\(s\) at high or worse/);
    assert.match(r.text, /high\s+tar/);
  });

  it('exits 0 on a clean report', () => {
    const r = audit(report([{ name: 'left-pad', severity: 'low' }]));
    assert.equal(r.status, 0, r.text);
    assert.match(r.text, /no high-or-worse advisory \(info 0, low 1/);
  });

  it('says NOT RUN when the endpoint refuses, and fails then only when the audit is required', () => {
    const r = audit(refused);
    assert.equal(r.status, 0);
    assert.match(r.text, /NOT RUN: the registry's advisory endpoint did not answer \(405/);
    assert.equal(audit(refused, { DEPENDENCY_AUDIT: 'required' }).status, 1);
    const down = audit(JSON.stringify(offline));
    assert.equal(down.status, 0);
    assert.match(down.text, /NOT RUN: .*ENOTFOUND/);
  });

  it('exits 1 naming the status when the advisory endpoint answers a server error', () => {
    const r = audit(endpointAnswer(503, 'Service Unavailable'));
    assert.equal(r.status, 1, r.text);
    assert.match(r.text, /FAILED: the registry's advisory endpoint answered HTTP 503/);
    assert.doesNotMatch(r.text, /NOT RUN/);
  });

  it('exits 1 on output it cannot read, with or without DEPENDENCY_AUDIT=required', () => {
    for (const output of ['npm ERR! something odd', '', JSON.stringify({ auditReportVersion: 2 })]) {
      const r = audit(output);
      assert.equal(r.status, 1, `${JSON.stringify(output)}: ${r.text}`);
      assert.match(r.text, /FAILED: npm audit's answer could not be read/);
      assert.doesNotMatch(r.text, /NOT RUN/);
    }
  });
});

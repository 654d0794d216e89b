// The dashboard in a real browser: Debian's Chromium (no browser download) driven by playwright-core
// over the demo pipeline (Azurite, the Graph tenant simulator, the real functions). Each page is
// opened, its figures are checked against the run records, axe-core checks accessibility, a dry run
// is started from the UI and watched to the end, and a user without a role sees no data. Screenshots
// of each page: UPDATE_SCREENSHOTS=1 writes them to docs/screenshots/ (shown in the README).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { serve, startDemoEnvironment, type DemoEnvironment } from '../../dev/demo-env';
import { RunHistory } from '../../src/dashboard/history';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// The README's pictures are refreshed with UPDATE_SCREENSHOTS=1; otherwise they go to a temporary folder,
// so a test run leaves no changed binary files in the work tree.
const screenshots = process.env.UPDATE_SCREENSHOTS
  ? resolve(__dirname, '../../../docs/screenshots')
  : mkdtempSync(join(tmpdir(), 'dashboard-screenshots-'));
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
/** A policy name with markup: it must show as text, never run or render. */
const hostileName = '<img src=x onerror="window.__xss=1"> Company & <b>directory</b>';
// The viewer's locale and time zone, far from the server's UTC.
const locale = 'de-DE';
const timezoneId = 'Asia/Tokyo';
const viewerDate = new Intl.DateTimeFormat(locale, {
  dateStyle: 'medium',
  timeStyle: 'medium',
  timeZone: timezoneId,
});

async function axe(page: Page, label: string): Promise<void> {
  // Evaluated over DevTools, so the page's CSP (no inline script) does not apply to the checker.
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await (globalThis as any).axe.run({
      runOnly: ['wcag2a', 'wcag2aa', 'best-practice'],
    });
    return result.violations.map(
      (v: any) => `${v.id}: ${v.help} (${v.nodes.map((n: any) => n.target.join(' ')).join(', ')})`,
    );
  });
  assert.deepEqual(violations, [], `${label}: accessibility violations`);
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: resolve(screenshots, `${name}.png`), fullPage: true });
  assert.ok(statSync(resolve(screenshots, `${name}.png`)).size > 5_000, `${name}.png was written`);
}

describe('dashboard in Chromium', () => {
  let env: DemoEnvironment;
  let browser: Browser;
  let serving = true;
  let served: Promise<void>;
  let failing: string;

  before(async () => {
    assert.ok(
      existsSync(chromiumPath),
      `Chromium is missing at ${chromiumPath}: install Debian's package (apt-get install chromium; .ci/run does) or set CHROMIUM_PATH`,
    );
    env = await startDemoEnvironment({ users: 60, mailboxes: 8, latency: 0, policyName: hostileName });
    // One mailbox fails on every Graph call, so the run page has an error to show.
    failing = `o.brien@${env.sim.tenant.domain}`;
    env.sim.faults.add({ kind: 'status', status: 500, match: { service: 'graph', mailbox: failing } });
    await env.runner.tick();
    await env.runner.drain(300_000);
    env.sim.faults.clear();
    // From here the functions run as the host would, so a run started in the browser completes.
    served = serve(env, () => !serving);
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  });

  after(async () => {
    if (!process.env.UPDATE_SCREENSHOTS) rmSync(screenshots, { recursive: true, force: true });
    serving = false;
    await browser?.close();
    await served;
    await env?.close();
  });

  async function signIn(role: 'operator' | 'reader' | 'none'): Promise<Page> {
    const context = await browser.newContext({ locale, timezoneId, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 403/.test(m.text())) errors.push(m.text());
    });
    await page.goto(env.dashboardUrl);
    const button = {
      operator: 'Sign in as operator',
      reader: 'Sign in as reader',
      none: 'Sign in without a role',
    }[role];
    await page.getByRole('button', { name: button }).click();
    await page.locator('#who').getByText('Sign out').waitFor();
    (page as Page & { errors: string[] }).errors = errors;
    return page;
  }

  it('a user without a role is refused by the server and sees no data', async () => {
    const page = await signIn('none');
    await page.getByRole('heading', { name: 'Access denied' }).waitFor();
    const text = await page.locator('body').innerText();
    assert.doesNotMatch(text, /company-directory|Company/);
    // The server refuses the data itself, whatever the page shows.
    const statuses = await page.evaluate(async () => {
      const token = sessionStorage.getItem('contact-sync-dashboard-token');
      const get = (p: string) =>
        fetch(`/api/dashboard-api/${p}`, { headers: { authorization: `Bearer ${token}` } });
      return Promise.all(['policies', 'health', 'mailboxes?q=x@y'].map(async (p) => (await get(p)).status));
    });
    assert.deepEqual(statuses, [403, 403, 403]);
    await shot(page, 'no-role');
    await page.context().close();
  });

  it('Policies: state, schedule, last run and its totals as recorded; markup in names shown as text', async () => {
    const page = await signIn('operator');
    await page.locator('#policies').waitFor();
    const runs = await new RunHistory(env.app.tables.runs).recentRuns('company-directory');
    const last = runs[0]!;
    const row = page.locator('#policies tbody tr').first();
    assert.equal(await row.locator('th span').first().textContent(), hostileName);
    assert.equal(await page.locator('#policies img, #policies b').count(), 0);
    assert.equal(await page.evaluate(() => (globalThis as any).__xss), undefined);
    const cells = await row.locator('td').allInnerTexts();
    assert.match(cells[0]!, /idle/);
    const c = last.contacts;
    assert.equal(cells[3], `${c.created} / ${c.updated} / ${c.deleted} / ${c.failed}`);
    assert.ok(
      cells[2]!.includes(viewerDate.format(new Date(last.startedAt))),
      `${cells[2]} in ${locale}, ${timezoneId}`,
    );
    assert.equal((await row.locator('svg rect').count()) > 0, true);
    await axe(page, 'Policies');
    await shot(page, 'policies');
    assert.deepEqual((page as Page & { errors: string[] }).errors, []);
    await page.context().close();
  });

  it('Run: totals, timeline and every mailbox as recorded; filter by status; Mailbox: history of one user', async () => {
    const page = await signIn('reader');
    const [run] = await new RunHistory(env.app.tables.runs).recentRuns('company-directory', 1);
    const outcomes = await env.app.runStore.listOutcomes(run!.runId);
    await page.goto(`${env.dashboardUrl}#/runs/${run!.runId}`);
    await page.locator('#outcomes tbody tr').first().waitFor();
    const total = (k: string) => page.locator(`#totals dd[data-total="${k}"]`).textContent();
    assert.equal(await total('Created'), String(run!.contacts.created));
    assert.equal(await total('Deleted'), String(run!.contacts.deleted));
    assert.equal(await total('Mailboxes'), `${run!.done} of ${run!.expected} done`);
    assert.equal(await page.locator('#outcomes tbody tr').count(), outcomes.length);
    assert.ok(
      (await page.locator('#timeline').innerText()).includes(viewerDate.format(new Date(run!.startedAt))),
    );
    // Graph traffic as recorded (issue 19): the run's totals and each mailbox's requests and 429s.
    assert.ok(run!.graph && run!.graph.requests > 0, 'the run record counts Graph traffic');
    assert.equal(
      await total('Graph requests and 429s'),
      `${run!.graph.requests} requests, ${run!.graph.throttled} throttled (429)`,
    );
    for (const o of outcomes.filter((o) => o.graph)) {
      const link = page.getByRole('link', { name: o.userPrincipalName, exact: true });
      const row = page.locator('#outcomes tbody tr').filter({ has: link });
      assert.equal(
        await row.first().locator('td[data-graph]').textContent(),
        `${o.graph!.requests} ${o.graph!.requests === 1 ? 'request' : 'requests'}, ${o.graph!.throttled} throttled (429)`,
        o.userPrincipalName,
      );
    }
    const failed = outcomes.find((o) => o.userPrincipalName === failing)!;
    assert.equal(failed.status, 'failed');
    assert.ok((failed.graph?.requests ?? 0) > 0, "the failed mailbox's attempts are counted");
    const failedRow = page.locator('#outcomes tbody tr[data-status="failed"]');
    assert.equal(await failedRow.count(), 1);
    assert.ok(
      (await failedRow.innerText()).includes(failed.lastError!.slice(0, 80)),
      'the error as recorded',
    );
    await axe(page, 'Run');
    await shot(page, 'run');
    await page.getByLabel('Status').selectOption('skipped');
    const skipped = outcomes.filter((o) => o.status === 'skipped');
    assert.ok(skipped.length > 0, 'the demo tenant has users without a mailbox');
    assert.equal(await page.locator('#outcomes tbody tr').count(), skipped.length);
    await page.getByLabel('Search mailboxes').fill(skipped[0]!.userPrincipalName);
    assert.equal(await page.locator('#outcomes tbody tr').count(), 1);

    // "Why not for this user?": the mailbox page answers across runs.
    await page.locator('#outcomes tbody tr a').first().click();
    await page.locator('#history').waitFor();
    const history = await page.locator('#history tbody tr').allInnerTexts();
    assert.ok(history.length >= 1);
    assert.match(history[0]!, /noMailbox/);
    const optedOut = run!.skippedTargets.find((s) => s.reason === 'NoMailboxSync');
    assert.ok(optedOut, 'the demo tenant has a user who opted out');
    await page.getByLabel('User principal name or mailbox id').fill(optedOut.user);
    await page.getByRole('button', { name: 'Show history' }).click();
    await page.locator('#history').getByText('NoMailboxSync').first().waitFor();
    await axe(page, 'Mailbox');
    await shot(page, 'mailbox');
    await page.context().close();
  });

  it('Preview and run now: a dry run by default, started from the UI and watched to the end', async () => {
    const page = await signIn('operator');
    await page.goto(`${env.dashboardUrl}#/policies/company-directory/run`);
    await page.locator('#preview').waitFor({ timeout: 120_000 });
    assert.equal(await page.getByLabel('Dry run (plans and counts, writes nothing)').isChecked(), true);
    await axe(page, 'Preview');
    await shot(page, 'preview');
    await page.getByRole('button', { name: 'Run now' }).click();
    await page.waitForURL(/#\/runs\//);
    const runId = new URL(page.url()).hash.split('/')[2]!;
    await page
      .locator('#totals dd[data-total="Status"]')
      .getByText('completed (dry run)')
      .waitFor({ timeout: 240_000 });
    const record = (await env.app.runStore.getRun(runId))!;
    assert.equal(record.status, 'completed');
    assert.equal(record.options.dryRun, true);
    assert.equal(
      await page.locator('#totals dd[data-total="Mailboxes"]').textContent(),
      `${record.done} of ${record.expected} done`,
    );
    await page.context().close();
  });

  it('Health: the doctor checks by name, green and red', async () => {
    const page = await signIn('reader');
    await page.goto(`${env.dashboardUrl}#/health`);
    await page.locator('.checks li').first().waitFor({ timeout: 120_000 });
    const checks = await page.locator('.checks li').allInnerTexts();
    assert.ok(
      checks.some((c) => /User\.Read\.All/.test(c)),
      checks.join('\n'),
    );
    await axe(page, 'Health');
    await shot(page, 'health');
    await page.context().close();
  });
});

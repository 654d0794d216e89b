// The dashboard in the browser: plain DOM, no framework and no build step (a handful of pages of
// tables does not need one, and every byte here ships in the Function App). Every value from the
// directory or the run records goes into the page as text (textContent), never as markup.
const apiBase = '/api/dashboard-api/';
const tokenKey = 'contact-sync-dashboard-token';
const main = document.getElementById('main');
const who = document.getElementById('who');
const statusLine = document.getElementById('status');
let config = null;
let refreshTimer = 0;

/** Creates an element; strings become text nodes, `on*` attributes become listeners. */
function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Dates in the viewer's own locale and time zone. */
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
function when(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso }, dateFormat.format(new Date(iso)));
}
const seconds = (s) =>
  s === null || s === undefined ? '—' : s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
const badge = (text, kind) => h('span', { class: `badge ${kind}` }, text);
const statusKind = (s) =>
  ({ completed: 'ok', succeeded: 'ok', idle: 'ok', planned: 'ok', failed: 'bad', invalid: 'bad' })[s] ??
  'warn';

function show(title, ...content) {
  document.title = `${title} · Contact sync dashboard`;
  main.replaceChildren(
    h('h1', {}, title),
    ...content.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false),
  );
}

function announce(text) {
  statusLine.textContent = text;
}

// ---------------------------------------------------------------- sign-in

const token = () => sessionStorage.getItem(tokenKey);

async function api(path, init = {}) {
  const headers = { accept: 'application/json', ...(init.headers ?? {}) };
  if (token()) headers.authorization = `Bearer ${token()}`;
  const res = await fetch(apiBase + path, { ...init, headers });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) {
    sessionStorage.removeItem(tokenKey);
    signInPage(body.detail);
    throw new Error('signed out');
  }
  if (!res.ok) {
    const err = new Error(body.detail ?? `HTTP ${res.status}`);
    err.status = res.status;
    err.problem = body;
    throw err;
  }
  return body;
}

const b64url = (bytes) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');
const redirectUri = () => `${location.origin}/api/dashboard/`;

/** Entra ID: authorization code with PKCE, redeemed from the browser (an SPA redirect URI). */
async function entraSignIn() {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem('pkce', JSON.stringify({ verifier, state }));
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const q = new URLSearchParams({
    client_id: config.clientId,
    response_type: 'code',
    redirect_uri: redirectUri(),
    scope: `${config.scope} openid profile`,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
  });
  location.assign(`${config.authority}/oauth2/v2.0/authorize?${q}`);
}

async function redeemCode() {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  if (!code) return;
  history.replaceState(null, '', redirectUri() + location.hash);
  const pkce = JSON.parse(sessionStorage.getItem('pkce') ?? '{}');
  sessionStorage.removeItem('pkce');
  if (!pkce.state || params.get('state') !== pkce.state) throw new Error('the sign-in answer does not match');
  const res = await fetch(`${config.authority}/oauth2/v2.0/token`, {
    method: 'POST',
    body: new URLSearchParams({
      client_id: config.clientId,
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri(),
      code_verifier: pkce.verifier,
      scope: `${config.scope} openid profile`,
    }),
  });
  const body = await res.json();
  if (!body.access_token) throw new Error(body.error_description ?? 'sign-in failed');
  sessionStorage.setItem(tokenKey, body.access_token);
}

function signInPage(reason) {
  clearTimeout(refreshTimer);
  who.replaceChildren();
  if (config?.signIn === 'off') {
    show('Sign-in is not configured', h('p', {}, config.reason));
    return;
  }
  if (config?.signIn === 'local') {
    const as = (role) => async () => {
      const res = await fetch(`${apiBase}local-sign-in?role=${role}`);
      sessionStorage.setItem(tokenKey, (await res.json()).token);
      await start();
    };
    show(
      'Local sign-in',
      h('p', {}, 'A stand-in for Entra ID on this machine only; the app refuses it in Azure.'),
      reason ? h('p', { class: 'muted' }, reason) : null,
      h(
        'p',
        { class: 'filters' },
        h('button', { type: 'button', onclick: as('operator') }, 'Sign in as operator'),
        h('button', { type: 'button', class: 'secondary', onclick: as('reader') }, 'Sign in as reader'),
        h('button', { type: 'button', class: 'secondary', onclick: as('none') }, 'Sign in without a role'),
      ),
    );
    return;
  }
  show(
    'Sign in',
    h(
      'p',
      {},
      'Sign in with your work account. You need the ContactSync.Reader or ContactSync.Operator role.',
    ),
    reason ? h('p', { class: 'muted' }, reason) : null,
    h('button', { type: 'button', onclick: () => void entraSignIn() }, 'Sign in with Microsoft'),
  );
}

let me = null;

async function start() {
  me = await api('me');
  who.replaceChildren(
    h('span', {}, `${me.name} · ${me.roles.length ? me.roles.join(', ') : 'no role'} `),
    h(
      'button',
      {
        type: 'button',
        class: 'secondary',
        onclick: () => {
          sessionStorage.removeItem(tokenKey);
          signInPage();
        },
      },
      'Sign out',
    ),
  );
  if (!me.canRead) {
    show(
      'Access denied',
      h(
        'p',
        {},
        `You are signed in as ${me.name}, without the ContactSync.Reader or ContactSync.Operator role.`,
      ),
      h('p', {}, 'Ask an administrator to assign you a role on the dashboard app in Entra ID.'),
    );
    return;
  }
  await route();
}

// ---------------------------------------------------------------- pages

function chart(runs) {
  const w = 8;
  const height = 40;
  const max = Math.max(1, ...runs.map((r) => r.created + r.updated + r.deleted + r.failed));
  const svg = h('svg:svg', {
    class: 'chart',
    width: runs.length * (w + 2),
    height,
    role: 'img',
    'aria-label': `Last ${runs.length} runs: contacts created, updated, deleted and failed`,
  });
  runs.forEach((r, i) => {
    let y = height;
    for (const k of ['created', 'updated', 'deleted', 'failed']) {
      const bar = Math.round((r[k] / max) * (height - 2));
      if (bar === 0) continue;
      y -= bar;
      svg.append(
        h(
          'svg:rect',
          { class: k, x: i * (w + 2), y, width: w, height: bar },
          h('svg:title', {}, `${k} ${r[k]}`),
        ),
      );
    }
  });
  return svg;
}

async function policiesPage() {
  const data = await api('policies');
  const rows = data.policies.map((p) =>
    h(
      'tr',
      {},
      h('th', { scope: 'row' }, h('span', {}, p.name), h('br'), h('span', { class: 'muted' }, p.id)),
      h(
        'td',
        {},
        badge(p.state, statusKind(p.state)),
        p.progress
          ? h(
              'div',
              {},
              h('progress', {
                max: p.progress.expected || 1,
                value: p.progress.done,
                'aria-label': `Run progress of ${p.name}`,
              }),
              ` ${p.progress.done}/${p.progress.expected} mailboxes`,
            )
          : null,
      ),
      h('td', {}, h('code', {}, p.schedule), h('br'), 'next: ', when(p.nextRun)),
      h(
        'td',
        {},
        p.lastRun
          ? [
              h('a', { href: `#/runs/${p.lastRun.runId}` }, p.lastRun.status),
              p.lastRun.dryRun ? ' (dry run)' : '',
              h('br'),
              when(p.lastRun.startedAt),
              h('br'),
              seconds(p.lastRun.durationSeconds),
            ]
          : h('span', { class: 'muted' }, 'never ran'),
      ),
      h(
        'td',
        { class: 'num' },
        p.lastRun
          ? `${p.lastRun.contacts.created} / ${p.lastRun.contacts.updated} / ${p.lastRun.contacts.deleted} / ${p.lastRun.contacts.failed}`
          : '—',
      ),
      h('td', {}, p.recentRuns.length ? chart(p.recentRuns) : '—'),
      h('td', {}, h('a', { href: `#/policies/${encodeURIComponent(p.id)}/run` }, 'Preview and run')),
    ),
  );
  const invalid = data.invalidPolicies.map((p) =>
    h(
      'li',
      {},
      h('strong', {}, p.id),
      ' ',
      badge('invalid', 'bad'),
      h(
        'ul',
        {},
        p.errors.map((e) => h('li', {}, h('code', {}, e.field), `: ${e.message}`)),
      ),
    ),
  );
  show(
    'Policies',
    h(
      'table',
      { id: 'policies' },
      h('caption', { class: 'visually-hidden' }, 'Policies with their state, schedule and last run'),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          [
            'Policy',
            'State',
            'Schedule',
            'Last run',
            'Created / updated / deleted / failed',
            'Last 30 runs',
            'Actions',
          ].map((t) => h('th', { scope: 'col' }, t)),
        ),
      ),
      h('tbody', {}, rows),
    ),
    h(
      'p',
      { class: 'legend muted' },
      h('span', {}, 'Chart: blue created'),
      h('span', {}, 'purple updated'),
      h('span', {}, 'brown deleted'),
      h('span', {}, 'red failed'),
    ),
    invalid.length ? [h('h2', {}, 'Invalid policies'), h('ul', { id: 'invalid' }, invalid)] : [],
  );
  if (data.policies.some((p) => p.state === 'running')) refreshTimer = setTimeout(() => void route(), 3000);
}

/** A run's or a mailbox's Graph traffic as the run record holds it. */
function graphTraffic(g) {
  return `${g.requests} ${g.requests === 1 ? 'request' : 'requests'}, ${g.throttled} throttled (429)`;
}

function outcomeRow(o) {
  const c = o.counts;
  return h(
    'tr',
    { 'data-status': o.status },
    h(
      'th',
      { scope: 'row' },
      h('a', { href: `#/mailbox?q=${encodeURIComponent(o.userPrincipalName)}` }, o.userPrincipalName),
      o.departed ? ' (left the targets)' : '',
    ),
    h('td', {}, badge(o.status, statusKind(o.status)), o.skipReason ? ` ${o.skipReason}` : ''),
    h('td', { class: 'num' }, c ? String(c.created) : '—'),
    h('td', { class: 'num' }, c ? String(c.updated) : '—'),
    h('td', { class: 'num' }, c ? String(c.deleted) : '—'),
    h('td', { class: 'num' }, c ? String(c.unchanged) : '—'),
    h('td', { class: 'num' }, String(o.attempts)),
    h('td', { class: 'num', 'data-graph': '' }, o.graph ? graphTraffic(o.graph) : '—'),
    h(
      'td',
      {},
      o.lastError ? h('p', {}, o.lastError) : null,
      o.errors.length
        ? h(
            'ul',
            {},
            o.errors.map((e) =>
              h(
                'li',
                {},
                `${e.status} ${e.code}: ${e.message}`,
                e.requestId ? h('span', { class: 'muted' }, ` (request id ${e.requestId})`) : '',
              ),
            ),
          )
        : null,
      o.errorsLeftOut ? h('p', { class: 'muted' }, `and ${o.errorsLeftOut} more`) : null,
    ),
  );
}

async function runPage(runId) {
  const data = await api(`runs/${encodeURIComponent(runId)}`);
  const r = data.run;
  const t = data.timeline;
  const search = h('input', { type: 'search', id: 'mailbox-search', placeholder: 'user@contoso.com' });
  const filter = h(
    'select',
    { id: 'status-filter' },
    ['all', 'succeeded', 'planned', 'failed', 'skipped', 'retrying'].map((s) => h('option', { value: s }, s)),
  );
  const body = h('tbody', {});
  const apply = () => {
    const q = search.value.trim().toLowerCase();
    const s = filter.value;
    body.replaceChildren(
      ...data.outcomes
        .filter(
          (o) => (s === 'all' || o.status === s) && (!q || o.userPrincipalName.toLowerCase().includes(q)),
        )
        .map(outcomeRow),
    );
  };
  search.addEventListener('input', apply);
  filter.addEventListener('change', apply);
  apply();
  const totals = [
    ['Status', r.status + (r.options.dryRun ? ' (dry run)' : '')],
    ['Mailboxes', `${r.done} of ${r.expected} done`],
    [
      'Succeeded / failed / skipped',
      `${r.mailboxes.succeeded} / ${r.mailboxes.failed} / ${r.mailboxes.skipped}`,
    ],
    // Mailboxes that left the targets and were emptied: counted apart from the targets above.
    ...(r.departed
      ? [
          [
            'Left the targets (emptied / failed / skipped)',
            `${r.departed.mailboxes}: ${r.departed.succeeded} / ${r.departed.failed} / ${r.departed.skipped}, ${r.departed.removed} ${r.departed.removed === 1 ? 'contact' : 'contacts'} removed`,
          ],
          [
            'Departed mailboxes',
            r.departed.named.join(', ') +
              (r.departed.mailboxes > r.departed.named.length
                ? ` and ${r.departed.mailboxes - r.departed.named.length} more`
                : ''),
          ],
        ]
      : []),
    ['Created', r.contacts.created],
    ['Updated', r.contacts.updated],
    ['Deleted', r.contacts.deleted],
    ['Unchanged', r.contacts.unchanged],
    ['Failed contacts', r.contacts.failed],
    ['Duration', seconds(r.durationSeconds)],
    [
      'Graph requests and 429s',
      data.graph ? graphTraffic(data.graph) : 'not counted (a run from before they were counted)',
    ],
  ];
  const timeline = [
    ['Started', t.startedAt],
    ['Source read, fan-out', t.fannedOutAt],
    ['First mailbox done', t.firstMailboxAt],
    ['Last mailbox done', t.lastMailboxAt],
    ['Finished', t.finishedAt],
  ];
  show(
    `Run of ${r.policyId}`,
    h('p', { class: 'muted' }, `Run ${r.runId}, started by ${r.trigger}`),
    h(
      'dl',
      { class: 'totals', id: 'totals' },
      totals.map(([k, v]) => [h('dt', {}, k), h('dd', { 'data-total': k }, String(v))]),
    ),
    r.error ? h('p', { class: 'bad' }, `Run failed: ${r.error}`) : null,
    (r.notes ?? []).map((n) => h('p', { class: 'warn' }, n)),
    h('h2', {}, 'Timeline'),
    h(
      'ol',
      { id: 'timeline' },
      timeline.map(([k, v]) => h('li', {}, `${k}: `, when(v))),
    ),
    t.mailboxesDone.length > 1 ? progressChart(t) : null,
    data.heldBackDeletions.length
      ? [
          h('h2', {}, 'Deletions held back (threshold)'),
          h(
            'ul',
            {},
            data.heldBackDeletions.map((d) =>
              h(
                'li',
                {},
                `${d.mailbox}: would delete ${d.wanted} of ${d.managed} managed contacts (limit ${d.limit})`,
              ),
            ),
          ),
        ]
      : null,
    r.skippedCount
      ? [
          h('h2', {}, `Left out (${r.skippedCount})`),
          h(
            'ul',
            {},
            r.skippedTargets.map((s) => h('li', {}, `${s.user}: ${s.reason}`)),
          ),
        ]
      : null,
    h('h2', {}, 'Mailboxes'),
    h(
      'div',
      { class: 'filters' },
      h('div', {}, h('label', { for: 'mailbox-search' }, 'Search mailboxes'), search),
      h('div', {}, h('label', { for: 'status-filter' }, 'Status'), filter),
    ),
    h(
      'table',
      { id: 'outcomes' },
      h('caption', { class: 'visually-hidden' }, 'Mailbox outcomes of this run'),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          [
            'Mailbox',
            'Outcome',
            'Created',
            'Updated',
            'Deleted',
            'Unchanged',
            'Attempts',
            'Graph requests (429s)',
            'Errors',
          ].map((x) => h('th', { scope: 'col' }, x)),
        ),
      ),
      body,
    ),
  );
  if (r.status === 'running' || r.status === 'starting') refreshTimer = setTimeout(() => void route(), 1500);
  else announce(`Run ${r.status}`);
}

function progressChart(t) {
  const times = t.mailboxesDone.map((x) => Date.parse(x));
  const t0 = Date.parse(t.startedAt);
  const span = Math.max(1, times.at(-1) - t0);
  const w = 400;
  const height = 80;
  const points = times.map(
    (x, i) =>
      `${Math.round(((x - t0) / span) * w)},${Math.round(height - ((i + 1) / times.length) * height)}`,
  );
  return h(
    'svg:svg',
    {
      class: 'chart',
      width: w,
      height,
      role: 'img',
      'aria-label': `Mailboxes done over time: ${times.length} in ${seconds(Math.round(span / 1000))}`,
    },
    h('svg:polyline', { points: `0,${height} ${points.join(' ')}` }),
  );
}

async function mailboxPage(params) {
  const q = params.get('q') ?? '';
  const input = h('input', { type: 'text', id: 'mailbox-query', name: 'q', value: q, autocomplete: 'off' });
  const form = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      onsubmit: (e) => {
        e.preventDefault();
        location.hash = `#/mailbox?q=${encodeURIComponent(input.value.trim())}`;
      },
    },
    h('div', {}, h('label', { for: 'mailbox-query' }, 'User principal name or mailbox id'), input),
    h('button', { type: 'submit' }, 'Show history'),
  );
  if (!q) {
    show('Mailbox', form, h('p', {}, 'Why did a user get (or not get) contacts? Enter their address.'));
    return;
  }
  const data = await api(`mailboxes?q=${encodeURIComponent(q)}`);
  const rows = data.entries.map((e) =>
    h(
      'tr',
      {},
      h('td', {}, when(e.startedAt)),
      h('td', {}, e.policyId),
      h('td', {}, h('a', { href: `#/runs/${e.runId}` }, e.dryRun ? 'dry run' : 'run')),
      h('td', {}, badge(e.status, statusKind(e.status))),
      h('td', {}, e.reason ?? ''),
      h(
        'td',
        { class: 'num' },
        e.result ? `${e.result.created} / ${e.result.updated} / ${e.result.deleted}` : '—',
      ),
    ),
  );
  show(
    `Mailbox ${q}`,
    form,
    rows.length
      ? h(
          'table',
          { id: 'history' },
          h('caption', { class: 'visually-hidden' }, `History of ${q} across runs`),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['When', 'Policy', 'Run', 'Outcome', 'Why', 'Created / updated / deleted'].map((x) =>
                h('th', { scope: 'col' }, x),
              ),
            ),
          ),
          h('tbody', {}, rows),
        )
      : h('p', { id: 'history-empty' }, 'No run has covered or left out this user.'),
  );
}

async function previewPage(policyId) {
  show(`Preview and run ${policyId}`, h('p', {}, 'Reading the directory (changes nothing)…'));
  const p = await api(`policies/${encodeURIComponent(policyId)}/preview`);
  const dry = h('input', { type: 'checkbox', id: 'dry-run', checked: true });
  // The server refuses a full resync the policy does not allow on request: do not offer it.
  const full = h('input', { type: 'checkbox', id: 'full-resync', disabled: !p.fullResyncAllowed });
  const only = h('input', {
    type: 'text',
    id: 'only-mailboxes',
    placeholder: 'anna@contoso.com, bo@contoso.com',
  });
  const result = h('p', { role: 'alert' });
  const submit = async (e) => {
    e.preventDefault();
    if (!dry.checked && !confirm(`Write contacts into ${p.targets.mailboxes} mailboxes now (not a dry run)?`))
      return;
    const mailboxes = only.value.split(/[\s,;]+/).filter(Boolean);
    try {
      const started = await api(`policies/${encodeURIComponent(policyId)}/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ dryRun: dry.checked, fullResync: full.checked, mailboxes }),
      });
      location.hash = `#/runs/${started.runId}`;
    } catch (err) {
      result.textContent = err.message;
    }
  };
  show(
    `Preview and run ${policyId}`,
    h(
      'dl',
      { class: 'totals', id: 'preview' },
      h('dt', {}, 'Source objects'),
      h('dd', {}, String(p.source.objects)),
      h('dt', {}, 'Target mailboxes'),
      h('dd', {}, String(p.targets.mailboxes)),
      h('dt', {}, 'Left out'),
      h('dd', {}, String(p.targets.skipped.length)),
      Object.entries(p.source.excluded).map(([k, v]) => [
        h('dt', {}, `Excluded: ${k}`),
        h('dd', {}, String(v)),
      ]),
    ),
    h('h2', {}, 'Sample contacts'),
    h(
      'ul',
      {},
      p.source.samples.map((s) => h('li', {}, s.displayName ?? s.key)),
    ),
    me.canOperate
      ? h(
          'form',
          { onsubmit: (e) => void submit(e) },
          h(
            'p',
            { class: 'check' },
            dry,
            ' ',
            h('label', { for: 'dry-run' }, 'Dry run (plans and counts, writes nothing)'),
          ),
          h('p', { class: 'check' }, full, ' ', h('label', { for: 'full-resync' }, 'Full resync')),
          h('p', {}, h('label', { for: 'only-mailboxes' }, 'Only these mailboxes (optional)'), only),
          h('button', { type: 'submit', id: 'run-now' }, 'Run now'),
          result,
        )
      : h('p', { class: 'muted' }, 'Starting runs needs the ContactSync.Operator role.'),
  );
}

async function healthPage() {
  show('Health', h('p', {}, 'Checking Key Vault, tokens and permissions…'));
  const data = await api('health');
  show(
    'Health',
    h('p', {}, badge(data.ok ? 'all checks pass' : 'some checks fail', data.ok ? 'ok' : 'bad')),
    data.connections.map((c) =>
      h(
        'section',
        {},
        h('h2', {}, `Connection ${c.connection}`),
        h(
          'ul',
          { class: 'checks' },
          c.checks.map((k) =>
            h(
              'li',
              {},
              badge(
                k.ok ? (k.warning ? 'warning' : 'pass') : 'fail',
                k.ok ? (k.warning ? 'warn' : 'ok') : 'bad',
              ),
              ' ',
              h('strong', {}, k.name),
              `: ${k.detail}`,
              k.fix ? h('div', { class: 'muted' }, `Fix: ${k.fix}`) : null,
            ),
          ),
        ),
      ),
    ),
  );
}

async function route() {
  clearTimeout(refreshTimer);
  const hash = location.hash.startsWith('#/') ? location.hash.slice(2) : 'policies';
  const [path, query] = hash.split('?');
  const parts = path.split('/').map(decodeURIComponent);
  try {
    if (parts[0] === 'runs' && parts[1]) await runPage(parts[1]);
    else if (parts[0] === 'mailbox') await mailboxPage(new URLSearchParams(query ?? ''));
    else if (parts[0] === 'health') await healthPage();
    else if (parts[0] === 'policies' && parts[1] && parts[2] === 'run') await previewPage(parts[1]);
    else await policiesPage();
  } catch (e) {
    if (e.message === 'signed out') return;
    show(e.status === 403 ? 'Access denied' : 'Something went wrong', h('p', { class: 'bad' }, e.message));
  }
}

window.addEventListener('hashchange', () => {
  if (location.hash.startsWith('#/') && token()) void route().then(() => main.focus());
});

async function boot() {
  config = await (await fetch(`${apiBase}config`)).json();
  if (config.signIn === 'entra') await redeemCode();
  if (!token()) signInPage();
  else await start();
}

boot().catch((e) => {
  if (e.message !== 'signed out') show('Something went wrong', h('p', { class: 'bad' }, e.message));
});

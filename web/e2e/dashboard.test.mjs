// End-to-end test of the dashboard in Debian's chromium, driven by
// playwright-core. It runs against a live `apimeter demo` that the Go test
// TestDashboardInBrowser (cmd/apimeter) starts and describes through the
// environment:
//
//   APIMETER_URL        the server, e.g. http://127.0.0.1:7070
//   APIMETER_DASHBOARD  the URL to open first (signed in when it carries a token)
//   APIMETER_ORG, APIMETER_ENV
//   APIMETER_KEY        read key for the Metrics API calls the test makes (optional)
//   APIMETER_SAMPLE_API the demo's sample API, and APIMETER_SAMPLE_TOKEN a JWT of user 513
//   APIMETER_E2E_OUT    folder for screenshots and timings
//   CHROMIUM            the browser (default /usr/bin/chromium)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = process.env;
const need = ['APIMETER_URL', 'APIMETER_DASHBOARD', 'APIMETER_ORG', 'APIMETER_ENV', 'APIMETER_SAMPLE_API', 'APIMETER_SAMPLE_TOKEN'];
const missing = need.filter((k) => !env[k]);
const browserPath = env.CHROMIUM || '/usr/bin/chromium';
const skip = missing.length ? `needs a running demo (${missing.join(', ')} unset): run it through go test ./cmd/apimeter -run TestDashboardInBrowser`
  : !existsSync(browserPath) ? `no browser at ${browserPath} (apt-get install -y --no-install-recommends chromium)` : false;

const out = env.APIMETER_E2E_OUT || 'e2e/output';

// apiGet calls apimeter as a portal would, with the read key when there is one.
async function apiGet(path) {
  const headers = env.APIMETER_KEY ? { Authorization: `Bearer ${env.APIMETER_KEY}` } : {};
  const res = await fetch(env.APIMETER_URL + path, { headers });
  const body = await res.text();
  assert.equal(res.status, 200, `GET ${path}: ${res.status} ${body}`);
  return JSON.parse(body);
}

const base = `/v1/o/${env.APIMETER_ORG}/environments/${env.APIMETER_ENV}`;

// statsByName asks the Metrics API for a dimension's groups over timeRange
// and answers name -> [values per select].
async function statsByName(dimension, select, timeRange, extra = {}) {
  const q = new URLSearchParams({ select, timeRange, limit: '1000', ...extra });
  const answer = await apiGet(`${base}/stats/${dimension}?${q}`);
  const e = answer.environments[0];
  const groups = e.dimensions || [{ name: '', metrics: e.metrics || [] }];
  return new Map(groups.map((d) => [d.name, d.metrics.map((m) => parseFloat(typeof m.values[0] === 'object' ? m.values[0].value : m.values[0]))]));
}

// parseCSV reads RFC 4180 CSV (quoted fields, CRLF).
function parseCSV(text) {
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; } else if (c === '\n') { row.push(field); rows.push(row); row = []; field = ''; } else if (c !== '\r') field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows;
}

// wallAt formats a Date as YYYY-MM-DDTHH:MM at a fixed offset (minutes east).
function wallAt(d, offsetMin) {
  return new Date(+d + offsetMin * 60e3).toISOString().slice(0, 16);
}

function apigee(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
}

// waitForMinuteMiddle returns once the clock is at least `after` seconds
// into a minute and has `before` seconds left: the dashboard's ranges end at
// the start of the current minute, and every call made before it has been
// stored by then, so the page and the test ask about the same calls.
async function waitForMinuteMiddle(after = 8, before = 20) {
  for (;;) {
    const s = new Date().getUTCSeconds();
    if (s >= after && s <= 60 - before) return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

test('dashboard in a real browser', { skip, timeout: 180_000 }, async (t) => {
  mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    // Any host name but the loopback address fails to resolve, so nothing
    // could leave the machine even if the page tried.
    args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const consoleErrors = [];
  const offMachine = [];
  const requests = [];
  // The page asks GET /v1/session who is signed in: before sign-in the
  // answer is 401 (or 404 on a server without sign-in), which the browser
  // logs as a failed load. Those answers are the contract; any other
  // console error fails the test.
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const where = m.location().url || '';
    if (where && new URL(where, env.APIMETER_URL).pathname === '/v1/session' && /status of (401|404)/.test(m.text())) return;
    // A customer without a profile: the profile read answers 404.
    if (where && /\/environments\/[^/]+\/(users|companies)\/[^/]+$/.test(new URL(where, env.APIMETER_URL).pathname) && /status of 404/.test(m.text())) return;
    consoleErrors.push(`${m.text()} (${where})`);
  });
  context.on('request', (r) => {
    const u = new URL(r.url());
    requests.push(r.url());
    if (u.protocol !== 'data:' && u.hostname !== '127.0.0.1') offMachine.push(r.url());
  });
  const shot = (name) => page.screenshot({ path: join(out, name), fullPage: true });
  const timings = {};

  if (env.APIMETER_KEY) {
    await t.test('the sign-in page takes a read key and keeps a session cookie', async () => {
      await page.goto(new URL('/ui/', env.APIMETER_URL).href);
      await page.waitForSelector('form.signin input[name=key]', { timeout: 20_000 });
      await shot('signin.png');
      await page.fill('form.signin input[name=key]', env.APIMETER_KEY);
      await page.click('form.signin button[type=submit]');
      await page.waitForSelector('#segment-table', { timeout: 30_000 });
      const cookie = (await context.cookies()).find((c) => c.name === 'apimeter_session');
      assert.ok(cookie, 'the session cookie is set');
      assert.equal(cookie.httpOnly, true, 'the session cookie is HttpOnly');
      assert.equal(cookie.sameSite, 'Strict', 'the session cookie is SameSite=Strict');
    });

    await t.test('the one-time sign-in link signs a new browser in', async () => {
      const other = await browser.newContext();
      try {
        const p2 = await other.newPage();
        await p2.goto(env.APIMETER_DASHBOARD);
        await p2.waitForSelector('#segment-table', { timeout: 30_000 });
        assert.match(p2.url(), /\/ui\//);
        assert.ok((await other.cookies()).some((c) => c.name === 'apimeter_session'), 'the link set a session cookie');
      } finally {
        await other.close();
      }
    });

    await t.test('a used sign-in link shows the sign-in form with a notice', async () => {
      const other = await browser.newContext();
      try {
        const p2 = await other.newPage();
        await p2.goto(env.APIMETER_DASHBOARD);
        await p2.waitForSelector('form.signin input[name=key]', { timeout: 20_000 });
        assert.match(await p2.locator('#signin-notice').innerText(), /already been used or has expired/);
        assert.match(p2.url(), /\/ui\//);
        assert.ok(!p2.url().includes('signin='), `the notice's parameter is taken out of the address: ${p2.url()}`);
        await p2.screenshot({ path: join(out, 'signin-link-used.png') });
      } finally {
        await other.close();
      }
    });
  }

  await t.test('segmentation shows the guide users with the Metrics API counts', async () => {
    await waitForMinuteMiddle();
    const began = Date.now();
    // Signed in (cookie) or on a server without sign-in: the dashboard's
    // first view, measured from this navigation.
    await page.goto(env.APIMETER_KEY ? new URL('/ui/', env.APIMETER_URL).href : env.APIMETER_DASHBOARD);
    await page.waitForSelector('#segment-table tr[data-name="513"]', { timeout: 30_000 });
    timings.segmentationLoadedMs = Date.now() - began;
    await page.waitForFunction(() => window.apimeter && window.apimeter.firstView != null);
    timings.firstViewMs = await page.evaluate(() => window.apimeter.firstView);
    timings.paint = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType('paint').map((p) => [p.name, p.startTime])));
    assert.match(page.url(), /\/ui\//, 'the dashboard is served under /ui/');
    assert.equal(await page.locator('select[name=metric]').inputValue(), 'calls');
    assert.equal(await page.locator('select[name=group]').inputValue(), 'user_id');
    assert.equal(await page.locator('select[name=range]').inputValue(), 'this_month');
    assert.ok(await page.locator('#segment-chart canvas').count() > 0, 'the bar chart is drawn on a canvas');

    const pageURL = new URL(await page.locator('.api-link').first().getAttribute('data-url'), env.APIMETER_URL);
    const timeRange = pageURL.searchParams.get('timeRange');
    const base = `/v1/o/${env.APIMETER_ORG}/environments/${env.APIMETER_ENV}`;
    assert.equal(pageURL.pathname, `${base}/stats/user_id`, 'the page reads the public Metrics API');
    // The test asks the Metrics API itself, for the same range.
    const q = new URLSearchParams({ select: 'sum(message_count)', timeRange });
    const answer = await apiGet(`${base}/stats/user_id?${q}`);
    const want = new Map(answer.environments[0].dimensions.map((d) => [d.name, parseFloat(d.metrics[0].values[0])]));
    for (const user of ['513', '1234', '2560']) {
      const cell = page.locator(`#segment-table tr[data-name="${user}"] td[data-key=calls]`);
      const shown = parseFloat(await cell.getAttribute('data-value'));
      assert.ok(want.get(user) > 0, `the Metrics API counts calls of user ${user} in ${timeRange}`);
      assert.equal(shown, want.get(user), `user ${user}: the page shows ${shown} calls, the Metrics API ${want.get(user)} for ${timeRange}`);
      assert.equal(await cell.innerText(), want.get(user).toLocaleString('en-US'));
    }
    await shot('segmentation.png');
  });

  await t.test('the table sorts by a clicked column', async () => {
    await page.click('#segment-table th[data-key=name]');
    const first = await page.locator('#segment-table tbody tr').first().getAttribute('data-name');
    const names = await page.locator('#segment-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.name));
    const sorted = [...names].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    assert.deepEqual(names, sorted, 'rows sorted by user, ascending');
    assert.equal(first, sorted[0]);
  });

  await t.test('summary tiles show calls, error rate, p95 and active customers against the previous period', async () => {
    await page.goto(new URL('#/segmentation?tz=UTC', page.url()).href);
    await page.waitForSelector('#tiles #tile-calls', { timeout: 30_000 });
    const tiles = page.locator('#tiles');
    const timeRange = await tiles.getAttribute('data-range');
    const prevRange = await tiles.getAttribute('data-prev-range');
    assert.notEqual(timeRange, prevRange);
    const sel = 'sum(message_count),sum(is_error),p95(total_response_time),unique_users';
    const [cur, prev] = [(await statsByName('', sel, timeRange)).get(''), (await statsByName('', sel, prevRange)).get('')];
    const want = { calls: [cur[0], prev[0]], error_rate: [cur[1] / cur[0], prev[0] ? prev[1] / prev[0] : null], p95: [cur[2], prev[0] ? prev[2] : null], active: [cur[3], prev[3]] };
    for (const [id, [c, p]] of Object.entries(want)) {
      const tile = page.locator(`#tile-${id}`);
      assert.ok(Math.abs(parseFloat(await tile.getAttribute('data-value')) - c) < 1e-9, `${id}: tile ${await tile.getAttribute('data-value')}, API ${c} for ${timeRange}`);
      const shownPrev = await tile.getAttribute('data-prev');
      if (p == null) assert.equal(shownPrev, '', `${id}: no previous value`);
      else assert.ok(Math.abs(parseFloat(shownPrev) - p) < 1e-9, `${id}: previous ${shownPrev}, API ${p} for ${prevRange}`);
      const text = await tile.locator('.delta').innerText();
      if (p) assert.match(text, /^[+−±]\d+(\.\d)? % vs /, `${id} delta: ${text}`);
    }
    assert.ok(cur[3] >= 3, `active customers ${cur[3]}`);
    // The tiles come first, then the chart.
    const [tilesY, chartY] = await Promise.all([tiles.boundingBox(), page.locator('#segment-chart').boundingBox()]);
    assert.ok(tilesY.y < chartY.y, 'tiles above the chart');
  });

  await t.test('hovering a bar says its group and value', async () => {
    const over = page.locator('#segment-chart .u-over');
    const box = await over.boundingBox();
    // Bars are in the order of the chart's metric (calls, descending).
    const names = (await page.locator('#segment-table tbody tr').evaluateAll((rows) => rows.map((r) => [r.dataset.name, parseFloat(r.querySelector('td[data-key=calls]').dataset.value)])))
      .sort((a, b) => b[1] - a[1]).map((r) => r[0]);
    const bars = Math.min(25, names.length);
    await page.mouse.move(box.x + box.width / bars / 2, box.y + box.height - 5);
    const tip = page.locator('#segment-chart .tip');
    await tip.waitFor({ state: 'visible', timeout: 5_000 });
    const text = await tip.innerText();
    const calls = await page.locator(`#segment-table tr[data-name="${names[0]}"] td[data-key=calls]`).innerText();
    assert.ok(text.includes(names[0] || '(none)') && text.includes(`Calls: ${calls}`), `hover box "${text}", want ${names[0]} with ${calls} calls`);
    await shot('hover-bar.png');
  });

  await t.test('the query behind a chart is shown on request', async () => {
    const link = page.locator('#segment-chart + div .api-link');
    assert.equal(await link.locator('p').isVisible(), false, 'the query is hidden at first');
    await link.locator('summary').click();
    assert.equal(await link.locator('p').isVisible(), true);
    assert.match(await link.locator('p a').innerText(), /\/stats\/user_id\?select=/);
  });

  await t.test('a table downloads as CSV with the rows the API answers', async () => {
    const timeRange = new URL(await page.locator('.api-link').first().getAttribute('data-url'), env.APIMETER_URL).searchParams.get('timeRange');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#segment-table button.csv')]);
    assert.match(download.suggestedFilename(), /^calls-by-user_id\.csv$/);
    const rows = parseCSV(readFileSync(await download.path(), 'utf8'));
    assert.deepEqual(rows[0], ['User', 'Calls', 'Errors', 'Error rate']);
    const want = await statsByName('user_id', 'sum(message_count),sum(is_error)', timeRange);
    assert.equal(rows.length - 1, want.size, `CSV rows ${rows.length - 1}, API groups ${want.size}`);
    for (const [name, calls, errors] of rows.slice(1)) {
      assert.deepEqual([parseFloat(calls), parseFloat(errors)], want.get(name), `user ${name}`);
    }
    copyFileSync(await download.path(), join(out, 'calls-by-user_id.csv'));
  });

  await t.test('segmentation and the customer page count a user alike at the same moment', async () => {
    // A call of user 513 stored before the pages read: a page that counts
    // live would show it, one that counts to the minute would not.
    await waitForMinuteMiddle(3, 35);
    const usage = async () => ((await apiGet(`/v1/usage?org=${env.APIMETER_ORG}&env=${env.APIMETER_ENV}&group=user_id`)).rows || []).find((r) => r.id === '513')?.calls || 0;
    const before = await usage();
    const res = await fetch(`${env.APIMETER_SAMPLE_API}/accounts/abcdef`, { headers: { Authorization: `Bearer ${env.APIMETER_SAMPLE_TOKEN}` } });
    await res.arrayBuffer();
    for (let i = 0; i < 100 && (await usage()) <= before; i++) await new Promise((r) => setTimeout(r, 100));
    await page.goto(new URL('#/segmentation?tz=UTC&range=this_month', page.url()).href);
    await page.waitForSelector('#segment-table tr[data-name="513"]', { timeout: 30_000 });
    const seg = await page.locator('#segment-table tr[data-name="513"] td[data-key=calls]').getAttribute('data-value');
    await page.goto(new URL('#/customer?kind=user&id=513', page.url()).href);
    await page.waitForSelector('#kpi-calls', { timeout: 30_000 });
    const cust = await page.locator('#kpi-calls').getAttribute('data-value');
    assert.equal(cust, seg, `user 513: segmentation ${seg} calls, customer page ${cust}`);
  });

  await t.test('a custom range in another time zone, compared with the previous period', async () => {
    await page.goto(new URL('#/segmentation?tz=UTC', page.url()).href);
    await page.waitForSelector('#segment-table tr[data-name="513"]', { timeout: 30_000 });
    await page.selectOption('select[name=tz]', 'Asia/Kolkata');
    await page.waitForFunction(() => location.hash.includes('tz=Asia%2FKolkata'));
    await page.waitForSelector('#segment-table tr[data-name="513"]', { timeout: 30_000 });
    await page.selectOption('select[name=range]', 'custom');
    const now = new Date();
    const from = wallAt(new Date(now - 10 * 864e5), 330).slice(0, 10) + 'T00:00';
    const to = wallAt(new Date(now - 864e5), 330).slice(0, 10) + 'T12:30';
    await page.fill('input[name=from]', from);
    await page.fill('input[name=to]', to);
    await page.click('button[name=apply-range]');
    await page.waitForFunction(() => location.hash.includes('range=custom'));
    await page.check('input[name=compare]');
    await page.waitForSelector('#segment-table th[data-key=change]', { timeout: 30_000 });
    // Kolkata is 5:30 ahead of UTC all year.
    const utc = (s) => new Date(Date.parse(s + 'Z') - 330 * 60e3);
    const [f, tt] = [utc(from), utc(to)];
    const timeRange = `${apigee(f)}~${apigee(tt)}`;
    const prevRange = `${apigee(new Date(f - (tt - f)))}~${apigee(f)}`;
    const shown = new URL(await page.locator('.api-link').first().getAttribute('data-url'), env.APIMETER_URL).searchParams.get('timeRange');
    assert.equal(shown, timeRange, 'the custom range in Asia/Kolkata, asked in GMT');
    assert.match(await page.locator('#range-text').innerText(), /Asia\/Kolkata/);
    const [cur, prev] = [await statsByName('user_id', 'sum(message_count)', timeRange), await statsByName('user_id', 'sum(message_count)', prevRange)];
    for (const user of ['513', '1234']) {
      const row = page.locator(`#segment-table tr[data-name="${user}"]`);
      assert.equal(parseFloat(await row.locator('td[data-key=calls]').getAttribute('data-value')), cur.get(user)[0], `user ${user} in ${timeRange}`);
      assert.equal(parseFloat(await row.locator('td[data-key=prev]').getAttribute('data-value')), prev.get(user)?.[0] ?? 0, `user ${user} in ${prevRange}`);
    }
    await shot('custom-range-compare.png');
  });

  await t.test('the time series marks its partial last bucket and says values on hover', async () => {
    // The zone chosen last (Asia/Kolkata) is kept.
    await page.goto(new URL('#/timeseries?metric=calls&range=last_24h&unit=hour&compare=1', page.url()).href);
    await page.waitForSelector('#series-chart canvas', { timeout: 20_000 });
    const u = new URL(await page.locator('.api-link').first().getAttribute('data-url'), env.APIMETER_URL);
    assert.equal(u.searchParams.get('tzo'), '330', 'hour buckets aligned to Asia/Kolkata');
    // The range ends at the start of this minute (UTC in timeRange): when
    // that is the start of an hour in Kolkata (minute 30 of a UTC hour),
    // every hour of the range has ended and none is partial.
    const end = u.searchParams.get('timeRange').split('~')[1];
    const hourJustEnded = (Number(end.slice(-2)) + 30) % 60 === 0;
    const partial = await page.locator('#series-chart').getAttribute('data-partial');
    if (hourJustEnded) assert.ok(!partial, `the range ends on a Kolkata hour (${end} UTC): no bucket is partial`);
    else assert.ok(partial, 'the last hour is marked partial');
    const box = await page.locator('#series-chart .u-over').boundingBox();
    await page.mouse.move(box.x + box.width - 2, box.y + box.height / 2);
    const tip = page.locator('#series-chart .tip');
    await tip.waitFor({ state: 'visible', timeout: 5_000 });
    const text = await tip.innerText();
    if (hourJustEnded) assert.doesNotMatch(text, /partial/, `hover box: ${text}`);
    else assert.match(text, /partial: counted to .*; the hour is not over/, `hover box: ${text}`);
    assert.match(text, /Calls: [\d,]+/);
    assert.match(text, /previous period: [\d,]+/);
    await shot('timeseries.png');
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    assert.doesNotMatch(await tip.innerText(), /partial/, 'a bucket in the middle is complete');
  });

  await t.test('a call made now appears in the event stream without a reload', async () => {
    await page.goto(new URL('#/stream?user_id=513', page.url()).href);
    await page.waitForSelector('#live-status:text("live")', { timeout: 15_000 });
    await page.evaluate(() => { window.__sameDocument = true; });
    const marker = `e2e${Date.now()}`;
    const res = await fetch(`${env.APIMETER_SAMPLE_API}/accounts/abcdef/message?probe=${marker}`, {
      headers: { Authorization: `Bearer ${env.APIMETER_SAMPLE_TOKEN}` },
    });
    assert.ok(res.status === 200 || res.status >= 400, `sample API answered ${res.status}`);
    const row = page.locator(`#stream-rows tr:has-text("${marker}")`);
    await row.waitFor({ timeout: 20_000 });
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
    assert.equal(await row.getAttribute('data-user'), '513');
    await row.click();
    const detail = await page.locator('#event-detail').innerText();
    assert.match(detail, /Authorization: fp_[0-9a-f]{16}/, 'the bearer token is shown only as a fingerprint');
    assert.ok(!detail.includes(env.APIMETER_SAMPLE_TOKEN), 'the raw token never reaches the page');
    await shot('stream.png');
  });

  await t.test('a customer page shows usage over the period, the profile and the plan', async () => {
    await page.goto(new URL('#/customer?kind=user&id=513', page.url()).href);
    await page.waitForSelector('#customer-kpis', { timeout: 20_000 });
    const calls = await page.locator('#kpi-calls b').innerText();
    assert.ok(parseInt(calls.replace(/,/g, ''), 10) > 0, `calls this period: ${calls}`);
    assert.ok(await page.locator('text=Routes used this period').count() === 1);
    assert.ok(await page.getByText('/accounts/{id}/message', { exact: true }).count() > 0, 'the guide route is listed');
    assert.match(await page.locator('#kpi-first b').innerText(), /^\d{4}-\d{2}/);
    await page.waitForSelector('#customer-chart canvas', { timeout: 20_000 });
    assert.equal(await page.locator('#kpi-plan b').innerText(), 'pro', 'the plan from the profile');
    const profile = await apiGet(`${base}/users/513`);
    for (const [k, v] of Object.entries(profile.metadata)) {
      assert.equal(await page.locator(`#customer-profile tr[data-key="${k}"] td:nth-child(2)`).innerText(), String(v), `profile ${k}`);
    }
    assert.equal(await page.locator('#kpi-quota').count(), 0, 'no quota tile without a gateway quota');
    // The chart's sum is the calls tile.
    const series = await statsByName('', 'sum(message_count)', new URL(await page.locator('#customer-chart ~ .api-link').getAttribute('data-url'), env.APIMETER_URL).searchParams.get('timeRange'), { filter: "user_id eq '513'" });
    assert.equal(series.get('')[0], parseFloat(await page.locator('#kpi-calls').getAttribute('data-value')));
    await shot('customer.png');
  });

  await t.test('a customer with no calls shows no latency', async () => {
    await page.goto(new URL('#/customer?kind=user&id=nobody-e2e', page.url()).href);
    await page.waitForSelector('#kpi-latency', { timeout: 20_000 });
    assert.equal(await page.locator('#kpi-latency b').innerText(), '– / – / –');
    assert.equal(await page.locator('#kpi-calls b').innerText(), '0');
  });

  await t.test('the alerts page lists the rules and their state', async () => {
    await page.goto(new URL('#/alerts', page.url()).href);
    await page.waitForSelector('#alert-rules', { timeout: 20_000 });
    const rows = await page.locator('#alert-rules tbody tr').count();
    assert.ok(rows >= 3, `the demo's rules are listed (${rows} rows)`);
    const state = await page.locator('#alert-rules tr[data-rule="company-errors"] td').nth(2).innerText();
    assert.match(state, /OK|pending|firing/, `company-errors state: ${state}`);
    await page.goto(new URL('#/alerts?rule=slow', page.url()).href);
    await page.waitForSelector('#alert-rules tr.selected[data-rule="slow"]', { timeout: 20_000 });
    await shot('alerts.png');
  });

  await t.test('at phone width the header takes at most two lines and nothing scrolls sideways', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      for (const [view, ready] of [['#/segmentation?tz=UTC', '#segment-table tr[data-name="513"]'], ['#/stream', '#stream-rows tr'], ['#/customer?kind=user&id=513', '#customer-chart canvas'], ['#/alerts', '#alert-rules']]) {
        await page.goto(new URL(view, page.url()).href);
        await page.waitForSelector(ready, { timeout: 30_000 });
        const m = await page.evaluate(() => ({
          scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
          header: document.querySelector('header.top').getBoundingClientRect().height,
          tables: document.querySelectorAll('main table').length,
          exportable: document.querySelectorAll('main .table-box table').length,
        }));
        assert.equal(m.exportable, m.tables, `${view}: every table has its CSV download`);
        assert.ok(m.scroll <= m.inner, `${view}: the page is ${m.scroll} px wide in a ${m.inner} px window`);
        assert.ok(m.header <= 100, `${view}: the header is ${m.header} px high (two lines at most)`);
        await shot(`phone-${view.slice(2).split('?')[0]}.png`);
      }
    } finally {
      await page.setViewportSize({ width: 1280, height: 860 });
    }
  });

  await t.test('the first view for the docs', async () => {
    await page.goto(new URL('#/segmentation?tz=UTC&range=this_month', page.url()).href);
    await page.waitForSelector('#segment-table tr[data-name="513"]', { timeout: 30_000 });
    await page.mouse.move(0, 0);
    await page.screenshot({ path: join(out, 'dashboard.png') });
  });

  await t.test('no console errors and no request off the machine', () => {
    assert.deepEqual(consoleErrors, [], 'console errors');
    assert.deepEqual(offMachine, [], 'requests that left the machine');
    assert.ok(requests.length > 5, `the browser made requests (${requests.length})`);
  });

  writeFileSync(join(out, 'timings.json'), JSON.stringify(timings, null, 2) + '\n');
  t.diagnostic(`first view ${timings.firstViewMs?.toFixed(0)} ms after navigation start; timings and screenshots in ${out}`);
});

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
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
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

  await t.test('a customer page renders', async () => {
    await page.goto(new URL('#/customer?kind=user&id=513', page.url()).href);
    await page.waitForSelector('#customer-kpis', { timeout: 20_000 });
    const calls = await page.locator('#kpi-calls b').innerText();
    assert.ok(parseInt(calls.replace(/,/g, ''), 10) > 0, `calls this period: ${calls}`);
    assert.ok(await page.locator('text=Routes used this period').count() === 1);
    assert.ok(await page.getByText('/accounts/{id}/message', { exact: true }).count() > 0, 'the guide route is listed');
    assert.match(await page.locator('#kpi-first b').innerText(), /^\d{4}-\d{2}/);
    await shot('customer.png');
  });

  await t.test('the time series renders', async () => {
    await page.goto(new URL('#/timeseries?metric=calls&range=last_7d&unit=day', page.url()).href);
    await page.waitForSelector('#series-chart canvas', { timeout: 20_000 });
    await shot('timeseries.png');
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

  await t.test('no console errors and no request off the machine', () => {
    assert.deepEqual(consoleErrors, [], 'console errors');
    assert.deepEqual(offMachine, [], 'requests that left the machine');
    assert.ok(requests.length > 5, `the browser made requests (${requests.length})`);
  });

  writeFileSync(join(out, 'timings.json'), JSON.stringify(timings, null, 2) + '\n');
  t.diagnostic(`first view ${timings.firstViewMs?.toFixed(0)} ms after navigation start; timings and screenshots in ${out}`);
});

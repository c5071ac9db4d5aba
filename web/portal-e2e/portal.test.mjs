// The customer portal in Debian's chromium (playwright-core, node --test),
// run by TestPortalInBrowser (cmd/apimeter/portal_test.go), which starts
// apimeter and two sites on other origins and says what to expect:
//
//   PORTAL_ALLOWED_PAGE    a page on an origin the org allows, framing the portal
//   PORTAL_OTHER_PAGE      the same page on an origin the org does not allow
//   PORTAL_DASHBOARD_PAGE  a page on the allowed origin framing the dashboard
//   PORTAL_EXPECT          the Metrics API's figures for the token's customer
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = process.env;
const skip = !env.PORTAL_ALLOWED_PAGE && 'run by TestPortalInBrowser (go test ./cmd/apimeter -run TestPortalInBrowser)';
const out = env.APIMETER_E2E_OUT || 'portal-e2e/output';

async function withBrowser(fn) {
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Any host name but 127.0.0.1 resolves nowhere: a request off the
    // machine fails rather than leaves.
    args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
  try {
    return await fn(browser);
  } finally {
    await browser.close();
  }
}

// watch records a page's console errors, uncaught errors and every URL it
// (and its frames) asked for.
function watch(page) {
  const w = { errors: [], messages: [], urls: [] };
  page.on('console', (m) => {
    w.messages.push(m.text());
    if (m.type() === 'error') w.errors.push(m.text());
  });
  page.on('pageerror', (e) => w.errors.push('uncaught: ' + e.message));
  page.on('request', (r) => w.urls.push(r.url()));
  return w;
}

const close = (a, b) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));

test('the portal in an iframe of an allowed origin shows the Metrics API figures of its customer', { skip }, async () => {
  const want = JSON.parse(env.PORTAL_EXPECT);
  const allowed = new URL(env.PORTAL_ALLOWED_PAGE).origin;
  await withBrowser(async (browser) => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
    const w = watch(page);
    await page.goto(env.PORTAL_ALLOWED_PAGE);
    const frame = await (await page.waitForSelector('iframe#portal')).contentFrame();
    await frame.waitForSelector('body[data-ready]', { timeout: 60_000 });
    assert.equal(await frame.$eval('body', (b) => b.dataset.ready), 'true', 'the portal did not load: ' + (await frame.$eval('#status', (s) => s.textContent)));
    const origin = new URL(frame.url()).origin;
    assert.notEqual(origin, allowed, 'the portal must come from apimeter, another origin than the page');

    const fig = async (name) => frame.$eval(`[data-figure="${name}"]`, (e) => e.dataset.value);
    assert.equal(Number(await fig('calls')), want.calls, 'calls');
    assert.equal(Number(await fig('errors')), want.errors, 'errors');
    for (const k of ['p50_ms', 'p95_ms', 'p99_ms']) assert.ok(close(Number(await fig(k)), want[k]), `${k}: page ${await fig(k)}, Metrics API ${want[k]}`);
    const routes = await frame.$$eval('#routes tr[data-name]', (rows) => rows.map((r) => [r.dataset.name, Number(r.dataset.calls)]));
    assert.deepEqual(Object.fromEntries(routes), want.routes, 'calls by route');
    const statuses = await frame.$$eval('#statuses tr[data-name]', (rows) => rows.map((r) => [r.dataset.name, Number(r.dataset.calls)]));
    assert.deepEqual(Object.fromEntries(statuses), want.statuses, 'calls by status');
    assert.equal(await frame.$eval('svg', (s) => Number(s.dataset.points)) > 0, true, 'the chart has bars');
    const calls = await frame.$$eval('#events tr[data-i]', (rows) => rows.length);
    assert.equal(calls, Math.min(50, want.events), 'recent calls listed');
    const quotas = await frame.$$eval('#quotas .quota', (qs) => qs.map((q) => [q.dataset.name, Number(q.dataset.used), Number(q.dataset.limit)]));
    assert.deepEqual(quotas, want.quotas, 'quota headroom');

    // The token left the address; the theme variable from the fragment
    // is applied.
    assert.ok(!frame.url().includes('token'), 'the token stays in the frame address: ' + frame.url());
    const accent = await frame.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue('--portal-accent').trim());
    assert.equal(accent, '#aa3300');

    // Nothing fetched from anywhere but the page's site and apimeter; no
    // console errors.
    for (const u of w.urls) {
      const o = u.startsWith('data:') ? 'data:' : new URL(u).origin;
      assert.ok(o === allowed || o === origin || o === 'data:', 'fetched from outside: ' + u);
    }
    assert.deepEqual(w.errors, [], 'console errors');

    // How long the portal took inside the frame, reported (not asserted).
    const t = await frame.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      return { ready: Math.round(window.portalReadyAt || 0), dcl: Math.round(nav ? nav.domContentLoadedEventEnd : 0) };
    });
    console.log(`# portal first view in the frame: ${t.ready} ms after its navigation began (DOM ready at ${t.dcl} ms)`);
    mkdirSync(out, { recursive: true });
    await page.screenshot({ path: join(out, 'portal-allowed.png'), fullPage: true });
  });
});

// refused opens a page whose frame the browser must refuse to show.
async function refused(browser, url, name) {
  const page = await browser.newPage();
  const w = watch(page);
  const said = page.waitForEvent('console', { predicate: (m) => m.text().includes('frame-ancestors'), timeout: 30_000 });
  await page.goto(url);
  await said;
  const frame = await (await page.waitForSelector('iframe')).contentFrame();
  const ready = frame ? await frame.$('body[data-ready]').catch(() => null) : null;
  assert.equal(ready, null, name + ': the framed page ran');
  const text = frame ? await frame.evaluate(() => document.body ? document.body.innerText : '').catch(() => '') : '';
  assert.ok(!text.includes('API usage') && !text.includes('apimeter'), name + ': the framed page shows: ' + text.slice(0, 200));
  assert.ok(w.messages.some((m) => m.includes('frame-ancestors')), name + ': no refusal reported');
  mkdirSync(out, { recursive: true });
  await page.screenshot({ path: join(out, name + '.png') });
  await page.close();
}

test('on an origin the org does not allow the browser refuses to frame the portal', { skip }, async () => {
  await withBrowser((b) => refused(b, env.PORTAL_OTHER_PAGE, 'portal-other-origin'));
});

test('the dashboard is framed by no one, even on the portal\'s allowed origin', { skip }, async () => {
  await withBrowser((b) => refused(b, env.PORTAL_DASHBOARD_PAGE, 'dashboard-framed'));
});

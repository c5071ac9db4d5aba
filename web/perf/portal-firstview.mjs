// Measures the customer portal's first view in Debian's chromium: the
// milliseconds from navigation start until its figures, chart, tables,
// quota and recent calls are in the page (window.portalReadyAt), with the
// browser's timings of the API requests behind it (view, the one request of
// the first view, or me, usage and events of pages before it), and when
// each left and was answered. It reports; it asserts
// nothing.
//
//   node perf/portal-firstview.mjs 'http://127.0.0.1:7070/portal/ORG/#token=apmp_...' [runs]
import { chromium } from 'playwright-core';

const [url, runsArg = '5'] = process.argv.slice(2);
if (!url || !url.includes('#token=')) {
  console.error('usage: node perf/portal-firstview.mjs PORTAL_URL_WITH_#token=... [runs]');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});
const rows = [];
for (let i = 0; i < Number(runsArg); i++) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 1000 } }); // cold cache each run
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForSelector('body[data-ready]', { timeout: 120_000 });
  const r = await page.evaluate(() => {
    const res = performance.getEntriesByType('resource');
    const entry = (name) => res.find((e) => e.name.includes('/api/v1/' + name));
    const api = (name) => entry(name)?.duration ?? null;
    // When each request left and its answer was in: the page's timeline.
    const span = (e) => (e ? `${e.startTime.toFixed(0)}–${e.responseEnd.toFixed(0)}` : null);
    const st = (e) => (e && e.serverTiming && e.serverTiming.length ? ' [server ' + e.serverTiming.map((t) => `${t.name} ${t.duration.toFixed(0)}`).join(', ') + ']' : '');
    const timeline = ['me', 'view', 'usage', 'events', 'meters'].map((n) => [n, span(entry(n))]).filter(([, v]) => v)
      .map(([n, v]) => `${n} ${v}${st(entry(n))}`).join(', ');
    const nav = performance.getEntriesByType('navigation')[0];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    return {
      ready: document.body.dataset.ready,
      firstView: window.portalReadyAt ?? null,
      fcp: fcp ? fcp.startTime : null,
      me: api('me'),
      view: api('view'),
      usage: api('usage'),
      events: api('events'),
      quota: api('quota'),
      timeline: `html ${nav.responseEnd.toFixed(0)}, ${timeline}`,
    };
  });
  if (r.ready !== 'true') throw new Error('the portal did not load: ' + (await page.textContent('#status')));
  rows.push(r);
  const f = (v) => (v == null ? '–' : v.toFixed(0));
  console.log(`run ${i + 1}: first view ${f(r.firstView)} ms, first contentful paint ${f(r.fcp)} ms, me ${f(r.me)} ms, view ${f(r.view)} ms, usage ${f(r.usage)} ms, events ${f(r.events)} ms, quota ${f(r.quota)} ms (${r.timeline})`);
  await context.close();
}
await browser.close();
const med = (k) => {
  const v = rows.map((r) => r[k]).filter((x) => x != null).sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)].toFixed(0) : '–';
};
console.log(`median of ${rows.length}: first view ${med('firstView')} ms, first contentful paint ${med('fcp')} ms, view ${med('view')} ms, usage ${med('usage')} ms, events ${med('events')} ms`);

// Measures the dashboard's first view (segmentation: calls by user this
// month) in Debian's chromium: milliseconds from navigation start until the
// chart and table are painted (window.apimeter.firstView), and how long the
// Metrics API request behind it took. It reports; it asserts nothing.
//
//   APIMETER_KEY=... node perf/firstview.mjs http://127.0.0.1:7070/ui/ [runs] [view hash]
//
// With APIMETER_KEY each run signs in first (POST /v1/session), outside the
// measured navigation; without it the URL must name the org
// (/ui/?org=demo&env=prod) on a server without sign-in.
import { chromium } from 'playwright-core';

const [url, runsArg = '5', hash = ''] = process.argv.slice(2);
if (!url) {
  console.error('usage: node perf/firstview.mjs DASHBOARD_URL [runs] [#/view?...]');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});
const rows = [];
for (let i = 0; i < Number(runsArg); i++) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } }); // cold cache each run
  if (process.env.APIMETER_KEY) {
    const res = await context.request.post(new URL('/v1/session', url).href, { data: { key: process.env.APIMETER_KEY } });
    if (!res.ok()) throw new Error(`sign-in: ${res.status()} ${await res.text()}`);
  }
  const page = await context.newPage();
  await page.goto(url + hash);
  await page.waitForFunction(() => window.apimeter && window.apimeter.firstView != null, null, { timeout: 120_000 });
  const r = await page.evaluate(() => {
    const stats = performance.getEntriesByType('resource').filter((e) => e.name.includes('/stats/'));
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    const nav = performance.getEntriesByType('navigation')[0];
    const marks = Object.fromEntries(performance.getEntriesByType('mark').map((m) => [m.name, Math.round(m.startTime)]));
    return {
      firstView: window.apimeter.firstView,
      fcp: fcp ? fcp.startTime : null,
      scriptReady: nav ? nav.domContentLoadedEventEnd : null,
      statsRequest: stats.length ? Math.max(...stats.map((e) => e.duration)) : null,
      statsAnswered: stats.length ? Math.max(...stats.map((e) => e.responseEnd)) : null,
      marks,
    };
  });
  rows.push(r);
  r.render = r.firstView - r.statsAnswered;
  console.log(`run ${i + 1}: first view ${r.firstView.toFixed(0)} ms, first contentful paint ${r.fcp?.toFixed(0)} ms, script ready ${r.scriptReady?.toFixed(0)} ms, Metrics API request ${r.statsRequest?.toFixed(0)} ms, answer to painted view ${r.render.toFixed(0)} ms`);
  if (process.env.VERBOSE) console.log('  marks (ms from navigation start):', JSON.stringify(r.marks));
  await context.close();
}
await browser.close();
const med = (k) => {
  const v = rows.map((r) => r[k]).filter((x) => x != null).sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)].toFixed(0) : '–';
};
console.log(`median of ${rows.length}: first view ${med('firstView')} ms, first contentful paint ${med('fcp')} ms, script ready ${med('scriptReady')} ms, Metrics API request ${med('statsRequest')} ms, answer to painted view ${med('render')} ms`);

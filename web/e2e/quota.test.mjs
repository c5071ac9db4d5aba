// The customer page's quota tiles, against a server with a gateway whose
// quota counts companies (started by the Go test TestCustomerQuotasReadAPI
// in cmd/apimeter, which says through the environment):
//
//   APIMETER_URL  the server      APIMETER_KEY  a read key of org acme
//   APIMETER_E2E_OUT  folder for screenshots      CHROMIUM  the browser
//
// Company c1 has used 3 of its daily 100 calls, c2 2 of its own 7; users
// are counted by no quota.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = process.env;
const browserPath = env.CHROMIUM || '/usr/bin/chromium';
const skip = !env.APIMETER_URL || !env.APIMETER_KEY ? 'needs a server: run it through go test ./cmd/apimeter -run TestCustomerQuotasReadAPI'
  : !existsSync(browserPath) ? `no browser at ${browserPath}` : false;
const out = env.APIMETER_E2E_OUT || 'e2e/output';

test('the customer page shows the gateway quotas that count the customer', { skip, timeout: 90_000 }, async () => {
  mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({ executablePath: browserPath, headless: true, args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'] });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const res = await context.request.post(new URL('/v1/session', env.APIMETER_URL).href, { data: { key: env.APIMETER_KEY } });
    assert.ok(res.ok(), `sign-in: ${res.status()}`);
    const page = await context.newPage();
    for (const [id, used, limit] of [['c1', '3', '100'], ['c2', '2', '7']]) {
      await page.goto(new URL(`/ui/#/customer?kind=company&id=${id}`, env.APIMETER_URL).href);
      const tile = page.locator('#kpi-quota-company-daily');
      await tile.waitFor({ timeout: 30_000 });
      assert.equal(await tile.getAttribute('data-used'), used, `company ${id} used`);
      assert.equal(await tile.getAttribute('data-limit'), limit, `company ${id} limit`);
      assert.equal(await tile.locator('b').innerText(), `${used} / ${limit}`);
      assert.match(await tile.locator('span').innerText(), /quota company-daily: per day, resets \d{4}-\d{2}-\d{2} /);
      if (id === 'c1') await page.screenshot({ path: join(out, 'customer-quota.png') });
    }
    await page.goto(new URL('/ui/#/customer?kind=user&id=u1', env.APIMETER_URL).href);
    await page.waitForSelector('#customer-kpis', { timeout: 30_000 });
    assert.equal(await page.locator('[id^=kpi-quota]').count(), 0, 'no quota counts users');
  } finally {
    await browser.close();
  }
});

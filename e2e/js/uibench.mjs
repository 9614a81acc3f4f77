// uibench.mjs measures the operator UI in Debian's chromium:
// node uibench.mjs <ui url> <token> <screenshot dir>. It prints progress
// lines and, last, one JSON object of figures (milliseconds):
// first_paint_ms, overview_max_task_ms, overview_max_frame_ms,
// regions_render_ms, regions_max_task_ms. e2e/uibench_test.go
// (make bench-ui) runs it against a demo holding 50 CDNs x 300 regions.
import { chromium } from 'playwright-core';
import path from 'node:path';

const [base, token, outDir] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const errors = [];
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
page.on('pageerror', (e) => errors.push(e.message));

// Long tasks and frame gaps, recorded from the first byte of every page.
await page.addInitScript(() => {
  window.__perf = { tasks: [], gaps: [] };
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__perf.tasks.push(e.duration); })
    .observe({ type: 'longtask', buffered: true });
  let last = 0;
  const frame = (t) => {
    if (last && document.visibilityState === 'visible') window.__perf.gaps.push(t - last);
    last = t;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
});
const reset = () => page.evaluate(() => { window.__perf.tasks = []; window.__perf.gaps = []; });
const maxOf = (k) => page.evaluate((k) => Math.max(0, ...window.__perf[k]), k);

await page.goto(base, { waitUntil: 'load' });
const firstPaint = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1);
console.log(`first contentful paint: ${firstPaint.toFixed(0)} ms`);

await page.fill('dialog#token-dialog input[name=token]', token);
await page.click('button[data-testid=token-submit]');
await page.waitForFunction(() => document.querySelector('[data-testid=stream-status]')?.textContent.trim() === 'live', null, { timeout: 20000 });
await page.waitForSelector('table[data-testid=live-cdns] tbody tr[data-cdn]', { timeout: 20000 });
const rows = await page.$$eval('table[data-testid=live-cdns] tbody tr[data-cdn]', (r) => r.length);
console.log(`overview live with ${rows} CDNs; watching 30 s of updates`);
await page.waitForTimeout(3000); // the initial history load is not "while updating"
await reset();
await page.waitForTimeout(30000);
const overviewTask = await maxOf('tasks');
const overviewFrame = await maxOf('gaps');
const overviewLong = await page.evaluate(() => window.__perf.tasks.length);
console.log(`overview: longest task ${overviewTask.toFixed(0)} ms (${overviewLong} over 50 ms), longest frame gap ${overviewFrame.toFixed(0)} ms`);
await page.screenshot({ path: path.join(outDir, 'overview-50x300.png') });

await reset();
const t0 = Date.now();
await page.click('nav a[data-nav=regions]');
// The bench starts once 95 % of the 300 regions are ranked.
await page.waitForFunction((n) => document.querySelectorAll('table[data-testid=regions-matrix] tbody tr[data-region]').length >= n, 285, { timeout: 30000 });
const regionRows = await page.$$eval('table[data-testid=regions-matrix] tbody tr[data-region]', (r) => r.length);
const regionsRender = Date.now() - t0;
await page.waitForTimeout(15000);
const regionsTask = await maxOf('tasks');
console.log(`regions: matrix of ${regionRows} regions in ${regionsRender} ms; longest task ${regionsTask.toFixed(0)} ms`);
await page.screenshot({ path: path.join(outDir, 'regions-50x300.png') });
if (errors.length) console.log(`console errors: ${errors.slice(0, 5).join(' | ')}`);

console.log(JSON.stringify({
  first_paint_ms: firstPaint, overview_max_task_ms: overviewTask, overview_max_frame_ms: overviewFrame,
  regions_render_ms: regionsRender, regions_max_task_ms: regionsTask, regions: regionRows, console_errors: errors.length,
}));
await browser.close();

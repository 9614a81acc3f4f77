// ui.mjs drives the operator web UI in Debian's chromium (never a
// downloaded browser): node ui.mjs <ui url> <token> <screenshot dir>.
// It prints one JSON line per step ({step, ok, ms, detail}) and exits
// non-zero on the first failed step or when any page logged a console
// error. e2e/ui_test.go runs it against `cdnpilot demo`.
import { chromium } from 'playwright-core';
import path from 'node:path';

const [base, token, outDir] = process.argv.slice(2);
if (!base || !token || !outDir) {
  console.error('usage: node ui.mjs <ui url> <token> <screenshot dir>');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
const page = await context.newPage();
const consoleErrors = [];
page.on('console', (m) => {
  if (m.type() === 'error') consoleErrors.push(`${page.url()}: ${m.text()}`);
});
page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: uncaught ${e.message}`));

let failed = false;
async function step(name, fn) {
  const t0 = performance.now();
  try {
    const detail = (await fn()) ?? '';
    console.log(JSON.stringify({ step: name, ok: true, ms: performance.now() - t0, detail: String(detail) }));
  } catch (e) {
    failed = true;
    console.log(JSON.stringify({ step: name, ok: false, ms: performance.now() - t0, detail: String(e.message || e).split('\n')[0] }));
    await page.screenshot({ path: path.join(outDir, `failed-${name.replace(/\W+/g, '-')}.png`) }).catch(() => {});
    await browser.close();
    process.exit(1);
  }
}
const shot = (name) => page.screenshot({ path: path.join(outDir, `${name}.png`) });
const nav = async (name) => {
  await page.click(`nav a[data-nav=${name}]`);
  await page.waitForFunction((n) => location.hash.startsWith(`#/${n}`), name);
};

await step('first paint', async () => {
  await page.goto(base, { waitUntil: 'load' });
  const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
  return `first contentful paint ${fcp?.toFixed(0)} ms`;
});

let signedIn;
await step('sign in with the token', async () => {
  await page.waitForSelector('dialog#token-dialog[open]', { timeout: 5000 });
  await page.fill('dialog#token-dialog input[name=token]', token);
  await page.click('button[data-testid=token-submit]');
  signedIn = performance.now();
  // A closed dialog is never "visible": wait on its open property.
  await page.waitForFunction(() => !document.querySelector('dialog#token-dialog').open, null, { timeout: 5000 });
  const who = await page.textContent('[data-testid=whoami]', { timeout: 5000 });
  if (!/admin/.test(who)) throw new Error(`whoami shows ${JSON.stringify(who)}`);
  return who.trim();
});

let cdns = [];
await step('overview fills with live data', async () => {
  await page.waitForFunction(() => document.querySelector('[data-testid=stream-status]')?.textContent.trim() === 'live', null, { timeout: 10000 });
  await page.waitForFunction(() => {
    const rows = document.querySelectorAll('table[data-testid=live-cdns] tbody tr[data-cdn]');
    return rows.length >= 3 && [...rows].some((r) => /\d+(\.\d+)?\s*%/.test(r.textContent));
  }, null, { timeout: 10000 });
  await page.waitForFunction(() => ['share-chart', 'score-chart', 'rate-chart']
    .every((id) => document.querySelector(`[data-testid=${id}] canvas`)), null, { timeout: 10000 });
  const took = performance.now() - signedIn;
  if (took > 10000) throw new Error(`overview filled after ${took.toFixed(0)} ms, over 10 s`);
  cdns = await page.$$eval('table[data-testid=live-cdns] tbody tr[data-cdn]', (rs) => rs.map((r) => r.dataset.cdn));
  return `live after ${took.toFixed(0)} ms: ${cdns.join(', ')}`;
});

await step('share chart shows stored views', async () => {
  // Views are counted from view starts in the analytics store: the demo's
  // first viewers reach one some seconds after it starts.
  await page.waitForFunction(() => {
    const note = document.querySelector('[data-testid=share-chart] .chart-empty');
    return note && note.hidden;
  }, null, { timeout: 30000 });
  await page.waitForTimeout(1000);
  await shot('overview');
  return `${(performance.now() - signedIn).toFixed(0)} ms after sign-in`;
});

let target, winner;
await step('regions matrix', async () => {
  await nav('regions');
  await page.waitForSelector('table[data-testid=regions-matrix] tr[data-region=eu-west] td[data-winner=true]', { timeout: 10000 });
  winner = await page.getAttribute('table[data-testid=regions-matrix] tr[data-region=eu-west] td[data-winner=true]', 'data-cdn');
  target = cdns.find((c) => c !== winner);
  if (!target) throw new Error(`no CDN other than the winner ${winner}`);
  await shot('regions');
  const n = await page.$$eval('table[data-testid=regions-matrix] tbody tr[data-region]', (r) => r.length);
  return `${n} regions; eu-west won by ${winner}; will pin ${target}`;
});

await step('cdn detail', async () => {
  await page.goto(`${base}#/cdn/${winner}`);
  await page.waitForSelector('[data-testid=cdn-detail] canvas', { timeout: 10000 });
  await page.waitForTimeout(500);
  await shot('cdn');
});

let overrideID;
await step('override: dry run, then apply', async () => {
  await nav('overrides');
  const form = 'form[data-testid=override-form]';
  await page.waitForSelector(form);
  await page.selectOption(`${form} [name=action]`, 'pin');
  await page.fill(`${form} [name=service]`, 'vod').catch(() => page.selectOption(`${form} [name=service]`, 'vod'));
  await setField(`${form} [name=cdn]`, target);
  await page.fill(`${form} [name=region]`, 'eu-west').catch(() => page.selectOption(`${form} [name=region]`, 'eu-west'));
  await page.fill(`${form} [name=reason]`, 'UI test: pin in eu-west');
  await page.fill(`${form} [name=expires_in]`, '30');
  if (!(await page.isDisabled('[data-testid=override-apply]'))) throw new Error('apply is enabled before a dry run');
  await page.click('[data-testid=override-dryrun]');
  await page.waitForFunction((c) => {
    const p = document.querySelector('[data-testid=dryrun-preview]');
    return p && p.textContent.includes(c) && p.textContent.includes('eu-west');
  }, target, { timeout: 10000 });
  await page.waitForSelector('[data-testid=override-apply]:not([disabled])', { timeout: 5000 });
  await shot('overrides-dryrun');
  await page.click('[data-testid=override-apply]');
  await page.waitForFunction((c) => [...document.querySelectorAll('table[data-testid=overrides-table] tbody tr[data-id]')]
    .some((r) => r.textContent.includes(c) && r.textContent.includes('eu-west')), target, { timeout: 10000 });
  overrideID = await page.$$eval('table[data-testid=overrides-table] tbody tr[data-id]', (rs, c) =>
    rs.find((r) => r.textContent.includes(c) && r.textContent.includes('eu-west')).dataset.id, target);
  await shot('overrides');
  return overrideID;
});

async function setField(sel, value) {
  const tag = await page.$eval(sel, (e) => e.tagName);
  if (tag === 'SELECT') await page.selectOption(sel, value);
  else await page.fill(sel, value);
}

await step('override takes effect in the regions view', async () => {
  await nav('regions');
  const sel = `table[data-testid=regions-matrix] tr[data-region=eu-west] td[data-cdn="${target}"][data-winner=true][data-override="${overrideID}"]`;
  await page.waitForSelector(sel, { timeout: 10000 });
  return `${target} wins eu-west under ${overrideID}`;
});

await step('override in the audit log', async () => {
  await nav('audit');
  await page.waitForFunction((id) => [...document.querySelectorAll('table[data-testid=audit-table] tbody tr')]
    .some((r) => r.textContent.includes('override.create') && r.textContent.includes(id)), overrideID, { timeout: 10000 });
  await page.fill('[name=action]', 'override.create').catch(() => page.selectOption('[name=action]', 'override.create'));
  await page.press('[name=action]', 'Enter').catch(() => {});
  await page.waitForTimeout(500);
  const rows = await page.$$eval('table[data-testid=audit-table] tbody tr', (rs) => rs.map((r) => r.textContent));
  if (!rows.length || rows.some((r) => !r.includes('override.create'))) throw new Error(`filter by action shows ${rows.length} rows, not all override.create`);
  await shot('audit');
  return `${rows.length} override.create records`;
});

await step('explain a decision', async () => {
  await nav('explain');
  const form = 'form[data-testid=explain-form]';
  await page.fill(`${form} [name=client]`, '100.64.1.2');
  await page.fill(`${form} [name=service]`, 'vod').catch(() => page.selectOption(`${form} [name=service]`, 'vod'));
  await page.press(`${form} [name=client]`, 'Enter');
  await page.waitForSelector('[data-testid=explain-result] [data-testid=explain-cdn]', { timeout: 10000 });
  const got = (await page.textContent('[data-testid=explain-cdn]')).trim();
  if (got !== target) throw new Error(`explain says ${got} for 100.64.1.2 (eu-west), want the pinned ${target}`);
  const text = await page.textContent('[data-testid=explain-result]');
  if (!text.includes(overrideID)) throw new Error('the explanation does not name the override');
  await shot('explain');
  return `100.64.1.2 -> ${got}`;
});

await step('override: extend, then expire', async () => {
  await nav('overrides');
  const row = `table[data-testid=overrides-table] tbody tr[data-id="${overrideID}"]`;
  const confirm = async (reason, minutes) => {
    await page.waitForSelector('dialog[data-confirm][open]', { timeout: 5000 });
    if (minutes) await page.fill('dialog[data-confirm] input[name=expires_in]', String(minutes));
    await page.fill('dialog[data-confirm] input[name=reason]', reason);
    await page.click('dialog[data-confirm] [data-testid=confirm-submit]');
    await page.waitForFunction(() => !document.querySelector('dialog[data-confirm]').open, null, { timeout: 10000 });
  };
  // The expiry is the row's last time element.
  const expiry = () => page.$$eval(`${row} time`, (ts) => ts[ts.length - 1].dateTime);
  // The overrides view renders after its fetch returns; reading before
  // that finds no row.
  await page.waitForSelector(`${row} time`, { timeout: 10000 });
  const before = await expiry();
  await page.click(`${row} button[data-action=extend]`);
  await confirm('UI test: needs longer', 120);
  await page.waitForFunction(([sel, was]) => {
    const ts = document.querySelector(sel)?.querySelectorAll('time');
    return ts && ts.length && ts[ts.length - 1].dateTime > was;
  }, [row, before], { timeout: 10000 });
  const after = await expiry();
  await page.click(`${row} button[data-action=expire]`);
  await confirm('UI test: done');
  // Expired: gone from the active list, and eu-west is back to measured
  // steering.
  await page.waitForFunction((sel) => {
    const r = document.querySelector(sel);
    return !r || r.dataset.state !== 'active';
  }, row, { timeout: 10000 });
  await nav('regions');
  await page.waitForFunction((id) => !document.querySelector(`table[data-testid=regions-matrix] td[data-override="${id}"]`)
    && document.querySelector('table[data-testid=regions-matrix] tr[data-region=eu-west] td[data-winner=true]'), overrideID, { timeout: 10000 });
  await nav('audit');
  await page.fill('[name=action]', '').catch(() => page.selectOption('[name=action]', ''));
  await page.press('[name=actor]', 'Enter').catch(() => {});
  await page.waitForFunction((id) => {
    const rows = [...document.querySelectorAll('table[data-testid=audit-table] tbody tr')].map((r) => r.textContent);
    return ['override.create', 'override.extend', 'override.delete'].every((a) => rows.some((t) => t.includes(a) && t.includes(id)));
  }, overrideID, { timeout: 10000 });
  return `expiry ${before} -> ${after}, then expired; all three audited`;
});

await step('health', async () => {
  await nav('health');
  await page.waitForSelector('table[data-testid=health-matrix] tbody tr', { timeout: 10000 });
  await shot('health');
});

await step('dark theme', async () => {
  await page.emulateMedia({ colorScheme: 'dark' });
  await nav('overview');
  await page.waitForSelector('[data-testid=share-chart] canvas', { timeout: 10000 });
  await page.waitForTimeout(1000);
  await shot('overview-dark');
});

await step('keyboard: nav reachable by Tab', async () => {
  // A fresh load: focus starts at the top of the document, not on the
  // link the last step clicked (the token stays in session storage).
  await page.goto('about:blank');
  await page.goto(`${base}#/overview`);
  await page.waitForSelector('nav a[data-nav=overview]');
  const seen = new Set();
  for (let i = 0; i < 25; i++) {
    await page.keyboard.press('Tab');
    const n = await page.evaluate(() => document.activeElement?.dataset?.nav);
    if (n) seen.add(n);
  }
  for (const n of ['overview', 'regions', 'overrides', 'audit', 'explain', 'health']) {
    if (!seen.has(n)) throw new Error(`nav ${n} not reached by Tab (reached ${[...seen].join(', ')})`);
  }
});

await step('no console errors', async () => {
  if (consoleErrors.length) throw new Error(`${consoleErrors.length} console errors: ${consoleErrors.slice(0, 5).join(' | ')}`);
});

await browser.close();
process.exit(failed ? 1 : 0);

// play.mjs opens a player page in Debian's chromium (never a downloaded
// browser), lets it play, and prints one JSON result on stdout:
//
//   node play.mjs --url <page URL> [--seconds 20] [--verbose]
//
// The result holds what the page recorded (window.__events: first frame,
// stalls, fragments with their pathway/CDN, steering manifest loads,
// errors), the beacons the cdnpilot plugin sent (window.__beacons), and a
// summary the Go test asserts on. Browser console lines go to stderr with
// --verbose. Exit status 0 whenever a result was printed; the test decides.
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf('--' + name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const url = opt('url');
const seconds = Number(opt('seconds', '20'));
const verbose = args.includes('--verbose');
if (!url) {
  process.stderr.write('usage: node play.mjs --url <page> [--seconds N] [--verbose]\n');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
let result;
try {
  const page = await browser.newPage();
  const consoleLines = [];
  page.on('console', (m) => {
    const line = `[${m.type()}] ${m.text()}`;
    if (m.type() === 'error' || m.type() === 'warning') consoleLines.push(line.slice(0, 500));
    if (verbose) process.stderr.write(line + '\n');
  });
  page.on('pageerror', (e) => consoleLines.push('[pageerror] ' + String(e)));
  // Answers of the ingest that refused something: the test shows why.
  const rejects = [];
  page.on('response', async (r) => {
    if (r.status() < 400 || !/\/v1\/(beacons|cmcd)/.test(r.url()) || rejects.length >= 20) return;
    let body = '';
    try { body = (await r.text()).slice(0, 400); } catch (e) { body = String(e); }
    const req = r.request();
    rejects.push({ status: r.status(), url: r.url().slice(0, 300), sent: (req.postData() || '').slice(0, 400), body });
  });
  await page.goto(url, { waitUntil: 'load', timeout: 30000 });
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    await page.waitForTimeout(Math.min(500, Math.max(0, deadline - Date.now())));
  }
  // Tear the view down like a page leaving, so view_end goes out, then
  // give sendBeacon a moment before the browser closes.
  const data = await page.evaluate(() => {
    const state = window.__state ? window.__state() : {};
    if (window.__view) window.__view.end();
    return {
      events: window.__events || [],
      beacons: window.__beacons || [],
      state,
      now: Math.round(performance.now() - window.__t0),
    };
  });
  await page.waitForTimeout(500);
  result = summarize(data, consoleLines);
  result.ingestRejects = rejects;
} catch (e) {
  result = { error: String(e && e.stack || e) };
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + '\n');

// summarize adds what every test asks: the longest stall (an open one
// counts until the end), the CDN sequence of the fragments, steering loads.
function summarize(d, consoleLines) {
  let maxStall = 0;
  let open = -1;
  for (const e of d.events) {
    if (e.type === 'stall_start') open = e.t;
    if (e.type === 'stall_end') { maxStall = Math.max(maxStall, e.ms); open = -1; }
  }
  if (open >= 0) maxStall = Math.max(maxStall, d.now - open);
  const first = d.events.find((e) => e.type === 'first_frame');
  return {
    events: d.events,
    beacons: d.beacons,
    currentTime: d.state.currentTime || 0,
    cdn: d.state.cdn || '',
    firstFrameMs: first ? first.t : -1,
    maxStallMs: maxStall,
    stalls: d.events.filter((e) => e.type === 'stall_start').length,
    frags: d.events.filter((e) => e.type === 'frag').map((e) => ({ t: e.t, pathway: e.pathway, host: e.host })),
    steering: d.events.filter((e) => e.type === 'steering').map((e) => ({ t: e.t, priority: e.priority })),
    errors: d.events.filter((e) => /error|rejected/.test(e.type)),
    console: consoleLines.slice(0, 50),
  };
}

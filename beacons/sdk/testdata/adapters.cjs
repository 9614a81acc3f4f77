// Drives cdnpilot.js's hls.js and dash.js adapters with fake players in
// node (no browser): the events the players really fire, in the orders
// that broke the plugin before. Run by sdk_test.go; prints one line per
// failed check and exits 1 if any failed.
'use strict';
const fs = require('fs');
const vm = require('vm');
const path = require('path');

const src = fs.readFileSync(path.join(__dirname, '..', 'cdnpilot.js'), 'utf8');
let failed = 0;
function check(name, got, want) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    failed++;
    console.log(`FAIL ${name}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

// load runs the plugin in a fresh context with fake timers, so nothing
// keeps node alive and every case starts from an empty view table.
function load() {
  const ctx = {URL, JSON, Math, Date, Uint8Array, console, setInterval: () => 0, clearInterval: () => {}};
  vm.createContext(ctx);
  vm.runInContext(src, ctx);
  return ctx.cdnpilot;
}

class Emitter {
  constructor() { this.h = {}; }
  on(n, f) { (this.h[n] = this.h[n] || []).push(f); }
  off(n, f) { this.h[n] = (this.h[n] || []).filter((g) => g !== f); }
  fire(n, ...a) { for (const f of this.h[n] || []) f(...a); }
}
function video() {
  const v = new Emitter();
  v.paused = false; v.autoplay = true;
  v.addEventListener = (n, f) => v.on(n, f);
  return v;
}

const opts = (beacons, viewId) => ({endpoint: 'http://ingest.test', service: 'vod', viewId, onBeacon: (b) => beacons.push(b)});

// dash.js: FRAGMENT_LOADING_COMPLETED also fires for a failed load (with
// error set, no response); a dead CDN's late failure must not take the
// view back to it.
{
  const cp = load();
  const player = new Emitter();
  player.getVersion = () => '5.2.1';
  player.getAverageThroughput = () => 0;
  const beacons = [];
  const vid = video();
  const v = cp.attachDash(player, vid, opts(beacons, 'dash-view'));
  const frag = (loc, ok) => player.fire('fragmentLoadingCompleted', {
    request: {mediaType: 'video', type: 'MediaSegment', url: `http://${loc}.test/seg-1.m4s`, serviceLocation: loc},
    response: ok ? new Uint8Array(4) : null,
    error: ok ? null : {code: 27, message: 'failed loading fragment'},
  });
  frag('cdn-a', true);
  check('dash first segment', v.cdn(), 'cdn-a');
  frag('cdn-b', true);
  check('dash after switch', v.cdn(), 'cdn-b');
  frag('cdn-a', false);
  check('dash after a failed cdn-a load', v.cdn(), 'cdn-b');
  const switches = beacons.filter((b) => b.type === 'cdn_switch').map((b) => `${b.prev_cdn}->${b.cdn}`);
  check('dash switches', switches, ['cdn-a->cdn-b']);
  // An init segment or audio says nothing about the video's CDN.
  player.fire('fragmentLoadingCompleted', {request: {mediaType: 'audio', url: 'http://cdn-c.test/a.m4s', serviceLocation: 'cdn-c'}, response: new Uint8Array(1)});
  player.fire('fragmentLoadingCompleted', {request: {mediaType: 'video', type: 'InitializationSegment', url: 'http://cdn-c.test/i.mp4', serviceLocation: 'cdn-c'}, response: new Uint8Array(1)});
  check('dash audio and init ignored', v.cdn(), 'cdn-b');
  // dash.js names the BaseURL itself as serviceLocation when the MPD gives none.
  player.fire('fragmentLoadingCompleted', {request: {mediaType: 'video', type: 'MediaSegment', url: 'http://edge.cdn-d.test/seg-2.m4s', serviceLocation: 'http://edge.cdn-d.test/'}, response: new Uint8Array(1)});
  check('dash BaseURL as serviceLocation falls back to the host', v.cdn(), 'edge.cdn-d.test');
}

// hls.js: FRAG_LOADED only fires for loaded fragments; the level's
// pathwayId names the CDN, and a fragment of another type is ignored.
{
  const cp = load();
  const hls = new Emitter();
  hls.levels = [{pathwayId: 'cdn-a'}, {pathwayId: 'cdn-b'}];
  const H = {FRAG_LOADED: 'hlsFragLoaded', DESTROYING: 'hlsDestroying'};
  const ctx = {Hls: {Events: H, version: '1.7.4'}};
  hls.constructor = ctx.Hls;
  const beacons = [];
  const v = cp.attachHls(hls, video(), opts(beacons, 'hls-view'));
  hls.fire(H.FRAG_LOADED, H.FRAG_LOADED, {frag: {type: 'main', sn: 1, level: 0, url: 'http://a.test/seg-1.ts'}});
  hls.fire(H.FRAG_LOADED, H.FRAG_LOADED, {frag: {type: 'audio', sn: 1, level: 1, url: 'http://b.test/a-1.ts'}});
  check('hls audio ignored', v.cdn(), 'cdn-a');
  hls.fire(H.FRAG_LOADED, H.FRAG_LOADED, {frag: {type: 'main', sn: 2, level: 1, url: 'http://b.test/seg-2.ts'}});
  check('hls after switch', v.cdn(), 'cdn-b');
}

// hls.js: a fragment that fails on the CDN the player just left turns
// fatal (hls.js penalizes the pathway in use for it); the plugin resumes
// loading on the pathway in use, once, and the view goes on. A fatal
// error on the pathway in use, or a second one within 10 s, ends it.
// stalledHls is a fake hls.js playing from cdn-b that counts startLoad.
function stalledHls(viewId) {
  const cp = load();
  const hls = new Emitter();
  hls.levels = [{pathwayId: 'cdn-b', uri: 'http://b.test/media_0.m3u8'}];
  hls.loadLevel = 0;
  const f = {hls, starts: 0, beacons: []};
  hls.startLoad = () => { f.starts++; };
  f.H = {FRAG_LOADED: 'hlsFragLoaded', ERROR: 'hlsError', DESTROYING: 'hlsDestroying'};
  hls.constructor = {Events: f.H, version: '1.7.4'};
  f.v = cp.attachHls(hls, video(), opts(f.beacons, viewId));
  f.fail = (host, details) => hls.fire(f.H.ERROR, f.H.ERROR, {type: 'networkError', details, fatal: true,
    frag: {type: 'main', sn: 2, url: `http://${host}/seg-2.ts`}});
  f.errs = () => f.beacons.filter((b) => b.type === 'error').map((b) => `${b.error_code}:${b.fatal}`);
  return f;
}
{
  const f = stalledHls('hls-stale');
  f.hls.fire(f.H.FRAG_LOADED, f.H.FRAG_LOADED, {frag: {type: 'main', sn: 2, level: 0, url: 'http://b.test/seg-2.ts'}});
  f.fail('a.test', 'fragLoadError');
  check('hls stale-pathway error resumes loading', f.starts, 1);
  check('hls stale-pathway error reported as not fatal', f.errs(), ['fragLoadError:false']);
  check('hls view goes on', f.v.cdn(), 'cdn-b');
  f.fail('a.test', 'fragLoadTimeOut');
  check('hls second stale error within 10 s is fatal', [f.starts, f.errs()], [1, ['fragLoadError:false', 'fragLoadTimeOut:true']]);
}
{
  const f = stalledHls('hls-fatal');
  f.fail('b.test', 'fragLoadError');
  check('hls fatal error on the pathway in use is not resumed', f.starts, 0);
  check('hls fatal error on the pathway in use reported', f.errs(), ['fragLoadError:true']);
}

process.exit(failed ? 1 : 0);

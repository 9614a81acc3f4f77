// cdnpilot operator UI: sign-in, hash routing, the shared service and
// time-range selection (kept in the hash), the live stream and the error
// region. Pages live in pages/*.js and export mount(ctx) -> unmount.

import { api, ApiError, getToken, isAbort, onUnauthorized, setToken } from './api.js';
import { Live } from './live.js';
import { readTheme } from './charts.js';
import { DEFAULT_RANGE, RANGES, esc, setCDNs, fmtNum } from './util.js';
import * as overview from './pages/overview.js';
import * as regions from './pages/regions.js';
import * as cdn from './pages/cdn.js';
import * as overrides from './pages/overrides.js';
import * as audit from './pages/audit.js';
import * as explain from './pages/explain.js';
import * as health from './pages/health.js';

// Each page: its module, whether it uses the service and the time range.
const PAGES = {
  overview: { mod: overview, service: true, range: true, title: 'Overview' },
  regions: { mod: regions, service: true, range: false, title: 'Regions' },
  cdn: { mod: cdn, service: true, range: true, title: 'CDN', nav: 'overview' },
  overrides: { mod: overrides, service: true, range: false, title: 'Overrides' },
  audit: { mod: audit, service: false, range: false, title: 'Audit' },
  explain: { mod: explain, service: true, range: false, title: 'Explain' },
  health: { mod: health, service: true, range: false, title: 'Health' },
};

const $ = (sel) => document.querySelector(sel);
const el = {
  page: $('#page'),
  main: $('#main'),
  error: $('#error'),
  toolbar: $('#toolbar'),
  service: $('#service-select'),
  range: $('#range-select'),
  rangeLabel: $('#range-label'),
  snapshot: $('#snapshot-info'),
  stream: $('[data-testid=stream-status]'),
  whoami: $('[data-testid=whoami]'),
  signOut: $('#sign-out'),
  theme: $('#theme-toggle'),
  dialog: $('#token-dialog'),
  tokenForm: $('#token-form'),
  tokenInput: $('#token-input'),
  tokenError: $('#token-error'),
};

/** state is what every page may read. */
const state = {
  me: null,
  services: [], // service names the caller may see
  cdns: [], // GET /api/v1/cdns answer (catalog with health)
  cdnsByService: new Map(), // service -> CDN names, catalog order
  service: '',
  range: DEFAULT_RANGE,
  live: null,
  regions: new Map(), // service -> region names seen (for form suggestions)
};

let current = null; // {key, unmount, ctrl}
let started = false;

// ---- errors ---------------------------------------------------------------

let errorSeq = 0;

/** showError puts an API error (or any error) in the alert region; returns its id. */
function showError(err) {
  if (!err || isAbort(err)) return 0;
  if (err instanceof ApiError && err.status === 401) return 0;
  let msg;
  if (err instanceof ApiError) {
    msg = `${err.status ? `<b>${err.status}</b> ` : ''}${esc(err.message)}`;
    if (err.field) msg += ` <span class="field">(field: ${esc(err.field)})</span>`;
    if (err.path) msg += ` <span class="muted">— ${esc(err.path)}</span>`;
  } else {
    msg = esc(err.message || String(err));
  }
  el.error.innerHTML = `<span class="msg">${msg}</span><button type="button" class="ghost small" data-dismiss>Dismiss</button>`;
  el.error.hidden = false;
  return ++errorSeq;
}

/** clearError empties the alert region (only error id when given). */
function clearError(id) {
  if (id !== undefined && id !== errorSeq) return;
  el.error.hidden = true;
  el.error.textContent = '';
}

el.error.addEventListener('click', (e) => {
  if (e.target.closest('[data-dismiss]')) clearError();
});

// ---- theme ----------------------------------------------------------------

const darkQuery = matchMedia('(prefers-color-scheme: dark)');

function effectiveTheme() {
  return document.documentElement.dataset.theme || (darkQuery.matches ? 'dark' : 'light');
}

function syncThemeButton() {
  const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
  el.theme.textContent = next === 'dark' ? 'Dark' : 'Light';
  el.theme.setAttribute('aria-label', `Switch to the ${next} theme`);
}

el.theme.addEventListener('click', () => {
  const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
  document.documentElement.dataset.theme = next;
  try {
    localStorage.setItem('cdnpilot.theme', next);
  } catch {
    // Storage disabled: the choice lasts for this page only.
  }
  syncThemeButton();
  readTheme();
});
darkQuery.addEventListener('change', () => {
  syncThemeButton();
  readTheme();
});

// ---- sign-in --------------------------------------------------------------

function openTokenDialog(message) {
  el.tokenError.hidden = !message;
  el.tokenError.textContent = message || '';
  if (!el.dialog.open) {
    el.dialog.showModal();
    el.tokenInput.focus();
  }
}

el.dialog.addEventListener('cancel', (e) => {
  if (!getToken()) e.preventDefault(); // nothing works without a token
});

el.tokenForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const t = el.tokenInput.value.trim();
  if (!t) return;
  setToken(t);
  el.tokenError.hidden = true;
  try {
    state.me = await api('/api/v1/whoami');
  } catch (err) {
    setToken('');
    el.tokenError.hidden = false;
    el.tokenError.textContent =
      err instanceof ApiError && err.status === 401 ? 'That token was refused. Check it and try again.' : `Could not sign in: ${err.message}`;
    return;
  }
  el.tokenInput.value = '';
  el.dialog.close();
  signedIn();
});

onUnauthorized(() => {
  setToken('');
  signOut('Your token was refused (401): sign in again.');
});

el.signOut.addEventListener('click', () => signOut(''));

function signOut(message) {
  started = false;
  unmountPage();
  stopLive();
  state.me = null;
  el.whoami.textContent = '';
  el.signOut.hidden = true;
  el.toolbar.hidden = true;
  setToken('');
  el.page.innerHTML = '<p class="empty">Signed out.</p>';
  openTokenDialog(message);
}

// ---- start ----------------------------------------------------------------

async function boot() {
  syncThemeButton();
  readTheme();
  document.getElementById('skip').addEventListener('click', (e) => {
    // The hash is the router's: move focus without touching it.
    e.preventDefault();
    el.main.focus();
  });
  if (!getToken()) {
    el.page.innerHTML = '';
    openTokenDialog('');
    return;
  }
  try {
    state.me = await api('/api/v1/whoami');
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showError(err);
    return;
  }
  signedIn();
}

async function signedIn() {
  const me = state.me;
  el.whoami.innerHTML = `<b>${esc(me.name)}</b> (${esc(me.role)})`;
  el.signOut.hidden = false;
  try {
    const res = await api('/api/v1/cdns');
    setCatalog(res.cdns || []);
  } catch (err) {
    showError(err);
    if (err instanceof ApiError && err.status === 401) return;
  }
  started = true;
  route();
}

function setCatalog(cdns) {
  state.cdns = cdns;
  state.cdnsByService = new Map();
  setCDNs(cdns.map((c) => c.name));
  for (const c of cdns) {
    for (const s of c.services || []) {
      if (!state.cdnsByService.has(s.service)) state.cdnsByService.set(s.service, []);
      state.cdnsByService.get(s.service).push(c.name);
    }
  }
  let services = [...state.cdnsByService.keys()];
  const limit = state.me?.services || [];
  if (limit.length) services = services.filter((s) => limit.includes(s));
  state.services = services;
  el.service.innerHTML = services.map((s) => `<option value="${esc(s)}">${esc(s)}</option>`).join('');
}

// ---- routing --------------------------------------------------------------

function parseHash() {
  let h = location.hash.replace(/^#/, '');
  if (!h.startsWith('/')) h = '/overview';
  const q = h.indexOf('?');
  const path = q < 0 ? h : h.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : h.slice(q + 1));
  const parts = path.split('/').filter(Boolean);
  let arg = '';
  try {
    arg = decodeURIComponent(parts.slice(1).join('/'));
  } catch {
    arg = '';
  }
  return { page: parts[0] || 'overview', arg, params };
}

/** href builds a hash link to page, keeping the service and range. */
function href(page, params = {}, arg = '') {
  const def = PAGES[page] || {};
  const q = new URLSearchParams();
  if (def.range) q.set('range', state.range);
  if (def.service && state.service) q.set('service', state.service);
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') q.delete(k);
    else q.set(k, String(v));
  }
  const qs = q.toString();
  return `#/${page}${arg ? '/' + encodeURIComponent(arg) : ''}${qs ? '?' + qs : ''}`;
}

/** navigate changes the hash (and so the page); patch merges into the current query. */
function navigate(patch = {}, page, arg) {
  const cur = parseHash();
  const p = page || cur.page;
  const a = page ? arg || '' : cur.arg;
  const params = Object.fromEntries(cur.params);
  Object.assign(params, patch);
  location.hash = href(p, params, a).slice(1);
}

function route() {
  if (!started) return;
  const { page, arg, params } = parseHash();
  const def = PAGES[page];
  if (def?.service) {
    const want = params.get('service');
    state.service = want && state.services.includes(want) ? want : state.service || state.services[0] || '';
  }
  if (def?.range) {
    const want = params.get('range');
    state.range = want && RANGES[want] ? want : state.range;
  }
  // Canonical hash (service and range spelled out) without a new history entry.
  if (def) {
    const canon = href(page, Object.fromEntries(params), arg);
    if (canon !== location.hash) history.replaceState(null, '', canon);
  }
  const key = location.hash;
  if (current && current.key === key) return;

  clearError();
  unmountPage();
  syncChrome(page, def);
  ensureLive();

  if (!def) {
    el.page.innerHTML = `<h1>Not found</h1><p class="empty">No page “${esc(page)}”. <a href="${href('overview')}">Go to the overview</a>.</p>`;
    current = { key, unmount() {}, ctrl: new AbortController() };
    return;
  }
  document.title = `${def.title}${arg ? ' ' + arg : ''} · cdnpilot`;
  const ctrl = new AbortController();
  el.page.replaceChildren();
  const ctx = makeContext(ctrl, arg, params);
  let unmount = () => {};
  try {
    unmount = def.mod.mount(ctx) || unmount;
  } catch (err) {
    showError(err);
  }
  current = { key, unmount, ctrl };
}

function unmountPage() {
  if (!current) return;
  current.ctrl.abort();
  try {
    current.unmount();
  } catch (err) {
    console.warn('unmount', err);
  }
  current = null;
}

function syncChrome(page, def) {
  const navName = def?.nav || page;
  for (const a of document.querySelectorAll('nav a[data-nav]')) {
    const name = a.dataset.nav;
    a.href = href(name);
    if (name === navName) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  el.toolbar.hidden = !def || !def.service;
  el.rangeLabel.hidden = !def || !def.range;
  el.service.value = state.service;
  el.range.value = state.range;
}

el.service.addEventListener('change', () => navigate({ service: el.service.value }));
el.range.addEventListener('change', () => navigate({ range: el.range.value }));
window.addEventListener('hashchange', route);

// ---- live stream ----------------------------------------------------------

function ensureLive() {
  const backlog = RANGES[state.range].seconds;
  if (!state.service) state.service = state.services[0] || '';
  if (!state.service) return;
  if (state.live && state.live.service === state.service && state.live.backlog === backlog) return;
  stopLive();
  const live = new Live(state.service, backlog);
  state.live = live;
  live.addEventListener('status', () => showStreamStatus(live.status));
  live.addEventListener('tick', scheduleSnapshotInfo);
  live.addEventListener('reset', scheduleSnapshotInfo);
  showStreamStatus('connecting');
  live.start();
}

function stopLive() {
  if (!state.live) return;
  state.live.stop();
  state.live = null;
  showStreamStatus('offline');
  el.snapshot.textContent = '';
}

function showStreamStatus(s) {
  el.stream.dataset.state = s;
  el.stream.textContent = s;
  el.stream.title =
    {
      live: 'Live: updates arrive as they happen',
      connecting: 'Connecting to the live stream',
      reconnecting: 'The live stream dropped: reconnecting',
      unavailable: 'This server has no live stream: pages poll instead',
      offline: 'Not connected',
    }[s] || s;
}

let snapshotFrame = 0;
function scheduleSnapshotInfo() {
  if (snapshotFrame) return;
  snapshotFrame = requestAnimationFrame(() => {
    snapshotFrame = 0;
    const t = state.live?.last;
    if (!t) {
      el.snapshot.textContent = '';
      return;
    }
    if (!t.version && !(t.cdns && t.cdns.length)) {
      el.snapshot.textContent = 'Waiting for the first ranking…';
      return;
    }
    el.snapshot.innerHTML =
      `snapshot v${esc(t.version)} · ${fmtNum(t.age_seconds, 1)} s old · ${esc(t.regions)} regions` +
      (t.stale ? ' · <span class="stale">stale</span>' : '');
  });
}

// ---- page context -----------------------------------------------------------

/**
 * makeContext is what a page gets: where to render, its route, the shared
 * state, and helpers whose work stops when the page is left.
 */
function makeContext(ctrl, arg, params) {
  const signal = ctrl.signal;
  return {
    root: el.page,
    arg,
    params,
    signal,
    state,
    get live() {
      return state.live;
    },
    service: state.service,
    range: state.range,
    href,
    navigate,
    showError,
    clearError,
    /** api with the page's abort signal. */
    api: (path, opts = {}) => api(path, { signal, ...opts }),
    /** on adds a listener removed when the page is left. */
    on(target, type, fn, opts) {
      target.addEventListener(type, fn, { ...opts, signal });
    },
    /**
     * every runs fn now and then ms after each run ends, only while the
     * tab is visible; a 429 waits out Retry-After. Returns {now()} to run
     * it at once (a change the page wants to see).
     */
    every(ms, fn) {
      let timer = 0;
      let running = false;
      let waiting = false;
      let errId = 0;
      const run = async () => {
        clearTimeout(timer);
        if (signal.aborted) return;
        if (document.hidden) {
          waiting = true;
          return;
        }
        running = true;
        let delay = ms;
        try {
          await fn();
          if (errId) clearError(errId);
          errId = 0;
        } catch (err) {
          if (!isAbort(err)) {
            if (err instanceof ApiError && err.status === 429) delay = Math.max(ms, err.retryAfter * 1000);
            errId = showError(err);
          }
        }
        running = false;
        if (!signal.aborted) timer = setTimeout(run, delay);
      };
      document.addEventListener(
        'visibilitychange',
        () => {
          if (!document.hidden && waiting) {
            waiting = false;
            run();
          }
        },
        { signal },
      );
      signal.addEventListener('abort', () => clearTimeout(timer));
      run();
      return {
        now() {
          if (!running) run();
        },
      };
    },
  };
}

boot();

// The admin API client: every call carries the bearer token; a 401 drops
// the token and asks for a new one; errors keep the API's error and field.

const TOKEN_KEY = 'cdnpilot.token';

// (sessionStorage is absent where the modules are unit-tested, in node.)
let token = (globalThis.sessionStorage && sessionStorage.getItem(TOKEN_KEY)) || '';
let unauthorized = () => {};

export function getToken() {
  return token;
}

export function setToken(t) {
  token = t;
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** onUnauthorized sets what a 401 does (the app reopens the token prompt). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/** reportUnauthorized is for callers that do not go through api (the stream). */
export function reportUnauthorized() {
  unauthorized(new ApiError(401, null, '', 0));
}

/** ApiError is a non-2xx answer: its status and the API's error and field. */
export class ApiError extends Error {
  constructor(status, body, path, retryAfter) {
    const msg = (body && typeof body.error === 'string' && body.error) || `HTTP ${status}`;
    super(msg);
    this.name = 'ApiError';
    this.status = status;
    this.field = (body && body.field) || '';
    this.path = path;
    this.retryAfter = Number(retryAfter) || 0;
  }
}

export function isAbort(err) {
  return err && (err.name === 'AbortError' || err.name === 'TimeoutError');
}

/** authHeaders are the headers every API request carries. */
export function authHeaders(extra = {}) {
  return { Authorization: 'Bearer ' + token, ...extra };
}

/**
 * api calls the admin API. query: an object whose empty values are left
 * out; body: sent as JSON. Resolves to the decoded answer; rejects with
 * ApiError on a non-2xx status.
 */
export async function api(path, { method = 'GET', query, body, signal } = {}) {
  const url = new URL(path, location.origin);
  if (query) {
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, String(v));
    }
  }
  const headers = authHeaders({ Accept: 'application/json' });
  const init = { method, headers, signal, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data, url.pathname, res.headers.get('Retry-After'));
    if (res.status === 401) unauthorized(err);
    throw err;
  }
  return data;
}

let worker = null;
let workerSeq = 0;
const pending = new Map();

/**
 * rankings fetches GET /api/v1/rankings in a worker (parsed off the main
 * thread, figures left out); it falls back to api() where workers fail.
 */
export function rankings(query, signal) {
  const url = new URL('/api/v1/rankings', location.origin);
  for (const [k, v] of Object.entries(query)) if (v) url.searchParams.set(k, String(v));
  // The pages show no window figures: leave them out of the answer.
  url.searchParams.set('stats', 'false');
  if (!worker) {
    try {
      worker = new Worker('/ui/rankings-worker.js');
      worker.onmessage = (e) => {
        const p = pending.get(e.data.id);
        if (!p) return;
        pending.delete(e.data.id);
        p(e.data);
      };
    } catch {
      worker = false;
    }
  }
  if (worker === false) return api(url.pathname + url.search, { signal });
  return new Promise((resolve, reject) => {
    const id = ++workerSeq;
    const onAbort = () => {
      pending.delete(id);
      reject(new DOMException('aborted', 'AbortError'));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    pending.set(id, (m) => {
      signal?.removeEventListener('abort', onAbort);
      if (m.error) return reject(new Error('rankings: ' + m.error));
      if (m.status >= 200 && m.status < 300) return resolve(m.body);
      const err = new ApiError(m.status, m.body, url.pathname, m.retryAfter);
      if (m.status === 401) unauthorized(err);
      reject(err);
    });
    worker.postMessage({ id, url: url.href, token });
  });
}

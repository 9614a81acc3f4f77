// The live feed: GET /api/v1/stream read with fetch (EventSource cannot
// send an Authorization header), parsed as server-sent events, kept as a
// short history that pages read and subscribe to.

import { authHeaders, reportUnauthorized } from './api.js';

/**
 * SSEParser turns text chunks into messages (event, data). It scans each
 * chunk once, so a multi-megabyte hello line costs linear time, and it
 * handles CR, LF and CRLF line ends split across chunks.
 */
export class SSEParser {
  constructor(onMessage, onComment = () => {}) {
    this.onMessage = onMessage;
    this.onComment = onComment;
    this.parts = [];
    this.cr = false;
    this.event = '';
    this.data = [];
    this.retry = 0;
  }

  push(chunk) {
    let pos = 0;
    if (this.cr && chunk.charCodeAt(0) === 10) pos = 1;
    this.cr = false;
    const re = /\r\n|\r|\n/g;
    re.lastIndex = pos;
    let m;
    while ((m = re.exec(chunk)) !== null) {
      let line = chunk.slice(pos, m.index);
      if (this.parts.length) {
        this.parts.push(line);
        line = this.parts.join('');
        this.parts = [];
      }
      pos = m.index + m[0].length;
      if (m[0] === '\r' && pos === chunk.length) this.cr = true;
      this.line(line);
    }
    if (pos < chunk.length) this.parts.push(chunk.slice(pos));
  }

  line(l) {
    if (l === '') {
      if (this.data.length) this.onMessage(this.event || 'message', this.data.join('\n'));
      this.event = '';
      this.data = [];
      return;
    }
    if (l.charCodeAt(0) === 58 /* : */) {
      this.onComment(l.slice(1).trim());
      return;
    }
    const i = l.indexOf(':');
    const field = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? '' : l.slice(i + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'event':
        this.event = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default: // id and unknown fields: not used
    }
  }
}

const WATCHDOG_MS = 15000; // ticks come every second; silence this long is a dead connection
const BACKOFF_MIN = 1000;
const BACKOFF_MAX = 30000;

/**
 * Live follows one service's stream. Events dispatched: "status" (the
 * connection changed), "reset" (a hello replaced the history), "tick",
 * "event" (detail: the Tick or Event).
 *
 * status: connecting, live, reconnecting, unavailable (the server has no
 * stream endpoint), stopped.
 */
export class Live extends EventTarget {
  constructor(service, backlogSeconds) {
    super();
    this.service = service;
    this.backlog = backlogSeconds;
    this.status = 'connecting';
    this.resolution = 1;
    this.ticks = [];
    this.events = [];
    this.last = null; // the latest tick
    this.stopped = false;
    this.ctrl = null;
    this.stopCtrl = new AbortController();
  }

  /** hasSnapshot: the service has a ranking snapshot (the API will not answer 503). */
  get hasSnapshot() {
    return !!(this.last && (this.last.version > 0 || (this.last.cdns && this.last.cdns.length)));
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    this.stopCtrl.abort();
    this.ctrl?.abort();
    this.setStatus('stopped');
  }

  setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this.dispatchEvent(new CustomEvent('status', { detail: s }));
  }

  async run() {
    let backoff = BACKOFF_MIN;
    while (!this.stopped) {
      const ctrl = new AbortController();
      this.ctrl = ctrl;
      let lastData = Date.now();
      const dog = setInterval(() => {
        if (Date.now() - lastData > WATCHDOG_MS) ctrl.abort();
      }, 2000);
      let wait = backoff;
      try {
        const url = new URL('/api/v1/stream', location.origin);
        url.searchParams.set('service', this.service);
        url.searchParams.set('backlog', String(this.backlog));
        const res = await fetch(url, {
          headers: authHeaders({ Accept: 'text/event-stream' }),
          signal: ctrl.signal,
          cache: 'no-store',
        });
        if (res.status === 401) {
          reportUnauthorized();
          this.stop();
          return;
        }
        if (!res.ok || !res.body) {
          await res.body?.cancel().catch(() => {});
          // No stream endpoint (an older server) or a refusal: try again,
          // slowly; the pages fall back to polling meanwhile.
          this.setStatus(res.status === 404 || res.status === 403 ? 'unavailable' : 'reconnecting');
          wait = res.status === 404 || res.status === 403 ? BACKOFF_MAX : backoff;
          throw new Error('stream: HTTP ' + res.status);
        }
        const parser = new SSEParser(
          (event, data) => {
            if (this.onMessage(event, data)) backoff = BACKOFF_MIN;
          },
          () => {},
        );
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          lastData = Date.now();
          parser.push(value);
        }
        if (parser.retry) wait = Math.max(parser.retry, BACKOFF_MIN);
      } catch {
        // Aborted, network error or a refusal: reconnect below.
      } finally {
        clearInterval(dog);
      }
      if (this.stopped) return;
      if (this.status !== 'unavailable') this.setStatus('reconnecting');
      await sleepAbortable(wait, this.stopCtrl.signal);
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
    }
  }

  /** onMessage applies one message; true when it was a hello (a good connection). */
  onMessage(event, data) {
    let v;
    try {
      v = JSON.parse(data);
    } catch {
      return false;
    }
    switch (event) {
      case 'hello':
        this.resolution = v.resolution_seconds || 1;
        this.ticks = Array.isArray(v.ticks) ? v.ticks : [];
        this.events = Array.isArray(v.events) ? v.events : [];
        this.last = this.ticks.length ? this.ticks[this.ticks.length - 1] : this.last;
        this.setStatus('live');
        this.dispatchEvent(new CustomEvent('reset'));
        return true;
      case 'tick':
        this.addTick(v);
        this.dispatchEvent(new CustomEvent('tick', { detail: v }));
        return false;
      case 'event':
        this.events.push(v);
        if (this.events.length > 2000) this.events.splice(0, this.events.length - 2000);
        this.dispatchEvent(new CustomEvent('event', { detail: v }));
        return false;
      default:
        return false;
    }
  }

  addTick(t) {
    this.last = t;
    const ticks = this.ticks;
    // At a coarse resolution (long backlogs) the newest point is replaced
    // until a whole step has passed, so the history keeps its spacing.
    if (this.resolution > 1 && ticks.length > 1) {
      const prev = Date.parse(ticks[ticks.length - 2].at);
      if (Date.parse(t.at) - prev < this.resolution * 1000) {
        ticks[ticks.length - 1] = t;
        return;
      }
    }
    ticks.push(t);
    const cutoff = Date.parse(t.at) - this.backlog * 1000;
    let drop = 0;
    while (drop < ticks.length && Date.parse(ticks[drop].at) < cutoff) drop++;
    if (drop) ticks.splice(0, drop);
  }
}

function sleepAbortable(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

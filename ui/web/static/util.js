// Small helpers shared by the pages: HTML escaping, number and time
// formatting, the time ranges and the colours of CDNs.

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** esc makes any value safe inside HTML text and double-quoted attributes. */
export function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
}

export function fmtNum(v, digits = 1) {
  if (v == null || !Number.isFinite(v)) return '–';
  return v.toFixed(digits);
}

/** fmtScore shows a QoE score; -1 is "no data". */
export function fmtScore(v) {
  return v == null || v < 0 ? '–' : v.toFixed(1);
}

export function fmtPct(share, digits = 1) {
  if (share == null || !Number.isFinite(share)) return '–';
  return (share * 100).toFixed(digits) + '%';
}

export function fmtRate(v) {
  if (v == null || !Number.isFinite(v)) return '–';
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});

export function fmtTime(t) {
  const d = t instanceof Date ? t : new Date(t);
  return Number.isNaN(d.getTime()) ? '–' : timeFmt.format(d);
}

export function fmtDateTime(t) {
  if (!t) return '–';
  const d = t instanceof Date ? t : new Date(t);
  return Number.isNaN(d.getTime()) ? '–' : dateTimeFmt.format(d);
}

/** fmtRelative says how long ago (negative: how long until) in words. */
export function fmtRelative(t, now = Date.now()) {
  const d = (new Date(t).getTime() - now) / 1000;
  const a = Math.abs(d);
  let s;
  if (a < 60) s = `${Math.round(a)} s`;
  else if (a < 3600) s = `${Math.round(a / 60)} min`;
  else if (a < 86400) s = `${(a / 3600).toFixed(1)} h`;
  else s = `${(a / 86400).toFixed(1)} d`;
  return d < 0 ? `${s} ago` : `in ${s}`;
}

/** The time ranges of the picker: seconds, the series step, and the step in seconds. */
export const RANGES = {
  '5m': { seconds: 300, step: '1m', stepSeconds: 60 },
  '15m': { seconds: 900, step: '1m', stepSeconds: 60 },
  '1h': { seconds: 3600, step: '1m', stepSeconds: 60 },
  '6h': { seconds: 21600, step: '1m', stepSeconds: 60 },
  '24h': { seconds: 86400, step: '5m', stepSeconds: 300 },
};
export const DEFAULT_RANGE = '15m';

/**
 * seriesWindow is the from/to of a qoe/series query for a range: whole
 * steps, ending with the step that holds now (the API's to is exclusive).
 */
export function seriesWindow(rangeKey, now = Date.now()) {
  const r = RANGES[rangeKey] || RANGES[DEFAULT_RANGE];
  const stepMs = r.stepSeconds * 1000;
  const to = Math.floor(now / stepMs) * stepMs + stepMs;
  const from = to - Math.ceil(r.seconds / r.stepSeconds) * stepMs;
  return { from: new Date(from).toISOString(), to: new Date(to).toISOString(), step: r.step, stepSeconds: r.stepSeconds };
}

/** toRFC3339 turns a datetime-local value (local time) into RFC 3339 UTC. */
export function localToRFC3339(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** rfc3339ToLocal is the inverse, for filling a datetime-local input. */
export function rfc3339ToLocal(v) {
  if (!v) return '';
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function minutesFromNow(min) {
  return new Date(Date.now() + min * 60000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// Okabe-Ito, the colour-blind-safe qualitative palette, then golden-angle
// hues for catalogs larger than eight CDNs.
const OKABE_ITO = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#7f7f7f'];
const cdnIndex = new Map();

/** setCDNs fixes the colour of each CDN by its place in the catalog. */
export function setCDNs(names) {
  for (const n of names) if (!cdnIndex.has(n)) cdnIndex.set(n, cdnIndex.size);
}

export function cdnColor(name) {
  if (!cdnIndex.has(name)) cdnIndex.set(name, cdnIndex.size);
  const i = cdnIndex.get(name);
  if (i < OKABE_ITO.length) return OKABE_ITO[i];
  const hue = Math.round((i * 137.508) % 360);
  return `hsl(${hue} 65% 50%)`;
}

/** scoreClass bins a QoE score for the colour scale (s0: no data). */
export function scoreClass(score) {
  if (score == null || score < 0) return 's0';
  if (score < 50) return 's1';
  if (score < 70) return 's2';
  if (score < 80) return 's3';
  if (score < 90) return 's4';
  return 's5';
}

export const HEALTH_BAD = new Set(['down', 'banned', 'evacuated']);
export const HEALTH_WARN = new Set(['suppressed', 'probation', 'drained', 'unknown']);

export function healthClass(h) {
  if (h === 'up') return 'h-up';
  if (HEALTH_BAD.has(h)) return 'h-bad';
  return 'h-warn';
}

/** scopeLabel writes a Scope like the API's scope strings: vod/eu-west/AS3320. */
export function scopeLabel(s) {
  if (!s) return '';
  let out = s.service || '';
  if (s.level === 'country' && s.country) out += '/' + s.country;
  if (s.region) out += '/' + s.region;
  if (s.asn) out += '/AS' + s.asn;
  return out;
}

/** debounce runs fn once, ms after the last call. */
export function debounce(fn, ms) {
  let t = 0;
  const d = (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

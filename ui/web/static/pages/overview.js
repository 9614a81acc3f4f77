// #/overview: one service at a glance.
//
//   traffic share      GET /api/v1/qoe/series?metric=views&group_by=cdn (every 10 s)
//   views per second   the same answer, summed over CDNs / step
//   decisions/s        GET /api/v1/decisions/rate (every 10 s; absent server: empty)
//   score and weight   the stream's ticks (hello history, then one a second)
//   live CDN table     the stream's latest tick
//   events and marks   the stream's events
//
// Charts are made once and fed with setData; the DOM is written once per
// animation frame, whatever arrived since.

import { ApiError } from '../api.js';
import { Chart, MARK_STYLE } from '../charts.js';
import { RANGES, cdnColor, esc, fmtPct, fmtRate, fmtScore, fmtTime, healthClass, seriesWindow } from '../util.js';
import { paintSwatches } from './shared.js';

const PROTOCOLS = ['dns', 'http', 'hls', 'dash'];
const RATE_SERIES = [
  { label: 'views/s', color: '#0072B2', width: 2.5 },
  { label: 'dns', color: '#E69F00', width: 1.5 },
  { label: 'http', color: '#009E73', width: 1.5, dash: [6, 3] },
  { label: 'hls', color: '#CC79A7', width: 1.5, dash: [2, 3] },
  { label: 'dash', color: '#D55E00', width: 1.5, dash: [8, 3, 2, 3] },
];
const EVENT_LABEL = {
  failover: 'failover',
  recovery: 'recovery',
  leader_change: 'leader change',
  override_created: 'override created',
  override_extended: 'override extended',
  override_deleted: 'override deleted',
  override_expired: 'override expired',
  snapshot_stale: 'snapshot stale',
  snapshot_fresh: 'snapshot fresh',
};
const MAX_EVENTS_SHOWN = 100;

export function mount(ctx) {
  const service = ctx.service;
  const rangeKey = ctx.range;
  const range = RANGES[rangeKey];
  const live = ctx.live;
  let metric = ctx.params.get('live') === 'weight' ? 'weight' : 'score';
  const names = [...(ctx.state.cdnsByService.get(service) || [])];

  ctx.root.innerHTML = `
    <div class="page-head">
      <h1>Overview <small>${esc(service)} · last ${esc(rangeKey)}</small></h1>
    </div>
    <div class="grid">
      <section class="card full" aria-labelledby="ov-cdns">
        <h2 id="ov-cdns">CDNs <small>live, service-wide ranking</small></h2>
        <div class="scroll tall">
          <table data-testid="live-cdns">
            <thead><tr>
              <th scope="col">CDN</th>
              <th scope="col" class="num" title="Share of new views">Weight</th>
              <th scope="col" class="num">Score</th>
              <th scope="col" class="num">Confidence</th>
              <th scope="col">Health</th>
              <th scope="col" class="num" title="Region scopes where the CDN leads">Regions led</th>
              <th scope="col" class="num" title="Region scopes where the CDN is down or banned">Regions down</th>
            </tr></thead>
            <tbody></tbody>
          </table>
          <p class="empty" data-live-empty>Waiting for the first ranking…</p>
        </div>
      </section>
      <section class="card" aria-labelledby="ov-share">
        <h2 id="ov-share">Traffic share by CDN <small>% of views per ${esc(range.step)}</small></h2>
        <div class="chart" data-testid="share-chart"></div>
      </section>
      <section class="card" aria-labelledby="ov-score">
        <h2 id="ov-score">By CDN, live
          <label class="inline right">Show
            <select name="live-metric">
              <option value="score"${metric === 'score' ? ' selected' : ''}>QoE score</option>
              <option value="weight"${metric === 'weight' ? ' selected' : ''}>Weight (% of new views)</option>
            </select>
          </label>
        </h2>
        <div class="chart" data-testid="score-chart"></div>
      </section>
      <section class="card" aria-labelledby="ov-rate">
        <h2 id="ov-rate">Views and steering decisions per second</h2>
        <div class="chart" data-testid="rate-chart"></div>
        <p class="muted" data-rate-note hidden></p>
      </section>
      <section class="card" aria-labelledby="ov-events">
        <h2 id="ov-events">Recent events</h2>
        <ul class="events" data-testid="events"></ul>
        <p class="empty" data-events-empty>No events in this range.</p>
      </section>
    </div>
    <p class="marks-legend" aria-label="Marks on the time axis">
      <span class="m m-failover">failover</span><span class="m m-recovery">recovery</span>
      <span class="m m-override dashed">override change</span>
    </p>`;

  const q = (s) => ctx.root.querySelector(s);
  const tbody = q('table[data-testid=live-cdns] tbody');
  const liveEmpty = q('[data-live-empty]');
  const eventsList = q('[data-testid=events]');
  const eventsEmpty = q('[data-events-empty]');
  const rateNote = q('[data-rate-note]');

  // Server time: the stream's clock, so the live charts end at the newest tick.
  let skew = 0;
  const now = () => Date.now() + skew;
  const win = { from: 0, to: 0 };
  const moveWindow = () => {
    win.to = now() / 1000;
    win.from = win.to - range.seconds;
  };
  moveWindow();

  // Marks: the stream's failovers and override changes.
  let marks = [];
  const rebuildMarks = () => {
    marks = [];
    for (const e of live?.events || []) {
      const st = MARK_STYLE[e.kind];
      if (st) marks.push({ t: Date.parse(e.at) / 1000, color: st.color, dash: st.dash });
    }
  };
  const getMarks = () => marks;

  const makeLiveChart = () =>
    new Chart(q('[data-testid=score-chart]'), {
      series: names.map((n) => ({ label: n, color: cdnColor(n) })),
      yMin: 0,
      yMax: 100,
      yFmt: metric === 'weight' ? (v) => v.toFixed(0) + '%' : (v) => v.toFixed(0),
      win,
      marks: getMarks,
    });
  const makeShareChart = (keys) =>
    new Chart(q('[data-testid=share-chart]'), {
      series: keys.map((n) => ({ label: n, color: cdnColor(n), width: 1 })),
      stacked: true,
      yMin: 0,
      yMax: 100,
      yFmt: (v) => v.toFixed(0) + '%',
      win,
      marks: getMarks,
    });
  let scoreChart = makeLiveChart();
  let shareChart = makeShareChart(names);
  const rateChart = new Chart(q('[data-testid=rate-chart]'), {
    series: RATE_SERIES,
    yMin: 0,
    yFmt: fmtRate,
    win,
    marks: getMarks,
  });

  ctx.on(q('select[name=live-metric]'), 'change', (e) => {
    metric = e.target.value;
    // The axis format changes with the metric: a new chart, once.
    scoreChart.destroy();
    scoreChart = makeLiveChart();
    rebuildLive();
    dirty.force = true;
    schedule();
    history.replaceState(null, '', ctx.href('overview', { live: metric === 'weight' ? 'weight' : '' }));
  });

  // ---- live columns, from the stream ----
  let xs = [];
  let cols = new Map(); // cdn -> {score: [], weight: []}
  const colOf = (n) => {
    let c = cols.get(n);
    if (!c) {
      c = { score: new Array(xs.length).fill(null), weight: new Array(xs.length).fill(null) };
      cols.set(n, c);
    }
    return c;
  };
  const putTick = (t, at) => {
    const seen = new Set();
    for (const c of t.cdns || []) {
      if (!names.includes(c.cdn)) {
        names.push(c.cdn);
        dirty.newCDN = true;
      }
      const col = colOf(c.cdn);
      col.score[at] = c.score < 0 ? null : c.score;
      col.weight[at] = c.weight * 100;
      seen.add(c.cdn);
    }
    for (const [n, col] of cols) {
      if (!seen.has(n)) {
        col.score[at] = null;
        col.weight[at] = null;
      }
    }
  };
  // At most ~900 points a line: one per bin, the newest tick of the bin.
  const MAX_POINTS = 900;
  const bin = () => Math.max(live?.resolution || 1, Math.ceil(range.seconds / MAX_POINTS));
  const rebuildLive = () => {
    xs = [];
    cols = new Map();
    for (const n of names) colOf(n);
    for (const t of live?.ticks || []) appendTick(t, false);
    trim();
  };
  const appendTick = (t, drop = true) => {
    const x = Date.parse(t.at) / 1000;
    let at;
    if (xs.length > 1 && x - xs[xs.length - 2] < bin()) {
      at = xs.length - 1;
      xs[at] = x;
    } else {
      xs.push(x);
      at = xs.length - 1;
      for (const col of cols.values()) {
        col.score.push(null);
        col.weight.push(null);
      }
    }
    putTick(t, at);
    if (drop) trim();
  };
  // trim drops what scrolled out of the window.
  const trim = () => {
    if (!xs.length) return;
    const cutoff = xs[xs.length - 1] - range.seconds;
    let drop = 0;
    while (drop < xs.length - 1 && xs[drop] < cutoff) drop++;
    if (drop) {
      xs.splice(0, drop);
      for (const col of cols.values()) {
        col.score.splice(0, drop);
        col.weight.splice(0, drop);
      }
    }
  };

  // ---- DOM writes: once per frame; charts only when it shows ----
  // A chart is redrawn when its time axis has moved by a pixel or more (at
  // most once a second), each chart in a task of its own, so no one task
  // carries a whole tick's work.
  const dirty = { live: false, force: false, table: false, events: false, newCDN: false };
  let frame = 0;
  let chartTimer = 0;
  let lastDraw = 0;
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(flush);
  };
  const pixelMs = () => Math.max(1000, (range.seconds * 1000) / Math.max(100, scoreChart.u.width - 70));
  function flush() {
    frame = 0;
    if (dirty.table) renderTable(live?.last);
    if (dirty.events) renderEvents();
    dirty.table = dirty.events = false;
    const due = lastDraw + pixelMs() - Date.now();
    if (dirty.force || due <= 0) drawCharts();
    else if (!chartTimer) chartTimer = setTimeout(() => requestAnimationFrame(drawCharts), due);
  }
  function drawCharts() {
    clearTimeout(chartTimer);
    chartTimer = 0;
    lastDraw = Date.now();
    let fresh = dirty.live || dirty.force;
    dirty.live = dirty.force = false;
    moveWindow();
    if (dirty.newCDN) {
      dirty.newCDN = false;
      scoreChart.destroy();
      scoreChart = makeLiveChart();
      fresh = true;
    }
    inTasks(ctx.signal, [
      () => {
        if (!fresh) return scoreChart.scroll();
        const ys = names.map((n) => (metric === 'weight' ? colOf(n).weight : colOf(n).score));
        scoreChart.setData(xs, ys);
        scoreChart.setEmpty(xs.length ? '' : 'No data yet in this range');
      },
      () => shareChart.scroll(),
      () => rateChart.scroll(),
    ]);
  }

  // ---- live table ----
  let rowOrder = '';
  let rowRefs = new Map();
  function renderTable(t) {
    const cdns = (t?.cdns || []).slice();
    liveEmpty.hidden = cdns.length > 0;
    if (!cdns.length) {
      liveEmpty.textContent =
        live?.status === 'unavailable' ? 'No live stream on this server, and no ranking yet.' : 'Waiting for the first ranking…';
      if (rowOrder) tbody.replaceChildren();
      rowOrder = '';
      return;
    }
    cdns.sort((a, b) => idx(a.cdn) - idx(b.cdn));
    const order = cdns.map((c) => c.cdn).join('\u0000');
    if (order !== rowOrder) {
      tbody.innerHTML = cdns
        .map(
          (c) => `<tr data-cdn="${esc(c.cdn)}">
          <th scope="row"><span class="swatch" data-color="${esc(cdnColor(c.cdn))}"></span><a href="${esc(ctx.href('cdn', {}, c.cdn))}">${esc(c.cdn)}</a></th>
          <td class="num" data-k="weight"></td><td class="num" data-k="score"></td><td class="num" data-k="confidence"></td>
          <td data-k="health"><span class="badge"></span></td><td class="num" data-k="leads"></td><td class="num" data-k="down"></td></tr>`,
        )
        .join('');
      paintSwatches(tbody);
      rowRefs = new Map();
      for (const tr of tbody.rows) {
        const cells = {};
        for (const td of tr.querySelectorAll('td[data-k]')) cells[td.dataset.k] = td;
        cells.badge = cells.health.firstElementChild;
        rowRefs.set(tr.dataset.cdn, { cells, last: {} });
      }
      rowOrder = order;
    }
    for (const c of cdns) {
      const r = rowRefs.get(c.cdn);
      if (!r) continue;
      set(r, 'weight', fmtPct(c.weight));
      set(r, 'score', fmtScore(c.score));
      set(r, 'confidence', c.confidence == null ? '–' : c.confidence.toFixed(2));
      set(r, 'leads', c.leads == null ? '–' : String(c.leads));
      set(r, 'down', c.down == null ? '–' : String(c.down));
      if (r.last.health !== c.health) {
        r.last.health = c.health;
        r.cells.badge.textContent = c.health;
        r.cells.badge.className = 'badge ' + healthClass(c.health);
      }
    }
  }
  const idx = (n) => {
    const i = names.indexOf(n);
    return i < 0 ? 1e9 : i;
  };
  function set(r, k, text) {
    if (r.last[k] === text) return;
    r.last[k] = text;
    r.cells[k].textContent = text;
  }

  // ---- events ----
  function renderEvents() {
    const evs = (live?.events || []).slice(-MAX_EVENTS_SHOWN).reverse();
    eventsEmpty.hidden = evs.length > 0;
    eventsList.innerHTML = evs
      .map((e) => {
        const kind = e.kind.startsWith('override_') ? 'override' : e.kind;
        const who = e.cdn ? (e.from ? `${esc(e.cdn)} ← ${esc(e.from)}` : esc(e.cdn)) : e.from ? `from ${esc(e.from)}` : '';
        return `<li data-kind="${esc(e.kind)}"><time datetime="${esc(e.at)}">${fmtTime(e.at)}</time>
          <span class="kind-${esc(kind)}">${esc(EVENT_LABEL[e.kind] || e.kind)}</span>
          <span>${esc(e.scope || e.service || '')}${who ? ' · ' + who : ''}${e.detail ? ` <span class="muted">— ${esc(e.detail)}</span>` : ''}</span></li>`;
      })
      .join('');
  }

  // ---- stream wiring ----
  const onReset = () => {
    const last = live.last;
    if (last) skew = Date.parse(last.at) - Date.now();
    rebuildLive();
    rebuildMarks();
    dirty.force = dirty.table = dirty.events = true;
    schedule();
  };
  if (live) {
    ctx.on(live, 'reset', onReset);
    ctx.on(live, 'tick', (e) => {
      skew = Date.parse(e.detail.at) - Date.now();
      appendTick(e.detail);
      dirty.live = dirty.table = true;
      schedule();
    });
    ctx.on(live, 'event', () => {
      rebuildMarks();
      dirty.events = true;
      dirty.force = true; // draw the new mark now
      schedule();
    });
    ctx.on(live, 'status', () => {
      dirty.table = true;
      schedule();
    });
    onReset();
  }
  // Without ticks (no stream), the window still moves.
  const scroller = setInterval(() => {
    if (live?.status === 'live') return;
    schedule();
  }, 5000);

  // ---- series, every 10 s ----
  let rateMissingUntil = 0;
  let shareEmpty = false;
  const seriesPoll = ctx.every(10000, async () => {
    const w = seriesWindow(rangeKey, now());
    const grid = [];
    for (let t = Date.parse(w.from); t < Date.parse(w.to); t += w.stepSeconds * 1000) grid.push(t / 1000);
    const [views, rate] = await Promise.all([
      ctx.api('/api/v1/qoe/series', {
        query: { metric: 'views', service, group_by: 'cdn', from: w.from, to: w.to, step: w.step },
      }),
      fetchRate(w),
      live?.status === 'unavailable' ? fetchCDNsFallback() : null,
    ]);
    renderShare(grid, views);
    await nextTask();
    renderRate(grid, w, views, rate);
    // A demo just started has no minute stored yet: look again soon
    // rather than in 10 s, so the charts fill while the operator watches.
    if (shareEmpty) {
      const t = setTimeout(() => seriesPoll.now(), 1000);
      ctx.signal.addEventListener('abort', () => clearTimeout(t), { once: true });
    }
  });

  async function fetchRate(w) {
    if (Date.now() < rateMissingUntil) return null;
    try {
      return await ctx.api('/api/v1/decisions/rate', { query: { service, from: w.from, to: w.to, step: w.step } });
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        // Not on this server (yet): ask again in a minute, say so quietly.
        rateMissingUntil = Date.now() + 60000;
        rateNote.hidden = false;
        rateNote.textContent = 'Decisions per second are not available from this server.';
        return null;
      }
      throw err;
    }
  }

  // With no stream, the table follows GET /api/v1/cdns instead.
  async function fetchCDNsFallback() {
    const res = await ctx.api('/api/v1/cdns');
    const cdns = [];
    for (const c of res.cdns || []) {
      const s = (c.services || []).find((x) => x.service === service);
      if (s) cdns.push({ cdn: c.name, weight: s.weight, score: s.score, confidence: null, health: s.health, leads: null, down: null });
    }
    renderTable({ cdns });
  }

  function bucketTotals(grid, views) {
    const pos = new Map(grid.map((t, i) => [t, i]));
    const per = new Map();
    const total = new Array(grid.length).fill(0);
    for (const line of views?.series || []) {
      const arr = new Array(grid.length).fill(0);
      for (const p of line.points) {
        const i = pos.get(Date.parse(p.t) / 1000);
        if (i === undefined) continue;
        arr[i] += p.v;
        total[i] += p.v;
      }
      per.set(line.key, arr);
    }
    return { per, total };
  }

  function renderShare(grid, views) {
    const { per, total } = bucketTotals(grid, views);
    const keys = [...names];
    for (const k of per.keys()) if (!keys.includes(k)) keys.push(k);
    if (!shareChart.sameSeries(keys)) {
      shareChart.destroy();
      shareChart = makeShareChart(keys);
    }
    const ys = keys.map((k) => {
      const arr = per.get(k);
      return total.map((tot, i) => (tot > 0 ? ((arr ? arr[i] : 0) / tot) * 100 : null));
    });
    shareChart.setData(grid, ys);
    shareEmpty = !total.some((v) => v > 0);
    shareChart.setEmpty(shareEmpty ? 'No data yet in this range' : '');
  }

  function renderRate(grid, w, views, rate) {
    const { total } = bucketTotals(grid, views);
    const nowS = now() / 1000;
    const step = w.stepSeconds;
    // The newest bucket is still filling: divide by the time it has run.
    const secs = (t) => Math.min(step, nowS - t);
    const viewsRate = grid.map((t, i) => {
      const s = secs(t);
      return s < 10 ? null : total[i] / s;
    });
    const ys = [viewsRate];
    const pos = new Map(grid.map((t, i) => [t, i]));
    for (const proto of PROTOCOLS) {
      const line = rate?.protocols?.find((p) => p.protocol === proto);
      if (!line) {
        ys.push(grid.map(() => null));
        continue;
      }
      const arr = grid.map((t) => (secs(t) < 10 ? null : 0));
      for (const p of line.points || []) {
        const t = Date.parse(p.t) / 1000;
        const i = pos.get(t);
        if (i === undefined) continue;
        const s = secs(t);
        // The server already divides the bucket still filling by the
        // seconds it has had.
        arr[i] = s < 10 ? null : p.per_second;
      }
      ys.push(arr);
    }
    if (rate) rateNote.hidden = true;
    rateChart.setData(grid, ys);
    const any = ys.some((y) => y.some((v) => v));
    rateChart.setEmpty(any ? '' : 'No data yet in this range');
  }

  return () => {
    cancelAnimationFrame(frame);
    clearTimeout(chartTimer);
    clearInterval(scroller);
    scoreChart.destroy();
    shareChart.destroy();
    rateChart.destroy();
  };
}

/** inTasks runs each function in a task of its own (a chart's redraw is one). */
function inTasks(signal, fns) {
  let i = 0;
  const next = () => {
    if (i >= fns.length || signal.aborted) return;
    const fn = fns[i++];
    try {
      fn();
    } finally {
      if (i < fns.length) setTimeout(next, 0);
    }
  };
  next();
}

function nextTask() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

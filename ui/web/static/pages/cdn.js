// #/cdn/:name: one CDN's QoE over time, service-wide or in one region,
// from GET /api/v1/qoe/series with cdn= (and region=), every 15 s. The
// region list and the top-5 regions come from one views query grouped by
// region with a single bucket; its current state from GET /api/v1/cdns
// (all regions) or GET /api/v1/rankings?region= (one region).

import { ApiError } from '../api.js';
import { Chart, MARK_STYLE } from '../charts.js';
import { RANGES, esc, fmtPct, fmtScore, healthClass, scopeLabel, seriesWindow } from '../util.js';
import { rankingsReady } from './shared.js';

const METRICS = [
  { key: 'startup', title: 'Startup time', unit: 'ms', metrics: ['startup_p50_ms', 'startup_p90_ms'], fmt: (v) => v.toFixed(0) },
  { key: 'rebuffer', title: 'Rebuffering', unit: '% of play time', metrics: ['rebuffer_pct'], fmt: (v) => fmtPctValue(v) },
  { key: 'failure', title: 'Failures', unit: '% of play attempts', metrics: ['failure_pct'], fmt: (v) => fmtPctValue(v) },
  { key: 'throughput', title: 'Throughput p50', unit: 'kbps', metrics: ['throughput_p50_kbps'], fmt: (v) => v.toFixed(0) },
];
/** fmtPctValue writes a percentage with the decimals its size needs. */
function fmtPctValue(v) {
  const a = Math.abs(v);
  return (a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2)) + '%';
}

const LINE = { startup_p50_ms: 'p50', startup_p90_ms: 'p90' };
const MAIN_COLORS = ['#0072B2', '#56B4E9'];
const REGION_COLORS = ['#E69F00', '#009E73', '#CC79A7', '#D55E00', '#7f7f7f'];

export function mount(ctx) {
  const name = ctx.arg;
  const service = ctx.service;
  const rangeKey = ctx.range;
  const range = RANGES[rangeKey];
  const region = ctx.params.get('region') || '';
  const top = !region && ctx.params.get('top') === '1';
  const catalog = ctx.state.cdns.find((c) => c.name === name);

  ctx.root.innerHTML = `
    <div data-testid="cdn-detail" data-cdn="${esc(name)}">
      <div class="page-head">
        <h1>CDN ${esc(name)} <small>${esc(catalog?.host || '')} · ${esc(service)} · ${region ? esc(region) : 'all regions'} · last ${esc(rangeKey)}</small></h1>
        <span class="spacer"></span>
        <label class="inline">Region <select name="region"><option value="">All regions</option></select></label>
        <label class="inline"><input type="checkbox" name="top"${top ? ' checked' : ''}${region ? ' disabled' : ''}> Top 5 regions by views</label>
      </div>
      ${catalog ? '' : `<p class="empty">${esc(name)} is not a CDN of the catalog.</p>`}
      <section class="card" aria-labelledby="cdn-state"><h2 id="cdn-state">Now</h2><div data-state><p class="loading">Loading…</p></div></section>
      <div class="grid spaced">
        ${METRICS.map(
          (m) => `<section class="card" aria-labelledby="cdn-${m.key}">
            <h2 id="cdn-${m.key}">${esc(m.title)} <small>${esc(m.unit)}</small></h2>
            <div class="chart" data-chart="${m.key}"></div></section>`,
        ).join('')}
      </div>
    </div>`;
  const q = (s) => ctx.root.querySelector(s);
  const regionSelect = q('select[name=region]');
  const stateBox = q('[data-state]');
  ctx.on(regionSelect, 'change', () => ctx.navigate({ region: regionSelect.value, top: '' }));
  ctx.on(q('input[name=top]'), 'change', (e) => ctx.navigate({ top: e.target.checked ? '1' : '' }));

  const now = () => Date.now();
  const win = { from: 0, to: 0 };
  const moveWindow = () => {
    win.to = now() / 1000;
    win.from = win.to - range.seconds;
  };
  moveWindow();
  const marks = () =>
    (ctx.live?.events || [])
      .filter((e) => MARK_STYLE[e.kind] && (e.cdn === name || e.from === name) && (!region || (e.scope || '').includes('/' + region)))
      .map((e) => ({ t: Date.parse(e.at) / 1000, color: MARK_STYLE[e.kind].color, dash: MARK_STYLE[e.kind].dash }));

  const charts = new Map(); // key -> Chart
  const chartFor = (m, labels, colors) => {
    let c = charts.get(m.key);
    if (c && c.sameSeries(labels)) return c;
    c?.destroy();
    c = new Chart(q(`[data-chart="${m.key}"]`), {
      series: labels.map((l, i) => ({ label: l, color: colors[i], width: i < m.metrics.length ? 2 : 1.5, dash: i === 1 && m.metrics.length > 1 ? [6, 3] : undefined })),
      yMin: 0,
      yFmt: m.fmt,
      win,
      marks,
      sync: 'cdn',
    });
    charts.set(m.key, c);
    return c;
  };
  const ticker = setInterval(() => {
    moveWindow();
    for (const c of charts.values()) c.scroll();
  }, 5000);

  ctx.every(15000, async () => {
    const w = seriesWindow(rangeKey);
    const spanMin = Math.round((Date.parse(w.to) - Date.parse(w.from)) / 60000);
    const base = { service, cdn: name, from: w.from, to: w.to };
    const metricNames = METRICS.flatMap((m) => m.metrics);
    const [byRegion, lines, regionLines] = await Promise.all([
      // One bucket over the whole range: views per region.
      ctx.api('/api/v1/qoe/series', { query: { ...base, metric: 'views', group_by: 'region', step: spanMin + 'm' } }),
      Promise.all(metricNames.map((metric) => ctx.api('/api/v1/qoe/series', { query: { ...base, metric, region, step: w.step } }))),
      top
        ? Promise.all(
            METRICS.map((m) => ctx.api('/api/v1/qoe/series', { query: { ...base, metric: m.metrics[0], group_by: 'region', step: w.step } })),
          )
        : null,
      renderState(),
    ]);
    const views = new Map();
    for (const l of byRegion.series || []) views.set(l.key, l.points.reduce((s, p) => s + p.v, 0));
    fillRegions([...views.keys()]);
    const topRegions = [...views.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([k]) => k);

    moveWindow();
    const grid = [];
    for (let t = Date.parse(w.from); t < Date.parse(w.to); t += w.stepSeconds * 1000) grid.push(t / 1000);
    const pos = new Map(grid.map((t, i) => [t, i]));
    const toArr = (points) => {
      const a = new Array(grid.length).fill(null);
      for (const p of points || []) {
        const i = pos.get(Date.parse(p.t) / 1000);
        if (i !== undefined) a[i] = p.v < 0 ? null : p.v;
      }
      return a;
    };
    const byMetric = new Map(metricNames.map((m, i) => [m, lines[i].series?.[0]?.points || []]));
    METRICS.forEach((m, mi) => {
      const where = region || 'all regions';
      const labels = m.metrics.map((x) => (LINE[x] ? `${LINE[x]} ${where}` : where));
      const colors = [...MAIN_COLORS.slice(0, m.metrics.length)];
      const ys = m.metrics.map((x) => toArr(byMetric.get(x)));
      if (regionLines) {
        const rl = new Map((regionLines[mi].series || []).map((l) => [l.key, l.points]));
        topRegions.forEach((r, i) => {
          labels.push(m.metrics.length > 1 ? `p50 ${r}` : r);
          colors.push(REGION_COLORS[i]);
          ys.push(toArr(rl.get(r)));
        });
      }
      const c = chartFor(m, labels, colors);
      c.setData(grid, ys);
      c.setEmpty(ys.some((y) => y.some((v) => v != null)) ? '' : 'No data yet in this range');
    });
  });

  let regionsShown = '';
  function fillRegions(list) {
    const all = [...new Set([...list, ...(ctx.state.regions.get(service) || []), ...(region ? [region] : [])])].sort();
    const key = all.join('\u0000');
    if (key === regionsShown) return;
    regionsShown = key;
    regionSelect.innerHTML =
      '<option value="">All regions</option>' + all.map((r) => `<option value="${esc(r)}"${r === region ? ' selected' : ''}>${esc(r)}</option>`).join('');
  }

  async function renderState() {
    if (region) {
      if (!rankingsReady(ctx.live)) {
        stateBox.innerHTML = '<p class="empty">Waiting for the first ranking…</p>';
        return;
      }
      let res;
      try {
        res = await ctx.api('/api/v1/rankings', { query: { service, region } });
      } catch (err) {
        if (err instanceof ApiError && err.status === 503) {
          stateBox.innerHTML = '<p class="empty">Waiting for the first ranking…</p>';
          return;
        }
        throw err;
      }
      const r = res.rankings?.[0];
      const c = r?.choices.find((x) => x.cdn === name);
      if (!c) {
        stateBox.innerHTML = `<p class="empty">${esc(name)} is not ranked in ${esc(region)}.</p>`;
        return;
      }
      stateBox.innerHTML = `<dl class="kv">
        <dt>Ranked in</dt><dd>${esc(scopeLabel(r.scope))} <small>(rule ${esc(r.rule)}${r.fired?.length ? ', fired: ' + esc(r.fired.join(', ')) : ''})</small></dd>
        <dt>Health</dt><dd><span class="badge ${healthClass(c.health)}">${esc(c.health)}</span> ${c.leader ? '<span class="badge">leader</span>' : ''}</dd>
        <dt>Weight</dt><dd>${fmtPct(c.weight)} of new views</dd>
        <dt>Score</dt><dd>${fmtScore(c.score)} <small>from the ${esc(c.score_scope)} window, confidence ${c.confidence.toFixed(2)}, ${Math.round(c.views)} views</small></dd>
        ${c.reason ? `<dt>Reason</dt><dd>${esc(c.reason)}</dd>` : ''}
        ${c.override ? `<dt>Override</dt><dd class="mono">${esc(c.override)}</dd>` : ''}
      </dl>`;
      return;
    }
    const res = await ctx.api('/api/v1/cdns');
    const c = (res.cdns || []).find((x) => x.name === name);
    const s = c?.services?.find((x) => x.service === service);
    if (!s) {
      stateBox.innerHTML = `<p class="empty">${esc(name)} does not serve ${esc(service)}.</p>`;
      return;
    }
    const ovs = (c.overrides || []).filter((o) => o.scope?.service === service);
    stateBox.innerHTML = `<dl class="kv">
      <dt>Health</dt><dd><span class="badge ${healthClass(s.health)}">${esc(s.health)}</span> ${s.reason ? esc(s.reason) : ''}</dd>
      <dt>Weight</dt><dd>${fmtPct(s.weight)} of new views, service-wide</dd>
      <dt>Score</dt><dd>${fmtScore(s.score)}</dd>
      <dt>Down or evacuated in</dt><dd>${s.down?.length ? s.down.map(esc).join(', ') : 'none'}</dd>
      <dt>Overrides</dt><dd>${ovs.length ? ovs.map((o) => `<span class="badge" title="${esc(o.reason)}">${esc(o.action)} ${esc(scopeLabel(o.scope))} · <span class="mono">${esc(o.id)}</span></span>`).join(' ') : 'none'}</dd>
    </dl>`;
  }

  return () => {
    clearInterval(ticker);
    for (const c of charts.values()) c.destroy();
  };
}

// Charts: a thin wrapper over uPlot (vendored, loaded as the global uPlot)
// that follows the theme and the container's width, stacks series when
// asked, and marks events on the time axis. Callers create a chart once
// and feed it with setData; nothing is recreated on a tick.

const themeColors = { axis: '#555', grid: 'rgba(0,0,0,.08)', fg: '#222', bg: '#fff' };

/** readTheme picks the chart colours out of the CSS custom properties. */
export function readTheme() {
  const cs = getComputedStyle(document.documentElement);
  themeColors.axis = cs.getPropertyValue('--muted').trim() || themeColors.axis;
  themeColors.grid = cs.getPropertyValue('--grid').trim() || themeColors.grid;
  themeColors.fg = cs.getPropertyValue('--fg').trim() || themeColors.fg;
  themeColors.bg = cs.getPropertyValue('--bg').trim() || themeColors.bg;
  for (const c of charts) c.u?.redraw(false, true);
}

const charts = new Set();

/** withAlpha makes a translucent fill from a #rrggbb or hsl() colour. */
export function withAlpha(color, a) {
  if (/^#[0-9a-f]{6}$/i.test(color)) {
    return color + Math.round(a * 255).toString(16).padStart(2, '0');
  }
  if (color.startsWith('hsl(')) return color.replace(/\)$/, ` / ${a})`);
  return color;
}

/** MARK_STYLE: how each event kind is marked on the time axis; others are not. */
export const MARK_STYLE = {
  failover: { color: '#D55E00', dash: false, label: 'failover' },
  recovery: { color: '#009E73', dash: false, label: 'recovery' },
  override_created: { color: '#CC79A7', dash: true, label: 'override' },
  override_extended: { color: '#CC79A7', dash: true, label: 'override' },
  override_deleted: { color: '#CC79A7', dash: true, label: 'override' },
  override_expired: { color: '#CC79A7', dash: true, label: 'override' },
};

/** markersPlugin draws a vertical line per mark ({t: unix seconds, color, dash}). */
function markersPlugin(getMarks) {
  return {
    hooks: {
      draw: [
        (u) => {
          const marks = getMarks();
          if (!marks || !marks.length) return;
          const { ctx } = u;
          const { top, height } = u.bbox;
          const min = u.scales.x.min;
          const max = u.scales.x.max;
          const dpr = devicePixelRatio || 1;
          ctx.save();
          ctx.lineWidth = 1.5 * dpr;
          for (const m of marks) {
            if (m.t < min || m.t > max) continue;
            const x = Math.round(u.valToPos(m.t, 'x', true)) + 0.5;
            ctx.strokeStyle = m.color;
            ctx.setLineDash(m.dash ? [5 * dpr, 4 * dpr] : []);
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
          }
          ctx.restore();
        },
      ],
    },
  };
}

const legendTime = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

/**
 * legendFor builds a legend once: a button per series (click hides or
 * shows it) with a value slot filled while the cursor is on the chart.
 * The legend is one tab stop (a toolbar with a roving tabindex: the arrow
 * keys move along it), so 50 CDNs do not add 50 stops per chart.
 */
function legendFor(series) {
  const root = document.createElement('div');
  root.className = 'legend';
  root.setAttribute('role', 'toolbar');
  root.setAttribute('aria-label', 'Series: select to hide or show');
  root.addEventListener('keydown', (e) => {
    const items = [...root.querySelectorAll('button')];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    const to = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: items.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const next = items[(to + items.length) % items.length];
    items[i].tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  });
  const time = document.createElement('span');
  time.className = 'legend-time';
  root.append(time);
  const slots = [];
  series.forEach((s, i) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'legend-item';
    b.dataset.i = String(i + 1);
    b.setAttribute('aria-pressed', 'true');
    b.tabIndex = i === 0 ? 0 : -1;
    b.title = `Hide or show ${s.label}`;
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.setProperty('--c', s.color);
    if (s.dash) sw.classList.add('dashed');
    const label = document.createElement('span');
    label.textContent = s.label;
    const v = document.createElement('span');
    v.className = 'legend-value';
    b.append(sw, label, v);
    root.append(b);
    slots.push(v);
  });
  let last = [];
  return {
    root,
    values(vals, x) {
      time.textContent = vals ? legendTime.format(new Date(x * 1000)) : '';
      slots.forEach((v, i) => {
        const t = vals ? vals[i] : '';
        if (last[i] !== t) v.textContent = t;
      });
      last = vals ? vals.slice() : [];
    },
    mark(i, shown) {
      root.querySelector(`button[data-i="${i}"]`)?.setAttribute('aria-pressed', String(shown));
    },
  };
}

/**
 * Chart is one uPlot chart in el.
 *
 * opts: series [{label, color, width, dash}], height, yMin/yMax (fixed
 * ends; a missing yMax follows the data), yFmt (axis and legend values),
 * stacked (series stacked to 100: shares), marks (a function returning the
 * marks to draw), win ({from, to} in unix seconds, shared with the caller:
 * the x axis always shows it).
 */
export class Chart {
  constructor(el, opts) {
    this.el = el;
    this.opts = opts;
    this.keys = opts.series.map((s) => s.label);
    this.raw = [];
    this.win = opts.win;
    this.empty = document.createElement('p');
    this.empty.className = 'empty chart-empty';
    this.empty.hidden = true;
    this.legend = legendFor(opts.series);
    el.replaceChildren(this.empty);
    const fmt = opts.yFmt || ((v) => String(v));
    const series = [
      {},
      ...opts.series.map((s, i) => ({
        label: s.label,
        stroke: s.color,
        width: s.width || 1.5,
        dash: s.dash,
        fill: opts.stacked ? withAlpha(s.color, 0.75) : undefined,
        // Dots where the data is sparse (uPlot decides); none on stacked
        // areas once there is an area to draw.
        points: opts.stacked ? { show: (u, si) => u.data[si].filter((v) => v != null).length < 2, fill: s.color } : { fill: s.color },
        spanGaps: false,
        value: (u, v, si, idx) => {
          if (idx == null) return '–';
          const r = opts.stacked ? this.raw[i]?.[idx] : v;
          return r == null ? '–' : fmt(r);
        },
      })),
    ];
    const bands = [];
    if (opts.stacked) for (let i = 1; i < opts.series.length; i++) bands.push({ series: [i + 1, i] });
    const yRange = (u, min, max) => {
      const lo = opts.yMin ?? Math.min(0, min ?? 0);
      let hi = opts.yMax ?? (max == null || max <= lo ? lo + 1 : max * 1.1);
      if (hi <= lo) hi = lo + 1;
      return [lo, hi];
    };
    const axisStroke = () => themeColors.axis;
    const gridStroke = () => themeColors.grid;
    this.u = new uPlot(
      {
        width: Math.max(200, el.clientWidth || 600),
        height: opts.height || 220,
        pxAlign: 1,
        cursor: { sync: { key: opts.sync || 'cdnpilot' }, drag: { x: false, y: false }, points: { size: 6 } },
        // uPlot's own legend rewrites every value on each setData: with 50
        // series that is most of a tick's cost. Ours is written only while
        // the cursor is on the chart.
        legend: { show: false },
        hooks: {
          setCursor: [(u) => this.showValues(u.cursor.idx)],
          setSeries: [(u, i) => i != null && this.legend.mark(i, u.series[i].show)],
        },
        scales: {
          x: { time: true, range: (u, min, max) => (this.win ? [this.win.from, this.win.to] : [min, max]) },
          y: { range: yRange },
        },
        axes: [
          { stroke: axisStroke, grid: { stroke: gridStroke, width: 1 }, ticks: { stroke: gridStroke, width: 1 } },
          {
            stroke: axisStroke,
            grid: { stroke: gridStroke, width: 1 },
            ticks: { stroke: gridStroke, width: 1 },
            // As wide as the longest label.
            size: (u, values) => Math.max(40, 22 + 8 * Math.max(0, ...(values || []).map((v) => String(v ?? '').length))),
            values: (u, splits) => splits.map((v) => fmt(v)),
            label: opts.yLabel,
            labelSize: opts.yLabel ? 18 : 0,
          },
        ],
        series,
        bands,
        plugins: opts.marks ? [markersPlugin(opts.marks)] : [],
      },
      [[], ...opts.series.map(() => [])],
      el,
    );
    if (opts.legend !== false) el.append(this.legend.root);
    this.legend.root.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-i]');
      if (!b) return;
      const i = Number(b.dataset.i);
      this.u.setSeries(i, { show: !this.u.series[i].show });
    });
    this.fmt = fmt;
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(el);
    charts.add(this);
  }

  resize() {
    const w = Math.floor(this.el.clientWidth);
    if (w > 0 && w !== this.u.width) this.u.setSize({ width: w, height: this.u.height });
  }

  /** showValues writes the values under the cursor (idx null: clears them). */
  showValues(idx) {
    if (idx == null) {
      if (this.shown) this.legend.values(null);
      this.shown = false;
      return;
    }
    const x = this.u.data[0][idx];
    const vals = this.keys.map((_, i) => {
      const v = this.opts.stacked ? this.raw[i]?.[idx] : this.u.data[i + 1]?.[idx];
      return v == null ? '–' : this.fmt(v);
    });
    this.legend.values(vals, x);
    this.shown = true;
  }

  /** sameSeries: the chart shows exactly these series labels, in order. */
  sameSeries(labels) {
    return labels.length === this.keys.length && labels.every((l, i) => l === this.keys[i]);
  }

  /** setData takes x (unix seconds) and one array per series (null: no value). */
  setData(x, ys) {
    this.raw = ys;
    let data = ys;
    if (this.opts.stacked) {
      // A bucket where every series is null stays a gap, not a zero.
      const acc = new Array(x.length).fill(null);
      data = ys.map((y) =>
        y.map((v, i) => {
          if (v != null) acc[i] = (acc[i] ?? 0) + v;
          return acc[i];
        }),
      );
    }
    this.u.setData([x, ...data]);
  }

  /** setEmpty shows or hides a message over the chart. */
  setEmpty(text) {
    this.empty.hidden = !text;
    this.empty.textContent = text || '';
  }

  /** scroll moves the x axis to win without new data. */
  scroll() {
    if (this.win) this.u.setScale('x', { min: this.win.from, max: this.win.to });
  }

  redraw() {
    this.u.redraw(false, false);
  }

  destroy() {
    this.ro.disconnect();
    charts.delete(this);
    this.u.destroy();
  }
}

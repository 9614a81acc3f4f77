// #/health: every CDN's health per scope (service-wide and per region)
// from GET /api/v1/rankings (Choice.health and reason), every 5 s; and the
// service-wide state per CDN from GET /api/v1/cdns, every 10 s.

import { Matrix } from '../matrix.js';
import { HEALTH_BAD, HEALTH_WARN, cdnColor, esc, fmtPct, fmtScore, healthClass, scopeLabel } from '../util.js';
import { paintSwatches, pollRankings } from './shared.js';

export function mount(ctx) {
  const service = ctx.service;
  ctx.root.innerHTML = `
    <div class="page-head">
      <h1>Health <small>${esc(service)}</small></h1>
      <span class="spacer"></span>
      <span class="muted" data-status aria-live="polite"></span>
    </div>
    <section class="card">
      <h2>CDNs, service-wide</h2>
      <div class="scroll tall" data-cdns><p class="empty">Loading…</p></div>
    </section>
    <section class="card spaced">
      <h2>By region <small>health of each CDN in each ranked scope; hover a cell for the reason</small></h2>
      <div class="matrix-wrap" data-wrap><p class="empty">Loading…</p></div>
    </section>`;
  const wrap = ctx.root.querySelector('[data-wrap]');
  const cdnsBox = ctx.root.querySelector('[data-cdns]');
  const status = ctx.root.querySelector('[data-status]');
  const matrix = new Matrix(wrap, { testid: 'health-matrix', cls: 'health', corner: 'Scope' });

  ctx.on(wrap, 'click', (e) => {
    if (e.target.closest('a')) return;
    const td = e.target.closest('td[data-cdn]');
    const region = td?.parentElement.dataset.region;
    if (td) location.hash = ctx.href('cdn', { region }, td.dataset.cdn);
  });

  pollRankings(ctx, matrix, () => ({ service }), (res) => renderMatrix(res));

  ctx.every(10000, async () => {
    const res = await ctx.api('/api/v1/cdns');
    renderCDNs(res.cdns || []);
  });

  function renderMatrix(res) {
    const rankings = (res.rankings || []).filter((r) => r && (r.scope.level === 'global' || r.scope.level === 'region'));
    rankings.sort((a, b) => (a.scope.level === 'global' ? -1 : b.scope.level === 'global' ? 1 : a.scope.region.localeCompare(b.scope.region)));
    let bad = 0;
    const names = [...(ctx.state.cdnsByService.get(service) || [])];
    const known = new Set(names);
    for (const r of rankings) for (const c of r.choices) if (!known.has(c.cdn)) known.add(c.cdn) && names.push(c.cdn);
    const rows = rankings.map((r) => {
      for (const c of r.choices) if (HEALTH_BAD.has(c.health)) bad++;
      const global = r.scope.level === 'global';
      return {
        key: global ? '' : r.scope.region,
        attrs: global ? 'data-scope="global"' : `data-region="${esc(r.scope.region)}"`,
        cls: '',
        head: global ? 'service-wide' : esc(r.scope.region),
        cells: () => {
          const by = new Map(r.choices.map((c) => [c.cdn, c]));
          return names.map((n) => {
          const c = by.get(n);
          if (!c) return { cls: '', main: '–' };
          const mark = HEALTH_BAD.has(c.health) ? '✕ ' : HEALTH_WARN.has(c.health) ? '▲ ' : '';
          return {
            cls: c.health === 'up' ? '' : healthClass(c.health),
            main: mark + c.health,
            override: c.override || '',
            title: c.reason || '',
          };
          });
        },
      };
    });
    status.textContent = `snapshot v${res.version} · ${rows.length - 1} regions · ${bad} down, banned or evacuated`;
    if (!rows.length) {
      matrix.clear('<p class="empty">No rankings in this snapshot yet.</p>');
      return;
    }
    matrix.render(
      names.map((n) => ({ key: n, html: esc(n) })),
      rows,
    );
  }

  function renderCDNs(cdns) {
    const rows = [];
    for (const c of cdns) {
      const s = (c.services || []).find((x) => x.service === service);
      if (!s) continue;
      const ovs = (c.overrides || []).filter((o) => o.scope?.service === service);
      const down = s.down || [];
      rows.push(`<tr data-cdn="${esc(c.name)}">
        <th scope="row"><span class="swatch" data-color="${esc(cdnColor(c.name))}"></span><a href="${esc(ctx.href('cdn', {}, c.name))}">${esc(c.name)}</a></th>
        <td class="mono">${esc(c.host)}</td>
        <td><span class="badge ${healthClass(s.health)}">${esc(s.health)}</span></td>
        <td class="num">${fmtPct(s.weight)}</td>
        <td class="num">${fmtScore(s.score)}</td>
        <td>${esc(s.reason || '')}</td>
        <td>${down.length ? `<details><summary>${down.length} scope${down.length > 1 ? 's' : ''}</summary>${down.map((d) => esc(d)).join('<br>')}</details>` : '<span class="muted">none</span>'}</td>
        <td>${ovs.length ? ovs.map((o) => `<span class="badge" title="${esc(o.reason)}">${esc(o.action)} ${esc(scopeLabel(o.scope))}</span>`).join(' ') : '<span class="muted">none</span>'}</td>
      </tr>`);
    }
    if (!rows.length) {
      cdnsBox.innerHTML = '<p class="empty">No CDNs for this service.</p>';
      return;
    }
    cdnsBox.innerHTML = `<table data-testid="health-cdns"><thead><tr>
      <th scope="col">CDN</th><th scope="col">Host</th><th scope="col">Health</th><th scope="col" class="num">Weight</th>
      <th scope="col" class="num">Score</th><th scope="col">Reason</th><th scope="col">Down or evacuated in</th><th scope="col">Overrides</th>
      </tr></thead><tbody>${rows.join('')}</tbody></table>`;
    paintSwatches(cdnsBox);
  }
}

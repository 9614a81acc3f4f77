// #/regions: the region x CDN matrix of one service from GET
// /api/v1/rankings (every scope's ranking; level region, and level asn
// with the toggle). Refreshed every 5 s while visible.

import { Matrix } from '../matrix.js';
import { HEALTH_BAD, esc, fmtScore, scoreClass } from '../util.js';
import { pollRankings, scaleLegend, winnerOf } from './shared.js';

export function mount(ctx) {
  const service = ctx.service;
  const showAsn = ctx.params.get('asn') === '1';
  ctx.root.innerHTML = `
    <div class="page-head">
      <h1>Regions <small>${esc(service)}</small></h1>
      <label class="inline"><input type="checkbox" name="asn"${showAsn ? ' checked' : ''}> Include ASN scopes</label>
      ${scaleLegend()}
      <span class="spacer"></span>
      <span class="muted" data-status aria-live="polite"></span>
    </div>
    <p class="muted">Each cell: QoE score, then confidence · share of new views. ★ marks the CDN with the largest share in the
      region, ⚑ a CDN under an override, a struck-out score a CDN that is down. Select a cell to see that CDN in that region.</p>
    <div class="matrix-wrap" data-wrap><p class="empty">Loading…</p></div>`;
  const wrap = ctx.root.querySelector('[data-wrap]');
  const status = ctx.root.querySelector('[data-status]');
  const matrix = new Matrix(wrap, { testid: 'regions-matrix', cls: 'scores', corner: 'Region' });

  ctx.on(ctx.root.querySelector('input[name=asn]'), 'change', (e) => ctx.navigate({ asn: e.target.checked ? '1' : '' }));
  ctx.on(wrap, 'click', (e) => {
    if (e.target.closest('a')) return;
    const td = e.target.closest('td[data-cdn]');
    const tr = td?.parentElement;
    const region = tr?.dataset.region || tr?.dataset.scopeRegion;
    if (!td || !region) return;
    location.hash = ctx.href('cdn', { region }, td.dataset.cdn);
  });

  // Only the levels shown: the ASN scopes are most of a big snapshot.
  pollRankings(ctx, matrix, () => ({ service, level: showAsn ? '' : 'region' }), (res) => render(res));

  function render(res) {
    const rankings = (res.rankings || []).filter(
      (r) => r && (r.scope.level === 'region' || (showAsn && r.scope.level === 'asn')),
    );
    const regionNames = [...new Set(rankings.filter((r) => r.scope.level === 'region').map((r) => r.scope.region))];
    ctx.state.regions.set(service, regionNames.sort());
    status.textContent = `snapshot v${res.version} · ${regionNames.length} regions`;
    if (!rankings.length) {
      matrix.clear('<p class="empty">No region rankings in this snapshot yet.</p>');
      return;
    }
    rankings.sort(
      (a, b) =>
        (a.scope.region || '').localeCompare(b.scope.region || '') ||
        (a.scope.level === 'region' ? -1 : 0) - (b.scope.level === 'region' ? -1 : 0) ||
        (a.scope.asn || 0) - (b.scope.asn || 0),
    );
    const names = [...(ctx.state.cdnsByService.get(service) || [])];
    const known = new Set(names);
    for (const r of rankings) for (const c of r.choices) if (!known.has(c.cdn)) known.add(c.cdn) && names.push(c.cdn);
    const cols = names.map((n) => ({ key: n, html: esc(n) }));
    const rows = rankings.map((r) => {
      const win = winnerOf(r.choices);
      const region = r.scope.region;
      const isAsn = r.scope.level === 'asn';
      const label = isAsn ? `AS${r.scope.asn}` : region;
      const rule = r.rule && r.rule !== 'measured' ? ` <small>${esc(r.rule)}</small>` : '';
      const link = win ? `<a href="${esc(ctx.href('cdn', { region }, win))}">${esc(label)}</a>` : esc(label);
      return {
        key: isAsn ? `${region}/AS${r.scope.asn}` : region,
        attrs: isAsn
          ? `data-scope="${esc(region)}/AS${r.scope.asn}" data-scope-region="${esc(region)}"`
          : `data-region="${esc(region)}"`,
        cls: isAsn ? 'asn' : '',
        head: link + rule,
        cells: () => {
          const by = new Map(r.choices.map((c) => [c.cdn, c]));
          return names.map((n) => cell(by.get(n), n === win));
        },
      };
    });
    matrix.render(cols, rows);
  }
}

function cell(c, winner) {
  if (!c) return { cls: 's0', main: '–' };
  const down = HEALTH_BAD.has(c.health);
  const extra = c.health !== 'up' ? ` · ${c.health}` : '';
  return {
    cls: scoreClass(c.score) + (down ? ' down' : ''),
    main: fmtScore(c.score),
    sub: `${c.confidence.toFixed(2)} · ${Math.round(c.weight * 100)}%${extra}`,
    winner,
    override: c.override || '',
    title: c.reason || '',
  };
}

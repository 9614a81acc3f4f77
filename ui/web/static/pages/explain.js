// #/explain: the decision explorer, GET /api/v1/decisions/explain. The
// query is kept in the hash, so an explanation can be linked to.
// An address or subnet is sent as ip= or subnet= (by whether it has a
// "/"); without one, region= and/or asn=. The API takes one of them: with
// an address it places the client itself and ASN and region are not sent.

import { ApiError } from '../api.js';
import { esc, fmtNum, fmtPct, fmtScore, healthClass, scopeLabel } from '../util.js';

export function mount(ctx) {
  const p = ctx.params;
  const v = {
    client: p.get('client') || '',
    service: p.get('service') || ctx.service,
    asn: p.get('asn') || '',
    region: p.get('region') || '',
    view: p.get('view') || '',
  };
  const services = ctx.state.services;
  ctx.root.innerHTML = `
    <div class="page-head"><h1>Explain a decision</h1>
      <span class="muted">Which CDN a client gets, and why.</span></div>
    <form class="card" data-testid="explain-form">
      <div class="form-grid">
        <label class="wide">Client IP or subnet
          <input name="client" value="${esc(v.client)}" placeholder="100.64.1.2 or 100.64.0.0/24" spellcheck="false" autocomplete="off">
        </label>
        <label>Service
          <select name="service">${services.map((s) => `<option value="${esc(s)}"${s === v.service ? ' selected' : ''}>${esc(s)}</option>`).join('')}</select>
        </label>
        <label>ASN <small>(without a client)</small>
          <input name="asn" value="${esc(v.asn)}" placeholder="AS3320" spellcheck="false" autocomplete="off">
        </label>
        <label>Region <small>(without a client)</small>
          <input name="region" value="${esc(v.region)}" list="explain-regions" spellcheck="false" autocomplete="off">
        </label>
        <label>View id <small>(optional)</small>
          <input name="view_id" value="${esc(v.view)}" spellcheck="false" autocomplete="off">
        </label>
      </div>
      <datalist id="explain-regions">${(ctx.state.regions.get(v.service) || []).map((r) => `<option value="${esc(r)}"></option>`).join('')}</datalist>
      <div class="form-actions"><button type="submit">Explain</button></div>
    </form>
    <div data-out class="spaced"></div>`;
  const form = ctx.root.querySelector('[data-testid=explain-form]');
  const out = ctx.root.querySelector('[data-out]');

  ctx.on(form, 'submit', (e) => {
    e.preventDefault();
    const f = form.elements;
    const patch = {
      client: f.client.value.trim(),
      service: f.service.value,
      asn: f.asn.value.trim(),
      region: f.region.value.trim(),
      view: f.view_id.value.trim(),
    };
    if (!patch.client && !patch.asn && !patch.region) {
      ctx.showError(new Error('Give a client IP or subnet, or a region and/or an ASN.'));
      return;
    }
    const next = ctx.href('explain', patch).slice(1);
    // The same question again: ask again (the hash does not change).
    if (location.hash.slice(1) === next) run(patch);
    else location.hash = next;
  });

  if (v.client || v.asn || v.region) run(v);
  else out.innerHTML = '<p class="empty">Enter a client address or subnet (or a region and ASN) to see its decision.</p>';

  async function run(x) {
    const query = { service: x.service, view_id: x.view };
    let ignored = '';
    if (x.client) {
      query[x.client.includes('/') ? 'subnet' : 'ip'] = x.client;
      if (x.asn || x.region) ignored = [x.region && `region ${x.region}`, x.asn && `ASN ${x.asn}`].filter(Boolean).join(' and ');
    } else {
      if (x.region) query.region = x.region;
      if (x.asn) query.asn = x.asn;
    }
    out.innerHTML = '<p class="loading">Asking…</p>';
    try {
      const res = await ctx.api('/api/v1/decisions/explain', { query });
      ctx.clearError();
      render(res, ignored);
    } catch (err) {
      out.innerHTML = '';
      if (err instanceof ApiError && err.status === 503) {
        out.innerHTML = `<p class="empty">No decision yet: ${esc(err.message)}</p>`;
        return;
      }
      ctx.showError(err);
    }
  }

  function render(r, ignored) {
    const d = r.decision || {};
    const loc = r.location || {};
    const flags = [
      d.stale ? '<span class="badge h-bad">stale: static order</span>' : '',
      d.incident ? '<span class="badge h-warn">incident</span>' : '',
      r.located ? '' : '<span class="badge h-warn">not in coverage data</span>',
    ].join('');
    const ranking = r.ranking;
    out.innerHTML = `
      <section class="card" data-testid="explain-result">
        ${ignored ? `<p class="muted">Not sent: ${esc(ignored)}. With an address the API places the client itself.</p>` : ''}
        <div class="grid">
          <div>
            <h2>Decision</h2>
            <dl class="kv">
              <dt>CDN</dt><dd class="big" data-testid="explain-cdn">${esc(d.cdn)}</dd>
              <dt>Host</dt><dd class="mono">${esc(d.host)}</dd>
              <dt>Rule</dt><dd>${esc(d.rule)}</dd>
              <dt>Scope</dt><dd>${esc(scopeLabel(d.scope))} <small>(${esc(d.scope?.level)})</small></dd>
              <dt>Snapshot</dt><dd>v${esc(d.snapshot_version)} · ${fmtNum(d.snapshot_age_seconds, 1)} s old</dd>
              ${d.view_id ? `<dt>View</dt><dd class="mono">${esc(d.view_id)}</dd>` : ''}
              <dt>Flags</dt><dd class="flags">${flags || '<span class="muted">none</span>'}</dd>
            </dl>
          </div>
          <div>
            <h2>Client</h2>
            <dl class="kv">
              <dt>Asked about</dt><dd class="mono">${esc(r.client)}</dd>
              <dt>Region</dt><dd>${esc(loc.region || '–')}</dd>
              <dt>Country</dt><dd>${esc(loc.country || '–')}</dd>
              <dt>ASN</dt><dd>${loc.asn ? 'AS' + esc(loc.asn) : '–'}</dd>
              <dt>Matched prefix</dt><dd class="mono">${esc(loc.prefix || '–')}</dd>
            </dl>
          </div>
          <div class="full">
            <h2>Why</h2>
            ${r.why?.length ? `<ol class="why">${r.why.map((w) => `<li>${esc(w)}</li>`).join('')}</ol>` : '<p class="empty">No reasons given.</p>'}
          </div>
          <div class="full">
            <h2>Overrides applied</h2>
            ${
              r.overrides?.length
                ? `<ul>${r.overrides
                    .map(
                      (o) =>
                        `<li><span class="mono">${esc(o.id)}</span>: ${esc(o.action)} ${esc(o.cdn || '')} in ${esc(scopeLabel(o.scope))} — ${esc(o.reason)} <small>(expires ${esc(o.expires_at)})</small></li>`,
                    )
                    .join('')}</ul>`
                : '<p class="empty">No overrides cover this client.</p>'
            }
          </div>
          <div class="full">
            <h2>Ranking ${ranking ? `<small>${esc(scopeLabel(ranking.scope))} · rule ${esc(ranking.rule)}${ranking.fired?.length ? ' · fired: ' + esc(ranking.fired.join(', ')) : ''}</small>` : ''}</h2>
            ${ranking ? rankingTable(ranking, d.cdn) : '<p class="empty">No ranking for this scope.</p>'}
          </div>
        </div>
      </section>`;
  }
}

function rankingTable(r, chosen) {
  return `<div class="scroll"><table data-testid="explain-ranking"><thead><tr>
    <th scope="col">CDN</th><th scope="col" class="num">Weight</th><th scope="col" class="num">Score</th><th scope="col" class="num">Confidence</th>
    <th scope="col">Score from</th><th scope="col">Health</th><th scope="col" class="num">Fast score</th><th scope="col" class="num">Views</th>
    <th scope="col">Reason</th><th scope="col">Override</th></tr></thead><tbody>${r.choices
      .map(
        (c) => `<tr data-cdn="${esc(c.cdn)}"${c.cdn === chosen ? ' class="chosen"' : ''}>
        <th scope="row">${esc(c.cdn)}${c.leader ? ' <span class="badge">leader</span>' : ''}${c.cdn === chosen ? ' <span class="badge h-up">chosen</span>' : ''}</th>
        <td class="num">${fmtPct(c.weight)}</td><td class="num">${fmtScore(c.score)}</td><td class="num">${c.confidence.toFixed(2)}</td>
        <td>${esc(c.score_scope)}</td><td><span class="badge ${healthClass(c.health)}">${esc(c.health)}</span></td>
        <td class="num">${fmtScore(c.fast_score)}</td><td class="num">${Math.round(c.views)}</td>
        <td>${esc(c.reason || '')}</td><td class="mono">${esc(c.override || '')}</td></tr>`,
      )
      .join('')}</tbody></table></div>`;
}

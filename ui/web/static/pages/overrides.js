// #/overrides: the list (GET /api/v1/overrides?state=), a create form
// whose Apply is enabled only by a successful dry run of exactly the
// values in the form (POST /api/v1/overrides with dry_run), and Extend and
// Expire per active override behind a confirm step.

import { ApiError } from '../api.js';
import { debounce, esc, fmtDateTime, fmtRelative, minutesFromNow, scopeLabel } from '../util.js';

const STATES = ['active', 'expired', 'deleted', 'all'];

export function mount(ctx) {
  const me = ctx.state.me || {};
  const canWrite = me.role === 'operator' || me.role === 'admin';
  const services = ctx.state.services;
  let listState = STATES.includes(ctx.params.get('state')) ? ctx.params.get('state') : 'active';
  let listService = ctx.params.get('list') || '';

  ctx.root.innerHTML = `
    <div class="page-head"><h1>Overrides</h1></div>
    <section class="card" aria-labelledby="ovr-new">
      <h2 id="ovr-new">New override</h2>
      ${canWrite ? '' : `<p class="empty">Your role (${esc(me.role || 'unknown')}) may read overrides but not change them.</p>`}
      <form data-testid="override-form" novalidate>
        <fieldset${canWrite ? '' : ' disabled'}>
          <legend class="muted">Preview the shift with a dry run; Apply is enabled once the preview matches the form.</legend>
          <div class="form-grid">
            <label>Action
              <select name="action">
                <option value="drain">drain: no new views</option>
                <option value="ban">ban: not offered</option>
                <option value="pin">pin: every new view</option>
                <option value="weight">weight: fixed shares</option>
              </select>
            </label>
            <label data-for="cdn">CDN <select name="cdn"></select></label>
            <label data-for="weights" class="wide" hidden>Weights, % per CDN
              <input name="weights" placeholder="cdn-a=70, cdn-b=30" spellcheck="false" autocomplete="off">
            </label>
            <label>Service
              <select name="service">${services.map((s) => `<option value="${esc(s)}"${s === ctx.service ? ' selected' : ''}>${esc(s)}</option>`).join('')}</select>
            </label>
            <label>Region <small>(optional)</small>
              <input name="region" list="ovr-regions" placeholder="all regions" spellcheck="false" autocomplete="off" maxlength="64">
            </label>
            <label>ASN <small>(optional, needs region)</small>
              <input name="asn" inputmode="numeric" placeholder="e.g. 3320" spellcheck="false" autocomplete="off">
            </label>
            <label>Expires in (minutes)
              <input name="expires_in" type="number" min="1" max="1440" step="1" value="60" required>
            </label>
            <label class="full">Reason <small>(for the audit trail and the next on-call)</small>
              <input name="reason" required maxlength="1024" placeholder="INC-4711: cdn-a 5xx in Frankfurt" autocomplete="off">
            </label>
          </div>
          <datalist id="ovr-regions"></datalist>
          <div class="form-actions">
            <button type="submit" class="secondary" data-testid="override-dryrun">Preview (dry run)</button>
            <button type="button" data-testid="override-apply" disabled>Apply</button>
            <span class="muted" data-form-status aria-live="polite"></span>
          </div>
        </fieldset>
      </form>
      <div data-testid="dryrun-preview" aria-live="polite"></div>
    </section>
    <section class="card spaced" aria-labelledby="ovr-list">
      <h2 id="ovr-list">Overrides
        <label class="inline right">State
          <select name="state">${STATES.map((s) => `<option value="${s}"${s === listState ? ' selected' : ''}>${s}</option>`).join('')}</select>
        </label>
        <label class="inline">Service
          <select name="list-service"><option value="">all</option>${services
            .map((s) => `<option value="${esc(s)}"${s === listService ? ' selected' : ''}>${esc(s)}</option>`)
            .join('')}</select>
        </label>
      </h2>
      <div class="scroll" data-list><p class="loading">Loading…</p></div>
    </section>
    <dialog data-confirm aria-labelledby="confirm-title">
      <form method="dialog">
        <h2 id="confirm-title" data-title></h2>
        <p data-desc></p>
        <label data-exp>New expiry, in minutes from now
          <input name="expires_in" type="number" min="1" max="1440" step="1" value="60" required>
        </label>
        <label>Reason <input name="reason" required maxlength="1024" autocomplete="off"></label>
        <p class="dialog-error" role="alert" hidden></p>
        <div class="buttons">
          <button type="button" class="secondary" data-cancel>Cancel</button>
          <button type="submit" data-testid="confirm-submit">Confirm</button>
        </div>
      </form>
    </dialog>`;

  const q = (s) => ctx.root.querySelector(s);
  const form = q('form[data-testid=override-form]');
  const applyBtn = q('[data-testid=override-apply]');
  const dryBtn = q('[data-testid=override-dryrun]');
  const preview = q('[data-testid=dryrun-preview]');
  const formStatus = q('[data-form-status]');
  const listBox = q('[data-list]');
  const dialog = q('dialog[data-confirm]');

  // ---- form ----
  const fillCDNs = () => {
    const svc = form.elements.service.value;
    const cur = form.elements.cdn.value;
    const cdns = ctx.state.cdnsByService.get(svc) || [];
    form.elements.cdn.innerHTML = cdns.map((c) => `<option value="${esc(c)}"${c === cur ? ' selected' : ''}>${esc(c)}</option>`).join('');
    q('#ovr-regions').innerHTML = (ctx.state.regions.get(svc) || []).map((r) => `<option value="${esc(r)}"></option>`).join('');
  };
  const syncAction = () => {
    const weight = form.elements.action.value === 'weight';
    q('[data-for=cdn]').hidden = weight;
    q('[data-for=weights]').hidden = !weight;
  };
  fillCDNs();
  syncAction();

  /** formKey is every value that shapes the request: the dry run must match it. */
  const formKey = () => {
    const f = form.elements;
    const weight = f.action.value === 'weight';
    return JSON.stringify([
      f.action.value,
      weight ? '' : f.cdn.value,
      weight ? f.weights.value.trim() : '',
      f.service.value,
      f.region.value.trim(),
      f.asn.value.trim(),
      f.reason.value.trim(),
      f.expires_in.value,
    ]);
  };
  let dryKey = '';

  const invalidate = () => {
    if (dryKey && formKey() !== dryKey) {
      applyBtn.disabled = true;
      preview.classList.add('preview-stale');
      formStatus.textContent = 'The form changed: preview again before applying.';
      dryKey = '';
    }
  };
  ctx.on(form, 'input', invalidate);
  ctx.on(form, 'change', (e) => {
    if (e.target.name === 'service') fillCDNs();
    if (e.target.name === 'action') syncAction();
    invalidate();
  });

  /** request builds the API body from the form, or throws a plain validation error. */
  const request = (dryRun) => {
    const f = form.elements;
    const reason = f.reason.value.trim();
    const minutes = Number(f.expires_in.value);
    if (!reason) throw fieldError('reason', 'reason: required (why, for the audit trail)');
    if (!Number.isFinite(minutes) || minutes <= 0) throw fieldError('expires_in', 'expires in: a number of minutes above 0');
    const body = { action: f.action.value, scope: { service: f.service.value }, reason, expires_at: minutesFromNow(minutes) };
    const region = f.region.value.trim();
    const asnText = f.asn.value.trim().replace(/^as/i, '');
    if (region) body.scope.region = region;
    if (asnText) {
      if (!/^\d+$/.test(asnText)) throw fieldError('scope.asn', `asn: "${f.asn.value}" is not an AS number`);
      body.scope.asn = Number(asnText);
    }
    if (body.action === 'weight') body.weights = parseWeights(f.weights.value);
    else body.cdn = f.cdn.value;
    if (dryRun) body.dry_run = true;
    return body;
  };

  ctx.on(form, 'submit', async (e) => {
    e.preventDefault();
    if (!canWrite) return;
    ctx.clearError();
    let body;
    try {
      body = request(true);
    } catch (err) {
      ctx.showError(err);
      return;
    }
    const key = formKey();
    dryBtn.disabled = true;
    formStatus.textContent = 'Previewing…';
    try {
      const res = await ctx.api('/api/v1/overrides', { method: 'POST', body });
      renderPreview(res);
      if (formKey() === key) {
        dryKey = key;
        applyBtn.disabled = false;
        formStatus.textContent = 'Preview ready: Apply makes it so.';
      }
    } catch (err) {
      preview.innerHTML = '';
      formStatus.textContent = '';
      ctx.showError(err);
    } finally {
      dryBtn.disabled = false;
    }
  });

  ctx.on(applyBtn, 'click', async () => {
    if (!dryKey || formKey() !== dryKey) {
      applyBtn.disabled = true;
      return;
    }
    ctx.clearError();
    let body;
    try {
      body = request(false);
    } catch (err) {
      ctx.showError(err);
      return;
    }
    applyBtn.disabled = true;
    formStatus.textContent = 'Applying…';
    try {
      const o = await ctx.api('/api/v1/overrides', { method: 'POST', body });
      dryKey = '';
      preview.innerHTML = `<p class="notice" role="status">Override <span class="mono">${esc(o.id)}</span> created: ${esc(describe(o))}, expires ${esc(fmtDateTime(o.expires_at))}.</p>`;
      formStatus.textContent = '';
      list.now();
    } catch (err) {
      formStatus.textContent = '';
      applyBtn.disabled = false;
      ctx.showError(err);
    }
  });

  function renderPreview(res) {
    preview.classList.remove('preview-stale');
    const changes = res.changes || [];
    const head = `<p>Dry run against snapshot v${esc(res.snapshot_version)}: ${esc(describe(res.override))}. Nothing is applied yet.</p>`;
    if (!changes.length) {
      preview.innerHTML = head + '<p class="empty">No ranked scope would change share (the scope may have no ranking yet).</p>';
      return;
    }
    const rows = [];
    for (const ch of changes) {
      const cdns = [...new Set([...Object.keys(ch.before || {}), ...Object.keys(ch.after || {})])];
      cdns.sort((a, b) => Math.abs(ch.delta_pp?.[b] || 0) - Math.abs(ch.delta_pp?.[a] || 0));
      cdns.forEach((c, i) => {
        const d = ch.delta_pp?.[c] || 0;
        const cls = d > 0.05 ? 'delta-up' : d < -0.05 ? 'delta-down' : 'muted';
        rows.push(`<tr>${i === 0 ? `<th scope="rowgroup" rowspan="${cdns.length}">${esc(scopeLabel(ch.scope))} <small>${esc(ch.scope.level)}</small></th>` : ''}
          <td>${esc(c)}</td><td class="num">${pct(ch.before?.[c])}</td><td class="num">${pct(ch.after?.[c])}</td>
          <td class="num ${cls}">${d > 0 ? '+' : ''}${d.toFixed(1)} pp</td></tr>`);
      });
    }
    preview.innerHTML = `${head}<div class="scroll tall"><table><thead><tr><th scope="col">Scope</th><th scope="col">CDN</th>
      <th scope="col" class="num">Before</th><th scope="col" class="num">After</th><th scope="col" class="num">Change</th></tr></thead>
      <tbody>${rows.join('')}</tbody></table></div>`;
  }

  // ---- list ----
  const list = ctx.every(30000, async () => {
    const res = await ctx.api('/api/v1/overrides', { query: { state: listState, service: listService } });
    renderList(res.overrides || []);
  });
  const reloadSoon = debounce(() => list.now(), 400);
  if (ctx.live) {
    ctx.on(ctx.live, 'event', (e) => {
      if (e.detail.kind.startsWith('override_')) reloadSoon();
    });
  }
  ctx.on(q('select[name=state]'), 'change', (e) => {
    listState = e.target.value;
    history.replaceState(null, '', ctx.href('overrides', { state: listState === 'active' ? '' : listState, list: listService }));
    list.now();
  });
  ctx.on(q('select[name=list-service]'), 'change', (e) => {
    listService = e.target.value;
    history.replaceState(null, '', ctx.href('overrides', { state: listState === 'active' ? '' : listState, list: listService }));
    list.now();
  });

  function renderList(items) {
    if (!items.length) {
      listBox.innerHTML = `<p class="empty">No overrides${listState === 'all' ? '' : ` (${esc(listState)})`}.</p>`;
      return;
    }
    listBox.innerHTML = `<table data-testid="overrides-table"><thead><tr>
      <th scope="col">Id</th><th scope="col">Action</th><th scope="col">CDN / weights</th><th scope="col">Scope</th>
      <th scope="col">Reason</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col"><span class="muted">Change</span></th>
      </tr></thead><tbody>${items
        .map(
          (o) => `<tr data-id="${esc(o.id)}" data-state="${esc(o.state)}">
          <td class="mono" title="revision ${esc(o.revision)}, updated ${esc(fmtDateTime(o.updated_at))} by ${esc(o.updated_by)}">${esc(o.id)}</td>
          <td><span class="badge">${esc(o.action)}</span></td>
          <td>${esc(target(o))}</td>
          <td>${esc(scopeLabel(o.scope))}</td>
          <td>${esc(o.reason)}${o.delete_reason ? `<br><small>ended: ${esc(o.delete_reason)}</small>` : ''}</td>
          <td>${esc(o.state)}</td>
          <td><time datetime="${esc(o.created_at)}">${esc(fmtDateTime(o.created_at))}</time><br><small>by ${esc(o.created_by)}</small></td>
          <td><time datetime="${esc(o.expires_at)}" title="${esc(fmtDateTime(o.expires_at))}">${esc(o.state === 'active' ? fmtRelative(o.expires_at) : fmtDateTime(o.expires_at))}</time></td>
          <td>${
            o.state === 'active' && canWrite
              ? `<button type="button" class="secondary small" data-action="extend">Extend</button>
                 <button type="button" class="danger small" data-action="expire">Expire</button>`
              : ''
          }</td></tr>`,
        )
        .join('')}</tbody></table>`;
  }

  // ---- extend / expire, confirmed in a dialog ----
  let pending = null; // {kind, id}
  ctx.on(listBox, 'click', (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn) return;
    const id = btn.closest('tr').dataset.id;
    pending = { kind: btn.dataset.action, id };
    const extend = pending.kind === 'extend';
    dialog.querySelector('[data-title]').textContent = extend ? 'Extend override' : 'Expire override now';
    dialog.querySelector('[data-desc]').innerHTML = extend
      ? `Move the expiry of <span class="mono">${esc(id)}</span>. A new audited change.`
      : `End <span class="mono">${esc(id)}</span> now: its scope goes back to measured steering.`;
    dialog.querySelector('[data-exp]').hidden = !extend;
    dialog.querySelector('input[name=expires_in]').disabled = !extend;
    dialog.querySelector('input[name=reason]').value = '';
    const err = dialog.querySelector('.dialog-error');
    err.hidden = true;
    const submit = dialog.querySelector('[data-testid=confirm-submit]');
    submit.textContent = extend ? 'Extend' : 'Expire';
    submit.className = extend ? '' : 'danger';
    dialog.showModal();
    dialog.querySelector(extend ? 'input[name=expires_in]' : 'input[name=reason]').focus();
  });
  ctx.on(dialog.querySelector('[data-cancel]'), 'click', () => dialog.close());
  ctx.on(dialog.querySelector('form'), 'submit', async (e) => {
    e.preventDefault();
    if (!pending) return;
    const err = dialog.querySelector('.dialog-error');
    const reason = dialog.querySelector('input[name=reason]').value.trim();
    if (!reason) {
      err.hidden = false;
      err.textContent = 'reason: required (why, for the audit trail)';
      return;
    }
    const submit = dialog.querySelector('[data-testid=confirm-submit]');
    submit.disabled = true;
    try {
      const path = '/api/v1/overrides/' + encodeURIComponent(pending.id);
      if (pending.kind === 'extend') {
        const minutes = Number(dialog.querySelector('input[name=expires_in]').value);
        await ctx.api(path + '/extend', { method: 'POST', body: { expires_at: minutesFromNow(minutes), reason } });
      } else {
        await ctx.api(path, { method: 'DELETE', body: { reason } });
      }
      dialog.close();
      pending = null;
      list.now();
    } catch (ex) {
      if (ex instanceof ApiError && ex.status === 401) return;
      err.hidden = false;
      err.textContent = ex instanceof ApiError ? `${ex.status} ${ex.message}${ex.field ? ` (field: ${ex.field})` : ''}` : ex.message;
    } finally {
      submit.disabled = false;
    }
  });

  return () => {
    reloadSoon.cancel();
    if (dialog.open) dialog.close();
  };
}

/** parseWeights reads "cdn-a=70, cdn-b=30" (or ":" or spaces). */
function parseWeights(text) {
  const out = {};
  const parts = text.split(/[,;\s]+/).filter(Boolean);
  if (!parts.length) throw fieldError('weights', 'weights: give percent per CDN, like cdn-a=70, cdn-b=30');
  for (const p of parts) {
    const m = /^([^=:]+)[=:](\d+(?:\.\d+)?)%?$/.exec(p);
    if (!m) throw fieldError('weights', `weights: "${p}" is not cdn=percent`);
    out[m[1]] = Number(m[2]);
  }
  return out;
}

function fieldError(field, msg) {
  const e = new ApiError(0, { error: msg, field }, '', 0);
  e.message = msg;
  return e;
}

function target(o) {
  if (o.action === 'weight' && o.weights && Object.keys(o.weights).length) {
    return Object.entries(o.weights)
      .map(([c, w]) => `${c} ${w}%`)
      .join(' · ');
  }
  return o.cdn || '';
}

function describe(o) {
  if (!o) return '';
  return `${o.action} ${target(o)} in ${scopeLabel(o.scope)}`;
}

function pct(v) {
  return v == null ? '–' : (v * 100).toFixed(1) + '%';
}

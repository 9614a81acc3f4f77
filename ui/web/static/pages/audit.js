// #/audit: GET /api/v1/audit, newest first, with the filters in the hash
// (actor, action, outcome, since, until as RFC 3339) and paging through
// next -> before=. The first page refreshes every 30 s.

import { esc, fmtDateTime, localToRFC3339, rfc3339ToLocal } from '../util.js';

const ACTIONS = ['override.create', 'override.extend', 'override.delete', 'override.dry_run', 'replay', 'auth.denied'];
const PAGE_SIZE = 50;

export function mount(ctx) {
  const me = ctx.state.me || {};
  if (me.role !== 'admin') {
    ctx.root.innerHTML = `<div class="page-head"><h1>Audit</h1></div>
      <p class="empty">The audit trail needs the admin role; you are ${esc(me.name || '')} (${esc(me.role || 'unknown')}).</p>`;
    return () => {};
  }
  const p = ctx.params;
  const filters = {
    actor: p.get('actor') || '',
    action: p.get('action') || '',
    outcome: p.get('outcome') || '',
    since: p.get('since') || '',
    until: p.get('until') || '',
  };
  ctx.root.innerHTML = `
    <div class="page-head"><h1>Audit</h1><span class="muted">Every change and every denied attempt, newest first.</span></div>
    <form class="filters" data-filters>
      <label>Actor <input name="actor" value="${esc(filters.actor)}" autocomplete="off" spellcheck="false"></label>
      <label>Action
        <select name="action"><option value="">any</option>${ACTIONS.map(
          (a) => `<option value="${a}"${a === filters.action ? ' selected' : ''}>${a}</option>`,
        ).join('')}</select>
      </label>
      <label>Outcome
        <select name="outcome"><option value="">any</option>${['ok', 'denied', 'failed']
          .map((o) => `<option value="${o}"${o === filters.outcome ? ' selected' : ''}>${o}</option>`)
          .join('')}</select>
      </label>
      <label>Since <input type="datetime-local" name="since" value="${esc(rfc3339ToLocal(filters.since))}"></label>
      <label>Until <input type="datetime-local" name="until" value="${esc(rfc3339ToLocal(filters.until))}"></label>
      <button type="submit">Filter</button>
      <button type="button" class="secondary" data-reset>Clear</button>
    </form>
    <div class="card"><div class="scroll" data-list><p class="loading">Loading…</p></div>
      <div class="pager">
        <button type="button" class="secondary" data-newer disabled>← Newer</button>
        <button type="button" class="secondary" data-older disabled>Older →</button>
        <span class="muted" data-page></span>
      </div>
    </div>`;
  const q = (s) => ctx.root.querySelector(s);
  const form = q('[data-filters]');
  const listBox = q('[data-list]');
  const newer = q('[data-newer]');
  const older = q('[data-older]');
  const pageInfo = q('[data-page]');

  // Selects apply as soon as they change; text and time fields on Enter
  // or with the Filter button (a remount mid-typing would lose focus).
  const apply = () => {
    const f = form.elements;
    ctx.navigate({
      actor: f.actor.value.trim(),
      action: f.action.value,
      outcome: f.outcome.value,
      since: localToRFC3339(f.since.value),
      until: localToRFC3339(f.until.value),
    });
  };
  ctx.on(form, 'submit', (e) => {
    e.preventDefault();
    apply();
  });
  ctx.on(form, 'change', (e) => {
    if (e.target.tagName === 'SELECT') apply();
  });
  ctx.on(q('[data-reset]'), 'click', () => ctx.navigate({ actor: '', action: '', outcome: '', since: '', until: '' }));

  // cursors[i] is the before= of page i; page 0 has none.
  const cursors = [''];
  let pageNo = 0;
  let next = '';
  const load = async () => {
    const res = await ctx.api('/api/v1/audit', { query: { ...filters, limit: PAGE_SIZE, before: cursors[pageNo] } });
    next = res.next || '';
    render(res.records || []);
    newer.disabled = pageNo === 0;
    older.disabled = !next;
    pageInfo.textContent = `page ${pageNo + 1}`;
  };
  const poll = ctx.every(30000, async () => {
    if (pageNo === 0) await load();
  });
  ctx.on(older, 'click', async () => {
    if (!next) return;
    cursors[pageNo + 1] = next;
    pageNo++;
    await load().catch(ctx.showError);
  });
  ctx.on(newer, 'click', async () => {
    if (pageNo === 0) return;
    pageNo--;
    if (pageNo === 0) poll.now();
    else await load().catch(ctx.showError);
  });

  function render(records) {
    if (!records.length) {
      listBox.innerHTML = '<p class="empty">No audit records match.</p>';
      return;
    }
    listBox.innerHTML = `<table data-testid="audit-table"><thead><tr>
      <th scope="col">At</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Outcome</th>
      <th scope="col">Service</th><th scope="col">Override</th><th scope="col">Reason</th><th scope="col">Request</th><th scope="col">Change</th>
      </tr></thead><tbody>${records
        .map(
          (r) => `<tr data-id="${esc(r.id)}">
          <td><time datetime="${esc(r.at)}">${esc(fmtDateTime(r.at))}</time></td>
          <td>${r.actor ? esc(r.actor) : '<span class="muted">anonymous</span>'}${r.role ? `<br><small>${esc(r.role)} · ${esc(r.auth)}</small>` : ''}</td>
          <td>${esc(r.action)}</td>
          <td><span class="badge ${r.outcome === 'ok' ? 'h-up' : r.outcome === 'denied' ? 'h-warn' : 'h-bad'}">${esc(r.outcome)}</span> <small>${esc(r.status || '')}</small></td>
          <td>${esc(r.service)}</td>
          <td class="mono">${esc(r.override_id)}</td>
          <td>${esc(r.reason)}${r.detail ? `<br><small>${esc(r.detail)}</small>` : ''}</td>
          <td><span class="mono">${esc(r.method)} ${esc(r.path)}</span><br><small>from ${esc(r.source)}</small></td>
          <td>${change(r)}</td></tr>`,
        )
        .join('')}</tbody></table>`;
  }
}

function change(r) {
  if (!r.before && !r.after) return '';
  const pretty = (s) => {
    try {
      return JSON.stringify(JSON.parse(s), null, 1);
    } catch {
      return s;
    }
  };
  return `<details><summary>before / after</summary>${r.before ? `<pre>before ${esc(pretty(r.before))}</pre>` : ''}${
    r.after ? `<pre>after ${esc(pretty(r.after))}</pre>` : ''
  }</details>`;
}

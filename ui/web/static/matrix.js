// Matrix renders a scope x CDN table that stays fast at 300 regions x 50
// CDNs. The table's HTML is built once as a string; a later render with
// the same rows and columns rewrites only the text of the cells that
// changed; there are no per-cell listeners (pages delegate).
//
// A browser takes the better part of a second to lay out and paint a
// 15,000-cell table, so in a big matrix every row is there (with its
// header: find-in-page and the region links work) but only the rows and
// columns in view, and a margin around them, have their cells; the others
// hold one empty cell of the same height, and spacer columns keep the
// width. A small matrix (the usual case) is rendered whole.

import { esc } from './util.js';

/** WINDOW_CELLS: above this many cells, only the part in view has cells. */
export const WINDOW_CELLS = 3000;
const ROW_MARGIN = 8; // rows with cells beyond each edge of the view
const COL_MARGIN = 3; // columns likewise

/**
 * A cell: {cls, main, sub, winner, override, title}: main and sub are plain
 * text (sub, optional, on a second line), so that an update sets text
 * nodes instead of parsing HTML. A row: {key, attrs (raw attribute string,
 * escaped by the caller), cls, head (HTML of the row header), cells (one
 * per column, in column order; or a function that makes them, called only
 * for rows that are shown)}. A column: {key, html}.
 */
export class Matrix {
  constructor(wrap, { testid, cls, corner }) {
    this.wrap = wrap;
    this.testid = testid;
    this.cls = cls;
    this.corner = corner;
    this.shape = '';
    this.table = null;
    this.rows = [];
    this.cols = [];
    this.win = null; // {r0, r1, c0, c1}: the rows and columns with cells
    this.rowH = 0; // measured once rendered
    this.colW = 0;
    this.headW = 0;
    this.sigs = new Map(); // row index -> signatures of its shown cells
    this.heads = [];
    this.frame = 0;
    wrap.addEventListener(
      'scroll',
      () => {
        if (!this.windowed || this.frame) return;
        this.frame = requestAnimationFrame(() => {
          this.frame = 0;
          if (this.table) this.paint(false);
        });
      },
      { passive: true },
    );
  }

  get windowed() {
    return this.rows.length * this.cols.length > WINDOW_CELLS;
  }

  render(cols, rows) {
    this.cols = cols;
    this.rows = rows;
    const shape = cols.map((c) => c.key).join('\u0000') + '\u0001' + rows.map((r) => r.key + '\u0002' + r.attrs).join('\u0000');
    const changed = shape !== this.shape;
    this.shape = shape;
    this.paint(changed);
  }

  /** paint shows what is in view: a new table when the columns moved, else rows swapped in and out and changed cells rewritten. */
  paint(rebuild) {
    const w = this.windowFor();
    const cur = this.win;
    if (rebuild || !this.table || !cur || w.c0 !== cur.c0 || w.c1 !== cur.c1) {
      this.build(w);
      return;
    }
    if (w.r0 !== cur.r0 || w.r1 !== cur.r1) this.moveRows(cur, w);
    this.update();
  }

  windowFor() {
    const n = this.rows.length;
    const m = this.cols.length;
    if (!this.windowed) return { r0: 0, r1: n, c0: 0, c1: m };
    const rowH = this.rowH || 44;
    const colW = this.colW || 108;
    const headH = this.table?.tHead?.offsetHeight || 30;
    const top = Math.max(0, this.wrap.scrollTop - headH);
    const left = Math.max(0, this.wrap.scrollLeft);
    const height = this.wrap.clientHeight || 800;
    const width = Math.max(0, (this.wrap.clientWidth || 1200) - (this.headW || 176));
    const cur = this.win;
    const axis = (pos, size, unit, count, margin, a, b) => {
      const v0 = Math.floor(pos / unit);
      const v1 = Math.ceil((pos + size) / unit);
      // Keep what is shown while the view stays well inside it.
      if (cur && b > a && (v0 - a >= margin / 2 || a === 0) && (b - v1 >= margin / 2 || b === count)) return [a, b];
      return [Math.max(0, v0 - margin), Math.min(count, v1 + margin)];
    };
    const [r0, r1] = axis(top, height, rowH, n, ROW_MARGIN, cur?.r0 ?? 0, cur?.r1 ?? 0);
    const [c0, c1] = axis(left, width, colW, m, COL_MARGIN, cur?.c0 ?? 0, cur?.c1 ?? 0);
    return { r0, r1, c0, c1 };
  }

  build(w) {
    const { r0, r1, c0, c1 } = w;
    const cols = this.cols;
    const padL = c0 > 0;
    const padR = c1 < cols.length;
    const { scrollTop, scrollLeft } = this.wrap;
    const focusKey = document.activeElement?.closest?.('tbody tr')?.dataset.key;
    this.win = w;
    const parts = [
      `<table class="matrix ${this.cls}" data-testid="${this.testid}" aria-rowcount="${this.rows.length + 1}" aria-colcount="${cols.length + 1}">`,
      '<colgroup><col class="c-head">',
      padL ? '<col class="c-pad">' : '',
      '<col class="c-cdn">'.repeat(c1 - c0),
      padR ? '<col class="c-pad">' : '',
      `</colgroup><thead><tr aria-rowindex="1"><th scope="col">${esc(this.corner)}</th>`,
      padL ? '<th class="pad" aria-hidden="true"></th>' : '',
    ];
    for (let j = c0; j < c1; j++) {
      const c = cols[j];
      parts.push(`<th scope="col" data-cdn="${esc(c.key)}" title="${esc(c.key)}" aria-colindex="${j + 2}">${c.html}</th>`);
    }
    if (padR) parts.push('<th class="pad" aria-hidden="true"></th>');
    parts.push('</tr></thead><tbody>');
    this.sigs = new Map();
    this.heads = [];
    for (let i = 0; i < this.rows.length; i++) {
      const r = this.rows[i];
      const shown = i >= r0 && i < r1;
      const cls = [r.cls, shown ? '' : 'stub'].filter(Boolean).join(' ');
      parts.push(`<tr ${r.attrs} data-key="${esc(r.key)}" aria-rowindex="${i + 2}"${cls ? ` class="${cls}"` : ''}>`);
      parts.push(this.rowInner(i, shown));
      parts.push('</tr>');
    }
    parts.push('</tbody></table>');
    this.wrap.innerHTML = parts.join('');
    const table = this.wrap.firstElementChild;
    this.table = table;
    // Fixed layout: widths from the colgroup, not from measuring every
    // cell. Sizes go through the CSSOM (the CSP forbids style attributes).
    table.style.width = `max(100%, calc(var(--matrix-head) + ${cols.length} * var(--matrix-cell)))`;
    if (!this.windowed) return;
    if (!this.rowH || !this.colW) {
      this.measure();
      // The first window was sized on guesses: size it again.
      requestAnimationFrame(() => this.table === table && this.paint(false));
    }
    const pads = table.querySelectorAll('col.c-pad');
    if (padL) pads[0].style.width = `${c0 * this.colW}px`;
    if (padR) pads[pads.length - 1].style.width = `${(cols.length - c1) * this.colW}px`;
    this.wrap.scrollTop = scrollTop;
    this.wrap.scrollLeft = scrollLeft;
    if (focusKey) {
      const tr = [...table.tBodies[0].rows].find((x) => x.dataset.key === focusKey);
      tr?.querySelector('a')?.focus({ preventScroll: true });
    }
  }

  /** rowInner is a row's header and, when shown, its cells (else one empty cell). */
  rowInner(i, shown) {
    const r = this.rows[i];
    const { c0, c1 } = this.win;
    const cols = this.cols;
    this.heads[i] = r.head;
    const parts = [`<th scope="row">${r.head}</th>`];
    if (!shown) {
      this.sigs.delete(i);
      const span = (c0 > 0 ? 1 : 0) + (c1 - c0) + (c1 < cols.length ? 1 : 0);
      parts.push(`<td class="pad" colspan="${span}"></td>`);
      return parts.join('');
    }
    if (c0 > 0) parts.push('<td class="pad"></td>');
    const cells = cellsOf(r);
    const sigs = [];
    for (let j = c0; j < c1; j++) {
      const c = cells[j];
      sigs.push(sigOf(c));
      parts.push(
        `<td data-cdn="${esc(cols[j].key)}"${c.cls ? ` class="${c.cls}"` : ''}${c.winner ? ' data-winner="true"' : ''}` +
          `${c.override ? ` data-override="${esc(c.override)}"` : ''}${c.title ? ` title="${esc(c.title)}"` : ''}>` +
          `${esc(c.main)}${c.sub ? `<small>${esc(c.sub)}</small>` : ''}</td>`,
      );
    }
    if (c1 < cols.length) parts.push('<td class="pad"></td>');
    this.sigs.set(i, sigs);
    return parts.join('');
  }

  /** moveRows gives cells to the rows scrolled into view and takes them from those scrolled out. */
  moveRows(from, to) {
    const trs = this.table.tBodies[0].rows;
    const lo = Math.min(from.r0, to.r0);
    const hi = Math.max(from.r1, to.r1);
    this.win = to;
    for (let i = lo; i < hi; i++) {
      const was = i >= from.r0 && i < from.r1;
      const is = i >= to.r0 && i < to.r1;
      if (was === is) continue;
      trs[i].innerHTML = this.rowInner(i, is);
      trs[i].classList.toggle('stub', !is);
    }
  }

  /** measure takes the row height and column widths from the rendered table. */
  measure() {
    const row = this.table.querySelector('tbody tr');
    const head = this.table.querySelector('thead th');
    const cell = this.table.querySelector('thead th[data-cdn]');
    if (row) this.rowH = row.getBoundingClientRect().height || 44;
    if (head) this.headW = head.getBoundingClientRect().width || 176;
    if (cell) this.colW = cell.getBoundingClientRect().width || 108;
  }

  /** update rewrites the row headers and the shown cells whose content changed. */
  update() {
    const { r0, r1, c0 } = this.win;
    const trs = this.table.tBodies[0].rows;
    const colOff = 1 + (c0 > 0 ? 1 : 0); // the row header and the left spacer
    for (let i = 0; i < this.rows.length; i++) {
      const r = this.rows[i];
      if (this.heads[i] !== r.head) {
        trs[i].cells[0].innerHTML = r.head;
        this.heads[i] = r.head;
      }
      if (i < r0 || i >= r1) continue;
      const tr = trs[i];
      const sigs = this.sigs.get(i);
      const cells = cellsOf(r);
      for (let k = 0; k < sigs.length; k++) {
        const c = cells[c0 + k];
        const old = sigs[k];
        const attrs = attrSig(c);
        if (old.main === c.main && old.sub === c.sub && old.attrs === attrs) continue;
        const td = tr.cells[k + colOff];
        if (old.attrs !== attrs) {
          if (td.className !== (c.cls || '')) td.className = c.cls || '';
          setAttr(td, 'data-winner', c.winner ? 'true' : '');
          setAttr(td, 'data-override', c.override || '');
          setAttr(td, 'title', c.title || '');
        }
        if (old.main !== c.main || old.sub !== c.sub) setText(td, c.main, c.sub);
        sigs[k] = { main: c.main, sub: c.sub, attrs };
      }
    }
  }

  clear(emptyHTML) {
    this.wrap.innerHTML = emptyHTML;
    this.table = null;
    this.win = null;
    this.shape = '';
  }
}

function cellsOf(r) {
  return typeof r.cells === 'function' ? r.cells() : r.cells;
}

function attrSig(c) {
  return `${c.cls}|${c.winner ? 1 : 0}|${c.override || ''}|${c.title || ''}`;
}

function sigOf(c) {
  return { main: c.main, sub: c.sub, attrs: attrSig(c) };
}

/** setText writes a cell's two lines through text nodes. */
function setText(td, main, sub) {
  const first = td.firstChild;
  if (first && first.nodeType === Node.TEXT_NODE) {
    if (first.data !== main) first.data = main;
  } else {
    td.insertBefore(document.createTextNode(main), first);
  }
  const small = td.querySelector('small');
  if (sub) {
    if (small) {
      if (small.textContent !== sub) small.textContent = sub;
    } else {
      const el = document.createElement('small');
      el.textContent = sub;
      td.append(el);
    }
  } else if (small) {
    small.remove();
  }
}

function setAttr(node, name, value) {
  if (value) node.setAttribute(name, value);
  else node.removeAttribute(name);
}

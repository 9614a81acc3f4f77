// Helpers the pages share: waiting for the first ranking snapshot, the
// score colour legend, the winner of a ranking.

import { ApiError, rankings } from '../api.js';
import { esc } from '../util.js';

/**
 * rankingsReady: asking for rankings will not just answer 503 "no
 * snapshot yet". The stream says when the first snapshot is there; without
 * a working stream, ask anyway.
 */
export function rankingsReady(live) {
  if (!live) return true;
  if (live.hasSnapshot) return true;
  return live.status === 'unavailable' || live.status === 'reconnecting';
}

/** onFirstSnapshot calls fn when rankings become ready (the stream's first snapshot). */
export function onFirstSnapshot(ctx, fn) {
  const live = ctx.live;
  if (!live) return;
  let ready = rankingsReady(live);
  const check = () => {
    const r = rankingsReady(live);
    if (r && !ready) fn();
    ready = r;
  };
  ctx.on(live, 'tick', check);
  ctx.on(live, 'reset', check);
  ctx.on(live, 'status', check);
}

/**
 * pollRankings asks for rankings every 5 s (query() gives the query) and
 * hands each answer to render; until the first snapshot exists, and on a
 * 503, the matrix says it is waiting. It looks at once when the stream
 * brings the first snapshot.
 */
export function pollRankings(ctx, matrix, query, render) {
  const poll = ctx.every(5000, async () => {
    if (!rankingsReady(ctx.live)) {
      matrix.clear(waitingHTML());
      return;
    }
    let res;
    try {
      res = await rankings(query(), ctx.signal);
    } catch (err) {
      if (err instanceof ApiError && err.status === 503) {
        matrix.clear(waitingHTML());
        return;
      }
      throw err;
    }
    render(res);
  });
  onFirstSnapshot(ctx, () => poll.now());
  return poll;
}

export function waitingHTML() {
  return '<p class="empty" data-waiting>Waiting for the first ranking… (the scorer publishes its first snapshot shortly after beacons arrive)</p>';
}

/** winnerOf is the CDN with the largest share of new views; the leader on a tie. */
export function winnerOf(choices) {
  let best = null;
  for (const c of choices || []) {
    if (!best || c.weight > best.weight || (c.weight === best.weight && c.leader && !best.leader)) best = c;
  }
  return best && best.weight > 0 ? best.cdn : best?.leader ? best.cdn : '';
}

export function scaleLegend() {
  const bins = [
    ['s1', '< 50'],
    ['s2', '50–70'],
    ['s3', '70–80'],
    ['s4', '80–90'],
    ['s5', '≥ 90'],
    ['s0', 'no data'],
  ];
  return `<span class="scale" role="img" aria-label="Score colours: orange is poor, purple is good">${bins
    .map(([c, t]) => `<span class="${c}">${esc(t)}</span>`)
    .join('')}</span>`;
}

/** paintSwatches colours .swatch[data-color] through the CSSOM (the CSP forbids style attributes). */
export function paintSwatches(root) {
  for (const s of root.querySelectorAll('.swatch[data-color]')) s.style.setProperty('--c', s.dataset.color);
}

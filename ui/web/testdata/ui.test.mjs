// Unit tests of the UI's pure parts, run by node's test runner from
// TestJS (web_test.go): the SSE parser, the time windows of the series
// queries, the score bins and the winner of a ranking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SSEParser } from '../static/live.js';
import { RANGES, scoreClass, seriesWindow, scopeLabel, localToRFC3339 } from '../static/util.js';
import { winnerOf } from '../static/pages/shared.js';

test('SSE parser: events, multi-line data, comments, retry, any chunking', () => {
  const input =
    'retry: 2000\r\n\r\n: ping\r\nevent: hello\r\ndata: {"a":\r\ndata: 1}\r\n\r\n' +
    'event: tick\ndata:{"b":2}\n\n:comment\rdata: x\r\r' +
    'event: tick\ndata: ' + '{"c":"' + 'z'.repeat(70000) + '"}\n\n' +
    'data: never dispatched without a blank line';
  const want = [
    ['hello', '{"a":\n1}'],
    ['tick', '{"b":2}'],
    ['message', 'x'],
    ['tick', 70008],
  ];
  for (const size of [1, 2, 3, 7, 64, 4096, input.length]) {
    const got = [];
    let comments = 0;
    const p = new SSEParser((e, d) => got.push([e, d.length > 100 ? d.length : d]), () => comments++);
    for (let i = 0; i < input.length; i += size) p.push(input.slice(i, i + size));
    assert.deepEqual(got, want, `chunks of ${size}`);
    assert.equal(p.retry, 2000);
    assert.equal(comments, 2);
  }
});

test('series window: whole steps ending with the step that holds now', () => {
  const now = Date.parse('2026-12-06T10:07:30Z');
  assert.deepEqual(seriesWindow('15m', now), {
    from: '2026-12-06T09:53:00.000Z', to: '2026-12-06T10:08:00.000Z', step: '1m', stepSeconds: 60,
  });
  const day = seriesWindow('24h', now);
  assert.equal(day.step, '5m');
  assert.equal((Date.parse(day.to) - Date.parse(day.from)) / 300000, 288);
  for (const [k, r] of Object.entries(RANGES)) {
    const w = seriesWindow(k, now);
    const buckets = (Date.parse(w.to) - Date.parse(w.from)) / (r.stepSeconds * 1000);
    assert.ok(buckets <= 360, `${k}: ${buckets} buckets`);
  }
});

test('score bins', () => {
  assert.deepEqual([-1, 0, 49.9, 50, 69.9, 70, 85, 90, 100].map(scoreClass), ['s0', 's1', 's1', 's2', 's2', 's3', 's4', 's5', 's5']);
});

test('winner: largest share, the leader on a tie, none without weight or leader', () => {
  assert.equal(winnerOf([{ cdn: 'a', weight: 0.3, leader: true }, { cdn: 'b', weight: 0.7 }]), 'b');
  assert.equal(winnerOf([{ cdn: 'a', weight: 0.5 }, { cdn: 'b', weight: 0.5, leader: true }]), 'b');
  assert.equal(winnerOf([{ cdn: 'a', weight: 0 }, { cdn: 'b', weight: 0 }]), '');
  assert.equal(winnerOf([]), '');
});

test('scope labels and times', () => {
  assert.equal(scopeLabel({ service: 'vod', level: 'asn', region: 'eu-west', asn: 3320 }), 'vod/eu-west/AS3320');
  assert.equal(scopeLabel({ service: 'vod', level: 'country', country: 'DE' }), 'vod/DE');
  assert.equal(scopeLabel({ service: 'vod', region: 'eu-west' }), 'vod/eu-west');
  assert.match(localToRFC3339('2026-12-06T10:00'), /^2026-12-0[56]T\d\d:00:00Z$/);
  assert.equal(localToRFC3339(''), '');
});

package analytics

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

const defaultDecisionRingSize = 10_000

// DecisionRing is the decision log of the embedded default: the last Size
// decisions in memory, the oldest overwritten first. It is safe for
// concurrent use; a DecisionLog feeds it in batches, so the DNS hot path
// never takes its lock.
type DecisionRing struct {
	mu   sync.RWMutex
	buf  []steering.DecisionRecord // grows to size, then wraps
	next int                       // where the next record goes once buf is full
	size int
}

// NewDecisionRing returns an empty ring holding up to size decisions
// (10,000 when size <= 0; about 3 MB).
func NewDecisionRing(size int) *DecisionRing {
	if size <= 0 {
		size = defaultDecisionRingSize
	}
	return &DecisionRing{size: size}
}

// InsertDecisions adds rows, evicting the oldest beyond the ring's size.
// Rows are checked first: on error nothing is added.
func (d *DecisionRing) InsertDecisions(ctx context.Context, rows []steering.DecisionRecord) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("insert decisions: %w", err)
	}
	if err := checkDecisions(rows); err != nil {
		return fmt.Errorf("insert decisions: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range rows {
		r := normalizeDecision(rows[i])
		if len(d.buf) < d.size {
			d.buf = append(d.buf, r)
			continue
		}
		d.buf[d.next] = r
		d.next = (d.next + 1) % d.size
	}
	return nil
}

// each calls f with every held record from the newest inserted to the
// oldest, under the read lock.
func (d *DecisionRing) each(f func(r *steering.DecisionRecord)) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	n := len(d.buf)
	for i := range n {
		// Once full, next is the oldest; before that it is 0 and buf is in
		// insertion order. Either way the newest is just before next.
		f(&d.buf[(d.next-1-i+2*n)%n])
	}
}

// Decisions returns the newest decisions matching q, newest first (ties in
// At: the later logged first).
func (d *DecisionRing) Decisions(ctx context.Context, q DecisionQuery) ([]steering.DecisionRecord, error) {
	limit, err := q.validate()
	if err != nil {
		return nil, fmt.Errorf("decision query: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("decisions: %w", err)
	}
	fromUS, toUS, client := q.From.UnixMicro(), q.To.UnixMicro(), normalizeAddr(q.Client)
	var out []steering.DecisionRecord
	d.each(func(r *steering.DecisionRecord) {
		if q.match(r, fromUS, toUS, client) {
			out = append(out, *r)
		}
	})
	slices.SortStableFunc(out, func(a, b steering.DecisionRecord) int { return b.At.Compare(a.At) })
	if len(out) > limit {
		clear(out[limit:])
		out = out[:limit]
	}
	return out, nil
}

// DecisionCounts counts matching decisions per minute, CDN and result.
func (d *DecisionRing) DecisionCounts(ctx context.Context, f DecisionFilter) ([]DecisionCount, error) {
	if err := validateCountFilter(f); err != nil {
		return nil, fmt.Errorf("decision count query: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("decision counts: %w", err)
	}
	type key struct {
		minute      int64
		cdn, result string
	}
	counts := map[key]uint64{}
	fromUS, toUS, client := f.From.UnixMicro(), f.To.UnixMicro(), normalizeAddr(f.Client)
	d.each(func(r *steering.DecisionRecord) {
		if f.match(r, fromUS, toUS, client) {
			counts[key{floorDiv(r.At.Unix(), 60) * 60, r.CDN, r.Result}]++
		}
	})
	out := make([]DecisionCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, DecisionCount{Minute: time.Unix(k.minute, 0).UTC(), CDN: k.cdn, Result: k.result, N: n})
	}
	sortDecisionCounts(out)
	return out, nil
}

// Len is the number of decisions held, at most the ring's size.
func (d *DecisionRing) Len() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.buf)
}

package steering

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Table is what a steering node (DNS, HTTP, content steering) decides
// from: the last good snapshot of every service, swapped in atomically and
// read without locks. When a service's snapshot is older than stale.static
// (the scorer or the snapshot topic is gone) it answers in the static
// order; until then the last snapshot's weights stand (stale.freeze).
type Table struct {
	static map[string]*Snapshot
	stale  Stale
	now    func() time.Time

	mu    sync.Mutex // serializes writers; readers only Load
	snaps atomic.Pointer[map[string]*Snapshot]
}

// NewTable starts with the static order of every service in the catalog.
func NewTable(cat Catalog, stale Stale, now func() time.Time) (*Table, error) {
	if err := cat.Validate(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	t := &Table{static: map[string]*Snapshot{}, stale: stale, now: now}
	for _, s := range cat.Services {
		t.static[s.Name] = staticSnapshot(cat, s, RuleStaleStatic)
	}
	empty := map[string]*Snapshot{}
	t.snaps.Store(&empty)
	return t, nil
}

// Store swaps in a snapshot. It refuses a service the catalog does not
// know and a version older than the one held (a replayed topic).
func (t *Table) Store(s *Snapshot) error {
	if _, ok := t.static[s.Service]; !ok {
		return fmt.Errorf("snapshot for %q: %w", s.Service, ErrUnknownService)
	}
	if s.index == nil {
		s.build()
	}
	if s.Lookup(Location{}) == nil {
		return fmt.Errorf("snapshot for %q version %d has no global ranking", s.Service, s.Version)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.snaps.Load()
	if cur, ok := old[s.Service]; ok && cur.Version >= s.Version {
		return nil
	}
	next := make(map[string]*Snapshot, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[s.Service] = s
	t.snaps.Store(&next)
	return nil
}

// Snapshot is the snapshot held for a service, nil before the first.
func (t *Table) Snapshot(service string) *Snapshot { return (*t.snaps.Load())[service] }

// Age is how old the held snapshot of a service is; ok is false before
// the first one arrived.
func (t *Table) Age(service string) (time.Duration, bool) {
	s := t.Snapshot(service)
	if s == nil {
		return 0, false
	}
	return t.now().Sub(s.At), true
}

// Decide answers a query from the held snapshot, or from the static order
// when there is none yet or it is older than stale.static.
func (t *Table) Decide(q Query) (Decision, error) {
	s := (*t.snaps.Load())[q.Service]
	if s != nil && t.now().Sub(s.At) <= t.stale.Static {
		return s.Decide(q)
	}
	st, ok := t.static[q.Service]
	if !ok {
		return Decision{}, fmt.Errorf("%q: %w", q.Service, ErrUnknownService)
	}
	d, err := st.Decide(q)
	d.Stale = true
	return d, err
}

// staticSnapshot ranks a service's CDNs in their static order, all new
// views to the first one.
func staticSnapshot(cat Catalog, svc Service, rule Rule) *Snapshot {
	r := &Ranking{Scope: Scope{Service: svc.Name}, Rule: rule, Choices: staticChoices(cat, svc, "static order")}
	s := &Snapshot{Service: svc.Name, Rankings: []*Ranking{r}}
	s.build()
	return s
}

func staticChoices(cat Catalog, svc Service, reason string) []Choice {
	out := make([]Choice, len(svc.CDNs))
	for i, n := range svc.CDNs {
		out[i] = Choice{CDN: n, Host: hostOf(cat, n), Score: -1, FastScore: -1, Health: HealthUnknown, Reason: reason, seed: seedOf(n)}
	}
	out[0].Weight = 1
	return out
}

func hostOf(cat Catalog, cdn string) string {
	for _, c := range cat.CDNs {
		if c.Name == cdn {
			return c.Host
		}
	}
	return ""
}

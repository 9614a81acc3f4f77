package steering

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Table is what a steering node (DNS, HTTP, content steering) decides
// from: the last good snapshot of every service, swapped in atomically and
// read without locks. When a service's snapshot is older than stale.static
// (the scorer or the snapshot topic is gone) it answers in the static
// order; until then the last snapshot's weights stand (stale.freeze).
//
// The operator overrides it holds apply on top (Snapshot.WithOverrides),
// to the static order too: a node enforces them without the scorer, and
// stops enforcing one the moment it expires on the table's clock.
type Table struct {
	cat    Catalog
	static map[string]*Snapshot
	stale  Stale
	now    func() time.Time

	mu        sync.Mutex           // serializes writers, and a reader rebuilding at an expiry
	raw       map[string]*Snapshot // as stored
	overrides []Override           // valid; pruned as they expire
	served    atomic.Pointer[served]
	// expiry is when the next held override expires, in Unix ns
	// (math.MaxInt64: never): a reader past it rebuilds what is served.
	expiry atomic.Int64
}

// served is what readers see: the effective snapshots, overrides applied.
type served struct {
	snaps  map[string]*Snapshot // the stored ones
	static map[string]*Snapshot // the static order
}

// NewTable starts with the static order of every service in the catalog.
func NewTable(cat Catalog, stale Stale, now func() time.Time) (*Table, error) {
	if err := cat.Validate(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	t := &Table{cat: cat, static: map[string]*Snapshot{}, stale: stale, now: now, raw: map[string]*Snapshot{}}
	for _, s := range cat.Services {
		t.static[s.Name] = staticSnapshot(cat, s, RuleStaleStatic)
	}
	t.served.Store(&served{snaps: map[string]*Snapshot{}, static: t.static})
	t.expiry.Store(math.MaxInt64)
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
	if cur, ok := t.raw[s.Service]; ok && cur.Version >= s.Version {
		return nil
	}
	t.raw[s.Service] = s
	t.publish(t.now(), s.Service)
	return nil
}

// SetOverrides replaces the operator overrides with the valid ones of
// os; the error names each one the catalog refuses (left out).
func (t *Table) SetOverrides(os []Override) error {
	os, err := validOverrides(os, t.cat)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.overrides = os
	t.publish(t.now(), "")
	return err
}

// Overrides is the overrides held and still active.
func (t *Table) Overrides() []Override {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Override, 0, len(t.overrides))
	for _, o := range t.overrides {
		if o.active(now) {
			out = append(out, o)
		}
	}
	return out
}

// publish rebuilds the effective snapshots at now, of one service or ("")
// all, and drops the overrides that expired (then rebuilding all). The
// caller holds mu.
func (t *Table) publish(now time.Time, service string) {
	held := len(t.overrides)
	t.overrides = slices.DeleteFunc(t.overrides, func(o Override) bool { return !o.active(now) })
	if len(t.overrides) != held {
		service = ""
	}
	next := int64(math.MaxInt64)
	for _, o := range t.overrides {
		if !o.Expires.IsZero() {
			next = min(next, unixNano(o.Expires))
		}
	}
	old := t.served.Load()
	sv := &served{snaps: make(map[string]*Snapshot, len(t.raw)), static: old.static}
	for svc, raw := range t.raw {
		sv.snaps[svc] = old.snaps[svc]
		if service == "" || svc == service {
			sv.snaps[svc] = raw.overlay(t.overrides, now, t.static[svc].Rankings[0].Choices)
		}
	}
	if service == "" {
		sv.static = make(map[string]*Snapshot, len(t.static))
		for svc, st := range t.static {
			sv.static[svc] = st.overlay(t.overrides, now, st.Rankings[0].Choices)
		}
	}
	// Readers check the expiry, then load: they see this state once they
	// see the expiry it goes with.
	t.served.Store(sv)
	t.expiry.Store(next)
}

// view is what is served at now, rebuilt first if a held override
// expired since: one atomic load and a comparison on the hot path. A
// reader never waits for a writer: while another one holds the lock (and
// will see the expiry, or leave it for the next reader), it answers from
// what is served until then.
func (t *Table) view(now time.Time) *served {
	// A clock outside 1678..2262 is no clock; only expiries are clamped.
	if now.UnixNano() >= t.expiry.Load() && t.mu.TryLock() {
		if now.UnixNano() >= t.expiry.Load() { // not rebuilt by another reader meanwhile
			t.publish(now, "")
		}
		t.mu.Unlock()
	}
	return t.served.Load()
}

// unixNano is t in Unix ns, clamped to what an int64 holds.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minNano):
		return math.MinInt64
	case t.After(maxNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var minNano, maxNano = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// Snapshot is the snapshot served for a service, overrides applied; nil
// before the first.
func (t *Table) Snapshot(service string) *Snapshot { return t.view(t.now()).snaps[service] }

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
// when there is none yet or it is older than stale.static; overrides
// applied either way.
func (t *Table) Decide(q Query) (Decision, error) {
	now := t.now()
	sv := t.view(now)
	s := sv.snaps[q.Service]
	if s != nil && now.Sub(s.At) <= t.stale.Static {
		return s.Decide(q)
	}
	st, ok := sv.static[q.Service]
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

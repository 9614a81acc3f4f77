// Package live follows what a steering table serves, once a second, and
// keeps it as history for dashboards: per service, every CDN's weight,
// score and health in the global ranking, how many regions each CDN leads,
// and the events an operator wants marked on a time axis (failovers,
// recoveries, leader changes, overrides coming and going).
//
// The history lives in memory only, one hour at one-second resolution and
// a day at one-minute resolution: it is what the node saw since it
// started, for the live view. Anything older or finer is in the analytics
// store.
package live

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/steering"
)

// Source is what the tracker samples (a steering.Table).
type Source interface {
	Snapshot(service string) *steering.Snapshot
	Age(service string) (time.Duration, bool)
	Overrides() []steering.Override
}

// CDN is one CDN in a Tick.
type CDN struct {
	CDN string `json:"cdn"`
	// Weight, Score, Confidence and Health are the CDN's in the service's
	// global ranking; Score is -1 without data.
	Weight     float64         `json:"weight"`
	Score      float64         `json:"score"`
	Confidence float64         `json:"confidence"`
	Health     steering.Health `json:"health"`
	// Leads is the number of region scopes the CDN leads, Down the number
	// where it is down or banned.
	Leads int `json:"leads"`
	Down  int `json:"down"`
}

// Tick is one sample of one service.
type Tick struct {
	At         time.Time `json:"at"`
	Service    string    `json:"service"`
	Version    uint64    `json:"version"`
	AgeSeconds float64   `json:"age_seconds"`
	// Stale is set when the snapshot is older than the policy's freeze
	// time: the scorer has stopped publishing.
	Stale   bool  `json:"stale"`
	Regions int   `json:"regions"` // region scopes ranked
	CDNs    []CDN `json:"cdns"`
}

// Event kinds.
const (
	KindFailover         = "failover"          // a CDN went down, banned or evacuated
	KindRecovery         = "recovery"          // it came back up
	KindLeaderChange     = "leader_change"     // another CDN leads a scope
	KindOverrideCreated  = "override_created"  //
	KindOverrideExtended = "override_extended" // its expiry moved
	KindOverrideDeleted  = "override_deleted"  // removed before its expiry
	KindOverrideExpired  = "override_expired"  // reached its expiry
	KindSnapshotStale    = "snapshot_stale"    // the scorer stopped publishing
	KindSnapshotFresh    = "snapshot_fresh"    // and is back
)

var kinds = []string{KindFailover, KindRecovery, KindLeaderChange, KindOverrideCreated, KindOverrideExtended,
	KindOverrideDeleted, KindOverrideExpired, KindSnapshotStale, KindSnapshotFresh}

// Event is something to mark on a time axis.
type Event struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Service string    `json:"service"`
	Scope   string    `json:"scope,omitempty"`
	CDN     string    `json:"cdn,omitempty"`
	From    string    `json:"from,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Message is one item of a subscription: a Tick or an Event.
type Message struct {
	Tick  *Tick
	Event *Event
}

// History is what a subscriber gets first: a tick a second over up to 15
// minutes, one per 10 s up to an hour, one a minute up to a day.
type History struct {
	Service    string  `json:"service"`
	Resolution float64 `json:"resolution_seconds"`
	Ticks      []Tick  `json:"ticks"`
	Events     []Event `json:"events"`
}

// Options configure a Tracker.
type Options struct {
	Services []string
	// StaleAfter marks a snapshot older than it stale (the policy's
	// stale.freeze).
	StaleAfter time.Duration
	Interval   time.Duration // default 1s
	Now        func() time.Time
	// Registerer takes cdnpilot_steering_events_total; nil: not exported.
	Registerer prometheus.Registerer
}

const (
	fineKeep   = time.Hour
	coarseKeep = 24 * time.Hour
	coarseStep = time.Minute
	// A history over more than fullFine is sent a tick per midStep.
	fullFine  = 15 * time.Minute
	midStep   = 10 * time.Second
	maxEvents = 2000
	// subBuffer is how far a subscriber may fall behind before it is cut
	// off (it reconnects and gets the history again).
	subBuffer = 64
)

// Tracker samples a Source and keeps the history.
type Tracker struct {
	src    Source
	o      Options
	counts *prometheus.CounterVec

	mu       sync.Mutex
	services map[string]*service
	events   []Event // oldest first, at most maxEvents
	prevOver map[string]steering.Override
	overSeen bool
	subs     map[*sub]struct{}
}

type service struct {
	fine, coarse []Tick // oldest first
	leaders      map[steering.Scope]string
	health       map[steering.Scope]map[string]steering.Health
	stale        bool
	seen         bool
}

type sub struct {
	service string
	ch      chan Message
}

// New makes a tracker; Run samples.
func New(src Source, o Options) (*Tracker, error) {
	if src == nil {
		return nil, fmt.Errorf("live: no source")
	}
	if len(o.Services) == 0 {
		return nil, fmt.Errorf("live: no services")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Tracker{src: src, o: o, services: map[string]*service{}, subs: map[*sub]struct{}{}}
	t.counts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdnpilot_steering_events_total",
		Help: "Events seen in what this node serves, by service and kind: failover (a CDN went down, banned or evacuated in some scopes), recovery, leader_change, override_*, snapshot_stale, snapshot_fresh.",
	}, []string{"service", "kind"})
	for _, svc := range o.Services {
		for _, k := range kinds {
			t.counts.WithLabelValues(svc, k) // every series from the start, for alerts
		}
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(t.counts); err != nil {
			return nil, fmt.Errorf("live: %w", err)
		}
	}
	for _, s := range o.Services {
		t.services[s] = &service{leaders: map[steering.Scope]string{}, health: map[steering.Scope]map[string]steering.Health{}}
	}
	return t, nil
}

// Run samples every Interval until ctx ends.
func (t *Tracker) Run(ctx context.Context) error {
	tk := time.NewTicker(t.o.Interval)
	defer tk.Stop()
	for {
		t.Sample()
		select {
		case <-ctx.Done():
			t.closeSubs()
			return nil
		case <-tk.C:
		}
	}
}

// Known reports whether the tracker follows service.
func (t *Tracker) Known(service string) bool {
	_, ok := t.services[service]
	return ok
}

// Sample takes one sample of every service now.
func (t *Tracker) Sample() {
	now := t.o.Now().UTC()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Message
	// Overrides first: they are the cause of the leader changes that
	// follow them.
	for _, e := range t.overrideEvents(now) {
		out = append(out, Message{Event: &e})
	}
	for _, name := range t.o.Services {
		tick, events := t.sampleService(now, name, t.services[name])
		for i := range events {
			out = append(out, Message{Event: &events[i]})
		}
		out = append(out, Message{Tick: &tick})
	}
	for _, m := range out {
		if m.Event != nil {
			t.events = append(t.events, *m.Event)
			t.counts.WithLabelValues(m.Event.Service, m.Event.Kind).Inc()
		}
	}
	if n := len(t.events) - maxEvents; n > 0 {
		t.events = slices.Delete(t.events, 0, n)
	}
	for s := range t.subs {
		for _, m := range out {
			if svc := messageService(m); svc != "" && svc != s.service {
				continue
			}
			select {
			case s.ch <- m:
			default:
				// Too slow: cut it off rather than hold the others.
				delete(t.subs, s)
				close(s.ch)
			}
			if _, ok := t.subs[s]; !ok {
				break
			}
		}
	}
}

func messageService(m Message) string {
	if m.Tick != nil {
		return m.Tick.Service
	}
	return m.Event.Service
}

func (t *Tracker) sampleService(now time.Time, name string, st *service) (Tick, []Event) {
	tick := Tick{At: now, Service: name, CDNs: []CDN{}}
	snap := t.src.Snapshot(name)
	if snap == nil {
		st.keep(now, tick)
		return tick, nil
	}
	age, _ := t.src.Age(name)
	tick.Version, tick.AgeSeconds, tick.Stale = snap.Version, age.Seconds(), age > t.o.StaleAfter

	var events []Event
	if st.seen && tick.Stale != st.stale {
		kind, detail := KindSnapshotFresh, "rankings fresh again"
		if tick.Stale {
			kind, detail = KindSnapshotStale, fmt.Sprintf("no ranking snapshot for %s; nodes freeze weights, then use the static order", age.Truncate(time.Second))
		}
		events = append(events, Event{At: now, Kind: kind, Service: name, Scope: name, Detail: detail})
	}
	st.stale = tick.Stale

	index := map[string]int{}
	var global *steering.Ranking
	for _, r := range snap.Rankings {
		if r.Scope.Level == steering.LevelGlobal {
			global = r
		}
	}
	if global != nil {
		for _, c := range global.Choices {
			index[c.CDN] = len(tick.CDNs)
			tick.CDNs = append(tick.CDNs, CDN{CDN: c.CDN, Weight: c.Weight, Score: c.Score, Confidence: c.Confidence, Health: c.Health})
		}
	}
	cdn := func(name string) *CDN {
		i, ok := index[name]
		if !ok {
			i = len(tick.CDNs)
			index[name] = i
			tick.CDNs = append(tick.CDNs, CDN{CDN: name, Score: -1, Health: steering.HealthUnknown})
		}
		return &tick.CDNs[i]
	}

	// Leader and health changes, grouped per tick so that one incident
	// in 300 regions is one event, not 300.
	type move struct{ from, to string }
	moves := map[move][]string{}
	downs, ups := map[string][]string{}, map[string][]string{}
	reasons := map[string]string{}
	seen := map[steering.Scope]bool{}
	for _, r := range snap.Rankings {
		if r.Scope.Level != steering.LevelGlobal && r.Scope.Level != steering.LevelRegion {
			continue
		}
		seen[r.Scope] = true
		label := scopeLabel(r.Scope)
		if r.Scope.Level == steering.LevelRegion {
			tick.Regions++
		}
		lead := leader(r)
		if r.Scope.Level == steering.LevelRegion && lead != "" {
			cdn(lead).Leads++
		}
		if prev, ok := st.leaders[r.Scope]; ok && st.seen && prev != lead && lead != "" {
			moves[move{prev, lead}] = append(moves[move{prev, lead}], label)
		}
		st.leaders[r.Scope] = lead
		hs := st.health[r.Scope]
		if hs == nil {
			hs = map[string]steering.Health{}
			st.health[r.Scope] = hs
		}
		for _, c := range r.Choices {
			bad := isDown(c.Health)
			if r.Scope.Level == steering.LevelRegion && (c.Health == steering.HealthDown || c.Health == steering.HealthBanned) {
				cdn(c.CDN).Down++
			}
			if prev, ok := hs[c.CDN]; ok && st.seen {
				switch {
				case bad && !isDown(prev):
					downs[c.CDN] = append(downs[c.CDN], label)
					reasons[c.CDN] = cmp.Or(reasons[c.CDN], c.Health.String()+": "+c.Reason)
				case !bad && isDown(prev):
					ups[c.CDN] = append(ups[c.CDN], label)
				}
			}
			hs[c.CDN] = c.Health
		}
	}
	// Scopes no longer ranked are forgotten, so that one ranked again is
	// not compared with a state from long ago.
	for s := range st.leaders {
		if !seen[s] {
			delete(st.leaders, s)
			delete(st.health, s)
		}
	}
	st.seen = true

	for _, c := range sortedKeys(downs) {
		events = append(events, Event{At: now, Kind: KindFailover, Service: name, CDN: c, Scope: scopes(name, downs[c]), Detail: strings.TrimSuffix(reasons[c], ": ")})
	}
	for _, c := range sortedKeys(ups) {
		events = append(events, Event{At: now, Kind: KindRecovery, Service: name, CDN: c, Scope: scopes(name, ups[c]), Detail: "healthy again"})
	}
	ms := make([]move, 0, len(moves))
	for m := range moves {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b move) int { return cmp.Or(strings.Compare(a.from, b.from), strings.Compare(a.to, b.to)) })
	for _, m := range ms {
		events = append(events, Event{At: now, Kind: KindLeaderChange, Service: name, CDN: m.to, From: m.from, Scope: scopes(name, moves[m]),
			Detail: m.to + " leads instead of " + m.from})
	}

	st.keep(now, tick)
	return tick, events
}

// keep adds a tick to the history: every one to the fine history, the
// first of each minute to the coarse one.
func (st *service) keep(now time.Time, tick Tick) {
	st.fine = appendKeep(st.fine, tick, now.Add(-fineKeep))
	if n := len(st.coarse); n == 0 || now.Truncate(coarseStep).After(st.coarse[n-1].At.Truncate(coarseStep)) {
		st.coarse = appendKeep(st.coarse, tick, now.Add(-coarseKeep))
	}
}

// overrideEvents compares the overrides in force with the last sample's.
func (t *Tracker) overrideEvents(now time.Time) []Event {
	cur := map[string]steering.Override{}
	for _, o := range t.src.Overrides() {
		cur[o.ID] = o
	}
	prev, first := t.prevOver, !t.overSeen
	t.prevOver, t.overSeen = cur, true
	if first {
		return nil
	}
	var out []Event
	for _, id := range sortedKeys(cur) {
		o := cur[id]
		p, was := prev[id]
		switch {
		case !was:
			out = append(out, overrideEvent(now, KindOverrideCreated, o, o.Reason))
		case !p.Expires.Equal(o.Expires):
			out = append(out, overrideEvent(now, KindOverrideExtended, o, "until "+o.Expires.UTC().Format(time.RFC3339)))
		}
	}
	for _, id := range sortedKeys(prev) {
		if _, still := cur[id]; still {
			continue
		}
		o := prev[id]
		kind := KindOverrideDeleted
		if !o.Expires.IsZero() && !now.Before(o.Expires) {
			kind = KindOverrideExpired
		}
		out = append(out, overrideEvent(now, kind, o, o.Reason))
	}
	return out
}

func overrideEvent(now time.Time, kind string, o steering.Override, detail string) Event {
	scope := o.Service
	if o.Region != "" {
		scope += "/" + o.Region
	}
	if o.ASN != 0 {
		scope += "/AS" + strconv.FormatUint(uint64(o.ASN), 10)
	}
	return Event{At: now, Kind: kind, Service: o.Service, Scope: scope, CDN: o.CDN, Detail: string(o.Kind) + " " + o.ID + ": " + detail}
}

// Subscribe returns the history of service over the last backlog and a
// channel of what comes next; cancel ends the subscription. The channel
// is closed when the subscriber falls too far behind or the tracker
// stops.
func (t *Tracker) Subscribe(service string, backlog time.Duration) (History, <-chan Message, func(), error) {
	st, ok := t.services[service]
	if !ok {
		return History{}, nil, nil, fmt.Errorf("live: unknown service %q", service)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	since := t.o.Now().Add(-backlog)
	h := History{Service: service, Resolution: 1, Ticks: []Tick{}, Events: []Event{}}
	src, every := st.fine, time.Duration(0)
	switch {
	case backlog > fineKeep:
		src, h.Resolution = st.coarse, coarseStep.Seconds()
	case backlog > fullFine:
		// An hour at a second is 3,600 ticks: megabytes with 50 CDNs.
		every, h.Resolution = midStep, midStep.Seconds()
	}
	var last time.Time
	for _, tk := range src {
		if tk.At.Before(since) {
			continue
		}
		if every > 0 && !last.IsZero() && tk.At.Truncate(every).Equal(last.Truncate(every)) {
			continue
		}
		h.Ticks = append(h.Ticks, tk)
		last = tk.At
	}
	for _, e := range t.events {
		if e.Service == service && !e.At.Before(since) {
			h.Events = append(h.Events, e)
		}
	}
	s := &sub{service: service, ch: make(chan Message, subBuffer)}
	t.subs[s] = struct{}{}
	cancel := func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if _, ok := t.subs[s]; ok {
			delete(t.subs, s)
			close(s.ch)
		}
	}
	return h, s.ch, cancel, nil
}

func (t *Tracker) closeSubs() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		delete(t.subs, s)
		close(s.ch)
	}
}

// leader is the CDN with the largest share of new views (not the
// hysteresis leader: an override or a cap can give the traffic to
// another).
func leader(r *steering.Ranking) string {
	best, w := "", -1.0
	for _, c := range r.Choices {
		if c.Weight > w {
			best, w = c.CDN, c.Weight
		}
	}
	return best
}

func isDown(h steering.Health) bool {
	return h == steering.HealthDown || h == steering.HealthBanned || h == steering.HealthEvacuated
}

func scopeLabel(s steering.Scope) string {
	if s.Level == steering.LevelGlobal {
		return "global"
	}
	return s.Region
}

// scopes names where something happened: one scope by name, a few by
// their names, many by their count.
func scopes(service string, labels []string) string {
	slices.Sort(labels)
	switch {
	case len(labels) == 1 && labels[0] == "global":
		return service
	case len(labels) <= 3:
		return service + "/" + strings.Join(labels, ",")
	default:
		return service + " (" + strconv.Itoa(len(labels)) + " scopes)"
	}
}

func appendKeep(ticks []Tick, t Tick, after time.Time) []Tick {
	i := 0
	for i < len(ticks) && ticks[i].At.Before(after) {
		i++
	}
	if i > 0 {
		ticks = slices.Delete(ticks, 0, i)
	}
	return append(ticks, t)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

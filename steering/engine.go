package steering

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProbeResult is one active HTTP probe of a CDN's health URL.
type ProbeResult struct {
	CDN    string
	At     time.Time
	OK     bool
	Detail string // why not OK ("status 503", "timeout after 2s")
}

// ErrUnknownCDN is returned for an observation or probe of a CDN the
// catalog does not list for its service.
var ErrUnknownCDN = errors.New("unknown cdn")

// Engine turns observations, probe results and overrides into ranking
// snapshots. It is safe for concurrent use; Tick is meant to be called by
// one goroutine once per interval (the scorer's), with the time of the
// observations (the server receive time), so tests and the simulator can
// drive it on a virtual clock.
type Engine struct {
	cat Catalog
	pol Policy

	mu        sync.Mutex
	slow      decay
	fast      decay
	svcs      map[string]*svcState
	windows   map[winKey]*window
	clients   map[uint64]*clientCount
	probes    map[string]*probeState
	usage     map[string]*usage
	overrides []Override
	winGen    uint64    // bumped when a window is created
	dirty     []*window // windows with samples since the last tick
	workers   []*worker
	version   uint64
	lastTick  time.Time
	// sharing: the shared scopes take deltas (share.go); outgoing and
	// outUsage collect the next one.
	sharing  bool
	outgoing map[winKey]*window
	outUsage map[string]*usage
}

// clientCount is the forward-decayed weight a client network has
// contributed under both decays.
type clientCount struct{ slow, fast, slowA, fastA float64 }

type winKey struct {
	scope Scope
	cdn   string
}

type svcState struct {
	svc    Service
	idx    map[string]int // cdn name -> index in svc.CDNs
	prices []float64
	hosts  []string
	seeds  []uint64
	// per CDN from the catalog
	maxShare, commit []float64
	anyMaxShare      bool
	scopes           map[Scope]*scopeState
	sorted           []*scopeState // parents before children; rebuilt when scopes are added
	last             *Snapshot     // the previous tick's
	// fresh is the newest observation of the service: when it is older
	// than stale.freeze the inputs are stale.
	fresh time.Time
	// carried are the measured rankings of a snapshot another engine
	// published (Seed), for scopes this one has not made yet.
	carried map[Scope]*Ranking
	// probes: per CDN, its probes' state (nil before the first probe),
	// looked up once a tick for every scope's ranking.
	probes []*probeState
}

// scopeState is what a scope remembers between ticks.
type scopeState struct {
	scope  Scope
	loc    Location // for the parent chain (country of a region)
	shares []float64
	leader int // -1: none yet
	// displaced is the leader that lost the lead by failing (down,
	// evacuated, damped), until it takes it back or restoreWithin passes.
	displaced   int
	displacedAt time.Time
	// restoredAt is when the displaced leader last took the lead back;
	// reclaim is set when, taken from it again within recovering, it
	// keeps its claim, only to be restored if no worse at all.
	restoredAt  time.Time
	reclaim     bool
	challenger  int
	since       time.Time
	leaderAt    time.Time
	measuredAt  time.Time // first ranked on measurements: the warm-up runs from here
	health      []Health
	penalty     []float64 // flap damping, decayed from penaltyAt
	penaltyAt   []time.Time
	suppressed  []bool      // by its own flap penalty
	unsteadyAt  []time.Time // when a CDN on flap damping last dipped (see dips)
	damped      []bool      // suppressed here or in a parent scope
	chainScopes []Scope     // the scope and its parents, most specific first
	hot         []winHot    // per CDN: what rank reads of this scope's windows
	chain       []*winHot   // [cdn*len(chainScopes)+level]; nil until the window exists
	chainGen    uint64
	parent      *scopeState
	passive     []Health // passive health, sticky between ticks
	passiveAt   []time.Time
	passiveWhy  []string
	last        *Ranking    // published last tick; shared while unchanged
	inherited   []bool      // the passive state was taken from the parent
	clearedAt   []time.Time // when the CDN last came back up from down or probation on its own evidence
	// broad: the CDN failed in the parent scope beyond this one too, so
	// the parent's recovery stands for this scope's.
	broad []bool
	// spread: a region took the CDN down on failures seen in more than
	// one of its ASNs, so its ASNs too thin to judge take the state.
	spread []bool
	// failedTrials: probations in a row the CDN failed here. Each one
	// doubles the wait before the next (retryAfter), so a CDN that is
	// still down is not handed a probation share every Retry.
	failedTrials []uint8
	fromDown     []bool // on probation after failing, not after bad QoE
	// drops: failures this scope forgot this tick, to take out of its
	// parents' windows once the tick's scopes are ranked (see dropFailures).
	drops []dropped
	// ranked: an ASN scope ranks only once a window of it has enough
	// data; until then its clients use the region ranking.
	ranked bool
}

type probeState struct {
	up          bool
	known       bool
	fails, oks  int
	detail      string
	lastChanged time.Time
}

// down reports whether the probes hold the CDN down (nil: never probed).
func (p *probeState) down() bool { return p != nil && p.known && !p.up }

type usage struct {
	month int // year*12+month of the accumulation
	gb    float64
}

// NewEngine starts an engine with no data; its decay landmark is now.
func NewEngine(cat Catalog, pol Policy, now time.Time) (*Engine, error) {
	if err := cat.Validate(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if err := pol.Validate(); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	e := &Engine{
		cat: cat, pol: pol,
		slow: newDecay(now, pol.HalfLife), fast: newDecay(now, pol.FastHalfLife),
		svcs: map[string]*svcState{}, windows: map[winKey]*window{}, clients: map[uint64]*clientCount{},
		probes: map[string]*probeState{}, usage: map[string]*usage{},
	}
	for _, s := range cat.Services {
		st := &svcState{svc: s, idx: map[string]int{}, scopes: map[Scope]*scopeState{}}
		for i, n := range s.CDNs {
			st.idx[n] = i
			c := cat.cdn(n)
			st.prices = append(st.prices, c.PricePerGB)
			st.hosts = append(st.hosts, c.Host)
			st.seeds = append(st.seeds, seedOf(n))
			st.maxShare = append(st.maxShare, c.MaxShare)
			st.anyMaxShare = st.anyMaxShare || c.MaxShare > 0
			st.commit = append(st.commit, c.CommitGBPerMonth)
		}
		e.svcs[s.Name] = st
		st.scope(Scope{Service: s.Name}, Location{})
	}
	return e, nil
}

func (c Catalog) cdn(name string) CDN {
	for _, d := range c.CDNs {
		if d.Name == name {
			return d
		}
	}
	return CDN{Name: name}
}

func (st *svcState) scope(sc Scope, loc Location) *scopeState {
	if s, ok := st.scopes[sc]; ok {
		return s
	}
	n := len(st.svc.CDNs)
	s := &scopeState{scope: sc, loc: loc, leader: -1, challenger: -1, displaced: -1, hot: make([]winHot, n),
		health: make([]Health, n), penalty: make([]float64, n), penaltyAt: make([]time.Time, n), suppressed: make([]bool, n), damped: make([]bool, n),
		unsteadyAt: make([]time.Time, n), ranked: sc.Level != LevelASN}
	for i := range s.health {
		s.health[i] = HealthUnknown
	}
	st.scopes[sc] = s
	if r := st.carried[sc]; r != nil {
		st.seed(s, r)
		delete(st.carried, sc)
	}
	return s
}

// Seed carries on from a snapshot of the service that another engine
// published: the scorer that took over a region, or the whole service, a
// rebalance or a restart ago. Every measured ranking's weights become its
// scope's current shares, and its leader stays the leader since the same
// instant. So the shift cap and the hysteresis go on from where that
// engine left off, rather than from this engine's first targets. Call it
// before the first tick; scopes made later take their seed when made.
func (e *Engine) Seed(snap *Snapshot) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, ok := e.svcs[snap.Service]
	if !ok {
		return fmt.Errorf("seed %q: %w", snap.Service, ErrUnknownService)
	}
	if st.carried == nil {
		st.carried = map[Scope]*Ranking{}
	}
	for _, r := range snap.Rankings {
		if r.Rule != RuleMeasured || r.Scope.Service != snap.Service {
			continue
		}
		if s := st.scopes[r.Scope]; s != nil {
			st.seed(s, r)
			continue
		}
		st.carried[r.Scope] = r
	}
	return nil
}

func (st *svcState) seed(s *scopeState, r *Ranking) {
	shares := make([]float64, len(st.svc.CDNs))
	leader, since := -1, time.Time{}
	for _, c := range r.Choices {
		i, ok := st.idx[c.CDN]
		if !ok {
			continue
		}
		shares[i] = c.Weight
		if c.Leader {
			leader, since = i, time.UnixMilli(c.LeaderSince)
		}
	}
	sum := 0.0
	for _, v := range shares {
		sum += v
	}
	if sum <= 0 {
		return // a catalog without the ranked CDNs: nothing to carry on
	}
	normalize(shares)
	s.shares = shares
	if leader >= 0 {
		// Measured before this engine was: its windows are rebuilt
		// from history, not young, so no warm-up (see margin).
		s.leader, s.leaderAt, s.measuredAt = leader, since, time.Unix(0, 0)
	}
}

// Observe folds one beacon into the windows of every scope it belongs to
// (a sharing engine: into its next delta for the shared scopes).
func (e *Engine) Observe(o *Observation) error { return e.observe(o, false) }

func (e *Engine) observe(o *Observation, replay bool) error {
	st, ok := e.svcs[o.Service]
	if !ok {
		return fmt.Errorf("%q: %w", o.Service, ErrUnknownService)
	}
	if _, ok := st.idx[o.CDN]; !ok {
		return fmt.Errorf("%q for service %q: %w", o.CDN, o.Service, ErrUnknownCDN)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if o.At.After(st.fresh) {
		st.fresh = o.At
	}
	gs, gf := e.slow.g(o.At), e.fast.g(o.At)
	// Poisoning: a client network may contribute at most ClientCap
	// decayed beacons' worth of weight to the windows, and AttemptCap play
	// attempts' worth (a viewer starts a view every few minutes at most);
	// past that its beacons count for nothing until the budget refills
	// with the decay. The fast windows get the same caps on the same rate.
	w, f, pw := gs, gf, 1.0
	if o.Client != 0 {
		c := e.clients[o.Client]
		if c == nil {
			c = &clientCount{}
			e.clients[o.Client] = c
		}
		ratio := e.pol.FastHalfLife.Seconds() / e.pol.HalfLife.Seconds()
		budget := func(used *float64, g, limit float64) float64 {
			k := min(1, max(0, limit-*used/g))
			*used += k * g
			return k
		}
		ws := budget(&c.slow, gs, e.pol.Poison.ClientCap)
		wf := budget(&c.fast, gf, max(1, e.pol.Poison.ClientCap*ratio))
		if o.attempt() {
			ws = min(ws, budget(&c.slowA, gs, e.pol.Poison.AttemptCap))
			wf = min(wf, budget(&c.fastA, gf, max(1, e.pol.Poison.AttemptCap*ratio)))
		}
		w, f, pw = ws*gs, wf*gf, ws
		if w == 0 && f == 0 {
			return nil
		}
	}

	sc := mostSpecific(o.Service, o.Location)
	for {
		k := winKey{scope: sc, cdn: o.CDN}
		if e.sharing && shared(sc) {
			// Ranked here too, from the deltas of the whole group.
			st.scope(sc, o.Location)
			if !replay {
				win := e.outgoing[k]
				if win == nil {
					win = &window{}
					e.outgoing[k] = win
				}
				win.add(o, w, f, pw)
			}
			p, ok := sc.parent(o.Location)
			if !ok {
				break
			}
			sc = p
			continue
		}
		e.window(st, k, o.Location).add(o, w, f, pw)
		p, ok := sc.parent(o.Location)
		if !ok {
			break
		}
		sc = p
	}
	if (o.Kind == KindHeartbeat || o.Kind == KindViewEnd) && o.BitrateKbps > 0 && o.PlayedMS > 0 {
		switch {
		case !e.sharing:
			e.account(e.usage, o)
		case !replay:
			e.account(e.outUsage, o)
		}
	}
	return nil
}

// window is the window of k, made on first use, and about to take
// samples: on the dirty list for the next tick's refresh.
func (e *Engine) window(st *svcState, k winKey, loc Location) *window {
	win := e.windows[k]
	if win == nil {
		s := st.scope(k.scope, loc)
		h := &s.hot[st.idx[k.cdn]]
		win = &window{hot: h}
		h.win = win
		e.windows[k] = win
		e.winGen++
	}
	if !win.dirty {
		e.dirty = append(e.dirty, win)
	}
	return win
}

// account estimates delivered volume per CDN for commit tracking: played
// time at the rendition bitrate. Beacons are usually a sample of views,
// so this is an estimate; it only ranks CDNs within the cost margin.
func (e *Engine) account(to map[string]*usage, o *Observation) {
	u := to[o.CDN]
	if u == nil {
		u = &usage{}
		to[o.CDN] = u
	}
	y, m, _ := o.At.UTC().Date()
	if month := y*12 + int(m); month != u.month {
		u.month, u.gb = month, 0
	}
	u.gb += float64(o.PlayedMS) / 1000 * float64(o.BitrateKbps) * 1000 / 8 / 1e9
}

// Probe records an active probe result. A CDN goes down after Fall
// consecutive failures and up after Rise consecutive successes.
func (e *Engine) Probe(r ProbeResult) error {
	if !e.catalogHas(r.CDN) {
		return fmt.Errorf("probe of %q: %w", r.CDN, ErrUnknownCDN)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.probes[r.CDN]
	if p == nil {
		p = &probeState{up: true}
		e.probes[r.CDN] = p
	}
	if r.OK {
		p.oks++
		p.fails = 0
		if (!p.up || !p.known) && p.oks >= e.pol.Probe.Rise {
			p.up, p.known, p.lastChanged = true, true, r.At
			p.detail = "probe: " + strconv.Itoa(p.oks) + " consecutive successes"
		}
	} else {
		p.fails++
		p.oks = 0
		if (p.up || !p.known) && p.fails >= e.pol.Probe.Fall {
			p.up, p.known, p.lastChanged = false, true, r.At
			p.detail = "probe: " + strconv.Itoa(p.fails) + " consecutive failures, last " + r.Detail
		}
	}
	return nil
}

// probeBack reports whether cdn's health probes turned up after since.
func (e *Engine) probeBack(cdn string, since time.Time) bool {
	p := e.probes[cdn]
	return p != nil && p.known && p.up && p.lastChanged.After(since)
}

func (e *Engine) catalogHas(cdn string) bool {
	for _, c := range e.cat.CDNs {
		if c.Name == cdn {
			return true
		}
	}
	return false
}

// SetOverrides replaces the operator overrides with the valid ones of
// os; the error names each one the catalog refuses (left out).
func (e *Engine) SetOverrides(os []Override) error {
	os, err := validOverrides(os, e.cat)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.overrides = slices.Clone(os)
	// An override of a region or ASN no beacon came from yet has no
	// ranking of its own to act on: its clients would be answered by the
	// parent's, which it does not cover. Its scope ranks from now on (an
	// ASN's only while an override of it is active, see rank), with its
	// region as the parent it inherits health and damping from.
	for _, o := range os {
		if o.Region != "" {
			st, loc := e.svcs[o.Service], Location{Region: o.Region, ASN: o.ASN}
			st.scope(Scope{Service: o.Service, Level: LevelRegion, Region: o.Region}, loc)
			st.scope(o.scope(), loc)
		}
	}
	return err
}

// Tick recomputes every ranking at now and returns one new snapshot per
// service, in catalog order.
func (e *Engine) Tick(now time.Time) []*Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fast.rebaseDue(now) || e.slow.rebaseDue(now) {
		e.rebase(now)
	}
	dt := time.Second
	if !e.lastTick.IsZero() && now.After(e.lastTick) {
		dt = now.Sub(e.lastTick)
	}
	e.lastTick = now
	e.version = max(e.version+1, uint64(now.UnixMilli())) // comparable across scorer restarts
	active := e.overrides[:0:0]
	for _, o := range e.overrides {
		if o.active(now) {
			active = append(active, o)
		}
	}
	e.overrides = active

	gs, gf := e.slow.g(now), e.fast.g(now)
	e.refreshDirty()
	out := make([]*Snapshot, 0, len(e.cat.Services))
	for _, svc := range e.cat.Services {
		st := e.svcs[svc.Name]
		snap := &Snapshot{Service: svc.Name, Version: e.version, At: now}
		if st.probes == nil {
			st.probes = make([]*probeState, len(svc.CDNs))
		}
		for i, cdn := range svc.CDNs {
			st.probes[i] = e.probes[cdn]
		}
		if len(st.sorted) != len(st.scopes) {
			st.sorted = st.sorted[:0]
			for _, s := range st.scopes {
				st.sorted = append(st.sorted, s)
			}
			sort.Slice(st.sorted, func(i, j int) bool { return scopeLess(st.sorted[i].scope, st.sorted[j].scope) })
		}
		rankings := make([]*Ranking, len(st.sorted))
		// Level by level, parents first: a new scope starts from its
		// parent's shares. Within a level scopes are independent.
		for lo := 0; lo < len(st.sorted); {
			hi := lo
			for hi < len(st.sorted) && st.sorted[hi].scope.Level == st.sorted[lo].scope.Level {
				hi++
			}
			e.parallel(hi-lo, func(wk *worker, i int) {
				rankings[lo+i] = e.rank(wk, st, st.sorted[lo+i], now, dt, gs, gf, active)
			})
			lo = hi
		}
		e.applyDrops(st)
		snap.Rankings = rankings[:0]
		for _, r := range rankings {
			if r != nil {
				snap.Rankings = append(snap.Rankings, r)
			}
		}
		// Engine rankings carry their seeds already.
		snap.indexFrom(st.last)
		st.last = snap
		out = append(out, snap)
	}
	return out
}

// parallel runs f over 0..n-1 on up to GOMAXPROCS workers; small jobs run
// on the caller's goroutine.
func (e *Engine) parallel(n int, f func(wk *worker, i int)) {
	p := runtime.GOMAXPROCS(0)
	if n < 512 || p == 1 {
		p = 1
	}
	for len(e.workers) < p {
		e.workers = append(e.workers, &worker{})
	}
	if p == 1 {
		for i := range n {
			f(e.workers[0], i)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + p - 1) / p
	for k := range p {
		lo, hi := k*chunk, min(n, (k+1)*chunk)
		if lo >= hi {
			break
		}
		wk := e.workers[k]
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				f(wk, i)
			}
		})
	}
	wg.Wait()
}

// refreshDirty recomputes the figures of every window that got samples
// since the last tick, before the scopes that share them read them.
func (e *Engine) refreshDirty() {
	d := e.dirty
	e.parallel(len(d), func(_ *worker, i int) { d[i].refresh(e.pol.Weights) })
	clear(d)
	e.dirty = d[:0]
}

func scopeLess(a, b Scope) bool {
	if a.Level != b.Level {
		return a.Level < b.Level
	}
	if a.Region != b.Region {
		return a.Region < b.Region
	}
	if a.Country != b.Country {
		return a.Country < b.Country
	}
	return a.ASN < b.ASN
}

// rebase moves the decay landmarks to now; every weight shrinks by the
// same factor, so no figure changes.
func (e *Engine) rebase(now time.Time) {
	ks, kf := 1/e.slow.g(now), 1/e.fast.g(now)
	for _, w := range e.windows {
		w.scale(ks, kf)
		w.refresh(e.pol.Weights)
	}
	for _, w := range e.outgoing {
		w.scale(ks, kf)
	}
	for k, c := range e.clients {
		if c.slow*ks < 0.01 {
			delete(e.clients, k)
			continue
		}
		c.slow, c.slowA = c.slow*ks, c.slowA*ks
		c.fast, c.fastA = c.fast*kf, c.fastA*kf
	}
	e.slow.landmark, e.fast.landmark = now, now
}

// worker holds one ranking goroutine's scratch space, reused every tick.
type worker struct {
	scratch []cdnView
	micro   []int64
	rows    []row // a ranking being built, before it is kept or found unchanged
	order   []int
	tgt     []float64
	idxs    []int
	prices  []float64
	rslab   []Ranking
	cslab   []Choice
}

// cdnView is everything rank knows about one CDN in one scope this tick.
// Counts only, not whole Stats: rank reads every CDN of every scope every
// tick, and copying figures it does not use was a third of its time.
type cdnView struct {
	fig       *Figures
	score     float64
	xscore    float64 // experience part of the score (no failures): compared with fastScore
	xageless  float64 // xscore as if nothing had stalled: compared with fastAgeless (see younger)
	ageless   float64 // score as if nothing had stalled: what outscores compares where one side's views are younger
	level     Level
	samples   float64 // decayed beacons of the scoring window
	views     float64 // decayed play attempts of the scoring window
	fast      fastCounts
	fastScore float64
	// fastAgeless is fastScore as if nothing had stalled: what a CDN
	// whose recent views are younger than the others' is judged on.
	fastAgeless float64
	health      Health
	reason      string
	override    string
	value       float64 // score + cost bonus
	candidate   bool    // may lead
	out         bool    // banned, drained or held down by the probes: takes no views whatever its QoE
	// byLevel is the score of the CDN's window at each level of the
	// scope's chain, -1 where it has none: a challenger scored from a
	// broader window than the leader is compared with the leader's score
	// at that level.
	byLevel [LevelASN + 1]float64
}

// asnShrink is how many MinSamples of its own an ASN window needs to
// count for half against its region's (see shrink).
const asnShrink = 4

// shrink pulls an ASN's score toward its region's by how little data the
// ASN has: weight b/(b + asnShrink*MinSamples) on its own. Beacons of a
// view come in runs, so an ASN's score over a few hundred of them still
// swings by points with who happened to watch; unshrunk, ASNs where two
// CDNs are equal changed leader every few minutes on that noise alone.
// An ASN that really differs from its region (its own peering) still
// diverges once its data says so; its health is judged on its own fast
// window, not on this.
func shrink(own, region, b, minSamples float64) float64 {
	if own < 0 || region < 0 {
		return own
	}
	// In steps of 5 %: b decays every tick, and a weight that moved with
	// it would change the ASN's rounded score, and so its ranking, every
	// tick (a tick rebuilt every ASN ranking: 4x the allocation).
	k := math.Round(20*b/(b+asnShrink*minSamples)) / 20
	return region + (own-region)*k
}

// fastCounts is what passive health reads of the scope's own fast window.
type fastCounts struct {
	Views, Beacons, FailureRate float64
	Starts                      float64 // play attempts: with Beacons, how young the views are
}

func (e *Engine) rank(wk *worker, st *svcState, s *scopeState, now time.Time, dt time.Duration, gs, gf float64, active []Override) *Ranking {
	n := len(st.svc.CDNs)
	if cap(wk.scratch) < n {
		wk.scratch = make([]cdnView, n)
	}
	views := wk.scratch[:n]
	clear(views)
	e.resolveChain(st, s)
	anyData := false
	for i := range st.svc.CDNs {
		v := &views[i]
		v.score, v.xscore, v.xageless, v.ageless, v.fastScore, v.fastAgeless, v.level = -1, -1, -1, -1, -1, -1, s.scope.Level
		v.byLevel = [LevelASN + 1]float64{-1, -1, -1, -1}
		v.fast.FailureRate = -1
		// Slow: the most specific window with enough samples decides;
		// with none, the broadest that has any.
		chain := s.chain[i*len(s.chainScopes) : (i+1)*len(s.chainScopes)]
		pick, level, enough := -1, Level(0), false
		for j, w := range chain {
			if w == nil {
				continue
			}
			if w.beacons > 0 {
				v.byLevel[s.chainScopes[j].Level] = w.score
			}
			if enough {
				continue // the scores above are for the hysteresis (outscores)
			}
			if pick < 0 || s.chainScopes[j].Level == LevelGlobal {
				pick, level = j, s.chainScopes[j].Level
			}
			if w.beacons/gs >= e.pol.MinSamples {
				pick, level, enough = j, s.chainScopes[j].Level, true
			}
		}
		if pick >= 0 {
			// Windows are clean here: refreshDirty ran first, and scopes
			// ranked in parallel share them read-only.
			w := chain[pick]
			v.level, v.fig, v.views = level, w.fig, w.attempts/gs
			if b := w.beacons / gs; b > 0 {
				v.score, v.xscore, v.xageless, v.ageless, v.samples = w.score, w.xscore, w.xageless, w.ageless, b
				anyData = anyData || v.score >= 0
				if p := pick + 1; level == LevelASN && p < len(chain) && chain[p] != nil && chain[p].beacons/gs >= e.pol.MinSamples {
					r := chain[p]
					v.score, v.xscore = shrink(w.score, r.score, b, e.pol.MinSamples), shrink(w.xscore, r.xscore, b, e.pol.MinSamples)
					v.xageless = shrink(w.xageless, r.xageless, b, e.pol.MinSamples)
					v.ageless = shrink(w.ageless, r.ageless, b, e.pol.MinSamples)
				}
			}
		}
		// Fast: the scope's own window only. A parent's data would
		// hide a problem local to this scope.
		if w := chain[0]; w != nil {
			v.fast = fastCounts{Views: w.fastViews / gf, Beacons: w.fastBeacons / gf, FailureRate: w.fastFail, Starts: w.fastStarts / gf}
			if v.fast.Beacons >= e.pol.Passive.MinBeacons {
				v.fastScore, v.fastAgeless = w.fscore, w.fageless
			}
		}
	}
	if s.scope.Level == LevelASN && !s.ranked {
		for i := range views {
			if views[i].level == LevelASN && views[i].samples >= e.pol.MinSamples {
				s.ranked = true
			}
		}
		// An override of this very ASN needs a ranking to act on.
		if !s.ranked && !slices.ContainsFunc(active, func(o Override) bool { return o.scope() == s.scope }) {
			return nil
		}
	}

	// Health: operator state, then probes, then passive.
	bans, pin, split, weights := e.applicable(s.scope, active)
	for i, cdn := range st.svc.CDNs {
		views[i].out = st.probes[i].down() || bans != nil && bans[cdn].Kind != ""
	}
	e.passive(st, s, views, now, gf)
	for i, cdn := range st.svc.CDNs {
		v := &views[i]
		switch p := st.probes[i]; {
		case bans[cdn].Kind == OverrideBan:
			v.health, v.reason, v.override = HealthBanned, "banned: "+bans[cdn].Reason, bans[cdn].ID
		case bans[cdn].Kind == OverrideDrain:
			v.health, v.reason, v.override = HealthDrained, "drained: "+bans[cdn].Reason, bans[cdn].ID
		case p.down():
			v.health, v.reason = HealthDown, p.detail
		case v.health == HealthUp && v.score < 0 && (p == nil || !p.known):
			v.health, v.reason = HealthUnknown, "no data yet"
		}
	}
	e.damp(st, s, views, now)

	var fired Fired
	rule := RuleMeasured
	switch {
	case pin != nil || split != nil:
		rule = e.operatorShares(st, s, views, pin, split)
	default:
		eligible := 0
		for i := range views {
			if views[i].health.eligible() {
				eligible++
			}
		}
		stale := now.Sub(st.fresh)
		switch {
		case eligible == 0:
			rule = RuleFailOpen
			failOpen(st, s, views)
		case st.fresh.IsZero() || !anyData:
			rule = RuleNoData
			fired = e.staticShares(wk, st, s, views, weights)
		case stale > e.pol.Stale.Static:
			rule = RuleStaleStatic
			fired = e.staticShares(wk, st, s, views, weights)
		case stale > e.pol.Stale.Freeze && s.shares != nil:
			rule = RuleStaleFreeze
			fired = e.frozenShares(s, views)
		default:
			fired = e.measuredShares(wk, st, s, views, weights, now, dt)
		}
	}
	return e.ranking(wk, st, s, views, rule, fired)
}

// resolveChain caches a scope's windows, per CDN from its own scope up to
// global, so a tick costs no map lookups once every window exists.
func (e *Engine) resolveChain(st *svcState, s *scopeState) {
	if s.chainGen == e.winGen && s.chain != nil {
		return
	}
	if s.chainScopes == nil {
		for sc, ok := s.scope, true; ok; sc, ok = sc.parent(s.loc) {
			s.chainScopes = append(s.chainScopes, sc)
		}
	}
	m := len(s.chainScopes)
	if s.chain == nil {
		s.chain = make([]*winHot, len(st.svc.CDNs)*m)
	}
	for i, cdn := range st.svc.CDNs {
		for j, sc := range s.chainScopes {
			if s.chain[i*m+j] == nil {
				if w := e.windows[winKey{scope: sc, cdn: cdn}]; w != nil {
					s.chain[i*m+j] = w.hot
				}
			}
		}
	}
	s.chainGen = e.winGen
}

// passive judges health from the scope's own fast windows. Down and
// evacuated stick while there is no fresh evidence (the CDN gets no views),
// and turn into probation after Passive.Retry: the CDN gets its exploration
// share again, and what its views report from then on decides. A scope
// without evidence of its own inherits a parent's down or evacuated state:
// an outage seen region-wide applies to the ASNs too thin to see it.
func (e *Engine) passive(st *svcState, s *scopeState, views []cdnView, now time.Time, gf float64) {
	if s.passive == nil {
		s.passive = make([]Health, len(views))
		s.passiveAt = make([]time.Time, len(views))
		s.passiveWhy = make([]string, len(views))
		s.inherited = make([]bool, len(views))
		s.clearedAt = make([]time.Time, len(views))
		s.broad = make([]bool, len(views))
		s.spread = make([]bool, len(views))
		s.failedTrials = make([]uint8, len(views))
		s.fromDown = make([]bool, len(views))
		for i := range s.passive {
			s.passive[i] = HealthUp
		}
	}
	parent := e.parentState(st, s)
	for i := range views {
		v := &views[i]
		prev := s.passive[i]
		next, why := prev, s.passiveWhy[i]
		attempts := v.fast.Views >= e.pol.Passive.MinAttempts
		parentDown := parent != nil && parent.passive != nil && parent.passive[i] == HealthDown
		var own *window
		if h := s.chain[i*len(s.chainScopes)]; h != nil {
			own = h.win
		}
		switch {
		case attempts && v.fast.FailureRate > e.pol.Passive.FailureRate:
			next = HealthDown
			why = fmt.Sprintf("passive: %.0f%% of %.0f recent play attempts failed (limit %.0f%%)",
				100*v.fast.FailureRate, v.fast.Views, 100*e.pol.Passive.FailureRate)
		case prev == HealthUp && !attempts && parentDown && parent.spread != nil && parent.spread[i]:
			// The region took the CDN down on failures across its ASNs:
			// an ASN with too few play attempts of its own to judge
			// takes the state. Its heartbeats say how the views that
			// play are doing, not whether new ones start (flapping's
			// ASNs kept cdn-a 20 s after eu-west took it down, until
			// they saw its second fall).
			next, why = HealthDown, "inherited from "+parent.scope.String()+": "+parent.passiveWhy[i]
			s.inherited[i] = true
		case s.inherited[i] && parent != nil && parent.passive != nil && parent.passive[i] != prev:
			// A state taken from the parent follows the parent.
			if next = parent.passive[i]; next == HealthUp {
				why = ""
			} else {
				why = "inherited from " + parent.scope.String() + ": " + parent.passiveWhy[i]
			}
		case (prev == HealthDown || prev == HealthProbation) && s.broad[i] && parent != nil && parent.passive != nil &&
			parent.passive[i] == HealthUp && parent.clearedAt[i].After(s.passiveAt[i]):
			// The CDN failed across the parent, not only here, and the
			// parent has since seen it play well again, on more views
			// than this scope gets: follow it back. Fresh failures here
			// would have taken the first case. (An outage of this scope
			// alone is judged here: the parent's views say nothing of it.)
			next, why = HealthUp, ""
			e.forget(st, s, i)
		case (prev == HealthDown || prev == HealthProbation) && e.probeBack(st.svc.CDNs[i], s.passiveAt[i]):
			// The health URL answers again since this scope took the CDN
			// down (or began its probation, on trials of the outage):
			// trial it now, on fresh views, with no backoff.
			next, why = HealthProbation, "probation: "+e.probes[st.svc.CDNs[i]].detail
			s.failedTrials[i] = 0
			if prev == HealthProbation {
				s.passiveAt[i] = now
				if own != nil {
					own.probation = means{}
				}
			}
		case prev == HealthDown && !attempts && parent != nil && parent.passive != nil && parent.passive[i] == HealthProbation:
			// The parent has put the CDN on probation: trial it here
			// too. Its clients are answered by the rankings under it,
			// so only the scopes under it can send the trial views,
			// and the parent, seeing all of them, decides first (this
			// scope follows it up or down). Left down here, the parent's
			// probation got no views to judge: hard-outage's cdn-a took
			// a minute to come back after its outage ended.
			next, why = HealthProbation, "probation: with "+parent.scope.String()
		case prev == HealthProbation && parentDown:
			// Down across the parent scope, whose views decide sooner: a
			// probation here only sends views to a CDN that is down (in a
			// thin scope for as long as it lasts: its trials come too
			// slowly for a verdict).
			next, why = HealthDown, "probation: down in "+parent.scope.String()+": "+parent.passiveWhy[i]
		case prev == HealthProbation:
			// Judge the views since probation began, however slowly they
			// come. A CDN on probation is suspect: half the usual trials
			// send it back down. Clearing it takes the usual evidence,
			// and passive.retry at least: a degraded CDN's new views play
			// well until their buffers run dry.
			if own == nil {
				break
			}
			if now.Sub(s.passiveAt[i]) > probationSpan*e.pol.Passive.Retry && own.probation.failures > 0 {
				// No verdict in that long: the scope is thin, and the
				// failures its first trials saw may be stale (an outage
				// that has since ended). Judge the views from now on.
				// Trials that all played keep counting: a thin ASN gets
				// a probation view a minute, and starting over every
				// minute, it never reached a verdict at all.
				own.probation = means{}
				s.passiveAt[i] = now
			}
			ps := Stats{Figures: own.probation.figures(), Views: trials(own.probation.attempts, own.probation.exits), Beacons: own.probation.beacons}
			if ps.Views >= max(2, e.pol.Passive.MinAttempts/2) && ps.FailureRate > e.pol.Passive.FailureRate {
				next = HealthDown
				why = fmt.Sprintf("probation: %.0f%% of %.0f play attempts failed", 100*ps.FailureRate, ps.Views)
				break
			}
			if now.Sub(s.passiveAt[i]) < e.pol.Passive.Retry {
				break
			}
			// A CDN that was down for failing clears on the starts of
			// passive.min_attempts trials that did not fail, whatever
			// their beacons say of QoE yet: starting is what it could
			// not do, and its QoE is judged like any CDN's from then on.
			// Waiting for passive.min_beacons kept a CDN back from a
			// thin fleet for a minute after its outage had ended.
			starts := s.fromDown[i] && ps.Views >= e.pol.Passive.MinAttempts
			if own.probation.beacons < e.pol.Passive.MinBeacons && !starts {
				break
			}
			score, _ := Score(ps, experience(e.pol.Weights))
			c := e.bestOther(s, views, i, recent{score: score, ageless: -1})
			switch {
			case c.j >= 0 && c.mine >= 0 && own.probation.beacons >= e.pol.Passive.MinBeacons && c.mine < c.theirs-e.pol.Passive.EvacuateMargin:
				next = HealthEvacuated
				why = fmt.Sprintf("probation: QoE %s", c.describe(st))
			default:
				next, why = HealthUp, ""
				if s.fromDown[i] && !s.broad[i] {
					e.dropFailures(s, i)
				}
				e.forget(st, s, i)
			}
		case prev == HealthDown && !attempts || !attempts && v.fastScore < 0:
			// No fresh evidence of the kind that would clear the state
			// (play attempts clear down; anything clears evacuated), or
			// a state taken from the parent: follow the parent.
			// Only a CDN this scope has nothing against takes the parent's
			// state: one it took down on its own evidence stays down and
			// goes on probation here, where its failure was seen.
			if p := parent; p != nil && p.passive != nil && (prev == HealthUp && p.passive[i] != HealthUp || s.inherited[i]) {
				if p.passive[i] == HealthUp {
					next, why = HealthUp, ""
				} else {
					next, why = p.passive[i], "inherited from "+p.scope.String()+": "+p.passiveWhy[i]
				}
				s.inherited[i] = next != HealthUp
				break
			}
			if (next == HealthDown || next == HealthEvacuated) && !parentDown && now.Sub(s.passiveAt[i]) >= e.retryAfter(s.failedTrials[i]) {
				next, why = HealthProbation, "probation: no fresh data since "+prev.String()+" at "+s.passiveAt[i].UTC().Format(time.TimeOnly)
			}
		case v.fastScore >= 0:
			q := recent{score: v.fastScore, ageless: -1}
			switch {
			case now.Sub(s.clearedAt[i]) < recovering:
				q.ageless, q.starts, q.beacons = v.fastAgeless, v.fast.Starts, v.fast.Beacons
			case (i == s.leader || prev == HealthEvacuated) && v.xscore >= 0 && v.fastScore < v.xscore-e.pol.Passive.EvacuateMargin/2:
				// A leader falling below its own past (or one evacuated
				// so, still below it: judged the same way until it
				// recovers, it does not come back on the stalls of the
				// others' young views). Its views have played for
				// minutes; the others' exploration views may be much
				// younger, and read worse for it: a live stand-in's few
				// new views stalled 8-18 % in slow-recovery, and live's
				// eu-west stayed on the degraded cdn-a for a minute.
				// (Not a leader that holds its own: flapping's stand-ins
				// cdn-b and cdn-c, each other's explorer, traded cells.)
				q.ageless, q.starts, q.beacons, q.older = v.fastAgeless, v.fast.Starts, v.fast.Beacons, true
			}
			c := e.bestOther(s, views, i, q)
			// Evacuate a CDN that carries traffic, or one that just
			// fell: a CDN steadily worse than the rest keeps its
			// exploration share to stay measured.
			carries := s.shares != nil && s.shares[i] > 2*e.pol.Exploration
			// Its own past too is compared as if nothing had stalled
			// when its recent views are younger than those (see younger).
			cur, past := v.fastScore, v.xscore
			if q.ageless >= 0 && younger(v.fast.Starts, v.fast.Beacons, v.views, v.samples) && v.xageless >= 0 {
				cur, past = v.fastAgeless, v.xageless
			}
			sudden := past < 0 || cur < past-e.pol.Passive.EvacuateMargin/2
			// An evacuated CDN comes back only once it is within half the
			// margin: at the margin itself, noise would take it in and out
			// every tick, and each fall would count as a flap.
			// A parent that evacuated the CDN corroborates: half the
			// margin here too, so thin scopes under it follow in seconds
			// (a sibling the problem does not reach keeps the CDN: its own
			// recent QoE must still agree).
			margin := e.pol.Passive.EvacuateMargin
			if prev == HealthEvacuated || parent != nil && parent.passive != nil && parent.passive[i] == HealthEvacuated {
				margin /= 2
			} else if past >= 0 && cur < past-margin {
				// A fall of a whole margin below its own recent past is
				// evidence of its own: half the margin to the others
				// corroborates it. The fast score trails the truth (a
				// heartbeat reports the last ten seconds), and waiting
				// for the full margin took 15-20 s of bad views.
				margin /= 2
			}
			switch {
			case c.j >= 0 && (carries || sudden || prev == HealthEvacuated) && c.mine < c.theirs-margin:
				next = HealthEvacuated
				why = "passive: recent QoE " + c.describe(st)
			case prev == HealthEvacuated:
				next, why = HealthUp, ""
				e.forget(st, s, i)
			default:
				next, why = HealthUp, ""
			}
		default: // fresh attempts, failing below the limit
			next, why = HealthUp, ""
		}
		switch {
		case prev == HealthProbation && (next == HealthDown || next == HealthEvacuated):
			s.failedTrials[i] = min(s.failedTrials[i]+1, retryBackoff)
		case next == HealthUp:
			s.failedTrials[i] = 0
		}
		switch {
		case next == HealthUp:
			if (prev == HealthDown || prev == HealthProbation) && !s.inherited[i] {
				s.clearedAt[i] = now
			}
			s.broad[i] = false
		case next == HealthDown && !s.inherited[i] && !s.broad[i]:
			s.broad[i] = e.failingBeyond(s, i, gf)
		}
		switch {
		case next != HealthDown || s.inherited[i]:
			s.spread[i] = false
		case prev != HealthDown && s.scope.Level == LevelRegion:
			s.spread[i] = e.spreadOver(st, s, i, gf)
		}
		if next == HealthProbation && prev != HealthProbation {
			s.fromDown[i] = prev == HealthDown
			if own != nil {
				own.probation = means{}
			}
		}
		if why == "" || !strings.HasPrefix(why, "inherited") {
			s.inherited[i] = false
		}
		if next != prev {
			s.passiveAt[i] = now
		}
		s.passive[i], s.passiveWhy[i] = next, why
		v.health, v.reason = next, why
	}
}

// failingBeyond reports whether CDN i fails in s's parent scope beyond
// s: the parent's recent play attempts without s's own fail over
// passive.failure_rate.
func (e *Engine) failingBeyond(s *scopeState, i int, gf float64) bool {
	m := len(s.chainScopes)
	if m < 2 {
		return false
	}
	own, par := s.chain[i*m], s.chain[i*m+1]
	if own == nil || par == nil {
		return false
	}
	o, p := own.win.fastStats(gf), par.win.fastStats(gf)
	views := p.Views - o.Views
	failed := p.failed() - o.failed()
	return views >= e.pol.Passive.MinAttempts && failed > e.pol.Passive.FailureRate*views
}

// asnsOf is region's ASN scopes: one run of st.sorted, which is ordered
// by level, then region.
func asnsOf(st *svcState, region string) []*scopeState {
	lo := sort.Search(len(st.sorted), func(k int) bool {
		sc := st.sorted[k].scope
		return sc.Level > LevelASN || sc.Level == LevelASN && sc.Region >= region
	})
	hi := lo
	for hi < len(st.sorted) && st.sorted[hi].scope.Level == LevelASN && st.sorted[hi].scope.Region == region {
		hi++
	}
	return st.sorted[lo:hi]
}

// spreadOver reports whether CDN i's recent failures in region s are
// spread over its ASNs: at least a third of them outside the ASN with
// the most. An outage of one ASN is that ASN's to judge; its siblings
// keep the CDN. Only a region's fall calls this.
func (e *Engine) spreadOver(st *svcState, s *scopeState, i int, gf float64) bool {
	cdn := st.svc.CDNs[i]
	var total, worst float64
	for _, d := range asnsOf(st, s.scope.Region) {
		if w := e.windows[winKey{scope: d.scope, cdn: cdn}]; w != nil {
			failed := w.fastStats(gf).failed()
			total += failed
			worst = max(worst, failed)
		}
	}
	return total > 0 && total-worst >= total/3
}

// recoveryForget is what a CDN's windows keep of their past when the CDN
// comes back from probation healthy: what they remember is the incident,
// which no longer holds, and would keep the recovered CDN from competing
// for many half-lives.
const recoveryForget = 0

// forget weighs down CDN i's slow windows in scope s and every scope
// under it. Scopes under s rank in a later phase, and no two scopes of one
// level share a descendant, so this is safe inside a parallel level.
func (e *Engine) forget(st *svcState, s *scopeState, i int) {
	cdn := st.svc.CDNs[i]
	for _, d := range st.sorted {
		if !descends(d, s) {
			continue
		}
		if w := e.windows[winKey{scope: d.scope, cdn: cdn}]; w != nil {
			w.scale(recoveryForget, 1)
			w.refresh(e.pol.Weights)
		}
	}
}

// dropped is what a window held of a CDN's play attempts and failures.
type dropped struct {
	cdn                             int
	attempts, failures, exits, ebvs float64
}

// dropFailures takes what an ASN's windows hold of a CDN's failures out of
// its parents' windows too, when the ASN clears the CDN after an outage of
// its own: the parents keep the outage otherwise, and the ASN, its own
// windows forgotten, is scored from its region's, which hold it. In the
// asn-outage scenario, cdn-a back in AS64496 scored 70 there on eu-west's
// window, 15 below its stand-in, and took the lead back only once the
// outage had decayed out of it, over 5 minutes after it ended. Only an
// outage of the ASN alone (not broad): one beyond it is the parents' to
// remember. Applied after the tick's ranking (applyDrops): scopes ranked
// in parallel read the parents' windows.
func (e *Engine) dropFailures(s *scopeState, i int) {
	if s.scope.Level != LevelASN {
		return
	}
	h := s.chain[i*len(s.chainScopes)]
	if h == nil || h.win == nil {
		return
	}
	w := h.win
	s.drops = append(s.drops, dropped{cdn: i, attempts: w.attempts, failures: w.failures, exits: w.exits, ebvs: w.ebvs})
}

// applyDrops takes the failures the scopes forgot out of their parents'
// windows (see dropFailures). Shared windows are fed by the group's
// deltas, and are left alone.
func (e *Engine) applyDrops(st *svcState) {
	for _, s := range st.sorted {
		for _, d := range s.drops {
			for _, sc := range s.chainScopes[1:] {
				if e.sharing && shared(sc) {
					continue
				}
				w := e.windows[winKey{scope: sc, cdn: st.svc.CDNs[d.cdn]}]
				if w == nil {
					continue
				}
				w.attempts = max(0, w.attempts-d.attempts)
				w.failures = max(0, w.failures-d.failures)
				w.exits = max(0, w.exits-d.exits)
				w.ebvs = max(0, w.ebvs-d.ebvs)
				if !w.dirty {
					e.dirty = append(e.dirty, w)
				}
				w.dirty = true
			}
		}
		s.drops = s.drops[:0]
	}
}

// descends reports whether scope d is s or under it.
func descends(d, s *scopeState) bool {
	switch {
	case d == s:
		return true
	case d.scope.Level <= s.scope.Level:
		return false
	case s.scope.Level == LevelGlobal:
		return true
	case s.scope.Level == LevelCountry:
		return false // nothing ranks under a country: regions fall back to global
	case s.scope.Level == LevelRegion:
		return d.scope.Region == s.scope.Region
	}
	return false
}

// recent is a CDN's recent QoE (its fast window's, or its probation
// views'), and, to compare it as if nothing had stalled where its views
// are younger (see younger), that score (-1: never so) and how many play
// attempts and beacons it is of.
type recent struct {
	score, ageless, starts, beacons float64
	// older: compared as if nothing had stalled only where the other
	// CDN's views are younger than these (not where these are younger).
	older bool
}

// recovering is how long after a scope clears a CDN that was down (or on
// probation) its views are taken for new ones (see younger): its share
// grows back at max_shift_per_minute, and each minute of it brings views
// that have just started.
const recovering = 3 * time.Minute

// youthRatio: views are younger than others when their share of play
// attempts among beacons is this many times the others'.
const youthRatio = 2

// younger reports whether views of `starts` play attempts among `beacons`
// beacons are younger than views of s2 among b2. Those are compared on
// their experience as if nothing had stalled (scores' third result). A
// view stalls most in its first seconds, playing on the one segment it
// started with, so a CDN whose views are all new (taking its traffic back
// after an outage) reads worse than one whose views have played for
// minutes, on the same network and as good: asn-outage's cdn-a, back in AS64496, read 10-12 points below
// cdn-b there (the evacuation margin) and was evacuated again and again.
// Startup, bitrate, TTFB and throughput do not depend on a view's age.
// Stalls count as none rather than left out: without their weight, the
// other components' differences would count for more than the margins
// they are measured by.
func younger(starts, beacons, s2, b2 float64) bool {
	return beacons > 0 && starts*b2 > youthRatio*s2*beacons
}

// comparison is a CDN's recent QoE against another CDN's slow experience
// score: mine and theirs, as if nothing had stalled if ageless; j is -1
// when no other CDN has a score.
type comparison struct {
	mine, theirs   float64
	j              int
	ageless, older bool // older: the other CDN's views are the newer
}

func (c comparison) describe(st *svcState) string {
	what := ""
	switch {
	case c.ageless && c.older:
		what = " not counting stalls (" + st.svc.CDNs[c.j] + "'s views are newer)"
	case c.ageless:
		what = " not counting stalls (its views are newer)"
	}
	return fmt.Sprintf("%.1f%s is %.1f below %s's %.1f", c.mine, what, c.theirs-c.mine, st.svc.CDNs[c.j], c.theirs)
}

// bestOther compares recent QoE q of CDN i with the other CDNs healthy in
// s, and returns the comparison it loses by most: what a fast or
// probation score is measured against. Views younger than the other CDN's
// are compared as if nothing had stalled (see younger).
func (e *Engine) bestOther(s *scopeState, views []cdnView, i int, q recent) comparison {
	best := comparison{mine: q.score, theirs: -1, j: -1}
	for j := range views {
		// A damped CDN may not lead: what it measures between its
		// flaps is no reason to move views off another.
		// Nor is a CDN taken out by the operator or the probes: its
		// QoE, however good, is not on offer (draining the leader
		// evacuated its stand-in as worse than the CDN drained).
		if j == i || s.passive[j] != HealthUp || s.damped != nil && s.damped[j] || views[j].out {
			continue
		}
		o := &views[j]
		c := comparison{mine: q.score, theirs: o.xscore, j: j}
		young := younger(q.starts, q.beacons, o.views, o.samples)
		if q.older {
			young = younger(o.views, o.samples, q.starts, q.beacons)
		}
		if young && q.ageless >= 0 && o.xageless >= 0 {
			a := comparison{mine: q.ageless, theirs: o.xageless, j: j, ageless: true, older: q.older}
			// A falling leader's own stalls are evidence too: it loses
			// by the more of the two (as if nothing had stalled, it
			// left degrade-region's cdn-a, stalling at a sixth of its
			// throughput, 4 s later).
			if !q.older || c.theirs < 0 || a.theirs-a.mine > c.theirs-c.mine {
				c = a
			}
		}
		if c.theirs >= 0 && (best.j < 0 || c.theirs-c.mine > best.theirs-best.mine) {
			best = c
		}
	}
	return best
}

// parentState is the nearest ranked ancestor's state (parents rank first).
func (e *Engine) parentState(st *svcState, s *scopeState) *scopeState {
	if s.parent != nil || s.scope.Level == LevelGlobal {
		return s.parent
	}
	for p, ok := s.scope.parent(s.loc); ok; p, ok = p.parent(s.loc) {
		if ps := st.scopes[p]; ps != nil {
			s.parent = ps
			return ps
		}
	}
	return nil
}

// applicable sorts the active overrides that cover a scope by precedence.
func (e *Engine) applicable(sc Scope, active []Override) (bans map[string]Override, pin, split *Override, weights map[string]Override) {
	if len(active) == 0 {
		return nil, nil, nil, nil
	}
	bans = map[string]Override{}
	weights = map[string]Override{}
	var best *Override
	bestSpec, wSpec := -1, map[string]int{}
	for i := range active {
		o := &active[i]
		spec, ok := o.matches(sc)
		if !ok {
			continue
		}
		switch o.Kind {
		case OverrideBan:
			bans[o.CDN] = *o // a ban beats a drain
		case OverrideDrain:
			if bans[o.CDN].Kind != OverrideBan {
				bans[o.CDN] = *o
			}
		case OverridePin, OverrideSplit:
			if spec > bestSpec || spec == bestSpec && o.Created.After(best.Created) {
				best, bestSpec = o, spec
			}
		case OverrideWeight:
			if cur, ok := wSpec[o.CDN]; !ok || spec > cur || spec == cur && o.Created.After(weights[o.CDN].Created) {
				weights[o.CDN], wSpec[o.CDN] = *o, spec
			}
		}
	}
	if best != nil {
		if best.Kind == OverridePin {
			pin = best
		} else {
			split = best
		}
	}
	return bans, pin, split, weights
}

// damp applies flap damping: each fall from healthy to down or evacuated
// adds a penalty; a CDN whose decayed penalty reaches Suppress may not
// lead until it decays under half of that, or until it is measured
// steady for Flap.Steady (see dips).
func (e *Engine) damp(st *svcState, s *scopeState, views []cdnView, now time.Time) {
	ceiling := e.pol.Flap.ceiling()
	for i := range views {
		v := &views[i]
		p := s.penalty[i]
		if p > 0 {
			p *= math.Exp2(-now.Sub(s.penaltyAt[i]).Seconds() / e.pol.Flap.HalfLife.Seconds())
		}
		was := s.health[i]
		// A fall taken from the parent is the parent's flap, counted
		// there once, not again in every scope under it.
		fell := (v.health == HealthDown || v.health == HealthEvacuated) && !s.inherited[i] &&
			(was == HealthUp || was == HealthSuppressed || was == HealthUnknown)
		if fell {
			p = min(p+1, ceiling)
		}
		if p == 0 && !s.suppressed[i] {
			// Never fell here: nothing to decay or release, and no dips
			// to record. Nearly every (scope, CDN) takes this path every
			// tick.
			e.markDamped(s, v, i, p)
			continue
		}
		s.penalty[i], s.penaltyAt[i] = p, now
		measured := e.dips(s, views, i, fell, now)
		calm := now.Sub(s.unsteadyAt[i]) >= e.pol.Flap.Steady
		switch {
		case p >= e.pol.Flap.Suppress:
			s.suppressed[i] = true
		case s.suppressed[i] && calm && measured:
			// Released on evidence: it has stopped flapping, and what its
			// slow windows hold of the flapping no longer holds. A region
			// forgets (with its ASNs); the service scope does not, for its
			// windows are every region's, and most never saw the flapping.
			s.suppressed[i], s.penalty[i] = false, 0
			if s.scope.Level >= LevelRegion {
				e.forget(st, s, i)
			}
		case s.suppressed[i] && (p < e.pol.Flap.Suppress/2 && calm || p < e.pol.Flap.Suppress/4):
			// Released by time, unmeasured or still dipping: the windows
			// keep what the CDN did while it flapped, and it leads again
			// only once its scores have earned it. (Forgetting here let a
			// CDN still flapping take the lead back on its parent's score.)
			s.suppressed[i] = false
		}
		e.markDamped(s, v, i, p)
	}
}

// markDamped records whether CDN i is damped in s, suppressed here or,
// for an ASN, in its region: a CDN flapping in its region flaps in the
// region's ASNs too, however few views an ASN sees of it. A region
// judges its own: the service scope's falls may all be one region's
// (flapping's eu-west damped cdn-a in every region through it). p is
// s's penalty of i.
func (e *Engine) markDamped(s *scopeState, v *cdnView, i int, p float64) {
	parent := s.parent
	s.damped[i] = s.suppressed[i] || s.scope.Level == LevelASN && parent != nil && parent.damped != nil && parent.damped[i]
	if v.health == HealthUp && s.damped[i] {
		v.health = HealthSuppressed
		where, q := "", p
		for a := s; !a.suppressed[i]; a = a.parent {
			where, q = " in "+a.parent.scope.String(), a.parent.penalty[i]
		}
		v.reason = fmt.Sprintf("flapping%s: damping penalty %.1f (suppress at %.1f, reuse below %.1f)", where, q, e.pol.Flap.Suppress, e.pol.Flap.Suppress/2)
	}
	s.health[i] = v.health
}

// dips records when CDN i, on flap damping in s, last dipped: fell, or
// its recent (fast) QoE did not beat the best other CDN's by the
// hysteresis margin. (A flapping CDN's bad phases may read no worse than
// a mediocre stand-in's: flapping's cdn-a, failing 10 % of its starts
// then, which the recent QoE leaves out, read 78 against cdn-c's 78 and
// was released in the middle of its flapping.) It reports
// whether that was measured at all this tick. A flapping CDN dips in every
// bad phase, however short; one that has stopped flapping plays as well
// as before. So a suppressed CDN measured without a dip for Flap.Steady
// is released on that evidence, with its slow windows forgetting the
// flapping, rather than waiting out its penalty (flapping's cdn-a led
// eu-west again 3 minutes after its last flap, every view meanwhile on a
// CDN 8 points worse). And a dip holds back the release by time, by one
// flap.half_life at most: falls go unseen on a suppressed CDN's few
// exploration views, and its penalty decayed in the middle of its
// flapping. (One that is just worse than the others dips all the time;
// it would not lead anyway, and is released at the end of that.)
func (e *Engine) dips(s *scopeState, views []cdnView, i int, fell bool, now time.Time) bool {
	if s.penalty[i] <= 0 && !s.suppressed[i] {
		return false
	}
	own, ref := views[i].fastScore, -1.0
	for j := range views {
		if j != i && views[j].health == HealthUp && views[j].fastScore > ref {
			ref = views[j].fastScore
		}
	}
	measured := own >= 0 && ref >= 0
	if fell || measured && own < ref+e.pol.Hysteresis.Margin {
		s.unsteadyAt[i] = now
	}
	return measured
}

// operatorShares applies a pin or a split: the operator's shares, now,
// whatever the measured health. A ban on the pinned CDN wins over the pin.
func (e *Engine) operatorShares(st *svcState, s *scopeState, views []cdnView, pin, split *Override) Rule {
	shares := make([]float64, len(views))
	rule := RuleSplit
	if pin != nil {
		rule = RulePin
		i := st.idx[pin.CDN]
		if views[i].health == HealthBanned {
			failOpen(st, s, views)
			return RuleFailOpen
		}
		shares[i] = 1
		views[i].override = pin.ID
	} else {
		sum := 0.0
		for cdn, pct := range split.Split {
			i := st.idx[cdn]
			if views[i].health == HealthBanned {
				continue
			}
			shares[i] = pct / 100
			views[i].override = split.ID
			sum += shares[i]
		}
		if sum == 0 {
			failOpen(st, s, views)
			return RuleFailOpen
		}
		for i := range shares {
			shares[i] /= sum
		}
	}
	s.shares = shares
	return rule
}

// failOpen: every CDN is down (or banned). Answer in static order all the
// same, never with nothing: the first CDN not banned gets the views.
func failOpen(st *svcState, s *scopeState, views []cdnView) {
	shares := make([]float64, len(views))
	first := -1
	for i := range views {
		if views[i].health != HealthBanned {
			first = i
			break
		}
	}
	if first < 0 {
		first = 0 // even every CDN banned: an answer, in static order
	}
	shares[first] = 1
	s.shares = shares
	s.leader = -1
}

// staticShares: no data (or stale data): the first eligible CDN in static
// order leads, and every other eligible CDN keeps its exploration share so
// data starts flowing.
func (e *Engine) staticShares(wk *worker, st *svcState, s *scopeState, views []cdnView, weights map[string]Override) Fired {
	lead := -1
	for i := range views {
		if views[i].health.eligible() {
			lead = i
			break
		}
	}
	t, _ := e.targets(wk, st, views, lead, weights)
	s.shares = append(s.shares[:0], t...)
	s.leader = -1
	return FiredStaticOrder
}

// frozenShares holds the weights of a scope whose inputs went stale, only
// taking traffic off CDNs that are down, drained or banned.
func (e *Engine) frozenShares(s *scopeState, views []cdnView) Fired {
	shares := slices.Clone(s.shares)
	freed, rest := 0.0, 0.0
	for i := range views {
		if !views[i].health.eligible() {
			freed += shares[i]
			shares[i] = 0
		} else {
			rest += shares[i]
		}
	}
	if freed > 0 {
		if rest == 0 {
			return 0 // the caller's eligible check makes this unreachable
		}
		for i := range shares {
			shares[i] += shares[i] / rest * freed
		}
	}
	s.shares = shares
	return FiredStaleFreeze
}

// targets is the allocation a scope moves toward: every eligible CDN its
// exploration share, the leader the rest, then weight overrides and
// max_share caps.
func (e *Engine) targets(wk *worker, st *svcState, views []cdnView, lead int, weights map[string]Override) ([]float64, bool) {
	if cap(wk.tgt) < len(views) {
		wk.tgt = make([]float64, len(views))
		wk.idxs = make([]int, 0, len(views))
	}
	t := wk.tgt[:len(views)]
	clear(t)
	elig := wk.idxs[:0]
	for i := range views {
		if views[i].health.eligible() {
			elig = append(elig, i)
		}
	}
	if len(elig) == 0 {
		return t, false
	}
	if lead < 0 {
		lead = elig[0]
	}
	explore := e.pol.Exploration
	if float64(len(elig)-1)*explore > 0.5 {
		explore = 0.5 / float64(len(elig)-1)
	}
	rest := 1.0
	for _, i := range elig {
		t[i] = explore
		if views[i].health == HealthProbation {
			t[i] = max(explore, e.pol.Passive.ProbationShare)
		}
		if i != lead {
			rest -= t[i]
		}
	}
	t[lead] = max(0, rest)
	normalize(t)

	// Weight overrides fix a CDN's share; the others keep their
	// proportions of the rest.
	var fixedBits uint64 // MaxCDNs fits
	fixed := func(i int) bool { return fixedBits&(1<<i) != 0 }
	fixedSum := 0.0
	for cdn, o := range weights {
		i := st.idx[cdn]
		if !views[i].health.eligible() && o.Weight > 0 {
			continue // down or drained: the override cannot send views there
		}
		t[i] = o.Weight
		fixedBits |= 1 << i
		fixedSum += o.Weight
		views[i].override = o.ID
	}
	if fixedSum > 0 || len(weights) > 0 {
		free := 0.0
		for i := range t {
			if !fixed(i) {
				free += t[i]
			}
		}
		rest := max(0, 1-fixedSum)
		for i := range t {
			if !fixed(i) && free > 0 {
				t[i] = t[i] / free * rest
			}
		}
		normalize(t)
	}

	// max_share: pour the excess into the others, best value first.
	capped := false
	if !st.anyMaxShare {
		return t, false
	}
	order := elig
	sort.SliceStable(order, func(a, b int) bool { return views[order[a]].value > views[order[b]].value })
	for range len(order) {
		excess := 0.0
		for _, i := range order {
			if m := st.maxShare[i]; m > 0 && t[i] > m && !fixed(i) {
				excess += t[i] - m
				t[i] = m
				capped = true
			}
		}
		if excess < 1e-12 {
			break
		}
		for _, i := range order {
			room := 1.0
			if m := st.maxShare[i]; m > 0 {
				room = m - t[i]
			}
			if room > 0 && !fixed(i) {
				add := min(room, excess)
				t[i] += add
				excess -= add
			}
		}
		if excess > 1e-12 { // every CDN at its cap: spread it anyway
			for _, i := range order {
				t[i] += excess / float64(len(order))
			}
			break
		}
	}
	return t, capped
}

func normalize(v []float64) {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	if sum <= 0 {
		return
	}
	for i := range v {
		v[i] /= sum
	}
}

// measuredShares is the normal case: pick the leader by value with
// hysteresis, then move the shares toward the targets at most
// MaxShiftPerMinute, except that traffic leaves a CDN that is down,
// evacuated, drained or banned at once.
func (e *Engine) measuredShares(wk *worker, st *svcState, s *scopeState, views []cdnView, weights map[string]Override, now time.Time, dt time.Duration) Fired {
	var fired Fired
	e.values(wk, st, views)
	best := -1
	for i := range views {
		v := &views[i]
		v.candidate = v.health == HealthUp || v.health == HealthUnknown
		v.candidate = v.candidate && v.score >= 0
		if v.candidate && (best < 0 || v.value > views[best].value) {
			best = i
		}
	}
	if best >= 0 {
		for i := range views {
			if views[i].candidate && views[i].score > views[best].score {
				fired |= FiredCost // the best by value is not the best by score
				break
			}
		}
	}
	if s.measuredAt.IsZero() {
		s.measuredAt = now
	}
	switch {
	case best < 0:
		// Nothing measured can lead: keep the incumbent if it is still
		// eligible, else the eligible CDN (damped or on probation) that
		// scores best, else the static order. In the flapping
		// scenario's thin ASNs every CDN was damped or evacuated at
		// times, and the static order gave the views to cdn-a, the one
		// flapping, at 61 points against the others' 80.
		if s.leader < 0 || !views[s.leader].health.eligible() {
			s.leader = -1
			for i := range views {
				if !views[i].health.eligible() {
					continue
				}
				if s.leader < 0 || views[i].score >= 0 && (views[s.leader].score < 0 || views[i].value > views[s.leader].value) {
					s.leader = i
				}
			}
			s.leaderAt = now
		}
		s.challenger = -1
	case s.leader < 0 || !views[s.leader].candidate:
		if s.leader >= 0 {
			fired |= FiredFailover
			if s.displaced < 0 {
				s.displaced, s.displacedAt = s.leader, now
			}
			s.reclaim = false // the stand-in failed too: the claim is whole again
		}
		lead := best
		if s.leader >= 0 {
			lead = standIn(views, best, e.margin(s, now))
		}
		s.leader, s.leaderAt, s.challenger = lead, now, -1
	case s.displaced >= 0 && s.displaced != s.leader && views[s.displaced].candidate &&
		views[s.displaced].value >= views[s.leader].value-e.restoreMargin(s) &&
		now.Sub(s.displacedAt) >= e.pol.Hysteresis.Dwell:
		// The leader that failed is back and no worse than its stand-in
		// by the margin: it takes the lead back without a dwell, for
		// what it had before the incident is known, and what it has
		// measured since is little. (Shift capped, as any change.) Not
		// within a dwell of its fall: a CDN that starts flapping is up
		// again seconds after its first fall, and flapping's cdn-a took
		// every cell back for 10 s before its second.
		s.leader, s.leaderAt, s.challenger, s.displaced = s.displaced, now, -1, -1
		s.restoredAt = now
		fired |= FiredRestore
	case best != s.leader && e.outscores(&views[best], &views[s.leader], e.margin(s, now), now.Sub(s.leaderAt) < recovering):
		if s.challenger != best {
			s.challenger, s.since = best, now
		}
		if now.Sub(s.since) >= e.pol.Hysteresis.Dwell {
			if !s.restoredAt.IsZero() && now.Sub(s.restoredAt) < recovering && s.displaced < 0 {
				// A leader restored after an incident and beaten again
				// soon after: the incident was still ending. It keeps
				// its claim, but takes the lead back only once no worse
				// than the stand-in at all, so the two do not trade the
				// scope on noise about the margin. In slow-recovery,
				// cdn-a, restored in AS64498 on a thin window while it
				// still recovered, lost it again 22 s later and, up to
				// 2.6 points better than cdn-b from then on, never took
				// it back under the 3-point margin.
				s.displaced, s.displacedAt, s.reclaim = s.leader, now, true
			}
			s.leader, s.leaderAt, s.challenger = best, now, -1
			fired |= FiredHysteresisSwitch
		} else {
			fired |= FiredHysteresisHold
		}
	default:
		if best != s.leader {
			fired |= FiredHysteresisHold
		}
		s.challenger = -1
	}
	if s.displaced == s.leader || now.Sub(s.displacedAt) > restoreWithin {
		s.displaced, s.reclaim = -1, false
	}
	target, capped := e.targets(wk, st, views, s.leader, weights)
	if capped {
		fired |= FiredMaxShare
	}
	if e.pol.Exploration > 0 {
		fired |= FiredExploration
	}
	if s.shares == nil {
		s.shares = e.initialShares(st, s, target)
	}
	if moveShares(s.shares, target, views, e.pol.MaxShiftPerMinute/100*dt.Minutes()) {
		fired |= FiredShiftCap
	}
	return fired
}

// standIn is who takes a scope's views when its leader fails: the
// candidate best by value, unless another is within the hysteresis
// margin of it and better in the most specific window both have data in. Scored from broad windows, the stand-ins are often
// within noise of each other, and the scope's own windows, too thin yet
// to decide, pick the one that will lead there a minute later anyway:
// in flapping, every vod cell of eu-west went from the failing cdn-a to
// cdn-c, 2.6 points ahead of cdn-b on global windows, and moved to cdn-b
// 50 to 60 s later on the region's own data (one more flip each).
func standIn(views []cdnView, best int, margin float64) int {
	pick := best
	for i := range views {
		c := &views[i]
		if i == best || !c.candidate || c.value < views[best].value-margin {
			continue
		}
		p := &views[pick]
		for l := int(LevelASN); l >= int(LevelGlobal); l-- {
			if c.byLevel[l] < 0 || p.byLevel[l] < 0 {
				continue
			}
			if c.byLevel[l]+(c.value-c.score) > p.byLevel[l]+(p.value-p.score) {
				pick = i
			}
			break
		}
	}
	return pick
}

// outscores reports whether challenger c beats leader l by the hysteresis
// margin. Scored from a broader window than the leader (it has too few
// samples of its own here), c is compared with l's score from that same
// window: in a region, a CDN that is great elsewhere has a global score
// the region's own numbers never see, and took regions from a leader
// better there (hard-outage's eu-west went to cdn-c on ap-south's cdn-c).
func (e *Engine) outscores(c, l *cdnView, margin float64, fresh bool) bool {
	cv, lv := c.value, l.value
	switch {
	case c.level < l.level && c.score >= 0:
		if at := l.byLevel[c.level]; at >= 0 {
			lv = at + (l.value - l.score) // the cost bonus stays
		}
	case fresh && c.level == l.level && c.ageless >= 0 && l.ageless >= 0 && younger(l.views, l.samples, c.views, c.samples):
		// The leader took the scope's views in the last minutes, and
		// its views are much younger than the challenger's: compare
		// them as if nothing had stalled (see younger). The CDN that
		// has just taken a scope's views reads worse than one that
		// kept a few exploration views for minutes, as good or
		// better: in slow-recovery, cdn-c took eu-west from cdn-b a
		// minute after cdn-b had taken it from the degraded cdn-a, and
		// gave it back two minutes later, once its own views were the
		// young ones.
		cv, lv = c.ageless+(c.value-c.score), l.ageless+(l.value-l.score)
	}
	return cv > lv+margin
}

// margin is what a challenger must beat scope s's leader by: during the
// warm-up after the scope was first ranked on measurements,
// hysteresis.warmup_margin if that is more. Scores are unsteady then.
// Every view is young, and young views stall most (see younger), so the
// CDN that took a scope's views first reads worst while every other one
// is scored on a few exploration views or from a broader window. In
// within-noise, every cell of eu-west went to cdn-b 40 s into the run on
// a 3-to-5-point lead from its global window, and went back to cdn-a a
// minute later once cdn-b's own new views there had taken that lead
// away: two flips in every cell for nothing. A clear lead still switches
// (capacity's eu-west leaves an overloaded cdn-a 20 s in, 13 points
// behind), and a leader that fails is left by passive health, whatever
// the margin.
func (e *Engine) margin(s *scopeState, now time.Time) float64 {
	m := e.pol.Hysteresis.Margin
	if now.Sub(s.measuredAt) < e.pol.Hysteresis.Warmup {
		m = max(m, e.pol.Hysteresis.WarmupMargin)
	}
	return m
}

// retryBackoff caps the doubling of passive.retry after failed
// probations: 2^2 = 4 retries' wait at most (1 minute at the default
// 15 s). A probation costs the few trial views it takes to fail (half of
// passive.min_attempts) in the scope that holds it, while the wait is
// time a CDN that came back is not used: at 8x, a probation that failed
// in the last seconds of an outage kept the CDN out for two more minutes.
const retryBackoff = 2

// retryAfter is how long a down or evacuated CDN waits for probation
// after failing `failed` probations in a row.
func (e *Engine) retryAfter(failed uint8) time.Duration {
	return e.pol.Passive.Retry << min(failed, retryBackoff)
}

// probationSpan is how many passive.retry periods of evidence a probation
// judges at most.
const probationSpan = 4

// restoreMargin is how far below the stand-in a displaced leader may be
// and still take the lead back: the hysteresis margin, none on a reclaim.
func (e *Engine) restoreMargin(s *scopeState) float64 {
	if s.reclaim {
		return 0
	}
	return e.pol.Hysteresis.Margin
}

// restoreWithin bounds how long a displaced leader may take the lead back
// without the hysteresis dwell: after that, what it had before is history.
const restoreWithin = 15 * time.Minute

// values adds the cost bonus: within Cost.Margin points, cheaper wins.
func (e *Engine) values(wk *worker, st *svcState, views []cdnView) {
	if cap(wk.prices) < len(views) {
		wk.prices = make([]float64, len(views))
	}
	prices := wk.prices[:len(views)]
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, cdn := range st.svc.CDNs {
		p := st.prices[i]
		if st.commit[i] > 0 {
			if u := e.usage[cdn]; u == nil || u.gb < st.commit[i] {
				p = 0 // under the commit: already paid
			}
		}
		prices[i] = p
		if views[i].health.eligible() {
			lo, hi = min(lo, p), max(hi, p)
		}
	}
	for i := range views {
		views[i].value = views[i].score
		if hi > lo && views[i].score >= 0 {
			views[i].value += e.pol.Cost.Margin * (hi - prices[i]) / (hi - lo)
		}
	}
}

// initialShares: a scope seen for the first time starts from its parent's
// current shares, so its first ranking does not jump.
func (e *Engine) initialShares(st *svcState, s *scopeState, target []float64) []float64 {
	if p, ok := s.scope.parent(s.loc); ok {
		for ; ok; p, ok = p.parent(s.loc) {
			if ps := st.scopes[p]; ps != nil && ps.shares != nil {
				return slices.Clone(ps.shares)
			}
		}
	}
	return slices.Clone(target)
}

// moveShares moves cur toward target. CDNs that may not take views lose
// their share at once and it goes to the CDNs below target; otherwise a CDN
// loses at most limit, and the gainers share what the losers gave up in
// proportion to how far below target they are. It reports whether the cap
// held anything back.
func moveShares(cur, target []float64, views []cdnView, limit float64) bool {
	freed := 0.0
	for i := range cur {
		if !views[i].health.eligible() && cur[i] > 0 {
			freed += cur[i]
			cur[i] = 0
		}
	}
	given, capped := freed, false
	// A CDN on probation gets its share at once: a few percent, and the
	// trials are what it is on probation for. Left to take its part of
	// what a capped move frees, it got a tenth of it while another CDN
	// took the lead, and its trials came a minute late.
	for i := range cur {
		g := target[i] - cur[i]
		if views[i].health != HealthProbation || g <= 0 {
			continue
		}
		cur[i] += g
		for g > 1e-12 {
			j := -1
			for k := range cur {
				if k != i && cur[k] > target[k] && (j < 0 || cur[k] > cur[j]) {
					j = k
				}
			}
			if j < 0 {
				break // normalize takes the rest from everyone
			}
			d := min(g, cur[j]-target[j])
			cur[j] -= d
			g -= d
		}
	}
	for i := range cur {
		if excess := cur[i] - target[i]; excess > 1e-12 {
			d := excess
			// A damped CDN has fallen again and again, and one on
			// probation is suspect: both leave at once, as a down one.
			if h := views[i].health; d > limit && h != HealthSuppressed && h != HealthProbation {
				d, capped = limit, true
			}
			cur[i] -= d
			given += d
		}
	}
	gaps := 0.0
	for i := range cur {
		if g := target[i] - cur[i]; g > 0 {
			gaps += g
		}
	}
	if given > 0 && gaps > 0 {
		for i := range cur {
			if g := target[i] - cur[i]; g > 0 {
				cur[i] += given * g / gaps
			}
		}
	}
	normalize(cur)
	return capped
}

// ranking freezes a scope's state into its immutable ranking. Rankings
// and choices come from per-tick slabs: a tick allocates a few large
// blocks instead of one object per scope and CDN.
func (e *Engine) ranking(wk *worker, st *svcState, s *scopeState, views []cdnView, rule Rule, fired Fired) *Ranking {
	n := len(views)
	if cap(wk.rows) < n {
		wk.rows = make([]row, n)
		wk.order = make([]int, 0, n)
	}
	rows := wk.rows[:n]
	order := wk.order[:0]
	micro := wk.microShares(s.shares)
	for i := range views {
		v := &views[i]
		if v.health == HealthBanned && rule != RuleFailOpen {
			continue
		}
		rows[i] = row{micro: micro[i], score: round2(v.score), conf: round2(Confidence(v.samples, e.pol.MinSamples)),
			samples: round2(v.samples), views: round2(v.views), fast: round2(v.fastScore), eligible: v.health.eligible()}
		order = append(order, i)
		// Insertion sort as it fills: at most a few dozen CDNs.
		for j := len(order) - 1; j > 0 && rows[order[j]].before(&rows[order[j-1]], order[j], order[j-1]); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	wk.order = order
	// Most scopes rank the same tick after tick: share the previous,
	// immutable ranking then instead of a copy (a tick would otherwise
	// allocate some 45 MB at 15,000 scopes of 20 CDNs, and the GC would
	// take a third of it). The comparison reads the rows, so an unchanged
	// ranking costs no Choice built.
	if old := s.last; old != nil && old.Rule == rule && old.Fired == fired && e.unchanged(st, s, old.Choices, views, rows, order) {
		return old
	}
	if len(wk.rslab) == 0 {
		wk.rslab = make([]Ranking, 256)
	}
	r := &wk.rslab[0]
	wk.rslab = wk.rslab[1:]
	if len(wk.cslab) < n {
		wk.cslab = make([]Choice, max(4096, n))
	}
	out := wk.cslab[:len(order):len(order)]
	wk.cslab = wk.cslab[len(order):]
	for k, i := range order {
		v, rw := &views[i], &rows[i]
		out[k] = Choice{CDN: st.svc.CDNs[i], Host: st.hosts[i], Weight: float64(rw.micro) / 1e6, Score: rw.score, Confidence: rw.conf,
			ScoreScope: v.level, Samples: rw.samples, Views: rw.views, Stats: v.fig, FastScore: rw.fast,
			Health: v.health, Reason: v.reason, Override: v.override, seed: st.seeds[i]}
		if i == s.leader {
			out[k].Leader, out[k].LeaderSince = true, s.leaderAt.UnixMilli()
		}
	}
	*r = Ranking{Scope: s.scope, Rule: rule, Fired: fired, Choices: out}
	s.last = r
	return r
}

// row is a Choice's rounded numbers, before it is known whether the
// ranking changed.
type row struct {
	micro                             int64
	score, conf, samples, views, fast float64
	eligible                          bool
}

// before orders a ranking: weight, then eligibility, then score, then the
// static order (i and j are the rows' CDN indexes).
func (a *row) before(b *row, i, j int) bool {
	if a.micro != b.micro {
		return a.micro > b.micro
	}
	if a.eligible != b.eligible {
		return a.eligible
	}
	if a.score != b.score {
		return a.score > b.score
	}
	return i < j
}

// unchanged reports whether a ranking would read the same as old:
// everything equal but the decayed counts, which may drift by countDrift
// (they fall a little every tick without new data, and are there to
// read, not to decide).
func (e *Engine) unchanged(st *svcState, s *scopeState, old []Choice, views []cdnView, rows []row, order []int) bool {
	if len(old) != len(order) {
		return false
	}
	for k, i := range order {
		x, v, rw := &old[k], &views[i], &rows[i]
		leader := i == s.leader
		if x.CDN != st.svc.CDNs[i] || x.Weight != float64(rw.micro)/1e6 || x.Score != rw.score || x.ScoreScope != v.level ||
			x.Health != v.health || x.Leader != leader || leader && x.LeaderSince != s.leaderAt.UnixMilli() || x.Stats != v.fig ||
			x.FastScore != rw.fast || x.Reason != v.reason || x.Override != v.override ||
			!near(x.Samples, rw.samples) || !near(x.Views, rw.views) || math.Abs(x.Confidence-rw.conf) > 0.01 {
			return false
		}
	}
	return true
}

// countDrift is how far a published decayed count may lag its value.
const countDrift = 0.05

func near(a, b float64) bool { return math.Abs(a-b) <= countDrift*max(math.Abs(a), math.Abs(b)) }

// microShares rounds shares to millionths that sum to exactly a million,
// so published weights sum to 1 and read the same on every node.
func (wk *worker) microShares(shares []float64) []int64 {
	if cap(wk.micro) < len(shares) {
		wk.micro = make([]int64, len(shares))
	}
	out := wk.micro[:len(shares)]
	var sum int64
	big := 0
	for i, v := range shares {
		out[i] = int64(math.Round(v * 1e6))
		sum += out[i]
		if out[i] > out[big] {
			big = i
		}
	}
	out[big] += 1e6 - sum
	return out
}

func round2(v float64) float64 {
	if v < 0 {
		return v
	}
	return math.Round(v*100) / 100
}

func roundFigures(s Figures) Figures {
	s.StartupP50MS, s.StartupP90MS = round2(s.StartupP50MS), round2(s.StartupP90MS)
	s.RebufferRatio = math.Round(s.RebufferRatio*1e5) / 1e5
	s.FailureRate = math.Round(s.FailureRate*1e5) / 1e5
	s.EBVSRate = math.Round(s.EBVSRate*1e5) / 1e5
	s.ThroughputP50Kbps, s.BitrateP50Kbps, s.TTFBP50MS = round2(s.ThroughputP50Kbps), round2(s.BitrateP50Kbps), round2(s.TTFBP50MS)
	return s
}

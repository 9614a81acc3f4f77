package steering

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// sharedWorld is beacons of four regions (cdn-a bad in eu-west, cdn-b
// failing in us-east) and of clients located by country only, for one
// second.
func sharedWorld(now time.Time, s int) []Observation {
	var out []Observation
	regions := []string{"eu-west", "eu-north", "us-east", "us-west", ""}
	for ri, region := range regions {
		for _, svc := range demoCatalog().Services {
			for ci, cdn := range svc.CDNs {
				loc := Location{Region: region, Country: "C" + string(rune('A'+ri)), ASN: uint32(64500 + (s+ri)%2)}
				client := uint64(s)<<20 | uint64(ri)<<8 | uint64(ci)
				startup := uint32(800 + 100*ci + 37*(s%5))
				o := Observation{At: now, Service: svc.Name, CDN: cdn, Location: loc, Client: client, Kind: KindViewStart,
					StartupMS: startup, BitrateKbps: 3000, ThroughputKbps: uint32(9000 + 500*ri), TTFBMS: uint32(30 + 5*ci)}
				if cdn == "cdn-b" && region == "us-east" && s%2 == 0 {
					o = Observation{At: now, Service: svc.Name, CDN: cdn, Location: loc, Client: client, Kind: KindError, Fatal: true}
				}
				out = append(out, o)
				rb := 0.002
				if cdn == "cdn-a" && region == "eu-west" {
					rb = 0.08
				}
				for h := range 2 {
					out = append(out, Observation{At: now, Service: svc.Name, CDN: cdn, Location: loc, Client: client + uint64(h+1)<<40,
						Kind: KindHeartbeat, PlayedMS: uint32(5000 * (1 - rb)), RebufferMS: uint32(5000 * rb), BitrateKbps: 3000})
				}
			}
		}
	}
	return out
}

// TestSharedEnginesMatchOne: two sharing engines, each fed half the
// regions (as two scorers owning half the partitions each) and every
// delta of both through its wire encoding, rank the global and country
// scopes as one engine fed everything does, and each ranks its own regions
// as that engine does. The second engine's decay landmark is 18 minutes
// older than the others', so it rebases mid-run.
func TestSharedEnginesMatchOne(t *testing.T) {
	one, err := NewEngine(demoCatalog(), DefaultPolicy(), t0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewEngine(demoCatalog(), DefaultPolicy(), t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewEngine(demoCatalog(), DefaultPolicy(), t0.Add(-1100*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a.Share()
	b.Share()
	owner := func(region string) *Engine {
		if region == "eu-west" || region == "us-east" {
			return a
		}
		return b
	}
	wire := func(d *Delta) *Delta {
		if d == nil {
			return nil
		}
		raw, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var back Delta
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		return &back
	}
	var last [3][]*Snapshot
	rebased := false
	for s := range 300 {
		now := t0.Add(time.Duration(s) * time.Second)
		for _, o := range sharedWorld(now, s) {
			if err := one.Observe(&o); err != nil {
				t.Fatal(err)
			}
			if err := owner(o.Location.Region).Observe(&o); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []*Delta{wire(a.TakeDelta()), wire(b.TakeDelta())} {
			if d == nil {
				t.Fatalf("second %d: no delta", s)
			}
			for _, e := range []*Engine{a, b} {
				if err := e.ApplyDelta(d); err != nil {
					t.Fatal(err)
				}
			}
		}
		last = [3][]*Snapshot{one.Tick(now), a.Tick(now), b.Tick(now)}
		rebased = rebased || b.slow.landmark != t0.Add(-1100*time.Second)
	}
	if !rebased {
		t.Fatal("the run ended before a rebase")
	}
	for si, want := range last[0] {
		for _, r := range want.Rankings {
			var mine []int
			switch {
			case r.Scope.Level == LevelGlobal || r.Scope.Level == LevelCountry:
				mine = []int{1, 2}
			case owner(r.Scope.Region) == a:
				mine = []int{1}
			default:
				mine = []int{2}
			}
			for _, m := range mine {
				got := last[m][si].Ranking(r.Scope)
				if got == nil {
					t.Errorf("engine %d has no ranking of %s", m, r.Scope)
					continue
				}
				if got.Rule != r.Rule || len(got.Choices) != len(r.Choices) {
					t.Errorf("%s on engine %d: rule %s with %d choices, want %s with %d", r.Scope, m, got.Rule, len(got.Choices), r.Rule, len(r.Choices))
					continue
				}
				for i, w := range r.Choices {
					g := got.Choices[i]
					if g.CDN != w.CDN || g.Weight != w.Weight || g.Health != w.Health ||
						!nearly(g.Score, w.Score) || !nearly(g.Samples, w.Samples) || !nearly(g.Views, w.Views) ||
						(g.Stats != nil) != (w.Stats != nil) || (g.Stats != nil && !nearly(g.Stats.StartupP90MS, w.Stats.StartupP90MS)) {
						t.Errorf("%s on engine %d: choice %d is %+v, want %+v", r.Scope, m, i, g, w)
					}
				}
			}
		}
	}
	// The regions are where they should be, and the failing CDN lost
	// us-east on its owner.
	if r := last[1][0].Ranking(Scope{Service: "vod", Level: LevelRegion, Region: "us-east"}); r == nil || r.Choices[len(r.Choices)-1].CDN != "cdn-b" {
		t.Errorf("us-east on its owner: %+v", r)
	}
	if r := last[2][0].Ranking(Scope{Service: "vod", Level: LevelRegion, Region: "us-east"}); r != nil && r.Rule == RuleMeasured {
		t.Errorf("us-east ranked from data on the engine that does not own it: %+v", r)
	}
}

func nearly(a, b float64) bool { return math.Abs(a-b) <= 1e-6*max(1, math.Abs(a), math.Abs(b)) }

func TestReplayIsNotShared(t *testing.T) {
	e, err := NewEngine(demoCatalog(), DefaultPolicy(), t0)
	if err != nil {
		t.Fatal(err)
	}
	e.Share()
	for _, o := range sharedWorld(t0, 0) {
		if err := e.Replay(&o); err != nil {
			t.Fatal(err)
		}
	}
	if d := e.TakeDelta(); d != nil {
		t.Fatalf("replayed beacons went into a delta: %d services", len(d.Services))
	}
	if w := e.windows[winKey{scope: Scope{Service: "vod", Level: LevelRegion, Region: "eu-west"}, cdn: "cdn-a"}]; w == nil || w.beacons == 0 {
		t.Fatal("replayed beacons missing from their region window")
	}
	if w := e.windows[winKey{scope: Scope{Service: "vod"}, cdn: "cdn-a"}]; w != nil {
		t.Fatalf("a sharing engine fed the global window itself: %+v", w)
	}
	o := sharedWorld(t0, 0)[0]
	if err := e.Observe(&o); err != nil {
		t.Fatal(err)
	}
	d := e.TakeDelta()
	if d == nil || len(d.Services) != 1 || len(d.Services[0].Windows) != 1 || d.Services[0].Windows[0].Scope.Level != LevelGlobal {
		t.Fatalf("one observed beacon: delta %+v", d)
	}
	if e.TakeDelta() != nil {
		t.Fatal("a delta was taken twice")
	}
}

func TestApplyDeltaRefuses(t *testing.T) {
	e, err := NewEngine(demoCatalog(), DefaultPolicy(), t0)
	if err != nil {
		t.Fatal(err)
	}
	e.Share()
	good := func() *Delta {
		return &Delta{Landmark: t0, Services: []*ServiceDelta{{Service: "vod", Newest: t0, Windows: []DeltaWindow{
			{Scope: Scope{Service: "vod"}, CDN: "cdn-a", Beacons: 1, Startup: Bins{Index: []int32{170}, Weight: []float64{1}}},
		}}}}
	}
	for _, tc := range []struct {
		name string
		edit func(*Delta)
		want string
		is   error
	}{
		{"nil service", func(d *Delta) { d.Services[0] = nil }, "services[0] is null", ErrDelta},
		{"no landmark", func(d *Delta) { d.Landmark = time.Time{} }, "landmark is missing", ErrDelta},
		{"far landmark", func(d *Delta) { d.Landmark = t0.Add(-48 * time.Hour) }, "from this engine's", ErrDelta},
		{"unknown service", func(d *Delta) { d.Services[0].Service = "radio"; d.Services[0].Windows[0].Scope.Service = "radio" }, `"radio"`, ErrUnknownService},
		{"unknown cdn", func(d *Delta) { d.Services[0].Windows[0].CDN = "cdn-z" }, `"cdn-z"`, ErrUnknownCDN},
		{"scope of another service", func(d *Delta) { d.Services[0].Windows[0].Scope.Service = "live" }, `scope.service is "live"`, ErrDelta},
		{"region scope", func(d *Delta) {
			d.Services[0].Windows[0].Scope = Scope{Service: "vod", Level: LevelRegion, Region: "eu-west"}
		}, "level region is not shared", ErrDelta},
		{"global with a place", func(d *Delta) { d.Services[0].Windows[0].Scope.Country = "FR" }, "global scope names a place", ErrDelta},
		{"country without one", func(d *Delta) { d.Services[0].Windows[0].Scope.Level = LevelCountry }, "needs a country", ErrDelta},
		{"NaN", func(d *Delta) { d.Services[0].Windows[0].Played = math.NaN() }, "played NaN", ErrDelta},
		{"negative", func(d *Delta) { d.Services[0].Windows[0].Fast.Attempts = -1 }, "fast: attempts -1", ErrDelta},
		{"infinite log sum", func(d *Delta) { d.Services[0].Windows[0].Probation.TputSum = math.Inf(1) }, "probation: tput_sum +Inf", ErrDelta},
		{"bins mismatch", func(d *Delta) { d.Services[0].Windows[0].Startup.Weight = nil }, "startup: 1 indexes for 0 weights", ErrDelta},
		{"bin index", func(d *Delta) { d.Services[0].Windows[0].Startup.Index[0] = 90000 }, "index 90000", ErrDelta},
		{"usage", func(d *Delta) { d.Services[0].Usage = []UsageDelta{{CDN: "cdn-a", Month: 0, GB: 1}} }, "usage[0]", ErrDelta},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := good()
			tc.edit(d)
			err := e.ApplyDelta(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want an error with %q (%v)", err, tc.want, tc.is)
			}
			if len(e.windows) != 0 {
				t.Fatal("a refused delta added windows")
			}
		})
	}
	if err := e.ApplyDelta(good()); err != nil {
		t.Fatal(err)
	}
	if w := e.windows[winKey{scope: Scope{Service: "vod"}, cdn: "cdn-a"}]; w == nil || w.beacons != 1 || w.startup.total != 1 {
		t.Fatalf("applied: %+v", w)
	}
}

// TestSeedCarriesOn: an engine that takes over from another (a scorer
// group's rebalance) and seeds itself with the other's last snapshot goes
// on with its leaders and its shares mid-shift; one that does not jumps
// to its own first targets.
func TestSeedCarriesOn(t *testing.T) {
	regions := []string{"eu-west"}
	aBest := func(cdn, region string) (float64, bool) {
		if cdn == "cdn-a" {
			return 0, false
		}
		return 0.05, false
	}
	bBest := func(cdn, region string) (float64, bool) {
		if cdn == "cdn-b" {
			return 0, false
		}
		return 0.03, false
	}
	// Passive evacuation judges the fast windows, which are no part of
	// what a seed carries: out of the way here.
	pol := DefaultPolicy()
	pol.Passive.EvacuateMargin = 50
	old, err := NewEngine(demoCatalog(), pol, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := feed(t, old, t0, 120*time.Second, regions, aBest)
	// cdn-b becomes better: after the dwell it leads, and the shares move
	// toward it under the shift cap. The old engine stops mid-shift.
	sc := Scope{Service: "vod", Level: LevelRegion, Region: "eu-west"}
	var last *Snapshot
	var was *Ranking
	for range 600 {
		now = feed(t, old, now.Add(time.Second), time.Second, regions, bBest)
		last = old.svcs["vod"].last
		was = last.Ranking(sc)
		if b := choiceOf(was, "cdn-b"); b.Leader && b.Weight > 0.3 && b.Weight < 0.7 {
			break
		}
	}
	if b := choiceOf(was, "cdn-b"); was.Rule != RuleMeasured || !b.Leader || b.Weight < 0.3 || b.Weight > 0.7 {
		t.Fatalf("the old engine's eu-west is not mid-shift to cdn-b: %+v", was)
	}

	take := func(seed bool) *Ranking {
		e, err := NewEngine(demoCatalog(), pol, now)
		if err != nil {
			t.Fatal(err)
		}
		if seed {
			if err := e.Seed(last); err != nil {
				t.Fatal(err)
			}
		}
		// The new engine's windows are rebuilt from the same recent past.
		feed(t, e, now.Add(-10*time.Second), 10*time.Second, regions, bBest)
		return e.Tick(now.Add(time.Second))[0].Ranking(sc)
	}
	limit := DefaultPolicy().MaxShiftPerMinute / 100 / 60 * 12 // the feed's 10 ticks and one of 2 s
	seeded, fresh := take(true), take(false)
	for _, c := range was.Choices {
		if d := math.Abs(choiceOf(seeded, c.CDN).Weight - c.Weight); d > limit+1e-6 {
			t.Errorf("seeded: %s moved %.3f from %.3f, more than the cap allows (%.3f): %+v", c.CDN, d, c.Weight, limit, choiceOf(seeded, c.CDN))
		}
	}
	if g := choiceOf(seeded, "cdn-b"); !g.Leader || g.LeaderSince != choiceOf(was, "cdn-b").LeaderSince {
		t.Errorf("seeded: cdn-b leads from %d, want since %d as before", g.LeaderSince, choiceOf(was, "cdn-b").LeaderSince)
	}
	if d := math.Abs(choiceOf(fresh, "cdn-b").Weight - choiceOf(was, "cdn-b").Weight); d <= limit {
		t.Errorf("unseeded: cdn-b moved only %.3f; the test shows nothing", d)
	}
	// A seeded scope does not warm up again: its windows are rebuilt
	// from history. cdn-a comes back better than cdn-b by more than
	// hysteresis.margin and less than warmup_margin, and takes the lead a
	// dwell later.
	e, err := NewEngine(demoCatalog(), pol, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Seed(last); err != nil {
		t.Fatal(err)
	}
	aBetter := func(cdn, region string) (float64, bool) {
		if cdn == "cdn-a" {
			return 0, false
		}
		return 0.04, false
	}
	at := feed(t, e, now.Add(-10*time.Second), 10*time.Second, regions, bBest)
	for range 60 {
		at = feed(t, e, at.Add(time.Second), time.Second, regions, aBetter)
	}
	if r := e.svcs["vod"].last.Ranking(sc); !choiceOf(r, "cdn-a").Leader {
		t.Errorf("seeded, a minute after cdn-a became better by a few points: %+v", r)
	}
	if e, _ := NewEngine(demoCatalog(), DefaultPolicy(), now); e.Seed(&Snapshot{Service: "radio"}) == nil {
		t.Error("a snapshot of an unknown service was taken")
	}
}

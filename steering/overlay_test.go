package steering

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// overlayBase is a measured snapshot of vod (static order cdn-a, cdn-b,
// cdn-c) as the scorer publishes it, no override applied.
func overlayBase() *Snapshot {
	ch := func(cdn string, w, score float64) Choice {
		return Choice{CDN: cdn, Host: cdn + ".example", Weight: w, Score: score, FastScore: score, Health: HealthUp, Leader: w > 0.5}
	}
	rk := func(sc Scope, cs ...Choice) *Ranking {
		return &Ranking{Scope: sc, Rule: RuleMeasured, Fired: FiredExploration, Choices: cs}
	}
	return &Snapshot{Service: "vod", Version: 7, At: t0, Rankings: []*Ranking{
		rk(Scope{Service: "vod"}, ch("cdn-a", 0.96, 90), ch("cdn-b", 0.02, 80), ch("cdn-c", 0.02, 70)),
		rk(Scope{Service: "vod", Level: LevelRegion, Region: "eu-west"}, ch("cdn-b", 0.96, 92), ch("cdn-c", 0.02, 85), ch("cdn-a", 0.02, 60)),
		rk(Scope{Service: "vod", Level: LevelRegion, Region: "us-east"}, ch("cdn-c", 0.96, 95), ch("cdn-a", 0.02, 90), ch("cdn-b", 0.02, 40)),
		rk(Scope{Service: "vod", Level: LevelASN, Region: "eu-west", ASN: 64500}, ch("cdn-a", 0.96, 88), ch("cdn-c", 0.02, 75), ch("cdn-b", 0.02, 50)),
	}}
}

var (
	scGlobal = Scope{Service: "vod"}
	scEU     = Scope{Service: "vod", Level: LevelRegion, Region: "eu-west"}
	scUS     = Scope{Service: "vod", Level: LevelRegion, Region: "us-east"}
	scASN    = Scope{Service: "vod", Level: LevelASN, Region: "eu-west", ASN: 64500}
)

// ov makes an override of vod: kind, [region[/asn]], cdn or split
// ("cdn-a:70,cdn-b:30") or weight ("cdn-c=0.5"), created at t0+created s.
func ov(id string, kind OverrideKind, scope, target string, created int) Override {
	o := Override{ID: id, Kind: kind, Service: "vod", Reason: "test " + id, Created: t0.Add(time.Duration(created) * time.Second)}
	if scope != "" {
		region, asn, _ := strings.Cut(scope, "/")
		o.Region = region
		if asn != "" {
			fmt.Sscan(asn, &o.ASN)
		}
	}
	switch kind {
	case OverrideSplit:
		o.Split = map[string]float64{}
		for _, p := range strings.Split(target, ",") {
			c, pct, _ := strings.Cut(p, ":")
			var v float64
			fmt.Sscan(pct, &v)
			o.Split[c] = v
		}
	case OverrideWeight:
		c, w, _ := strings.Cut(target, "=")
		o.CDN = c
		fmt.Sscan(w, &o.Weight)
	default:
		o.CDN = target
	}
	return o
}

// rankingWant is what one ranking of the result must read. weights lists
// every CDN the ranking must list, in order.
type rankingWant struct {
	scope   Scope
	rule    Rule
	weights []string // "cdn-b=0.98"
	health  map[string]Health
	ids     map[string]string // Override per CDN ("" for none)
	reason  map[string]string // a substring of the Reason
	same    bool              // the input's ranking itself
}

func TestWithOverrides(t *testing.T) {
	down := func(s *Snapshot) {
		// us-east: cdn-c down and out, as the scorer publishes it.
		r := s.Ranking(scUS)
		r.Choices = []Choice{{CDN: "cdn-a", Weight: 0.98, Score: 90, Health: HealthUp}, {CDN: "cdn-b", Weight: 0.02, Score: 40, Health: HealthUp},
			{CDN: "cdn-c", Score: 95, Health: HealthDown, Reason: "probe: 3 consecutive failures"}}
	}
	for _, tc := range []struct {
		name   string
		edit   func(*Snapshot) // the snapshot as the scorer left it
		active []Override
		static bool // as a Table: the catalog's static order
		want   []rankingWant
	}{
		{name: "nothing applies", want: []rankingWant{{scope: scGlobal, same: true}, {scope: scEU, same: true}}},
		{
			name:   "drain: listed last with weight 0, its share to the best score",
			active: []Override{ov("d1", OverrideDrain, "", "cdn-a", 0)},
			want: []rankingWant{
				{scope: scGlobal, rule: RuleMeasured, weights: []string{"cdn-b=0.98", "cdn-c=0.02", "cdn-a=0"},
					health: map[string]Health{"cdn-a": HealthDrained, "cdn-b": HealthUp}, ids: map[string]string{"cdn-a": "d1", "cdn-b": ""},
					reason: map[string]string{"cdn-a": "drained: test d1", "cdn-b": "best measured score"}},
				{scope: scEU, weights: []string{"cdn-b=0.98", "cdn-c=0.02", "cdn-a=0"}},
				{scope: scASN, weights: []string{"cdn-c=0.98", "cdn-b=0.02", "cdn-a=0"}},
			},
		},
		{
			name:   "ban: not listed, other scopes untouched",
			active: []Override{ov("b1", OverrideBan, "eu-west", "cdn-c", 0)},
			want: []rankingWant{
				{scope: scEU, rule: RuleMeasured, weights: []string{"cdn-b=0.98", "cdn-a=0.02"}},
				{scope: scASN, weights: []string{"cdn-a=0.98", "cdn-b=0.02"}},
				{scope: scGlobal, same: true},
				{scope: scUS, same: true},
			},
		},
		{
			name:   "ban beats drain",
			active: []Override{ov("d1", OverrideDrain, "eu-west", "cdn-c", 0), ov("b1", OverrideBan, "", "cdn-c", 0)},
			want: []rankingWant{
				{scope: scEU, weights: []string{"cdn-b=0.98", "cdn-a=0.02"}},
				{scope: scGlobal, weights: []string{"cdn-a=0.98", "cdn-b=0.02"}},
			},
		},
		{
			name:   "drain of the last CDN that may take views: fail open in static order",
			edit:   down,
			active: []Override{ov("d1", OverrideDrain, "us-east", "cdn-a", 0), ov("d2", OverrideDrain, "us-east", "cdn-b", 0)},
			static: true,
			want: []rankingWant{{scope: scUS, rule: RuleFailOpen, weights: []string{"cdn-a=1", "cdn-c=0", "cdn-b=0"},
				reason: map[string]string{"cdn-a": "fail open"}}},
		},
		{
			name:   "pin beats measured QoE and health",
			edit:   down,
			active: []Override{ov("p1", OverridePin, "", "cdn-c", 0)},
			want: []rankingWant{
				{scope: scGlobal, rule: RulePin, weights: []string{"cdn-c=1", "cdn-a=0", "cdn-b=0"}, ids: map[string]string{"cdn-c": "p1", "cdn-a": ""},
					reason: map[string]string{"cdn-c": "pinned: test p1"}},
				{scope: scUS, rule: RulePin, weights: []string{"cdn-c=1", "cdn-a=0", "cdn-b=0"}, health: map[string]Health{"cdn-c": HealthDown}},
			},
		},
		{
			name:   "the most specific pin wins",
			active: []Override{ov("p1", OverridePin, "", "cdn-c", 0), ov("p2", OverridePin, "eu-west", "cdn-a", 0), ov("p3", OverridePin, "eu-west/64500", "cdn-b", 0)},
			want: []rankingWant{
				{scope: scGlobal, rule: RulePin, weights: []string{"cdn-c=1", "cdn-a=0", "cdn-b=0"}},
				{scope: scUS, rule: RulePin, weights: []string{"cdn-c=1", "cdn-a=0", "cdn-b=0"}},
				{scope: scEU, rule: RulePin, weights: []string{"cdn-a=1", "cdn-b=0", "cdn-c=0"}, ids: map[string]string{"cdn-a": "p2"}},
				{scope: scASN, rule: RulePin, weights: []string{"cdn-b=1", "cdn-a=0", "cdn-c=0"}, ids: map[string]string{"cdn-b": "p3"}},
			},
		},
		{
			name:   "the newest of equally specific ones wins, pin or split",
			active: []Override{ov("p1", OverridePin, "eu-west", "cdn-a", 5), ov("s1", OverrideSplit, "eu-west", "cdn-a:50,cdn-c:50", 9), ov("p2", OverridePin, "eu-west", "cdn-c", 1)},
			want:   []rankingWant{{scope: scEU, rule: RuleSplit, weights: []string{"cdn-c=0.5", "cdn-a=0.5", "cdn-b=0"}, ids: map[string]string{"cdn-a": "s1", "cdn-c": "s1", "cdn-b": ""}}},
		},
		{
			name:   "a ban beats a pin: fail open to the static order",
			active: []Override{ov("p1", OverridePin, "eu-west", "cdn-b", 0), ov("b1", OverrideBan, "eu-west", "cdn-b", 0)},
			static: true,
			want: []rankingWant{{scope: scEU, rule: RuleFailOpen, weights: []string{"cdn-a=1", "cdn-c=0", "cdn-b=0"},
				health: map[string]Health{"cdn-b": HealthBanned}, ids: map[string]string{"cdn-b": "b1"}}},
		},
		{
			name:   "a ban beats a pin: without the catalog, the ranking's order",
			active: []Override{ov("p1", OverridePin, "eu-west", "cdn-b", 0), ov("b1", OverrideBan, "eu-west", "cdn-b", 0)},
			want:   []rankingWant{{scope: scEU, rule: RuleFailOpen, weights: []string{"cdn-c=1", "cdn-a=0", "cdn-b=0"}}},
		},
		{
			name:   "split: exact shares, banned CDNs left out",
			active: []Override{ov("s1", OverrideSplit, "eu-west", "cdn-a:60,cdn-b:20,cdn-c:20", 0), ov("b1", OverrideBan, "eu-west", "cdn-b", 0)},
			want: []rankingWant{{scope: scEU, rule: RuleSplit, weights: []string{"cdn-a=0.75", "cdn-c=0.25"},
				ids: map[string]string{"cdn-a": "s1", "cdn-c": "s1"}, reason: map[string]string{"cdn-a": "split: test s1"}}},
		},
		{
			name:   "split of banned CDNs only: fail open",
			active: []Override{ov("s1", OverrideSplit, "eu-west", "cdn-b:100", 0), ov("b1", OverrideBan, "eu-west", "cdn-b", 0)},
			static: true,
			want:   []rankingWant{{scope: scEU, rule: RuleFailOpen, weights: []string{"cdn-a=1", "cdn-c=0", "cdn-b=0"}}},
		},
		{
			name:   "weight: fixes a share, the others scaled to the rest",
			active: []Override{ov("w1", OverrideWeight, "", "cdn-c=0.5", 0)},
			want: []rankingWant{
				{scope: scGlobal, rule: RuleMeasured, weights: []string{"cdn-c=0.5", "cdn-a=0.489796", "cdn-b=0.010204"},
					ids: map[string]string{"cdn-c": "w1", "cdn-a": ""}, reason: map[string]string{"cdn-c": "weight: test w1"}},
			},
		},
		{
			name: "weight of the leader: the others share the rest evenly when they had none",
			edit: func(s *Snapshot) {
				s.Rankings[0].Choices = []Choice{{CDN: "cdn-a", Weight: 1, Score: -1}, {CDN: "cdn-b", Score: -1}, {CDN: "cdn-c", Score: -1}}
			},
			active: []Override{ov("w1", OverrideWeight, "", "cdn-a=0.2", 0)},
			want:   []rankingWant{{scope: scGlobal, weights: []string{"cdn-b=0.4", "cdn-c=0.4", "cdn-a=0.2"}}},
		},
		{
			name:   "weight on a CDN that may not take views: ignored",
			edit:   down,
			active: []Override{ov("w1", OverrideWeight, "us-east", "cdn-c=0.5", 0)},
			want:   []rankingWant{{scope: scUS, same: true}},
		},
		{
			name:   "pin beats weight",
			active: []Override{ov("w1", OverrideWeight, "eu-west", "cdn-c=0.5", 0), ov("p1", OverridePin, "", "cdn-a", 0)},
			want:   []rankingWant{{scope: scEU, rule: RulePin, weights: []string{"cdn-a=1", "cdn-b=0", "cdn-c=0"}, ids: map[string]string{"cdn-c": ""}}},
		},
		{
			name:   "an expired override does not apply",
			active: []Override{func() Override { o := ov("p1", OverridePin, "", "cdn-c", 0); o.Expires = t0; return o }()},
			want:   []rankingWant{{scope: scGlobal, same: true}},
		},
		{
			name: "gone pin: the best measured score takes the views back",
			edit: func(s *Snapshot) {
				r := s.Ranking(scEU)
				r.Rule, r.Fired = RulePin, 0
				r.Choices = []Choice{{CDN: "cdn-a", Weight: 1, Score: 60, Override: "p0"}, {CDN: "cdn-b", Score: 92, Leader: true}, {CDN: "cdn-c", Score: 85}}
			},
			want: []rankingWant{{scope: scEU, rule: RuleMeasured, weights: []string{"cdn-b=1", "cdn-c=0", "cdn-a=0"}, ids: map[string]string{"cdn-a": ""},
				reason: map[string]string{"cdn-b": "override p0 gone: best measured score", "cdn-a": "override p0 gone"}}},
		},
		{
			name: "gone pin with no data anywhere: the static order, not the pinned CDN listed first",
			edit: func(s *Snapshot) {
				r := s.Ranking(scEU)
				r.Rule, r.Fired = RulePin, 0
				r.Choices = []Choice{{CDN: "cdn-b", Weight: 1, Score: -1, Override: "p0"}, {CDN: "cdn-a", Score: -1}, {CDN: "cdn-c", Score: -1}}
			},
			static: true,
			want:   []rankingWant{{scope: scEU, rule: RuleNoData, weights: []string{"cdn-a=1", "cdn-b=0", "cdn-c=0"}, ids: map[string]string{"cdn-b": ""}}},
		},
		{
			name: "gone split, a pin in force: the pin",
			edit: func(s *Snapshot) {
				r := s.Ranking(scEU)
				r.Rule = RuleSplit
				r.Choices = []Choice{{CDN: "cdn-a", Weight: 0.5, Score: 60, Override: "s0"}, {CDN: "cdn-c", Weight: 0.5, Score: 85, Override: "s0"}, {CDN: "cdn-b", Score: 92}}
			},
			active: []Override{ov("p1", OverridePin, "", "cdn-c", 0)},
			want:   []rankingWant{{scope: scEU, rule: RulePin, weights: []string{"cdn-c=1", "cdn-b=0", "cdn-a=0"}, ids: map[string]string{"cdn-a": "", "cdn-c": "p1"}}},
		},
		{
			name: "gone drain: back with health unknown and weight 0",
			edit: func(s *Snapshot) {
				r := s.Ranking(scEU)
				r.Choices = []Choice{{CDN: "cdn-b", Weight: 0.98, Score: 92}, {CDN: "cdn-c", Weight: 0.02, Score: 85}, {CDN: "cdn-a", Score: 60, Health: HealthDrained, Override: "d0"}}
			},
			want: []rankingWant{{scope: scEU, rule: RuleMeasured, weights: []string{"cdn-b=0.98", "cdn-c=0.02", "cdn-a=0"},
				health: map[string]Health{"cdn-a": HealthUnknown}, ids: map[string]string{"cdn-a": ""}, reason: map[string]string{"cdn-a": "drain d0 lifted"}}},
		},
		{
			name: "gone ban of the only CDN that may take views: it takes them",
			edit: func(s *Snapshot) {
				r := s.Ranking(scUS)
				r.Rule, r.Fired = RuleFailOpen, 0
				r.Choices = []Choice{{CDN: "cdn-b", Weight: 1, Score: 40, Health: HealthDown}, {CDN: "cdn-c", Score: 95, Health: HealthDown},
					{CDN: "cdn-a", Score: 90, Health: HealthBanned, Override: "b0"}}
			},
			want: []rankingWant{{scope: scUS, rule: RuleMeasured, weights: []string{"cdn-a=1", "cdn-c=0", "cdn-b=0"},
				health: map[string]Health{"cdn-a": HealthUnknown, "cdn-b": HealthDown}, reason: map[string]string{"cdn-a": "best measured score"}}},
		},
		{
			name: "gone ban: a CDN missing from a ranking comes back",
			edit: func(s *Snapshot) {
				s.Ranking(scEU).Choices = []Choice{{CDN: "cdn-b", Weight: 0.98, Score: 92}, {CDN: "cdn-c", Weight: 0.02, Score: 85}}
			},
			active: []Override{ov("d1", OverrideDrain, "eu-west", "cdn-c", 0)},
			static: true,
			want: []rankingWant{{scope: scEU, weights: []string{"cdn-b=1", "cdn-a=0", "cdn-c=0"},
				health: map[string]Health{"cdn-a": HealthUnknown, "cdn-c": HealthDrained}, reason: map[string]string{"cdn-a": "no ban applies any more"}}},
		},
		{
			name: "gone weight: shares held, the id cleared",
			edit: func(s *Snapshot) {
				s.Ranking(scEU).Choices = []Choice{{CDN: "cdn-c", Weight: 0.5, Score: 85, Override: "w0"}, {CDN: "cdn-b", Weight: 0.48, Score: 92}, {CDN: "cdn-a", Weight: 0.02, Score: 60}}
			},
			want: []rankingWant{{scope: scEU, rule: RuleMeasured, weights: []string{"cdn-c=0.5", "cdn-b=0.48", "cdn-a=0.02"}, ids: map[string]string{"cdn-c": ""},
				reason: map[string]string{"cdn-c": "weight override w0 gone: shares held"}}},
		},
		{
			name:   "a region without a ranking gets one",
			active: []Override{ov("p1", OverridePin, "ap-south", "cdn-b", 0)},
			want: []rankingWant{
				{scope: Scope{Service: "vod", Level: LevelRegion, Region: "ap-south"}, rule: RulePin, weights: []string{"cdn-b=1", "cdn-a=0", "cdn-c=0"}},
				{scope: scGlobal, same: true},
			},
		},
		{
			name:   "an ASN without a ranking gets one, from its region's",
			active: []Override{ov("b1", OverrideBan, "eu-west/64999", "cdn-b", 0)},
			want: []rankingWant{
				{scope: Scope{Service: "vod", Level: LevelASN, Region: "eu-west", ASN: 64999}, rule: RuleMeasured, weights: []string{"cdn-c=0.98", "cdn-a=0.02"}},
				{scope: scEU, same: true},
			},
		},
		{
			name:   "another service's overrides do not apply",
			active: []Override{{ID: "x", Kind: OverridePin, Service: "live", CDN: "cdn-a", Reason: "x"}},
			want:   []rankingWant{{scope: scEU, same: true}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := overlayBase()
			in.build()
			if tc.edit != nil {
				tc.edit(in)
				in.build()
			}
			var got *Snapshot
			if tc.static {
				got = in.overlay(tc.active, t0, staticChoices(demoCatalog(), demoCatalog().Services[0], "static order"))
			} else {
				got = in.WithOverrides(tc.active, t0)
			}
			checkOverlaid(t, got)
			for _, w := range tc.want {
				r := got.Ranking(w.scope)
				if r == nil {
					t.Fatalf("%s: no ranking", w.scope)
				}
				if got.Lookup(Location{Region: w.scope.Region, ASN: w.scope.ASN}) != r {
					t.Errorf("%s: Lookup does not find it", w.scope)
				}
				if w.same {
					if r != in.Ranking(w.scope) {
						t.Errorf("%s: changed, want the input's ranking\n%s", w.scope, dumpRanking(r))
					}
					continue
				}
				if w.rule != "" && r.Rule != w.rule {
					t.Errorf("%s: rule %s, want %s\n%s", w.scope, r.Rule, w.rule, dumpRanking(r))
				}
				var listed []string
				for _, c := range r.Choices {
					listed = append(listed, fmt.Sprintf("%s=%g", c.CDN, c.Weight))
				}
				if !slices.Equal(listed, w.weights) {
					t.Errorf("%s: %v, want %v\n%s", w.scope, listed, w.weights, dumpRanking(r))
				}
				for cdn, h := range w.health {
					if c := choiceOf(r, cdn); c.Health != h {
						t.Errorf("%s %s: health %s, want %s", w.scope, cdn, c.Health, h)
					}
				}
				for cdn, id := range w.ids {
					if c := choiceOf(r, cdn); c.Override != id {
						t.Errorf("%s %s: override %q, want %q", w.scope, cdn, c.Override, id)
					}
				}
				for cdn, why := range w.reason {
					if c := choiceOf(r, cdn); !strings.Contains(c.Reason, why) {
						t.Errorf("%s %s: reason %q, want it to say %q", w.scope, cdn, c.Reason, why)
					}
				}
			}
			// Applying the same overrides again changes nothing.
			if again := got.WithOverrides(tc.active, t0); again != got && !tc.static {
				for i, r := range again.Rankings {
					if r != got.Rankings[i] {
						t.Errorf("applied twice, %s changed again:\n%s\nwas\n%s", r.Scope, dumpRanking(r), dumpRanking(got.Rankings[i]))
					}
				}
			}
		})
	}
}

// checkOverlaid checks what every ranking a node serves must be.
func checkOverlaid(t *testing.T, s *Snapshot) {
	t.Helper()
	if s.Ranking(Scope{Service: s.Service}) == nil || len(s.index) != len(s.Rankings) {
		t.Fatalf("no global ranking or a bad index")
	}
	for i, r := range s.Rankings {
		if i > 0 && !scopeLess(s.Rankings[i-1].Scope, r.Scope) {
			t.Errorf("rankings out of order at %s", r.Scope)
		}
		var sum int64
		positive := false
		for _, c := range r.Choices {
			sum += int64(math.Round(c.Weight * 1e6))
			positive = positive || c.Weight > 0
			if math.Abs(c.Weight*1e6-math.Round(c.Weight*1e6)) > 1e-6 {
				t.Errorf("%s %s: weight %v is not in millionths", r.Scope, c.CDN, c.Weight)
			}
			if c.Health == HealthBanned && r.Rule != RuleFailOpen {
				t.Errorf("%s: banned %s listed (rule %s)", r.Scope, c.CDN, r.Rule)
			}
			if c.seed != seedOf(c.CDN) {
				t.Errorf("%s %s: no pick seed", r.Scope, c.CDN)
			}
		}
		if sum != 1e6 || !positive {
			t.Errorf("%s: weights sum to %d millionths\n%s", r.Scope, sum, dumpRanking(r))
		}
	}
}

func dumpRanking(r *Ranking) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s rule=%s", r.Scope, r.Rule)
	for _, c := range r.Choices {
		fmt.Fprintf(&b, "\n  %s w=%g score=%g health=%s override=%q leader=%v %s", c.CDN, c.Weight, c.Score, c.Health, c.Override, c.Leader, c.Reason)
	}
	return b.String()
}

// TestWithOverridesFollowsEngine: on what the scorer publishes with the
// same overrides, a node changes nothing; with a different set, what it
// serves is still well formed. Weight overrides are left out of the first:
// the scorer moves toward one under the shift cap, a node applies it at once.
func TestWithOverridesFollowsEngine(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			cat := demoCatalog()
			e, err := NewEngine(cat, DefaultPolicy(), t0)
			if err != nil {
				t.Fatal(err)
			}
			regions := []string{"eu-west", "us-east", "ap-south"}
			cdns := cat.Services[0].CDNs
			var ovs []Override
			for s := range 240 {
				now := t0.Add(time.Duration(s) * time.Second)
				for range 30 {
					loc := Location{Region: regions[rng.IntN(2)], ASN: uint32(64500 + rng.IntN(3))}
					o := Observation{At: now, Service: "vod", CDN: cdns[rng.IntN(3)], Client: rng.Uint64(), Location: loc}
					switch rng.IntN(5) {
					case 0:
						o.Kind, o.StartupMS = KindViewStart, uint32(500+rng.IntN(3000))
					case 1:
						o.Kind, o.Fatal = KindError, o.CDN == "cdn-c" && rng.IntN(2) == 0
					default:
						o.Kind, o.PlayedMS, o.RebufferMS = KindHeartbeat, 5000, uint32(rng.IntN(200))
					}
					if err := e.Observe(&o); err != nil {
						t.Fatal(err)
					}
				}
				if rng.IntN(15) == 0 {
					kinds := []OverrideKind{OverridePin, OverrideBan, OverrideDrain, OverrideSplit}
					o := ov(fmt.Sprint("o", s), kinds[rng.IntN(len(kinds))], "", cdns[rng.IntN(3)], s)
					if o.Kind == OverrideSplit {
						o = ov(o.ID, OverrideSplit, "", cdns[rng.IntN(3)]+":70,"+cdns[(1+rng.IntN(2))%3]+":30", s)
					}
					o.Expires = now.Add(time.Duration(5+rng.IntN(60)) * time.Second)
					switch rng.IntN(3) {
					case 0:
						o.Region = regions[rng.IntN(3)]
					case 1:
						o.Region, o.ASN = regions[rng.IntN(2)], uint32(64500+rng.IntN(4))
					}
					if len(o.Split) == 1 {
						continue
					}
					ovs = append(ovs, o)
					if err := e.SetOverrides(ovs); err != nil {
						t.Fatal(err)
					}
				}
				for _, snap := range e.Tick(now) {
					if snap.Service != "vod" {
						continue
					}
					got := snap.WithOverrides(ovs, now)
					for i, r := range got.Rankings {
						if r != snap.Rankings[i] {
							t.Fatalf("t=%ds: the node changed the scorer's ranking\n%s\nto\n%s", s, dumpRanking(snap.Rankings[i]), dumpRanking(r))
						}
					}
					// A node behind or ahead of the scorer.
					other := slices.Clone(ovs)
					if len(other) > 0 {
						other = slices.Delete(other, 0, rng.IntN(len(other)))
					}
					other = append(other, ov("n", OverridePin, regions[rng.IntN(3)], cdns[rng.IntN(3)], s), ov("w", OverrideWeight, "", cdns[rng.IntN(3)]+"=0.3", s))
					mixed := snap.WithOverrides(other, now)
					checkOverlaid(t, mixed)
					checkSnapshot(t, mixed, other, now)
				}
			}
		})
	}
}

func TestDryRun(t *testing.T) {
	s := overlayBase()
	s.build()
	active := []Override{ov("d1", OverrideDrain, "", "cdn-c", 0)}
	eff := s.WithOverrides(active, t0)
	for _, tc := range []struct {
		name string
		cand Override
		want []string // scope: before -> after, the weights of every CDN listed
	}{
		{"pin in a region and its ASN", ov("p1", OverridePin, "eu-west", "cdn-a", 1), []string{
			"vod/eu-west: cdn-a=0.02 cdn-b=0.98 cdn-c=0 -> cdn-a=1 cdn-b=0 cdn-c=0",
			"vod/eu-west/AS64500: cdn-a=0.98 cdn-b=0.02 cdn-c=0 -> cdn-a=1 cdn-b=0 cdn-c=0",
		}},
		{"ban everywhere: the CDN gone after", ov("b1", OverrideBan, "", "cdn-b", 1), []string{
			"vod: cdn-a=0.98 cdn-b=0.02 cdn-c=0 -> cdn-a=1 cdn-c=0",
			"vod/eu-west: cdn-a=0.02 cdn-b=0.98 cdn-c=0 -> cdn-a=1 cdn-c=0",
			"vod/us-east: cdn-a=0.98 cdn-b=0.02 cdn-c=0 -> cdn-a=1 cdn-c=0",
			"vod/eu-west/AS64500: cdn-a=0.98 cdn-b=0.02 cdn-c=0 -> cdn-a=1 cdn-c=0",
		}},
		{"a region without a ranking: against the one that answered it", ov("s1", OverrideSplit, "ap-south", "cdn-a:50,cdn-b:50", 1), []string{
			"vod/ap-south: cdn-a=0.98 cdn-b=0.02 cdn-c=0 -> cdn-a=0.5 cdn-b=0.5 cdn-c=0",
		}},
		{"what is in force already changes nothing", ov("d2", OverrideDrain, "us-east", "cdn-c", 1), nil},
		// Narrowed to us-east: the other scopes get cdn-c back. (From a
		// snapshot with d1 applied, a node cannot know its old share.)
		{"replacing an override by its id", func() Override { o := ov("d1", OverrideDrain, "", "cdn-c", 0); o.Region = "us-east"; return o }(), []string{
			"vod: cdn-a=0.98 cdn-b=0.02 cdn-c=0 -> cdn-a=0.96 cdn-b=0.02 cdn-c=0.02",
			"vod/eu-west: cdn-a=0.02 cdn-b=0.98 cdn-c=0 -> cdn-a=0.02 cdn-b=0.96 cdn-c=0.02",
			"vod/eu-west/AS64500: cdn-a=0.98 cdn-b=0.02 cdn-c=0 -> cdn-a=0.96 cdn-b=0.02 cdn-c=0.02",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// From the raw snapshot or the one a Table serves: the same.
			for _, from := range []*Snapshot{s, eff} {
				if from == eff && tc.cand.ID == "d1" {
					continue
				}
				var got []string
				for _, ch := range DryRun(from, tc.cand, active, t0) {
					got = append(got, ch.Scope.String()+": "+fmtWeights(ch.Before)+" -> "+fmtWeights(ch.After))
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
				}
			}
		})
	}
	if got := s.WithOverrides(active, t0); got.Ranking(Scope{Service: "vod", Level: LevelRegion, Region: "ap-south"}) != nil {
		t.Errorf("DryRun changed the snapshot")
	}
}

func fmtWeights(m map[string]float64) string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%g", k, v))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestTableOverrides(t *testing.T) {
	now := t0.Add(time.Second)
	tbl, err := NewTable(demoCatalog(), DefaultPolicy().Stale, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	raw := overlayBase()
	if err := tbl.Store(raw); err != nil {
		t.Fatal(err)
	}
	eu := Query{Service: "vod", Location: Location{Region: "eu-west"}}
	if d, _ := tbl.Decide(eu); d.CDN != "cdn-b" || d.Rule != RuleMeasured {
		t.Fatalf("before overrides: %+v", d)
	}
	pin := ov("p1", OverridePin, "eu-west", "cdn-c", 0)
	if err := tbl.SetOverrides([]Override{pin}); err != nil {
		t.Fatal(err)
	}
	if d, _ := tbl.Decide(eu); d.CDN != "cdn-c" || d.Rule != RulePin || d.Version != 7 {
		t.Fatalf("pinned: %+v", d)
	}
	if r := tbl.Snapshot("vod").Ranking(scEU); r.Rule != RulePin || choiceOf(r, "cdn-c").Override != "p1" {
		t.Errorf("Snapshot does not show the pin:\n%s", dumpRanking(r))
	}
	if tbl.Snapshot("vod").Ranking(scGlobal) != raw.Ranking(scGlobal) {
		t.Errorf("a ranking the pin does not touch is not shared")
	}
	// A bad override is left out and named; the good ones of the set
	// apply (a CDN removed from the config must not freeze the rest).
	bad := ov("bad", OverridePin, "eu-west", "cdn-z", 0)
	if err := tbl.SetOverrides([]Override{ov("p1", OverridePin, "eu-west", "cdn-c", 0), bad}); err == nil || !strings.Contains(err.Error(), `override 1 (bad) refused: cdn: "cdn-z"`) {
		t.Errorf("bad override: %v", err)
	}
	if got := tbl.Overrides(); len(got) != 1 || got[0].ID != "p1" {
		t.Errorf("Overrides = %+v, want p1 only", got)
	}
	// A new snapshot from the scorer: the pin applies to it as well.
	next := overlayBase()
	next.Version = 8
	if err := tbl.Store(next); err != nil {
		t.Fatal(err)
	}
	if d, _ := tbl.Decide(eu); d.CDN != "cdn-c" || d.Version != 8 {
		t.Fatalf("pinned after a new snapshot: %+v", d)
	}
	// Stale past stale.static: the static order, with the overrides.
	now = now.Add(DefaultPolicy().Stale.Static + time.Second)
	if d, _ := tbl.Decide(eu); d.CDN != "cdn-c" || !d.Stale || d.Rule != RulePin {
		t.Fatalf("stale: %+v, want the pin on the static order", d)
	}
	if d, _ := tbl.Decide(Query{Service: "vod", Location: Location{Region: "us-east"}}); d.CDN != "cdn-a" || !d.Stale || d.Rule != RuleStaleStatic {
		t.Fatalf("stale elsewhere: %+v, want the static order", d)
	}
	if err := tbl.SetOverrides(nil); err != nil {
		t.Fatal(err)
	}
	if tbl.Snapshot("vod") != next {
		t.Errorf("with no overrides the stored snapshot is served as it is")
	}
}

// TestTableOverrideExpiry: a node stops enforcing an override the moment
// it expires on its own clock, with no call from outside; and undoes what
// the scorer applied of it when the scorer has not ranked since.
func TestTableOverrideExpiry(t *testing.T) {
	for _, scorerApplied := range []bool{false, true} {
		t.Run(fmt.Sprint("scorer applied=", scorerApplied), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tbl, err := NewTable(demoCatalog(), DefaultPolicy().Stale, time.Now)
				if err != nil {
					t.Fatal(err)
				}
				pin := ov("p1", OverridePin, "eu-west", "cdn-c", 0)
				pin.Created, pin.Expires = time.Now(), time.Now().Add(30*time.Second)
				snap := overlayBase()
				snap.At = time.Now()
				if scorerApplied {
					snap = snap.WithOverrides([]Override{pin}, time.Now())
				}
				if err := tbl.Store(snap); err != nil {
					t.Fatal(err)
				}
				if err := tbl.SetOverrides([]Override{pin}); err != nil {
					t.Fatal(err)
				}
				views := make([]Query, 200)
				for i := range views {
					views[i] = Query{Service: "vod", Location: Location{Region: "eu-west", Country: "GB"}, ViewID: fmt.Sprint("view-", i)}
				}
				decide := func(want string, rule Rule) {
					t.Helper()
					for _, q := range views {
						if d, err := tbl.Decide(q); err != nil || d.CDN != want || d.Rule != rule {
							t.Fatalf("%s: %s %s (%v), want %s %s", q.ViewID, d.CDN, d.Rule, err, want, rule)
						}
					}
				}
				time.Sleep(30*time.Second - time.Nanosecond)
				decide("cdn-c", RulePin)
				if r := tbl.Snapshot("vod").Ranking(scEU); r.Rule != RulePin {
					t.Fatalf("rankings before the expiry: %s", r.Rule)
				}
				time.Sleep(time.Nanosecond)
				// Measured: cdn-b has most of eu-west; what the scorer
				// pinned goes to the best score, cdn-b, until it ranks again.
				r := tbl.Snapshot("vod").Ranking(scEU)
				if r.Rule != RuleMeasured || r.Choices[0].CDN != "cdn-b" || choiceOf(r, "cdn-c").Override != "" {
					t.Fatalf("rankings at the expiry:\n%s", dumpRanking(r))
				}
				hits := 0
				for _, q := range views {
					d, err := tbl.Decide(q)
					if err != nil || d.Rule != RuleMeasured {
						t.Fatalf("at the expiry: %+v %v", d, err)
					}
					if d.CDN == "cdn-b" {
						hits++
					}
				}
				if hits < 180 {
					t.Errorf("at the expiry %d of %d views on cdn-b, want the measured ranking's ~96%%", hits, len(views))
				}
				if len(tbl.Overrides()) != 0 {
					t.Errorf("Overrides still holds %+v", tbl.Overrides())
				}
			})
		})
	}
}

// TestTableDecideAllocs: overrides cost the hot path nothing.
func TestTableDecideAllocs(t *testing.T) {
	e, now := benchWorld(t, 5, 20, 5)
	tbl, err := NewTable(e.cat, e.pol.Stale, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range e.Tick(now) {
		if err := tbl.Store(s); err != nil {
			t.Fatal(err)
		}
	}
	ovs := []Override{
		{ID: "d", Kind: OverrideDrain, Service: "vod", CDN: "cdn-00", Reason: "r", Created: now, Expires: now.Add(time.Hour)},
		{ID: "p", Kind: OverridePin, Service: "vod", Region: "region-003", CDN: "cdn-02", Reason: "r", Created: now, Expires: now.Add(time.Minute)},
		{ID: "b", Kind: OverrideBan, Service: "vod", Region: "region-999", ASN: 1, CDN: "cdn-01", Reason: "r", Created: now},
	}
	if err := tbl.SetOverrides(ovs); err != nil {
		t.Fatal(err)
	}
	q := Query{Service: "vod", Location: Location{Region: "region-003", ASN: 64513}, ViewID: "v"}
	if d, _ := tbl.Decide(q); d.CDN != "cdn-02" {
		t.Fatalf("pinned region: %s", d.CDN)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = tbl.Decide(q) }); n != 0 {
		t.Errorf("Decide allocates %v times", n)
	}
	now = now.Add(2 * time.Minute) // the pin expired: the first Decide rebuilds
	if d, _ := tbl.Decide(q); d.CDN == "cdn-02" && d.Rule == RulePin {
		t.Fatalf("expired pin still applies")
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = tbl.Decide(q) }); n != 0 {
		t.Errorf("Decide after the expiry allocates %v times", n)
	}
}

// BenchmarkWithOverrides: what a node spends per stored snapshot of the
// 15,300 scopes of BenchmarkTick with a service-wide drain and a region
// pin: every ranking is rewritten (drain) or checked (pin).
func BenchmarkWithOverrides(b *testing.B) {
	e, now := benchWorld(b, 20, 300, 50)
	snap := e.Tick(now)[0]
	ovs := []Override{
		{ID: "d", Kind: OverrideDrain, Service: "vod", CDN: "cdn-03", Reason: "r", Created: now},
		{ID: "p", Kind: OverridePin, Service: "vod", Region: "region-003", CDN: "cdn-02", Reason: "r", Created: now},
	}
	b.Run("node", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			snap.WithOverrides(ovs, now)
		}
	})
	if err := e.SetOverrides(ovs); err != nil {
		b.Fatal(err)
	}
	applied := e.Tick(now.Add(time.Second))[0]
	b.Run("scorer-applied", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			applied.WithOverrides(ovs, now)
		}
	})
}

// TestTableConcurrent: readers decide while the snapshot, the overrides
// and the clock move, and readers rebuild at the expiries (run with -race).
func TestTableConcurrent(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	tbl, err := NewTable(demoCatalog(), DefaultPolicy().Stale, func() time.Time { return time.Unix(0, clock.Load()) })
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var stop atomic.Bool
	for r := range 4 {
		wg.Go(func() {
			q := Query{Service: "vod", Location: Location{Region: "eu-west", ASN: 64500}, ViewID: fmt.Sprint("v", r)}
			for !stop.Load() {
				d, err := tbl.Decide(q)
				if err != nil || d.CDN == "" || d.Ranking == nil {
					t.Errorf("decide: %+v %v", d, err)
					return
				}
				_ = tbl.Snapshot("vod")
			}
		})
	}
	for i := range 300 {
		now := time.Unix(0, clock.Load())
		s := overlayBase()
		s.Version, s.At = uint64(i+1), now
		if err := tbl.Store(s); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			p := ov(fmt.Sprint("p", i), OverridePin, "eu-west", []string{"cdn-a", "cdn-b", "cdn-c"}[i%3], 0)
			p.Expires = now.Add(5 * time.Millisecond)
			if err := tbl.SetOverrides([]Override{p, ov("d", OverrideDrain, "", "cdn-c", 0)}); err != nil {
				t.Fatal(err)
			}
		}
		clock.Add(int64(time.Millisecond))
	}
	stop.Store(true)
	wg.Wait()
	checkOverlaid(t, tbl.Snapshot("vod"))
}

package steering

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func demoCatalog() Catalog {
	return Catalog{
		CDNs: []CDN{{Name: "cdn-a", Host: "a.example", PricePerGB: 0.004}, {Name: "cdn-b", Host: "b.example", PricePerGB: 0.006},
			{Name: "cdn-c", Host: "c.example", PricePerGB: 0.003}},
		Services: []Service{{Name: "vod", CDNs: []string{"cdn-a", "cdn-b", "cdn-c"}}, {Name: "live", CDNs: []string{"cdn-b", "cdn-a"}}},
	}
}

// feed plays a steady world for d: per region, per CDN, one view start and
// a few heartbeats a second, with quality q(cdn, region).
func feed(t testing.TB, e *Engine, from time.Time, d time.Duration, regions []string, q func(cdn, region string) (rebuf float64, fail bool)) time.Time {
	t.Helper()
	now := from
	for s := 0; s < int(d/time.Second); s++ {
		now = from.Add(time.Duration(s) * time.Second)
		for ri, region := range regions {
			for _, svc := range e.cat.Services {
				for ci, cdn := range svc.CDNs {
					rb, fail := q(cdn, region)
					loc := Location{Region: region, Country: "C" + string(rune('A'+ri%26)), ASN: uint32(64500 + ri%3)}
					client := uint64(s)<<20 | uint64(ri)<<8 | uint64(ci)
					o := Observation{At: now, Service: svc.Name, CDN: cdn, Location: loc, Client: client, Kind: KindViewStart, StartupMS: 900, BitrateKbps: 3000, ThroughputKbps: 9000, TTFBMS: 40}
					if fail {
						o = Observation{At: now, Service: svc.Name, CDN: cdn, Location: loc, Client: client, Kind: KindError, Fatal: true}
					}
					if err := e.Observe(&o); err != nil {
						t.Fatal(err)
					}
					for h := range 3 {
						hb := Observation{At: now, Service: svc.Name, CDN: cdn, Location: loc, Client: client + uint64(h+1)<<40, Kind: KindHeartbeat,
							PlayedMS: uint32(5000 * (1 - rb)), RebufferMS: uint32(5000 * rb), BitrateKbps: 3000}
						if err := e.Observe(&hb); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
		e.Tick(now)
	}
	return now
}

func TestSnapshotWireGolden(t *testing.T) {
	e, err := NewEngine(demoCatalog(), DefaultPolicy(), t0)
	if err != nil {
		t.Fatal(err)
	}
	now := feed(t, e, t0, 120*time.Second, []string{"eu-west", "us-east"}, func(cdn, region string) (float64, bool) {
		switch {
		case cdn == "cdn-a" && region == "us-east":
			return 0, true
		case cdn == "cdn-b":
			return 0.001, false
		}
		return 0.01, false
	})
	if err := e.SetOverrides([]Override{{ID: "o-1", Kind: OverrideDrain, Service: "vod", Region: "eu-west", CDN: "cdn-c", Reason: "maintenance", Created: t0}}); err != nil {
		t.Fatal(err)
	}
	snaps := e.Tick(now.Add(time.Second))
	for _, s := range snaps {
		b, err := MarshalSnapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", "snapshot-"+s.Service+".golden.json")
		if *update {
			if err := os.WriteFile(golden, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update)", err)
		}
		if string(b) != string(want) {
			t.Errorf("%s differs from the encoding; run with -update if the change is intended\ngot:  %.300s", golden, b)
		}
		back, err := UnmarshalSnapshot(want)
		if err != nil {
			t.Fatalf("decode golden: %v", err)
		}
		for _, loc := range []Location{{}, {Region: "eu-west"}, {Region: "us-east", ASN: 64501}} {
			for i := range 200 {
				q := Query{Service: s.Service, Location: loc, ViewID: fmt.Sprint("v-", i)}
				d1, err1 := s.Decide(q)
				d2, err2 := back.Decide(q)
				if err1 != nil || err2 != nil || d1.CDN != d2.CDN {
					t.Fatalf("%+v: %s/%v before the wire, %s/%v after", q, d1.CDN, err1, d2.CDN, err2)
				}
			}
		}
	}
	vod := snaps[0]
	if r := vod.Lookup(Location{Region: "us-east"}); r.Choices[0].CDN == "cdn-a" || choiceOf(r, "cdn-a").Health != HealthDown || choiceOf(r, "cdn-a").Weight != 0 {
		t.Errorf("us-east: cdn-a fails every view, want it down with no weight: %+v", r.Choices)
	}
	if c := choiceOf(vod.Lookup(Location{Region: "eu-west"}), "cdn-c"); c.Health != HealthDrained || c.Weight != 0 || c.Override != "o-1" {
		t.Errorf("eu-west cdn-c: %+v, want drained by o-1 with no weight", c)
	}
}

func choiceOf(r *Ranking, cdn string) *Choice {
	for i := range r.Choices {
		if r.Choices[i].CDN == cdn {
			return &r.Choices[i]
		}
	}
	return &Choice{}
}

func TestUnmarshalSnapshotErrors(t *testing.T) {
	good := `{"format":1,"service":"vod","version":3,"at":"2026-11-25T12:00:00Z","rankings":[{"scope":{"service":"vod","level":"global"},"rule":"measured","choices":[{"cdn":"a","host":"a.example","weight":1}]}]}`
	if _, err := UnmarshalSnapshot([]byte(good)); err != nil {
		t.Fatalf("good snapshot: %v", err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"not json", `{`, "decode snapshot"},
		{"no format", `{"service":"vod"}`, "format is missing"},
		{"future format", strings.Replace(good, `"format":1`, `"format":2`, 1), "format 2 is not 1"},
		{"unknown field", strings.Replace(good, `"version":3`, `"version":3,"extra":1`, 1), "unknown field"},
		{"no service", strings.Replace(good, `"service":"vod","version"`, `"service":"","version"`, 1), "service is empty"},
		{"no time", strings.Replace(good, `"at":"2026-11-25T12:00:00Z",`, ``, 1), "at is missing"},
		{"no rankings", `{"format":1,"service":"vod","at":"2026-11-25T12:00:00Z","rankings":[]}`, "no rankings"},
		{"null ranking", `{"format":1,"service":"vod","at":"2026-11-25T12:00:00Z","rankings":[null]}`, "rankings[0] is null"},
		{"other service", strings.Replace(good, `"scope":{"service":"vod"`, `"scope":{"service":"live"`, 1), `scope.service is "live"`},
		{"no choices", strings.Replace(good, `[{"cdn":"a","host":"a.example","weight":1}]`, `[]`, 1), "has no choices"},
		{"empty cdn", strings.Replace(good, `"cdn":"a"`, `"cdn":""`, 1), "cdn is empty"},
		{"weight range", strings.Replace(good, `"weight":1`, `"weight":1.5`, 1), "outside 0..1"},
		{"weight sum", strings.Replace(good, `"weight":1`, `"weight":0.5`, 1), "sum to 0.5"},
		{"bad level", strings.Replace(good, `"level":"global"`, `"level":"planet"`, 1), `unknown scope level "planet"`},
		{"no global", strings.Replace(good, `"level":"global"`, `"level":"region","region":"eu"`, 1), "no global ranking"},
		{"trailing", good + `{}`, "data after the object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnmarshalSnapshot([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func FuzzUnmarshalSnapshot(f *testing.F) {
	for _, p := range []string{"testdata/snapshot-vod.golden.json", "testdata/snapshot-live.golden.json"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := UnmarshalSnapshot(data)
		if err != nil {
			return
		}
		// Whatever decodes must answer every query.
		for _, loc := range []Location{{}, {Region: "eu-west"}, {Region: "x", ASN: 1}, {Country: "GB"}} {
			d, err := s.Decide(Query{Service: s.Service, Location: loc, ViewID: "v"})
			if err != nil || d.CDN == "" {
				t.Fatalf("decoded snapshot cannot decide for %+v: %v", loc, err)
			}
		}
	})
}

// TestProperties drives the engine with random worlds, overrides and
// probes, and checks the invariants on every ranking of every tick.
func TestProperties(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			cat := Catalog{}
			n := 2 + rng.IntN(5)
			var names []string
			for i := range n {
				name := fmt.Sprintf("cdn%d", i)
				names = append(names, name)
				cat.CDNs = append(cat.CDNs, CDN{Name: name, Host: name + ".example", PricePerGB: rng.Float64() / 100, MaxShare: []float64{0, 0, 0.6}[rng.IntN(3)]})
			}
			cat.Services = []Service{{Name: "vod", CDNs: names}}
			pol := DefaultPolicy()
			pol.Hysteresis.Dwell = time.Duration(rng.IntN(30)) * time.Second
			e, err := NewEngine(cat, pol, t0)
			if err != nil {
				t.Fatal(err)
			}
			regions := []string{"r1", "r2", "r3"}
			var ovs []Override
			for s := range 400 {
				now := t0.Add(time.Duration(s) * time.Second)
				for range 40 {
					o := Observation{At: now, Service: "vod", CDN: names[rng.IntN(n)], Client: rng.Uint64(),
						Location: Location{Region: regions[rng.IntN(3)], Country: "ZZ", ASN: uint32(1 + rng.IntN(4))}}
					switch rng.IntN(4) {
					case 0:
						o.Kind, o.StartupMS = KindViewStart, uint32(rng.IntN(10000))
					case 1:
						o.Kind, o.Fatal = KindError, rng.IntN(3) == 0
					default:
						o.Kind, o.PlayedMS, o.RebufferMS = KindHeartbeat, uint32(rng.IntN(5000)), uint32(rng.IntN(500))
					}
					if err := e.Observe(&o); err != nil {
						t.Fatal(err)
					}
				}
				if rng.IntN(50) == 0 {
					_ = e.Probe(ProbeResult{CDN: names[rng.IntN(n)], At: now, OK: rng.IntN(2) == 0})
				}
				if rng.IntN(40) == 0 {
					o := Override{ID: fmt.Sprint("o", s), Service: "vod", Reason: "prop", Created: now, Expires: now.Add(time.Duration(1+rng.IntN(60)) * time.Second)}
					if rng.IntN(2) == 0 {
						o.Region = regions[rng.IntN(3)]
					}
					switch rng.IntN(5) {
					case 0:
						o.Kind, o.CDN = OverridePin, names[rng.IntN(n)]
					case 1:
						o.Kind, o.CDN = OverrideBan, names[rng.IntN(n)]
					case 2:
						o.Kind, o.CDN = OverrideDrain, names[rng.IntN(n)]
					case 3:
						o.Kind, o.CDN, o.Weight = OverrideWeight, names[rng.IntN(n)], rng.Float64()
					case 4:
						o.Kind, o.Split = OverrideSplit, map[string]float64{names[0]: 60, names[1]: 40}
					}
					ovs = append(ovs, o)
					if err := e.SetOverrides(ovs); err != nil {
						t.Fatal(err)
					}
				}
				for _, snap := range e.Tick(now) {
					checkSnapshot(t, snap, ovs, now)
				}
			}
		})
	}
}

func checkSnapshot(t *testing.T, s *Snapshot, ovs []Override, now time.Time) {
	t.Helper()
	if s.Ranking(Scope{Service: s.Service}) == nil {
		t.Fatalf("v%d: no global ranking", s.Version)
	}
	for _, r := range s.Rankings {
		if len(r.Choices) == 0 {
			t.Fatalf("v%d %s: empty ranking", s.Version, r.Scope)
		}
		sum := 0.0
		for _, c := range r.Choices {
			if c.Weight < 0 || c.Weight > 1 || math.IsNaN(c.Weight) || math.IsNaN(c.Score) {
				t.Fatalf("v%d %s: %s weight %v score %v", s.Version, r.Scope, c.CDN, c.Weight, c.Score)
			}
			sum += c.Weight
			if c.Health == HealthBanned && r.Rule != RuleFailOpen {
				t.Fatalf("v%d %s: banned %s listed", s.Version, r.Scope, c.CDN)
			}
			if (c.Health == HealthDrained || c.Health == HealthDown || c.Health == HealthEvacuated) && c.Weight > 0 &&
				r.Rule != RulePin && r.Rule != RuleSplit && r.Rule != RuleFailOpen {
				t.Fatalf("v%d %s: %s is %s but has weight %v (rule %s)", s.Version, r.Scope, c.CDN, c.Health, c.Weight, r.Rule)
			}
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Fatalf("v%d %s: weights sum to %v", s.Version, r.Scope, sum)
		}
		// Determinism: the same view gets the same CDN, and a pick is
		// always a CDN with weight.
		for i := range 20 {
			id := fmt.Sprint("view-", i)
			a, b := r.pick(id), r.pick(id)
			if a != b || a.Weight <= 0 {
				t.Fatalf("v%d %s: pick(%s) = %s then %s (weight %v)", s.Version, r.Scope, id, a.CDN, b.CDN, a.Weight)
			}
		}
		// Precedence: a pin that applies and is not banned takes it all.
		if r.Rule == RulePin {
			var pinned []string
			for _, c := range r.Choices {
				if c.Weight > 0 {
					pinned = append(pinned, c.CDN)
				}
			}
			if len(pinned) != 1 {
				t.Fatalf("v%d %s: pin with weights on %v", s.Version, r.Scope, pinned)
			}
			found := false
			for _, o := range ovs {
				if _, ok := o.matches(r.Scope); ok && o.Kind == OverridePin && o.CDN == pinned[0] && o.active(now) {
					found = true
				}
			}
			if !found {
				t.Fatalf("v%d %s: pinned to %s with no active pin", s.Version, r.Scope, pinned[0])
			}
		}
	}
}

func TestPickDistributionAndStickiness(t *testing.T) {
	mk := func(wa, wb float64) *Ranking {
		return &Ranking{Choices: []Choice{{CDN: "a", Weight: wa, seed: seedOf("a")}, {CDN: "b", Weight: wb, seed: seedOf("b")}}}
	}
	before, after := mk(0.7, 0.3), mk(0.6, 0.4)
	const n = 100000
	onA, moved, wrongWay := 0, 0, 0
	for i := range n {
		id := fmt.Sprintf("view-%d", i)
		p1, p2 := before.pick(id).CDN, after.pick(id).CDN
		if p1 == "a" {
			onA++
		}
		if p1 != p2 {
			moved++
			if p1 == "b" {
				wrongWay++
			}
		}
	}
	if f := float64(onA) / n; math.Abs(f-0.7) > 0.01 {
		t.Errorf("share of a = %.3f, want 0.70", f)
	}
	// Moving 10 points of share should move about 10% of views, all
	// from a to b: the rest stay where they are.
	if f := float64(moved) / n; math.Abs(f-0.1) > 0.01 || wrongWay != 0 {
		t.Errorf("moved %.3f of views (%d from b to a), want 0.10 and none", f, wrongWay)
	}
}

func TestTableStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cat := demoCatalog()
		st := Stale{Freeze: 30 * time.Second, Static: 5 * time.Minute}
		tbl, err := NewTable(cat, st, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		q := Query{Service: "vod", Location: Location{Region: "eu-west"}, ViewID: "v1"}
		if d, err := tbl.Decide(q); err != nil || d.CDN != "cdn-a" || !d.Stale {
			t.Fatalf("before any snapshot: %+v %v, want static cdn-a", d, err)
		}
		snap := &Snapshot{Service: "vod", Version: 2, At: time.Now(), Rankings: []*Ranking{{Scope: Scope{Service: "vod"}, Rule: RuleMeasured,
			Choices: []Choice{{CDN: "cdn-b", Weight: 1}, {CDN: "cdn-a"}}}}}
		if err := tbl.Store(snap); err != nil {
			t.Fatal(err)
		}
		old := &Snapshot{Service: "vod", Version: 1, At: time.Now(), Rankings: []*Ranking{{Scope: Scope{Service: "vod"}, Choices: []Choice{{CDN: "cdn-c", Weight: 1}}}}}
		if err := tbl.Store(old); err != nil {
			t.Fatal(err)
		}
		if d, _ := tbl.Decide(q); d.CDN != "cdn-b" || d.Stale || d.Version != 2 {
			t.Fatalf("fresh: %+v, want cdn-b from version 2 (an older version must not replace it)", d)
		}
		time.Sleep(st.Static)
		if d, _ := tbl.Decide(q); d.CDN != "cdn-b" {
			t.Fatalf("at exactly stale.static: %+v, want the snapshot still", d)
		}
		time.Sleep(time.Second)
		if d, _ := tbl.Decide(q); d.CDN != "cdn-a" || !d.Stale || d.Rule != RuleStaleStatic {
			t.Fatalf("past stale.static: %+v, want static cdn-a", d)
		}
		if age, ok := tbl.Age("vod"); !ok || age != st.Static+time.Second {
			t.Fatalf("age = %v %v", age, ok)
		}
		if _, err := tbl.Decide(Query{Service: "nope"}); !errors.Is(err, ErrUnknownService) {
			t.Fatalf("unknown service: %v", err)
		}
		if err := tbl.Store(&Snapshot{Service: "nope"}); !errors.Is(err, ErrUnknownService) {
			t.Fatalf("store unknown service: %v", err)
		}
	})
}

func TestEngineRefuses(t *testing.T) {
	e, err := NewEngine(demoCatalog(), DefaultPolicy(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Observe(&Observation{Service: "radio", CDN: "cdn-a"}); !errors.Is(err, ErrUnknownService) {
		t.Errorf("unknown service: %v", err)
	}
	if err := e.Observe(&Observation{Service: "live", CDN: "cdn-c"}); !errors.Is(err, ErrUnknownCDN) {
		t.Errorf("cdn not of the service: %v", err)
	}
	if err := e.Probe(ProbeResult{CDN: "cdn-z"}); !errors.Is(err, ErrUnknownCDN) {
		t.Errorf("probe of unknown cdn: %v", err)
	}
	if err := e.SetOverrides([]Override{{ID: "x", Kind: "nuke", Service: "vod", Reason: "r"}}); err == nil || !strings.Contains(err.Error(), `kind: "nuke"`) {
		t.Errorf("bad override: %v", err)
	}
	if _, err := NewEngine(Catalog{}, DefaultPolicy(), t0); err == nil {
		t.Error("empty catalog accepted")
	}
	bad := DefaultPolicy()
	bad.Stale.Static = bad.Stale.Freeze
	if _, err := NewEngine(demoCatalog(), bad, t0); err == nil || !strings.Contains(err.Error(), "stale.static") {
		t.Errorf("bad policy: %v", err)
	}
}

// TestCloneHost: a clone takes only the host, because hls.js keeps the
// base URI's port and path and dash.js takes the port from HOST.
func TestCloneHost(t *testing.T) {
	for _, tc := range []struct {
		base, clone, host, err string
	}{
		{"https://a.example/media/", "https://c.example/media/", "c.example", ""},
		{"https://a.example/media", "https://c.example/media/", "c.example", ""}, // a trailing slash is not a path
		{"http://127.0.0.1:9001/", "http://127.0.0.3:9001/", "127.0.0.3:9001", ""},
		{"https://a.example", "https://c.example:443", "c.example:443", ""}, // the default port, spelt out
		{"http://[2001:db8::1]:8080/v/", "http://[2001:db8::3]:8080/v/", "[2001:db8::3]:8080", ""},
		{"https://a.example/media/", "http://c.example/media/", "", `has scheme "http"`},
		{"http://127.0.0.1:9001/", "http://127.0.0.1:9002/", "", "has port 9002"},
		{"https://a.example/media/", "https://c.example/vod/", "", `has path "/vod/"`},
		{"https://a.example/", "https://c.example/?k=1", "", "has a query"},
		{"https://a.example/", "https:///media/", "", "has no host"},
		{"https://a.example/", "%zz", "", "clone url"},
	} {
		host, err := CloneHost(tc.base, tc.clone)
		switch {
		case tc.err == "" && (err != nil || host != tc.host):
			t.Errorf("CloneHost(%q, %q) = %q, %v; want %q", tc.base, tc.clone, host, err, tc.host)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("CloneHost(%q, %q) = %q, %v; want an error with %q", tc.base, tc.clone, host, err, tc.err)
		}
	}
}

func TestCatalogAndPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Catalog)
		want string
	}{
		{"no services", func(c *Catalog) { c.Services = nil }, "no services"},
		{"unnamed cdn", func(c *Catalog) { c.CDNs[0].Name = "" }, "cdns[0]: name is empty"},
		{"dup cdn", func(c *Catalog) { c.CDNs[1].Name = "cdn-a" }, `"cdn-a" is repeated`},
		{"neg price", func(c *Catalog) { c.CDNs[0].PricePerGB = -1 }, "price_per_gb"},
		{"NaN share", func(c *Catalog) { c.CDNs[0].MaxShare = math.NaN() }, "max_share"},
		{"max share", func(c *Catalog) { c.CDNs[0].MaxShare = 2 }, "max_share"},
		{"unknown cdn", func(c *Catalog) { c.Services[0].CDNs = []string{"cdn-z"} }, `cdn "cdn-z" is not in cdns`},
		{"twice", func(c *Catalog) { c.Services[0].CDNs = []string{"cdn-a", "cdn-a"} }, "listed twice"},
		{"no cdns", func(c *Catalog) { c.Services[0].CDNs = nil }, "no cdns"},
		{"dup service", func(c *Catalog) { c.Services[1].Name = "vod" }, `"vod" is repeated`},
		{"clone not a cdn of the service", func(c *Catalog) { c.Services[1].Clones = map[string]string{"cdn-c": "cdn-a"} }, `service "live": clone "cdn-c" is not one of its cdns`},
		{"clone of no pathway", func(c *Catalog) { c.Services[0].Clones = map[string]string{"cdn-c": "cdn-z"} }, `base pathway "cdn-z" is not one of its cdns`},
		{"clone of a clone", func(c *Catalog) { c.Services[0].Clones = map[string]string{"cdn-c": "cdn-b", "cdn-b": "cdn-a"} }, `base pathway "cdn-b" is a clone itself`},
		{"clone on another port", func(c *Catalog) {
			c.CDNs[2].BaseURL = "https://c.example:8443"
			c.Services[0].Clones = map[string]string{"cdn-c": "cdn-a"}
		}, `clone "cdn-c" of "cdn-a": clone url "https://c.example:8443" has port 8443, its base "https://a.example" has 443`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := demoCatalog()
			tc.mod(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		mod  func(*Policy)
		want string
	}{
		{"weights zero", func(p *Policy) { p.Weights = Weights{} }, "all zero"},
		{"weight negative", func(p *Policy) { p.Weights.Rebuffer = -1 }, "weights.rebuffer"},
		{"weight NaN", func(p *Policy) { p.Weights.TTFB = math.NaN() }, "weights.ttfb"},
		{"min samples NaN", func(p *Policy) { p.MinSamples = math.NaN() }, "min_samples: NaN"},
		{"half life", func(p *Policy) { p.HalfLife = 0 }, "half_life"},
		{"min samples", func(p *Policy) { p.MinSamples = 0 }, "min_samples"},
		{"exploration", func(p *Policy) { p.Exploration = 0.5 }, "exploration"},
		{"shift", func(p *Policy) { p.MaxShiftPerMinute = 0 }, "max_shift_per_minute"},
		{"probe timeout", func(p *Policy) { p.Probe.Timeout = time.Minute }, "probe.timeout"},
		{"fall", func(p *Policy) { p.Probe.Fall = 0 }, "probe.fall"},
		{"retry", func(p *Policy) { p.Passive.Retry = 0 }, "passive.retry"},
		{"attempt cap", func(p *Policy) { p.Poison.AttemptCap = 0 }, "poison.attempt_cap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPolicy()
			tc.mod(&p)
			if err := p.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
}

// TestRebase runs past several landmark moves: the figures carry on, and
// nothing overflows.
func TestRebase(t *testing.T) {
	pol := DefaultPolicy()
	e, err := NewEngine(demoCatalog(), pol, t0)
	if err != nil {
		t.Fatal(err)
	}
	q := func(cdn, region string) (float64, bool) {
		if cdn == "cdn-b" {
			return 0.001, false
		}
		return 0.02, false
	}
	// The fast decay rebases every ~200 tau (~19 min with a 4 s half-life).
	now := t0
	for range 5 {
		now = feed(t, e, now, 60*time.Second, []string{"eu-west"}, q)
		now = now.Add(15 * time.Minute) // idle: nothing to touch, weights just grow
	}
	now = feed(t, e, now, 60*time.Second, []string{"eu-west"}, q)
	snaps := e.Tick(now)
	r := snaps[0].Lookup(Location{Region: "eu-west"})
	if r.Choices[0].CDN != "cdn-b" {
		t.Fatalf("after rebases: %+v", r.Choices)
	}
	for _, c := range r.Choices {
		if c.Score < 50 || c.Score > 100 || c.Samples <= 0 || math.IsInf(c.Samples, 0) {
			t.Fatalf("after rebases: %s score %v samples %v", c.CDN, c.Score, c.Samples)
		}
	}
	if !e.slow.landmark.After(t0) {
		t.Fatal("the landmark never moved")
	}
}

func TestScoreCurves(t *testing.T) {
	perfect := Stats{Figures: Figures{BitrateP50Kbps: 1e9, ThroughputP50Kbps: 1e9}}
	if s, ok := Score(perfect, DefaultPolicy().Weights); !ok || s < 99.9 {
		t.Errorf("perfect = %v", s)
	}
	if _, ok := Score(noStats(), DefaultPolicy().Weights); ok {
		t.Error("no data scored")
	}
	for _, tc := range []struct {
		name    string
		f       func(float64) float64
		x, want float64
	}{
		{"startup 8s is half", startupCurve, 8000, 0.5},
		{"rebuffer 10% is 1/e", rebufferCurve, 0.1, math.Exp(-1)},
		{"failure 5% is e^-0.75", failureCurve, 0.05, math.Exp(-0.75)},
		{"ttfb 150ms is half", ttfbCurve, 150, 0.5},
	} {
		if got := tc.f(tc.x); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
	if c := Confidence(50, 50); c != 0.5 {
		t.Errorf("confidence at min = %v", c)
	}
}

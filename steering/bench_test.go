package steering

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// benchWorld is a service with nCDN CDNs, nRegion regions and nASN ASNs per
// region, every (cdn, region, asn) window holding data.
func benchWorld(tb testing.TB, nCDN, nRegion, nASN int) (*Engine, time.Time) {
	tb.Helper()
	var cat Catalog
	var names []string
	for i := range nCDN {
		n := fmt.Sprintf("cdn-%02d", i)
		names = append(names, n)
		cat.CDNs = append(cat.CDNs, CDN{Name: n, Host: n + ".example", PricePerGB: float64(i%5) / 1000})
	}
	cat.Services = []Service{{Name: "vod", CDNs: names}}
	pol := DefaultPolicy()
	pol.MinSamples = 2 // every ASN window decides for itself: the most work
	e, err := NewEngine(cat, pol, t0)
	if err != nil {
		tb.Fatal(err)
	}
	regions := make([]string, nRegion)
	countries := make([]string, nRegion)
	for r := range nRegion {
		regions[r] = fmt.Sprintf("region-%03d", r)
		countries[r] = fmt.Sprintf("C%02d", r%60)
	}
	now := t0
	var client uint64
	for r, region := range regions {
		for a := range nASN {
			loc := Location{Region: region, Country: countries[r], ASN: uint32(64512 + a)}
			for c, cdn := range names {
				client++
				start := Observation{At: now, Service: "vod", CDN: cdn, Location: loc, Client: client, Kind: KindViewStart,
					StartupMS: uint32(600 + 37*c + 11*a), BitrateKbps: 3000, ThroughputKbps: uint32(8000 + 100*c), TTFBMS: uint32(30 + c)}
				hb := Observation{At: now, Service: "vod", CDN: cdn, Location: loc, Client: client, Kind: KindHeartbeat,
					PlayedMS: 5000, RebufferMS: uint32((c * a) % 50), BitrateKbps: 3000}
				if err := e.Observe(&start); err != nil {
					tb.Fatal(err)
				}
				if err := e.Observe(&hb); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	return e, now
}

// BenchmarkTick: a full ranking recompute of 20 CDNs x 300 regions x 50
// ASNs (15,300 scopes, 300,000 leaf windows). Goal: < 50 ms.
// "all-dirty" has a new view in every leaf window since the last tick, so
// every window's figures and quantiles are recomputed before the ranking;
// "steady" is the ranking recompute alone: every scope ranked again on
// fresh data (one new beacon a tick keeps the inputs from going stale,
// which would take a cheaper path). "sketch-reads", "scores" and "ranked"
// time the three parts of all-dirty alone.
func BenchmarkTick(b *testing.B) {
	e, now := benchWorld(b, 20, 300, 50)
	e.Tick(now) // the first tick creates every scope's state
	var leaves []Observation
	for k, w := range e.windows {
		if k.scope.Level == LevelASN && w != nil {
			leaves = append(leaves, Observation{Service: k.scope.Service, CDN: k.cdn, Kind: KindViewStart,
				Location:  Location{Region: k.scope.Region, ASN: k.scope.ASN, Country: "C00"},
				StartupMS: 700, BitrateKbps: 3000, ThroughputKbps: 9000, TTFBMS: 40})
		}
	}
	observe := func(o *Observation) {
		o.At = now
		if err := e.Observe(o); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("all-dirty", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			now = now.Add(time.Second)
			for i := range leaves {
				observe(&leaves[i])
			}
			b.StartTimer()
			e.Tick(now)
		}
	})
	// The floors under all-dirty: its parts, each timed alone on the
	// tick's workers, after a round of new views in every leaf window. They
	// are not the engine's work but what no design of it that keeps a
	// sketch per figure and window, and its rules, can do without.
	//
	// sketch-reads: the five quantiles of every window read from its
	// sketches, in scope order (the order the windows were made, and so
	// mostly their order in memory), after the new views have put sketch
	// pages where their arrival put them. Nothing scored or ranked.
	var wins []*window
	fresh := func(b *testing.B) {
		b.StopTimer()
		now = now.Add(time.Second)
		for i := range leaves {
			observe(&leaves[i])
		}
		wins = wins[:0]
		for _, st := range e.svcs {
			for _, s := range st.sorted {
				for i := range s.hot {
					if w := s.hot[i].win; w != nil {
						wins = append(wins, w)
					}
				}
			}
		}
		runtime.GC() // the setup's garbage is not the part's cost
		b.StartTimer()
	}
	b.Run("sketch-reads", func(b *testing.B) {
		fresh(b)
		sums := make([]float64, len(wins))
		for b.Loop() {
			e.parallel(len(wins), func(_ *worker, i int) {
				w := wins[i]
				a, c := w.startup.quantiles(0.5, 0.9)
				t, _ := w.tput.quantiles(0.5, -1)
				r, _ := w.bitrate.quantiles(0.5, -1)
				f, _ := w.ttfb.quantiles(0.5, -1)
				sums[i] = a + c + t + r + f
			})
		}
		b.ReportMetric(float64(len(wins)), "windows")
	})
	// scores: every window's figures scored as a refresh scores them (the
	// slow figures, and the fast ones from their means), from figures
	// read beforehand. No sketch read, nothing ranked.
	b.Run("scores", func(b *testing.B) {
		fresh(b)
		b.StopTimer()
		stats := make([]Stats, len(wins))
		for i, w := range wins {
			stats[i] = w.computeStats()
		}
		sums := make([]float64, len(wins))
		b.StartTimer()
		for b.Loop() {
			e.parallel(len(wins), func(_ *worker, i int) {
				a, c, d, f := scores(stats[i], e.pol.Weights)
				_, g, h, _ := scores(Stats{Figures: wins[i].fast.figures()}, e.pol.Weights)
				sums[i] = a + c + d + f + g + h
			})
		}
	})
	// ranked: the tick after every window was refreshed, untimed: every
	// scope ranked on new scores. No figure recomputed.
	b.Run("ranked", func(b *testing.B) {
		for b.Loop() {
			fresh(b)
			b.StopTimer()
			e.refreshDirty()
			b.StartTimer()
			e.Tick(now)
		}
	})
	b.Run("steady", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			now = now.Add(time.Second)
			observe(&leaves[i%len(leaves)])
			e.Tick(now)
		}
	})
}

// BenchmarkDecide: the hot path of every steering node. Goal: >= 2M
// decisions/s per core, 0 allocations.
func BenchmarkDecide(b *testing.B) {
	e, now := benchWorld(b, 5, 20, 5)
	tbl, err := NewTable(e.cat, e.pol.Stale, func() time.Time { return now })
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range e.Tick(now) {
		if err := tbl.Store(s); err != nil {
			b.Fatal(err)
		}
	}
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("view-%016x", i*7919)
	}
	qs := make([]Query, 1024)
	for i := range qs {
		qs[i] = Query{Service: "vod", Location: Location{Region: fmt.Sprintf("region-%03d", i%20), Country: fmt.Sprintf("C%02d", i%20), ASN: uint32(64512 + i%7)}, ViewID: ids[i]}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := tbl.Decide(qs[i&1023]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

package analytics_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// store is the method set both stores share; declared here, by its user.
type store interface {
	Insert(ctx context.Context, rows []record.Beacon) error
	Series(ctx context.Context, q analytics.SeriesQuery) ([]analytics.Series, error)
	Top(ctx context.Context, q analytics.TopQuery) ([]analytics.TopRow, error)
	Window(ctx context.Context, q analytics.WindowQuery) ([]analytics.Aggregate, error)
	Ping(ctx context.Context) error
	Close() error
}

// t0 is minute- and 5-minute-aligned, so bucket boundaries are known.
var t0 = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)

type group struct {
	service, cdn, region, country string
	asn                           uint32
}

var (
	grpA = group{"vod", "cdn-a", "eu", "DE", 3320}
	grpB = group{"vod", "cdn-b", "us", "US", 7922}
	grpC = group{"live", "cdn-a", "us", "US", 7922}
)

// dataset is built by hand so every expected number below can be checked
// with pencil and paper. Quantile inputs keep the values around each rank
// equal, so ClickHouse's interpolating quantile and DDSketch agree.
func dataset() []record.Beacon {
	var rows []record.Beacon
	n := 0
	add := func(g group, at time.Duration, b record.Beacon) {
		n++
		b.EventID = fmt.Sprintf("ev-%04d", n)
		b.ReceivedAt = t0.Add(at).UnixMilli()
		b.TS = b.ReceivedAt - 150
		b.Service, b.CDN, b.Region, b.Country, b.ASN = g.service, g.cdn, g.region, g.country, g.asn
		b.SessionID = "s-" + b.ViewID
		b.Player = "hls.js"
		rows = append(rows, b)
	}
	// Group A: 20 views in minutes 0-4.
	startupA := func(i int) uint32 {
		switch {
		case i <= 5:
			return 400
		case i > 15:
			return 3000
		}
		return 800
	}
	for i := 1; i <= 20; i++ {
		ttfb := uint32(100)
		switch {
		case i <= 5:
			ttfb = 50
		case i > 15:
			ttfb = 400
		}
		add(grpA, time.Duration(i-1)*15*time.Second, record.Beacon{Type: record.TypeViewStart, ViewID: fmt.Sprintf("a%d", i), StartupMS: startupA(i), TTFBMS: ttfb})
	}
	// Group A, minute 6: heartbeats of a1..a11. Minute 7: view_end of a1..a10,
	// repeating their startup_ms as the protocol asks.
	for i := 1; i <= 10; i++ {
		tput := uint32(5000)
		switch {
		case i <= 3:
			tput = 2000
		case i > 7:
			tput = 8000
		}
		bitrate := uint32(1000)
		if i > 5 {
			bitrate = 3000
		}
		v := fmt.Sprintf("a%d", i)
		add(grpA, 6*time.Minute+time.Duration(i)*time.Second, record.Beacon{Type: record.TypeHeartbeat, ViewID: v, PlayedMS: 9000, RebufferMS: 1000, RebufferCount: 1, ThroughputKbps: tput, BitrateKbps: bitrate})
		add(grpA, 7*time.Minute+time.Duration(i)*time.Second, record.Beacon{Type: record.TypeViewEnd, ViewID: v, PlayedMS: 1000, StartupMS: startupA(i)})
	}
	// a11 played, then ended right after a heartbeat: its view_end has
	// played_ms = 0 (a delta) but repeats startup_ms, so it is not an exit
	// before video start.
	add(grpA, 6*time.Minute+11*time.Second, record.Beacon{Type: record.TypeHeartbeat, ViewID: "a11", PlayedMS: 10000})
	add(grpA, 8*time.Minute, record.Beacon{Type: record.TypeViewEnd, ViewID: "a11", StartupMS: startupA(11)})
	// CMCD rows carry stall time (bsd) but never play time: they must stay
	// out of rebuffer_pct (which would be 18000/128000 with them).
	add(grpA, 6*time.Minute+30*time.Second, record.Beacon{Type: record.TypeHeartbeat, ViewID: "cmcd-1", Source: record.SourceCMCD, RebufferMS: 4000})
	add(grpA, 6*time.Minute+31*time.Second, record.Beacon{Type: record.TypeHeartbeat, ViewID: "cmcd-1", Source: record.SourceCMCD, RebufferMS: 4000})
	// a12: a non-fatal error. a13: a fatal error after the first frame, which
	// ends the view (no view_end): a failure, not an exit before start.
	add(grpA, 8*time.Minute+time.Second, record.Beacon{Type: record.TypeError, ViewID: "a12", ErrorCode: "segment"})
	add(grpA, 8*time.Minute+2*time.Second, record.Beacon{Type: record.TypeError, ViewID: "a13", ErrorCode: "decode", Fatal: true})
	// Views that never showed a frame and never sent view_start: a21 fails
	// (its fatal error reported twice), a22 is abandoned (view_end with
	// startup_ms = 0), a24 is abandoned and its view_end re-sent with a new
	// event id (one view, one exit). a23 sent view_start without startup_ms
	// before its first frame, then was abandoned. a25's only beacon is a
	// non-fatal error, which does not mark a play attempt.
	add(grpA, 8*time.Minute+3*time.Second, record.Beacon{Type: record.TypeError, ViewID: "a21", ErrorCode: "manifest", Fatal: true})
	add(grpA, 8*time.Minute+4*time.Second, record.Beacon{Type: record.TypeError, ViewID: "a21", ErrorCode: "manifest", Fatal: true})
	add(grpA, 8*time.Minute+5*time.Second, record.Beacon{Type: record.TypeViewEnd, ViewID: "a22"})
	add(grpA, 8*time.Minute+6*time.Second, record.Beacon{Type: record.TypeViewStart, ViewID: "a23"})
	add(grpA, 8*time.Minute+7*time.Second, record.Beacon{Type: record.TypeViewEnd, ViewID: "a23"})
	add(grpA, 8*time.Minute+8*time.Second, record.Beacon{Type: record.TypeViewEnd, ViewID: "a24"})
	add(grpA, 8*time.Minute+9*time.Second, record.Beacon{Type: record.TypeViewEnd, ViewID: "a24"})
	add(grpA, 8*time.Minute+10*time.Second, record.Beacon{Type: record.TypeError, ViewID: "a25", ErrorCode: "subtitles"})

	// Group B: 10 views with 1000 ms startup in minutes 0-1, 5 clean heartbeats in minute 6.
	for i := 1; i <= 10; i++ {
		add(grpB, time.Duration(i)*10*time.Second, record.Beacon{Type: record.TypeViewStart, ViewID: fmt.Sprintf("b%d", i), StartupMS: 1000})
	}
	for i := 1; i <= 5; i++ {
		add(grpB, 6*time.Minute+time.Duration(i)*time.Second, record.Beacon{Type: record.TypeHeartbeat, ViewID: fmt.Sprintf("b%d", i), PlayedMS: 10000})
	}
	// Group C: 4 views with 2000 ms startup in minute 2, one heartbeat with
	// nothing played or stalled in minute 7 (0/0 must give 0, not NaN), and
	// 5 views that fail before their first frame in minute 3: more failed
	// views than view_starts, yet failure_pct stays a fraction of views.
	for i := 1; i <= 4; i++ {
		add(grpC, 2*time.Minute+time.Duration(i)*time.Second, record.Beacon{Type: record.TypeViewStart, ViewID: fmt.Sprintf("c%d", i), StartupMS: 2000})
	}
	for i := 5; i <= 9; i++ {
		add(grpC, 3*time.Minute+time.Duration(i)*time.Second, record.Beacon{Type: record.TypeError, ViewID: fmt.Sprintf("c%d", i), ErrorCode: "403", Fatal: true})
	}
	add(grpC, 7*time.Minute+30*time.Second, record.Beacon{Type: record.TypeHeartbeat, ViewID: "c1"})
	return rows
}

type want map[analytics.Metric]analytics.Value

var (
	// Group A: views a1..a24 (a25 only sent a non-fatal error).
	wantA = want{
		analytics.MetricBeacons:       {V: 54, N: 54},
		analytics.MetricViews:         {V: 24, N: 24},
		analytics.MetricStartupP50:    {V: 800, N: 20}, // view_start only; view_end repeats are not samples
		analytics.MetricStartupP90:    {V: 3000, N: 20},
		analytics.MetricRebufferPct:   {V: 100 * 10000.0 / 120000.0, N: 26}, // 11 heartbeats + 15 view_ends, no CMCD
		analytics.MetricFailurePct:    {V: 100 * 2.0 / 24, N: 24},           // a13, a21
		analytics.MetricEBVSPct:       {V: 100 * 3.0 / 24, N: 24},           // a22, a23, a24
		analytics.MetricThroughputP50: {V: 5000, N: 10},
		analytics.MetricBitrateAvg:    {V: 2000, N: 10},
		analytics.MetricTTFBP50:       {V: 100, N: 20},
	}
	wantB = want{
		analytics.MetricBeacons:     {V: 15, N: 15},
		analytics.MetricViews:       {V: 10, N: 10},
		analytics.MetricStartupP50:  {V: 1000, N: 10},
		analytics.MetricRebufferPct: {V: 0, N: 5},
		analytics.MetricFailurePct:  {V: 0, N: 10},
		analytics.MetricEBVSPct:     {V: 0, N: 10},
		analytics.MetricTTFBP50:     {V: 0, N: 0},
		analytics.MetricBitrateAvg:  {V: 0, N: 0},
	}
	// Group C: counting view_starts only would give 5 failures of 4 views.
	wantC = want{
		analytics.MetricBeacons:     {V: 10, N: 10},
		analytics.MetricViews:       {V: 9, N: 9},
		analytics.MetricStartupP90:  {V: 2000, N: 4},
		analytics.MetricRebufferPct: {V: 0, N: 1},
		analytics.MetricFailurePct:  {V: 100 * 5.0 / 9, N: 9},
		analytics.MetricEBVSPct:     {V: 0, N: 9},
	}
)

// quantileTolerance covers DDSketch's 1% relative accuracy.
const quantileTolerance = 0.02

func isQuantile(m analytics.Metric) bool {
	return strings.Contains(string(m), "_p50_") || strings.Contains(string(m), "_p90_")
}

func closeTo(m analytics.Metric, got, want float64) bool {
	if math.IsNaN(got) {
		return false
	}
	if isQuantile(m) {
		return math.Abs(got-want) <= quantileTolerance*want
	}
	return math.Abs(got-want) < 1e-9
}

func checkValues(t *testing.T, label string, got map[analytics.Metric]analytics.Value, w want) {
	t.Helper()
	for m, wv := range w {
		gv, ok := got[m]
		if !ok {
			t.Errorf("%s: metric %s missing", label, m)
			continue
		}
		if gv.N != wv.N || !closeTo(m, gv.V, wv.V) {
			t.Errorf("%s: %s = {V:%v N:%d}, want {V:%v N:%d}", label, m, gv.V, gv.N, wv.V, wv.N)
		}
	}
	for m, gv := range got {
		if math.IsNaN(gv.V) || math.IsInf(gv.V, 0) {
			t.Errorf("%s: %s = %v escaped", label, m, gv.V)
		}
		if strings.HasSuffix(string(m), "_pct") && (gv.V < 0 || gv.V > 100) {
			t.Errorf("%s: %s = %v, not a percentage", label, m, gv.V)
		}
	}
}

func aggKey(a analytics.Aggregate) group {
	return group{a.Service, a.CDN, a.Region, a.Country, a.ASN}
}

// contract runs the same cases against any store. exact says whether the
// store's reads remove duplicate event ids from every metric; the ClickHouse
// rollup path counts redeliveries again by design.
func contract(t *testing.T, open func(t *testing.T) store, exact bool) {
	loaded := func(t *testing.T) store {
		t.Helper()
		s := open(t)
		if err := s.Insert(t.Context(), dataset()); err != nil {
			t.Fatalf("insert: %v", err)
		}
		return s
	}
	window := analytics.WindowQuery{From: t0, To: t0.Add(10 * time.Minute)}

	t.Run("ping", func(t *testing.T) {
		if err := open(t).Ping(t.Context()); err != nil {
			t.Fatalf("ping: %v", err)
		}
	})

	t.Run("window metrics", func(t *testing.T) {
		s := loaded(t)
		aggs, err := s.Window(t.Context(), window)
		if err != nil {
			t.Fatalf("window: %v", err)
		}
		if len(aggs) != 3 {
			t.Fatalf("window returned %d aggregates, want 3: %+v", len(aggs), aggs)
		}
		wants := map[group]want{grpA: wantA, grpB: wantB, grpC: wantC}
		for _, a := range aggs {
			w, ok := wants[aggKey(a)]
			if !ok {
				t.Fatalf("unexpected aggregate %+v", aggKey(a))
			}
			if len(a.Values) != len(analytics.Metrics()) {
				t.Errorf("%+v: %d metrics, want %d", aggKey(a), len(a.Values), len(analytics.Metrics()))
			}
			checkValues(t, fmt.Sprint(aggKey(a)), a.Values, w)
		}
	})

	t.Run("duplicates", func(t *testing.T) {
		s := loaded(t)
		// A Kafka redelivery: the same records again, in another order.
		again := dataset()
		for i, j := 0, len(again)-1; i < j; i, j = i+1, j-1 {
			again[i], again[j] = again[j], again[i]
		}
		if err := s.Insert(t.Context(), again); err != nil {
			t.Fatalf("second insert: %v", err)
		}
		aggs, err := s.Window(t.Context(), analytics.WindowQuery{Filter: analytics.Filter{CDN: "cdn-a", Region: "eu"}, From: window.From, To: window.To})
		if err != nil {
			t.Fatalf("window: %v", err)
		}
		if len(aggs) != 1 {
			t.Fatalf("got %d aggregates, want 1", len(aggs))
		}
		if exact {
			checkValues(t, "after duplicate insert", aggs[0].Values, wantA)
			return
		}
		// Rollups: distinct counts stay exact, row counts double.
		checkValues(t, "rollup after duplicate insert", aggs[0].Values, want{
			analytics.MetricViews:      wantA[analytics.MetricViews],
			analytics.MetricFailurePct: wantA[analytics.MetricFailurePct],
			analytics.MetricEBVSPct:    wantA[analytics.MetricEBVSPct],
			analytics.MetricBeacons:    {V: 108, N: 108},
		})
	})

	// Rollups count every insert; exact reads are what dedup promises.
	t.Run("re-sent report received later", func(t *testing.T) {
		if !exact {
			return
		}
		s := open(t)
		// A CMCD event report re-sent by the player after a 5xx: same
		// derived event id, received minutes later.
		first := record.Beacon{EventID: "cmcd-fixed-id", ReceivedAt: t0.Add(time.Minute).UnixMilli(), Type: record.TypeHeartbeat,
			Service: "vod", CDN: "cdn-a", Region: "eu", Country: "GB", ASN: 64500, ViewID: "sid-1", TS: t0.UnixMilli(), Source: record.SourceCMCD}
		resent := first
		resent.ReceivedAt = t0.Add(4 * time.Minute).UnixMilli()
		for _, b := range []record.Beacon{first, resent} {
			if err := s.Insert(t.Context(), []record.Beacon{b}); err != nil {
				t.Fatal(err)
			}
		}
		aggs, err := s.Window(t.Context(), window)
		if err != nil {
			t.Fatal(err)
		}
		var n float64
		for _, a := range aggs {
			n += a.Values[analytics.MetricBeacons].V
		}
		if n != 1 {
			t.Fatalf("re-sent report counted %v times, want once", n)
		}
	})

	t.Run("filters", func(t *testing.T) {
		s := loaded(t)
		cases := []struct {
			name   string
			filter analytics.Filter
			want   []group
		}{
			{"all", analytics.Filter{}, []group{grpC, grpA, grpB}},
			{"service", analytics.Filter{Service: "vod"}, []group{grpA, grpB}},
			{"cdn", analytics.Filter{CDN: "cdn-a"}, []group{grpC, grpA}},
			{"region", analytics.Filter{Region: "us"}, []group{grpC, grpB}},
			{"country", analytics.Filter{Country: "DE"}, []group{grpA}},
			{"asn", analytics.Filter{ASN: 7922}, []group{grpC, grpB}},
			{"combined", analytics.Filter{Service: "vod", ASN: 7922}, []group{grpB}},
			{"no match", analytics.Filter{CDN: "cdn-z"}, nil},
			{"quote is a value", analytics.Filter{Service: "vod' OR 1=1 --"}, nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				aggs, err := s.Window(t.Context(), analytics.WindowQuery{Filter: tc.filter, From: window.From, To: window.To})
				if err != nil {
					t.Fatalf("window: %v", err)
				}
				var got []group
				for _, a := range aggs {
					got = append(got, aggKey(a))
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			})
		}
	})

	t.Run("series", func(t *testing.T) {
		s := loaded(t)
		type pt struct {
			off time.Duration
			v   float64
			n   uint64
		}
		cases := []struct {
			name string
			q    analytics.SeriesQuery
			want map[string][]pt
		}{
			{"beacons 5m", analytics.SeriesQuery{Metric: analytics.MetricBeacons, Step: 5 * time.Minute},
				map[string][]pt{"": {{0, 39, 39}, {5 * time.Minute, 40, 40}}}},
			{"startup by cdn", analytics.SeriesQuery{Metric: analytics.MetricStartupP50, Step: 5 * time.Minute, GroupBy: analytics.DimCDN},
				map[string][]pt{"cdn-a": {{0, 800, 24}}, "cdn-b": {{0, 1000, 10}}}},
			{"beacons 1m cdn-b", analytics.SeriesQuery{Filter: analytics.Filter{CDN: "cdn-b"}, Metric: analytics.MetricBeacons, Step: time.Minute},
				map[string][]pt{"": {{0, 5, 5}, {time.Minute, 5, 5}, {6 * time.Minute, 5, 5}}}},
			{"views by asn", analytics.SeriesQuery{Metric: analytics.MetricViews, Step: 10 * time.Minute, GroupBy: analytics.DimASN},
				map[string][]pt{"3320": {{0, 24, 24}}, "7922": {{0, 19, 19}}}},
			{"unaligned range keeps whole buckets", analytics.SeriesQuery{Metric: analytics.MetricBeacons, Step: 5 * time.Minute, From: t0.Add(6*time.Minute + 30*time.Second), To: t0.Add(7*time.Minute + time.Second)},
				map[string][]pt{"": {{5 * time.Minute, 29, 29}}}}, // minutes 6 and 7
			{"rebuffer 1h", analytics.SeriesQuery{Metric: analytics.MetricRebufferPct, Step: time.Hour, Filter: analytics.Filter{Region: "eu"}},
				map[string][]pt{"": {{0, 100 * 10000.0 / 120000.0, 26}}}},
			// c5..c9 fail in minute 3 without a view_start; minutes 5-9 have
			// no play attempt in live, so that bucket is left out.
			{"failure live 5m", analytics.SeriesQuery{Metric: analytics.MetricFailurePct, Step: 5 * time.Minute, Filter: analytics.Filter{Service: "live"}},
				map[string][]pt{"": {{0, 100 * 5.0 / 9, 9}}}},
			// Minute 7: a1..a10 end after playing. Minute 8: a11 (played),
			// a13 and a21 (fatal), a22, a23 and a24 (never started).
			{"ebvs eu 1m", analytics.SeriesQuery{Metric: analytics.MetricEBVSPct, Step: time.Minute, Filter: analytics.Filter{Region: "eu"}, From: t0.Add(7 * time.Minute), To: t0.Add(9 * time.Minute)},
				map[string][]pt{"": {{7 * time.Minute, 0, 10}, {8 * time.Minute, 100 * 3.0 / 6, 6}}}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				q := tc.q
				if q.From.IsZero() {
					q.From, q.To = window.From, window.To
				}
				got, err := s.Series(t.Context(), q)
				if err != nil {
					t.Fatalf("series: %v", err)
				}
				if len(got) != len(tc.want) {
					t.Fatalf("got %d series %+v, want %d", len(got), got, len(tc.want))
				}
				for _, ser := range got {
					w, ok := tc.want[ser.Key]
					if !ok || len(w) != len(ser.Points) {
						t.Fatalf("series %q = %+v, want %+v", ser.Key, ser.Points, w)
					}
					for i, p := range ser.Points {
						if !p.T.Equal(t0.Add(w[i].off)) || p.N != w[i].n || !closeTo(q.Metric, p.V, w[i].v) {
							t.Errorf("series %q point %d = %+v, want T=%s V=%v N=%d", ser.Key, i, p, t0.Add(w[i].off), w[i].v, w[i].n)
						}
					}
				}
			})
		}
	})

	t.Run("top", func(t *testing.T) {
		s := loaded(t)
		cases := []struct {
			name string
			q    analytics.TopQuery
			want []string
		}{
			{"views by cdn", analytics.TopQuery{Metric: analytics.MetricViews, By: analytics.DimCDN, N: 5}, []string{"cdn-a 33", "cdn-b 10"}},
			{"views by cdn ascending n=1", analytics.TopQuery{Metric: analytics.MetricViews, By: analytics.DimCDN, N: 1, Ascending: true}, []string{"cdn-b 10"}},
			{"rebuffer by region", analytics.TopQuery{Metric: analytics.MetricRebufferPct, By: analytics.DimRegion, N: 5}, []string{"eu 8.33", "us 0"}},
			{"failure by region", analytics.TopQuery{Metric: analytics.MetricFailurePct, By: analytics.DimRegion, N: 5}, []string{"us 26.32", "eu 8.33"}},
			{"ebvs by cdn", analytics.TopQuery{Metric: analytics.MetricEBVSPct, By: analytics.DimCDN, N: 5}, []string{"cdn-a 9.09", "cdn-b 0"}},
			{"beacons by service filtered", analytics.TopQuery{Filter: analytics.Filter{Region: "us"}, Metric: analytics.MetricBeacons, By: analytics.DimService, N: 5}, []string{"vod 15", "live 10"}},
			{"no samples are left out", analytics.TopQuery{Metric: analytics.MetricTTFBP50, By: analytics.DimCDN, N: 5}, []string{"cdn-a 100"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				q := tc.q
				q.From, q.To = window.From, window.To
				rows, err := s.Top(t.Context(), q)
				if err != nil {
					t.Fatalf("top: %v", err)
				}
				var got []string
				for _, r := range rows {
					if isQuantile(q.Metric) {
						// Round away the sketch's approximation.
						got = append(got, fmt.Sprintf("%s %.0f", r.Key, math.Round(r.V/10)*10))
					} else if r.V == math.Trunc(r.V) {
						got = append(got, fmt.Sprintf("%s %.0f", r.Key, r.V))
					} else {
						got = append(got, fmt.Sprintf("%s %.2f", r.Key, r.V))
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			})
		}
	})

	t.Run("empty range", func(t *testing.T) {
		s := loaded(t)
		from := t0.Add(24 * time.Hour)
		aggs, err := s.Window(t.Context(), analytics.WindowQuery{From: from, To: from.Add(time.Hour)})
		if err != nil || len(aggs) != 0 {
			t.Fatalf("window = %v, %v; want empty", aggs, err)
		}
		ser, err := s.Series(t.Context(), analytics.SeriesQuery{Metric: analytics.MetricFailurePct, From: from, To: from.Add(time.Hour), Step: time.Minute})
		if err != nil || len(ser) != 0 {
			t.Fatalf("series = %v, %v; want empty", ser, err)
		}
	})

	t.Run("insert validation", func(t *testing.T) {
		s := open(t)
		ok := dataset()[:3]
		cases := []struct {
			name  string
			bad   func(b *record.Beacon)
			field string
		}{
			{"no event id", func(b *record.Beacon) { b.EventID = "" }, "event_id"},
			{"no received_at", func(b *record.Beacon) { b.ReceivedAt = 0 }, "received_at"},
			{"received_at past DateTime", func(b *record.Beacon) { b.ReceivedAt = 1 << 42 }, "received_at"},
			{"unknown type", func(b *record.Beacon) { b.Type = 200 }, "type"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				rows := append([]record.Beacon(nil), ok...)
				tc.bad(&rows[2])
				err := s.Insert(t.Context(), rows)
				if err == nil || !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("insert error = %v, want one naming %s", err, tc.field)
				}
			})
		}
		// Nothing of the rejected inserts may have been written.
		aggs, err := s.Window(t.Context(), window)
		if err != nil || len(aggs) != 0 {
			t.Fatalf("after rejected inserts: window = %+v, %v; want empty", aggs, err)
		}
		if err := s.Insert(t.Context(), nil); err != nil {
			t.Fatalf("empty insert: %v", err)
		}
	})

	t.Run("query validation", func(t *testing.T) {
		s := open(t)
		from, to := t0, t0.Add(time.Hour)
		good := analytics.SeriesQuery{Metric: analytics.MetricViews, From: from, To: to, Step: time.Minute}
		series := []struct {
			name  string
			edit  func(q *analytics.SeriesQuery)
			field string
		}{
			{"unknown metric", func(q *analytics.SeriesQuery) { q.Metric = "nope" }, "metric"},
			{"unknown dimension", func(q *analytics.SeriesQuery) { q.GroupBy = "city" }, "group_by"},
			{"step not minutes", func(q *analytics.SeriesQuery) { q.Step = 90 * time.Second }, "step"},
			{"zero step", func(q *analytics.SeriesQuery) { q.Step = 0 }, "step"},
			{"from after to", func(q *analytics.SeriesQuery) { q.From, q.To = to, from }, "from"},
			{"from equals to", func(q *analytics.SeriesQuery) { q.To = q.From }, "from"},
			{"no range", func(q *analytics.SeriesQuery) { q.From = time.Time{} }, "from"},
		}
		for _, tc := range series {
			t.Run("series "+tc.name, func(t *testing.T) {
				q := good
				tc.edit(&q)
				if _, err := s.Series(t.Context(), q); err == nil || !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("error = %v, want one naming %s", err, tc.field)
				}
			})
		}
		top := []struct {
			name  string
			q     analytics.TopQuery
			field string
		}{
			{"n zero", analytics.TopQuery{Metric: analytics.MetricViews, By: analytics.DimCDN, From: from, To: to}, "n:"},
			{"no by", analytics.TopQuery{Metric: analytics.MetricViews, N: 3, From: from, To: to}, "by"},
			{"bad metric", analytics.TopQuery{Metric: "x", By: analytics.DimCDN, N: 3, From: from, To: to}, "metric"},
			{"bad range", analytics.TopQuery{Metric: analytics.MetricViews, By: analytics.DimCDN, N: 3, From: to, To: from}, "from"},
		}
		for _, tc := range top {
			t.Run("top "+tc.name, func(t *testing.T) {
				if _, err := s.Top(t.Context(), tc.q); err == nil || !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("error = %v, want one naming %s", err, tc.field)
				}
			})
		}
		if _, err := s.Window(t.Context(), analytics.WindowQuery{From: to, To: from}); err == nil || !strings.Contains(err.Error(), "from") {
			t.Fatalf("window error = %v, want one naming from", err)
		}
		if _, err := s.Series(t.Context(), good); err != nil {
			t.Fatalf("good query rejected: %v", err)
		}
	})
}

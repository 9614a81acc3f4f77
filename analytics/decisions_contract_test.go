package analytics_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/chserver"
	"github.com/cdnpilot/cdnpilot/steering"
)

// decisionStore is the method set both decision stores share; declared
// here, by its user.
type decisionStore interface {
	analytics.DecisionSink
	Decisions(ctx context.Context, q analytics.DecisionQuery) ([]steering.DecisionRecord, error)
	DecisionCounts(ctx context.Context, f analytics.DecisionFilter) ([]analytics.DecisionCount, error)
}

func TestMemoryDecisionContract(t *testing.T) {
	decisionContract(t, func(*testing.T) decisionStore { return analytics.NewDecisionRing(0) })
}

func TestClickHouseDecisionContract(t *testing.T) {
	addr := chserver.ForTest(t)
	decisionContract(t, func(t *testing.T) decisionStore { return openClickHouse(t, addr, analytics.ClickHouseOptions{}) })
}

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// decisions is the contract's data set. Version numbers the records, so
// expectations below are lists of versions, newest first.
func decisions() []steering.DecisionRecord {
	asnScope := steering.Scope{Service: "vod", Level: steering.LevelASN, Region: "eu-west", ASN: 64500}
	eu := steering.Location{Region: "eu-west", Country: "GB", ASN: 64500}
	us := steering.Location{Region: "us-east", Country: "US", ASN: 7922}
	return []steering.DecisionRecord{
		{Version: 1, At: t0, Protocol: "dns", Service: "vod", Client: addr("192.0.2.1"), ECS: pfx("198.51.100.0/24"),
			Location: eu, Scope: asnScope, CDN: "cdn-a", Rule: steering.RuleMeasured, Result: "NOERROR", Latency: 120 * time.Microsecond},
		{Version: 2, At: t0.Add(10 * time.Second), Protocol: "dns", Service: "vod", Client: addr("192.0.2.1"), ECS: pfx("198.51.100.0/24"),
			Location: eu, Scope: asnScope, CDN: "cdn-b", Rule: steering.RuleMeasured, Result: "NOERROR", Latency: 95 * time.Microsecond},
		{Version: 3, At: t0.Add(20 * time.Second), Protocol: "http", Service: "vod", Client: addr("203.0.113.9"),
			Location: us, Scope: steering.Scope{Service: "vod", Level: steering.LevelRegion, Region: "us-east"},
			CDN: "cdn-b", Rule: steering.RuleMeasured, Result: "302", Latency: 310 * time.Microsecond},
		{Version: 4, At: t0.Add(30 * time.Second), Protocol: "hls", Service: "live", Client: addr("2001:db8::1"),
			Location: steering.Location{Region: "eu-west", Country: "FR", ASN: 3215}, Scope: steering.Scope{Service: "live", Level: steering.LevelRegion, Region: "eu-west"},
			CDN: "cdn-c", Rule: steering.RulePin, Result: "200", Latency: 800 * time.Microsecond},
		{Version: 5, At: t0.Add(40 * time.Second), Protocol: "dash", Service: "live", Client: addr("2001:db8::2"),
			Location: us, Scope: steering.Scope{Service: "live"}, CDN: "cdn-a", Rule: steering.RuleStaleStatic, Stale: true, Result: "200", Latency: 650 * time.Microsecond},
		{Version: 6, At: t0.Add(65 * time.Second), Protocol: "dns", Service: "vod", Client: addr("192.0.2.53"), ECS: pfx("2001:db8:42::/48"),
			Location: steering.Location{Region: "ap-south", Country: "IN"}, Scope: steering.Scope{Service: "vod", Level: steering.LevelCountry, Country: "IN"},
			CDN: "cdn-a", Rule: steering.RuleNoData, Result: "NOERROR", Latency: 80 * time.Microsecond},
		// A v4-mapped resolver address and an ECS prefix with host bits:
		// stored unmapped and masked.
		{Version: 7, At: t0.Add(70 * time.Second), Protocol: "dns", Service: "vod", Client: addr("::ffff:192.0.2.7"), ECS: pfx("198.51.100.77/24"),
			Location: eu, Scope: asnScope, CDN: "cdn-a", Rule: steering.RuleMeasured, Result: "NOERROR", Latency: 100 * time.Microsecond},
		// No CDN, no scope: a refusal.
		{Version: 8, At: t0.Add(80 * time.Second), Protocol: "dns", Service: "vod", Client: addr("192.0.2.1"), Result: "REFUSED", Latency: 30 * time.Microsecond},
		{Version: 9, At: t0.Add(125 * time.Second), Protocol: "dns", Service: "vod", Client: addr("192.0.2.99"), ECS: pfx("198.51.100.0/25"),
			Location: eu, Scope: steering.Scope{Service: "vod", Level: steering.LevelRegion, Region: "eu-west"},
			CDN: "cdn-b", Rule: steering.RuleMeasured, Result: "NOERROR", Latency: 90 * time.Microsecond},
		// Below a microsecond is cut off, in At and in Latency.
		{Version: 10, At: t0.Add(3*time.Minute + time.Second + 789*time.Nanosecond), Protocol: "http", Service: "vod", Client: addr("198.51.100.20"),
			Location: eu, Scope: asnScope, CDN: "cdn-a", Rule: steering.RuleFailOpen, Result: "302", Latency: 1500123 * time.Nanosecond},
		// No client address at all; a non-UTC At.
		{Version: 11, At: t0.Add(4 * time.Minute).In(time.FixedZone("X", 3600)), Protocol: "dns", Service: "live",
			Location: us, Scope: steering.Scope{Service: "live", Level: steering.LevelRegion, Region: "us-east"}, CDN: "cdn-c", Rule: steering.RuleMeasured, Result: "NOERROR"},
		// Outside the contract's range [t0, t0+1h).
		{Version: 12, At: t0.Add(time.Hour), Protocol: "dns", Service: "vod", Client: addr("192.0.2.1"), CDN: "cdn-a", Result: "NOERROR"},
		{Version: 13, At: t0.Add(-time.Second), Protocol: "dns", Service: "vod", Client: addr("192.0.2.1"), CDN: "cdn-a", Result: "NOERROR"},
	}
}

// normalized is the documented form a stored record comes back in.
func normalized(r steering.DecisionRecord) steering.DecisionRecord {
	r.At = r.At.Truncate(time.Microsecond).UTC()
	r.Latency = r.Latency.Truncate(time.Microsecond)
	r.Client = r.Client.Unmap()
	if r.ECS.IsValid() {
		r.ECS = r.ECS.Masked()
	}
	r.Scope.Service = r.Service
	return r
}

func versions(rs []steering.DecisionRecord) []uint64 {
	out := []uint64{}
	for _, r := range rs {
		out = append(out, r.Version)
	}
	return out
}

// runLog starts l.Run; the returned stop cancels it and waits, so every
// record logged before stop is in the store when it returns.
func runLog(t *testing.T, l *analytics.DecisionLog) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func newDecisionLog(t *testing.T, sink analytics.DecisionSink, o analytics.DecisionLogOptions) (*analytics.DecisionLog, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	l, err := analytics.NewDecisionLog(sink, o)
	if err != nil {
		t.Fatalf("new decision log: %v", err)
	}
	return l, reg
}

// metricValue reads one counter; labels are name=value pairs it must carry.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// decisionContract runs the same cases against any decision store, fed
// through a DecisionLog as production feeds it.
func decisionContract(t *testing.T, open func(t *testing.T) decisionStore) {
	hour := analytics.DecisionFilter{From: t0, To: t0.Add(time.Hour)}
	loaded := func(t *testing.T) decisionStore {
		t.Helper()
		s := open(t)
		// Small batches: several inserts, and a remainder for the final flush.
		l, reg := newDecisionLog(t, s, analytics.DecisionLogOptions{BatchRows: 5, FlushInterval: time.Hour})
		stop := runLog(t, l)
		for _, r := range decisions() {
			l.LogDecision(r)
		}
		stop()
		if n := metricValue(t, reg, "cdnpilot_decision_log_written_total"); n != float64(len(decisions())) {
			t.Fatalf("written = %v, want %d", n, len(decisions()))
		}
		return s
	}

	t.Run("round trip", func(t *testing.T) {
		s := loaded(t)
		got, err := s.Decisions(t.Context(), analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{From: t0.Add(-time.Hour), To: t0.Add(2 * time.Hour)}})
		if err != nil {
			t.Fatalf("decisions: %v", err)
		}
		if fmt.Sprint(versions(got)) != "[12 11 10 9 8 7 6 5 4 3 2 1 13]" {
			t.Fatalf("order = %v, want newest first", versions(got))
		}
		want := map[uint64]steering.DecisionRecord{}
		for _, r := range decisions() {
			want[r.Version] = normalized(r)
		}
		for _, g := range got {
			checkDecision(t, g, want[g.Version])
		}
	})

	t.Run("filters", func(t *testing.T) {
		s := loaded(t)
		at := func(d time.Duration) time.Time { return t0.Add(d) }
		cases := []struct {
			name string
			q    analytics.DecisionQuery
			want string
		}{
			{"range", analytics.DecisionQuery{}, "[11 10 9 8 7 6 5 4 3 2 1]"},
			{"service", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Service: "live"}}, "[11 5 4]"},
			{"protocol", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Protocol: "dns"}}, "[11 9 8 7 6 2 1]"},
			{"region", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Region: "eu-west"}}, "[10 9 7 4 2 1]"},
			{"cdn", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{CDN: "cdn-a"}}, "[10 7 6 5 1]"},
			{"combined", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Service: "vod", Protocol: "dns", CDN: "cdn-b"}}, "[9 2]"},
			{"limit", analytics.DecisionQuery{Limit: 3}, "[11 10 9]"},
			{"limit with filter", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Protocol: "dns"}, Limit: 2}, "[11 9]"},
			{"minute", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{From: at(time.Minute), To: at(2 * time.Minute)}}, "[8 7 6]"},
			{"from inclusive, to exclusive", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{From: at(10 * time.Second), To: at(40 * time.Second)}}, "[4 3 2]"},
			{"microsecond bounds", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{From: at(3*time.Minute + time.Second + time.Microsecond), To: at(4*time.Minute + time.Microsecond)}}, "[11]"},
			{"microsecond bounds, to", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{From: at(3 * time.Minute), To: at(3*time.Minute + time.Second + time.Microsecond)}}, "[10]"},
			{"client or ecs containing it", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Client: addr("198.51.100.20")}}, "[10 9 7 2 1]"},
			{"client outside the /25", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Client: addr("198.51.100.200")}}, "[7 2 1]"},
			{"resolver address", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Client: addr("192.0.2.1")}}, "[8 2 1]"},
			{"mapped client stored unmapped", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Client: addr("192.0.2.7")}}, "[7]"},
			{"mapped filter address", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Client: addr("::ffff:192.0.2.7")}}, "[7]"},
			{"v6 client in a v6 ecs", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Client: addr("2001:db8:42::5")}}, "[6]"},
			{"v6 client", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Client: addr("2001:db8::2")}}, "[5]"},
			{"client with filter", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Client: addr("198.51.100.20"), CDN: "cdn-b"}}, "[9 2]"},
			{"no match", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{CDN: "cdn-z"}}, "[]"},
			{"quote is a value", analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{Service: "vod' OR 1=1 --"}}, "[]"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				q := tc.q
				if q.From.IsZero() {
					q.From, q.To = hour.From, hour.To
				}
				got, err := s.Decisions(t.Context(), q)
				if err != nil {
					t.Fatalf("decisions: %v", err)
				}
				if g := fmt.Sprint(versions(got)); g != tc.want {
					t.Fatalf("got %s, want %s", g, tc.want)
				}
			})
		}
	})

	t.Run("counts", func(t *testing.T) {
		s := loaded(t)
		cases := []struct {
			name string
			f    analytics.DecisionFilter
			want []string // "minute cdn result n"
		}{
			{"vod", analytics.DecisionFilter{Service: "vod", From: t0, To: t0.Add(5 * time.Minute)}, []string{
				"0 cdn-a NOERROR 1", "0 cdn-b 302 1", "0 cdn-b NOERROR 1",
				"1  REFUSED 1", "1 cdn-a NOERROR 2",
				"2 cdn-b NOERROR 1",
				"3 cdn-a 302 1",
			}},
			// Decisions count from From, not from its minute.
			{"unaligned range", analytics.DecisionFilter{From: t0.Add(15 * time.Second), To: t0.Add(70 * time.Second)}, []string{
				"0 cdn-a 200 1", "0 cdn-b 302 1", "0 cdn-c 200 1",
				"1 cdn-a NOERROR 1",
			}},
			{"client", analytics.DecisionFilter{Client: addr("198.51.100.20"), From: hour.From, To: hour.To}, []string{
				"0 cdn-a NOERROR 1", "0 cdn-b NOERROR 1", "1 cdn-a NOERROR 1", "2 cdn-b NOERROR 1", "3 cdn-a 302 1",
			}},
			{"none", analytics.DecisionFilter{CDN: "cdn-z", From: hour.From, To: hour.To}, nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				counts, err := s.DecisionCounts(t.Context(), tc.f)
				if err != nil {
					t.Fatalf("counts: %v", err)
				}
				var got []string
				for _, c := range counts {
					if c.Minute.Location() != time.UTC {
						t.Errorf("minute %v not in UTC", c.Minute)
					}
					got = append(got, fmt.Sprintf("%d %s %s %d", c.Minute.Sub(t0)/time.Minute, c.CDN, c.Result, c.N))
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("got %q, want %q", got, tc.want)
				}
			})
		}
	})

	t.Run("buffer full drops and counts", func(t *testing.T) {
		s := open(t)
		l, reg := newDecisionLog(t, s, analytics.DecisionLogOptions{Buffer: 4})
		// Not running yet: four fit, the rest are dropped on the spot.
		all := decisions()[:10]
		for _, r := range all {
			l.LogDecision(r)
		}
		if n := metricValue(t, reg, "cdnpilot_decision_log_dropped_total", "reason", "buffer_full"); n != 6 {
			t.Fatalf("dropped{buffer_full} = %v, want 6", n)
		}
		runLog(t, l)()
		got, err := s.Decisions(t.Context(), analytics.DecisionQuery{DecisionFilter: hour})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(versions(got)) != "[4 3 2 1]" {
			t.Fatalf("stored %v, want the first four logged", versions(got))
		}
		if n := metricValue(t, reg, "cdnpilot_decision_log_written_total"); n != 4 {
			t.Fatalf("written = %v, want 4", n)
		}
	})

	t.Run("insert validation", func(t *testing.T) {
		s := open(t)
		cases := []struct {
			name string
			at   time.Time
		}{
			{"zero time", time.Time{}},
			{"before 1970", time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC)},
			{"past DateTime", time.Date(2107, 1, 1, 0, 0, 0, 0, time.UTC)},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				rows := decisions()[:3]
				rows[2].At = tc.at
				if err := s.InsertDecisions(t.Context(), rows); err == nil || !strings.Contains(err.Error(), "at:") {
					t.Fatalf("insert error = %v, want one naming at", err)
				}
			})
		}
		got, err := s.Decisions(t.Context(), analytics.DecisionQuery{DecisionFilter: hour})
		if err != nil || len(got) != 0 {
			t.Fatalf("after rejected inserts: %v, %v; want none", versions(got), err)
		}
		if err := s.InsertDecisions(t.Context(), nil); err != nil {
			t.Fatalf("empty insert: %v", err)
		}
	})

	t.Run("query validation", func(t *testing.T) {
		s := open(t)
		cases := []struct {
			name  string
			edit  func(q *analytics.DecisionQuery)
			field string
		}{
			{"negative limit", func(q *analytics.DecisionQuery) { q.Limit = -1 }, "limit"},
			{"limit too large", func(q *analytics.DecisionQuery) { q.Limit = 10_001 }, "limit"},
			{"no range", func(q *analytics.DecisionQuery) { q.From = time.Time{} }, "from"},
			{"from after to", func(q *analytics.DecisionQuery) { q.From, q.To = q.To, q.From }, "from"},
			{"long service", func(q *analytics.DecisionQuery) { q.Service = strings.Repeat("x", 300) }, "service"},
			{"bad utf-8 cdn", func(q *analytics.DecisionQuery) { q.CDN = "\xff" }, "cdn"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				q := analytics.DecisionQuery{DecisionFilter: hour}
				tc.edit(&q)
				if _, err := s.Decisions(t.Context(), q); err == nil || !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("decisions error = %v, want one naming %s", err, tc.field)
				}
				if q.Limit != 0 {
					return // counts have no limit
				}
				if _, err := s.DecisionCounts(t.Context(), q.DecisionFilter); err == nil || !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("counts error = %v, want one naming %s", err, tc.field)
				}
			})
		}
		long := analytics.DecisionFilter{From: t0, To: t0.Add(100_001 * time.Minute)}
		if _, err := s.DecisionCounts(t.Context(), long); err == nil || !strings.Contains(err.Error(), "from") {
			t.Fatalf("counts over a long range: error = %v, want one naming from", err)
		}
		if _, err := s.Decisions(t.Context(), analytics.DecisionQuery{DecisionFilter: long, Limit: 10_000}); err != nil {
			t.Fatalf("a long range is fine with a limit: %v", err)
		}
	})
}

// checkDecision compares a stored record with its expected normal form.
func checkDecision(t *testing.T, got, want steering.DecisionRecord) {
	t.Helper()
	if !got.At.Equal(want.At) || got.At.Location() != time.UTC {
		t.Errorf("decision %d: at = %v, want %v in UTC", want.Version, got.At, want.At)
	}
	got.At, want.At = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("decision %d:\n got  %+v\n want %+v", want.Version, got, want)
	}
}

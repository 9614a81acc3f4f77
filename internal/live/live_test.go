package live

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cdnpilot/cdnpilot/steering"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var catalog = steering.Catalog{
	CDNs: []steering.CDN{{Name: "cdn-a", Host: "a.example"}, {Name: "cdn-b", Host: "b.example"}, {Name: "cdn-c", Host: "c.example"}},
	Services: []steering.Service{
		{Name: "vod", CDNs: []string{"cdn-a", "cdn-b", "cdn-c"}},
		{Name: "live", CDNs: []string{"cdn-b", "cdn-a"}},
	},
}

// rank is a ranking of scope with weights in the order given; the first
// leads. A CDN name suffixed "!" is down.
func rank(scope steering.Scope, cdns ...string) *steering.Ranking {
	r := &steering.Ranking{Scope: scope}
	for i, n := range cdns {
		h := steering.HealthUp
		if name, ok := strings.CutSuffix(n, "!"); ok {
			n, h = name, steering.HealthDown
		}
		r.Choices = append(r.Choices, steering.Choice{CDN: n, Host: n + ".example", Weight: float64(len(cdns)-i) / 10, Score: 90 - 10*float64(i), Confidence: 1, Health: h, Leader: i == 0})
	}
	return r
}

func global(s string) steering.Scope { return steering.Scope{Service: s, Level: steering.LevelGlobal} }
func region(s, r string) steering.Scope {
	return steering.Scope{Service: s, Level: steering.LevelRegion, Region: r}
}

type world struct {
	t     *testing.T
	clk   *clock
	table *steering.Table
	tr    *Tracker
	reg   *prometheus.Registry
	ver   uint64
}

func newWorld(t *testing.T) *world {
	t.Helper()
	clk := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	table, err := steering.NewTable(catalog, steering.Stale{Freeze: 30 * time.Second, Static: 5 * time.Minute}, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	tr, err := New(table, Options{Services: []string{"vod", "live"}, StaleAfter: 30 * time.Second, Now: clk.now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, clk: clk, table: table, tr: tr, reg: reg}
}

func (w *world) store(rankings ...*steering.Ranking) {
	w.t.Helper()
	w.ver++
	if err := w.table.Store(&steering.Snapshot{Service: "vod", Version: w.ver, At: w.clk.now(), Rankings: rankings}); err != nil {
		w.t.Fatal(err)
	}
}

// step advances the clock a second and samples; it returns what a
// subscriber of vod received.
func (w *world) step(ch <-chan Message) (ticks []Tick, events []Event) {
	w.clk.add(time.Second)
	w.tr.Sample()
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return
			}
			if m.Tick != nil {
				ticks = append(ticks, *m.Tick)
			} else {
				events = append(events, *m.Event)
			}
		default:
			return
		}
	}
}

func eventKinds(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Kind+" "+e.Scope+" "+e.CDN+"<"+e.From)
	}
	return out
}

func TestTrackerEvents(t *testing.T) {
	w := newWorld(t)
	_, ch, cancel, err := w.tr.Subscribe("vod", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()

	ticks, events := w.step(ch)
	if len(ticks) != 1 || ticks[0].Service != "vod" || len(ticks[0].CDNs) != 0 || len(events) != 0 {
		t.Fatalf("before any snapshot: ticks %+v events %v", ticks, eventKinds(events))
	}

	regions := []string{"r1", "r2", "r3", "r4", "r5"}
	base := func(lead map[string][]string) []*steering.Ranking {
		rs := []*steering.Ranking{rank(global("vod"), lead["global"]...)}
		for _, r := range regions {
			rs = append(rs, rank(region("vod", r), lead[r]...))
		}
		return rs
	}
	abc, bac := []string{"cdn-a", "cdn-b", "cdn-c"}, []string{"cdn-b", "cdn-a", "cdn-c"}
	state := map[string][]string{"global": abc, "r1": abc, "r2": abc, "r3": bac, "r4": abc, "r5": abc}
	w.store(base(state)...)
	ticks, events = w.step(ch)
	if len(events) != 0 {
		t.Fatalf("first snapshot: events %v, want none (nothing to compare with)", eventKinds(events))
	}
	tk := ticks[0]
	if tk.Version != 1 || tk.Regions != 5 || tk.Stale || len(tk.CDNs) != 3 || tk.CDNs[0].CDN != "cdn-a" || tk.CDNs[0].Leads != 4 || tk.CDNs[1].Leads != 1 {
		t.Fatalf("tick %+v", tk)
	}

	tests := []struct {
		name  string
		apply func()
		want  []string
	}{
		{"one region changes leader", func() {
			state["r1"] = bac
			w.store(base(state)...)
		}, []string{"leader_change vod/r1 cdn-b<cdn-a"}},
		{"nothing changes", func() {}, nil},
		{"cdn-a down everywhere: one failover, one grouped leader change", func() {
			down := []string{"cdn-b", "cdn-c", "cdn-a!"}
			for k := range state {
				state[k] = down
			}
			w.store(base(state)...)
		}, []string{"failover vod (6 scopes) cdn-a<", "leader_change vod (4 scopes) cdn-b<cdn-a"}},
		{"cdn-a back in r2 only", func() {
			state["r2"] = abc
			w.store(base(state)...)
		}, []string{"recovery vod/r2 cdn-a<", "leader_change vod/r2 cdn-a<cdn-b"}},
		{"override created", func() {
			if err := w.table.SetOverrides([]steering.Override{{ID: "ov-1", Kind: steering.OverridePin, Service: "vod", Region: "r1", CDN: "cdn-c", Reason: "INC-1",
				Created: w.clk.now(), Expires: w.clk.now().Add(10 * time.Second)}}); err != nil {
				t.Fatal(err)
			}
		}, []string{"override_created vod/r1 cdn-c<", "leader_change vod/r1 cdn-c<cdn-b"}},
		{"override extended", func() {
			if err := w.table.SetOverrides([]steering.Override{{ID: "ov-1", Kind: steering.OverridePin, Service: "vod", Region: "r1", CDN: "cdn-c", Reason: "INC-1",
				Created: w.clk.now(), Expires: w.clk.now().Add(3 * time.Second)}}); err != nil {
				t.Fatal(err)
			}
		}, []string{"override_extended vod/r1 cdn-c<"}},
		{"override expires on the clock", func() { w.clk.add(3 * time.Second) }, []string{"override_expired vod/r1 cdn-c<", "leader_change vod/r1 cdn-b<cdn-c"}},
		{"override deleted before expiry", func() {
			o := steering.Override{ID: "ov-2", Kind: steering.OverrideBan, Service: "vod", CDN: "cdn-c", Reason: "INC-2", Created: w.clk.now(), Expires: w.clk.now().Add(time.Hour)}
			if err := w.table.SetOverrides([]steering.Override{o}); err != nil {
				t.Fatal(err)
			}
			w.step(ch)
			if err := w.table.SetOverrides(nil); err != nil {
				t.Fatal(err)
			}
		}, []string{"override_deleted vod cdn-c<"}},
		{"scorer gone", func() { w.clk.add(40 * time.Second) }, []string{"snapshot_stale vod <"}},
		{"scorer back", func() { w.store(base(state)...) }, []string{"snapshot_fresh vod <"}},
	}
	for _, tc := range tests {
		tc.apply()
		_, events := w.step(ch)
		got := eventKinds(events)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: events\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}

	// Every event is counted by kind, for alerts; the other service's
	// series exist at 0.
	for kind, want := range map[string]float64{KindFailover: 1, KindRecovery: 1, KindLeaderChange: 5, KindOverrideCreated: 2,
		KindOverrideExtended: 1, KindOverrideExpired: 1, KindOverrideDeleted: 1, KindSnapshotStale: 1, KindSnapshotFresh: 1} {
		if got := testutil.ToFloat64(w.tr.counts.WithLabelValues("vod", kind)); got != want {
			t.Errorf("cdnpilot_steering_events_total{service=vod,kind=%s} = %v, want %v", kind, got, want)
		}
	}
	if n := testutil.CollectAndCount(w.reg, "cdnpilot_steering_events_total"); n != 2*len(kinds) {
		t.Errorf("%d event series, want %d (every service and kind from the start)", n, 2*len(kinds))
	}

	h, _, cancel2, err := w.tr.Subscribe("vod", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	if h.Resolution != 10 || len(h.Ticks) < 2 || len(h.Events) < 10 {
		t.Errorf("history: resolution %v, %d ticks, %d events", h.Resolution, len(h.Ticks), len(h.Events))
	}
	for _, e := range h.Events {
		if e.Service != "vod" {
			t.Errorf("history of vod has an event of %s", e.Service)
		}
	}
}

func TestSubscribe(t *testing.T) {
	w := newWorld(t)
	if _, _, _, err := w.tr.Subscribe("nope", time.Minute); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown service: %v", err)
	}
	_, live, cancelLive, err := w.tr.Subscribe("live", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelLive()
	// 2 hours of samples: the fine history keeps an hour, the coarse
	// one a sample a minute.
	_, slow, cancelSlow, err := w.tr.Subscribe("vod", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelSlow()
	for range 2 * 3600 {
		w.clk.add(time.Second)
		w.tr.Sample()
		select {
		case m := <-live:
			if m.Tick == nil || m.Tick.Service != "live" {
				t.Fatalf("live subscriber got %+v", m)
			}
		default:
			t.Fatal("live subscriber got nothing for a sample")
		}
	}
	// The vod subscriber never read: it was cut off, not left to block.
	n := 0
	for range slow {
		n++
	}
	if n != subBuffer {
		t.Errorf("slow subscriber got %d messages before being cut off, want %d", n, subBuffer)
	}
	cancelSlow() // a second cancel is harmless

	for _, tc := range []struct {
		backlog    time.Duration
		resolution float64
		min, max   int
	}{
		{time.Minute, 1, 60, 61},
		{15 * time.Minute, 1, 900, 901},
		{time.Hour, 10, 360, 361},
		{2 * time.Hour, 60, 120, 121},
		{24 * time.Hour, 60, 120, 121},
	} {
		h, _, cancel, err := w.tr.Subscribe("vod", tc.backlog)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if h.Resolution != tc.resolution || len(h.Ticks) < tc.min || len(h.Ticks) > tc.max {
			t.Errorf("backlog %v: resolution %v, %d ticks; want %v, %d..%d", tc.backlog, h.Resolution, len(h.Ticks), tc.resolution, tc.min, tc.max)
		}
	}
}

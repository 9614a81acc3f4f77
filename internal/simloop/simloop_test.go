package simloop

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/internal/sim"
	"github.com/cdnpilot/cdnpilot/steering"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runEngine runs a scenario through the closed loop, the health probes
// included, and returns the result and the node's last snapshot of vod.
func runEngine(ctx context.Context, t testing.TB, sc *sim.Scenario, start time.Time) (*sim.Result, *steering.Snapshot) {
	t.Helper()
	health, err := sc.Health()
	if err != nil {
		t.Fatal(err)
	}
	l, err := Start(ctx, Options{Catalog: sc.Catalog(), Policy: steering.DefaultPolicy(), Start: start,
		Health: func(cdn string, at time.Time) bool { return health(cdn, at.Sub(start)) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	res, err := sim.Run(ctx, sc, l, sim.RunOptions{Start: start, Policy: "engine"})
	if err != nil {
		t.Fatal(err)
	}
	return res, l.Table().Snapshot("vod")
}

// TestClosedLoop runs the first half minute of the hard outage through
// ingest, Kafka, the scorer and a node's Table: the engine must fail over
// within the 10 s, and send fewer new views to the failing CDN
// than spreading them round-robin does. (make bench-steering runs every
// scenario whole, at ten times the viewers.)
func TestClosedLoop(t *testing.T) {
	sc, err := sim.Load("hard-outage")
	if err != nil {
		t.Fatal(err)
	}
	// Few enough viewers for -race on 2 cores; the outage starts at 4m.
	sc.Duration = sim.Duration(4*time.Minute + 30*time.Second)
	start := time.Now().Truncate(time.Second)
	res, snap := runEngine(t.Context(), t, sc, start)
	rr, err := sim.Run(t.Context(), sc, sim.NewRoundRobin(), sim.RunOptions{Start: start})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	if !s.Failover.OK || s.Failover.D > 10*time.Second {
		t.Errorf("failover %v, want within 10s", s.Failover)
	}
	if s.Hurt < 0 || s.Hurt >= rr.Summary.Hurt/2 {
		t.Errorf("engine sent %.0f%% of new views to the failing CDN, round-robin %.0f%%", 100*s.Hurt, 100*rr.Summary.Hurt)
	}
	if s.SteerErrors != 0 || s.Beacons == 0 {
		t.Errorf("steer errors %d, beacons %d", s.SteerErrors, s.Beacons)
	}
	// Each view's decision led with one CDN; exploration picked another
	// for a few.
	var views, explored int
	for _, st := range res.Steps {
		for i, n := range st.Cells {
			views += n
			explored += max(0, n-st.Leads[i])
		}
	}
	if views == 0 || explored == 0 || explored > views/10 {
		t.Errorf("%d of %d views picked another CDN than their decision led with; want some, and under 10 %%", explored, views)
	}
	// The real prober, on the loop's virtual clock, has seen the health
	// URL fail since: the outage is everywhere.
	var reason string
	if r := snap.Ranking(steering.Scope{Service: "vod"}); r != nil {
		for _, c := range r.Choices {
			if c.CDN == "cdn-a" {
				reason = c.Reason
			}
		}
	}
	if !strings.HasPrefix(reason, "probe: 3 consecutive failures, last status 503") {
		t.Errorf("cdn-a's reason in the service scope is %q, want the probes'", reason)
	}
}

// TestClosedLoopMixed runs a short steady world with every view asking
// one of the loop's real actuators over loopback (DNS, redirector, HLS
// and DASH content steering): all four are asked and none fails.
func TestClosedLoopMixed(t *testing.T) {
	sc, err := sim.Load("steady")
	if err != nil {
		t.Fatal(err)
	}
	sc.Duration = sim.Duration(5 * time.Second)
	sc = sc.Scaled(0.5)
	start := time.Now().Truncate(time.Second)
	l, err := Start(t.Context(), Options{Catalog: sc.Catalog(), Policy: steering.DefaultPolicy(), Start: start, SteerPath: PathMixed})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	res, err := sim.Run(t.Context(), sc, l, sim.RunOptions{Start: start, Policy: "engine"})
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Summary; s.SteerErrors != 0 || s.Beacons == 0 || s.Views == 0 {
		t.Errorf("steer errors %d, beacons %d, views %d", s.SteerErrors, s.Beacons, s.Views)
	}
	stats := l.Stats()
	for _, p := range actuators {
		if s := stats[p]; s.Requests == 0 || s.Failures != 0 {
			t.Errorf("%s: %+v", p, s)
		}
	}
	if _, ok := stats[PathEngine]; ok || len(stats) != len(actuators) {
		t.Errorf("stats %v", stats)
	}
}

// TestLoopPaths: the loop starts the servers each path asks (and only
// those), and a view steered through them gets the node's answer.
func TestLoopPaths(t *testing.T) {
	sc, err := sim.Load("steady")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range Paths {
		t.Run(string(path), func(t *testing.T) {
			l, err := Start(t.Context(), Options{Catalog: sc.Catalog(), Policy: steering.DefaultPolicy(), Start: time.Now(), SteerPath: path})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := l.Close(); err != nil {
					t.Error(err)
				}
			}()
			if (l.dns != nil) != (path == PathDNS || path == PathMixed) {
				t.Errorf("dns server running: %v", l.dns != nil)
			}
			q, addr := viewer(t, "loop-view", "100.64.1.2")
			got, err := l.Steer(t.Context(), q, addr)
			if err != nil || got != "cdn-a" { // the static order: no snapshot yet
				t.Fatalf("%q, %v", got, err)
			}
			for p, s := range l.Stats() {
				if s.Requests != 1 || s.Failures != 0 {
					t.Errorf("%s: %+v", p, s)
				}
			}
		})
	}
	if _, err := Start(t.Context(), Options{Catalog: sc.Catalog(), SteerPath: "doh"}); err == nil || !strings.Contains(err.Error(), `"doh" is not one of`) {
		t.Errorf("Start with a bad path: %v", err)
	}
}

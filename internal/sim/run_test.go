package sim

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/steering"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func mustLoad(t *testing.T, name string) *Scenario {
	t.Helper()
	sc, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// short cuts a scenario to its first d of virtual time.
func short(t *testing.T, name string, d time.Duration) *Scenario {
	t.Helper()
	sc := mustLoad(t, name)
	sc.Duration = Duration(d)
	sc.Events = nil
	return sc
}

func run(t *testing.T, sc *Scenario, l Loop) *Result {
	t.Helper()
	res, err := Run(t.Context(), sc, l, RunOptions{Start: epoch})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// recorder wraps a policy and keeps what the run asked and sent.
type recorder struct {
	Loop
	mu       sync.Mutex
	queries  []string
	beacons  []beacons.Input
	clients  map[string]netip.Addr // view id -> client
	advances []time.Time
}

func newRecorder(l Loop) *recorder { return &recorder{Loop: l, clients: map[string]netip.Addr{}} }

func (r *recorder) observe(w *world) error {
	if o, ok := r.Loop.(observer); ok {
		return o.observe(w)
	}
	return nil
}

func (r *recorder) Steer(ctx context.Context, q steering.Query, client netip.Addr) (string, error) {
	r.mu.Lock()
	r.queries = append(r.queries, q.ViewID+" "+q.Service+" "+q.Location.Region+" "+q.Location.Country+" "+client.String())
	r.mu.Unlock()
	return r.Loop.Steer(ctx, q, client)
}

func (r *recorder) Send(ctx context.Context, client netip.Addr, batch []beacons.Input) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range batch {
		if c, ok := r.clients[b.ViewID]; ok && c != client {
			return errors.New("a view's beacons came from two clients")
		}
		r.clients[b.ViewID] = client
	}
	r.beacons = append(r.beacons, batch...)
	return r.Loop.Send(ctx, client, batch)
}

func (r *recorder) Advance(ctx context.Context, now time.Time) error {
	r.mu.Lock()
	r.advances = append(r.advances, now)
	r.mu.Unlock()
	return r.Loop.Advance(ctx, now)
}

func TestDeterminism(t *testing.T) {
	sc := mustLoad(t, "flapping")
	sc.Duration = Duration(4 * time.Minute)
	for _, mk := range []func() Loop{
		func() Loop { return NewOracle() },
		func() Loop { return NewRoundRobin() },
	} {
		a, b := run(t, sc, mk()), run(t, sc, mk())
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: two runs with one seed differ", a.Policy)
		}
	}
	other := *sc
	other.Seed++
	if a, b := run(t, sc, NewStatic()), run(t, &other, NewStatic()); reflect.DeepEqual(a.Steps, b.Steps) {
		t.Fatal("another seed gave the same run")
	}
}

// Every policy sees the same viewers: same view ids, services, locations
// and clients, in the same order, and so the same number of views.
func TestSameViewersForEveryPolicy(t *testing.T) {
	sc := mustLoad(t, "hard-outage")
	sc.Duration = Duration(6 * time.Minute)
	var first []string
	for _, l := range []Loop{NewStatic(), NewOracle(), NewRoundRobin()} {
		rec := newRecorder(l)
		run(t, sc, rec)
		if first == nil {
			first = rec.queries
			continue
		}
		if !slices.Equal(first, rec.queries) {
			t.Fatalf("%T saw other viewers than the first policy", l)
		}
	}
}

// The oracle beats round-robin on every scenario, and every policy replays
// the same views.
func TestOracleBeatsRoundRobin(t *testing.T) {
	for _, name := range Names() {
		if name == "steady" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sc := mustLoad(t, name)
			o, rr := run(t, sc, NewOracle()), run(t, sc, NewRoundRobin())
			if o.Summary.Views != rr.Summary.Views || o.Summary.Views < 300 {
				t.Fatalf("views: oracle %d, round-robin %d", o.Summary.Views, rr.Summary.Views)
			}
			// On capacity the oracle is greedy (see Oracle): round-robin's
			// even spread does about as well, sometimes a little better.
			slack := 0.0
			if name == "capacity" {
				slack = 1
			}
			if o.Summary.QoE <= rr.Summary.QoE-slack {
				t.Fatalf("oracle QoE %.2f <= round-robin %.2f - %.0f", o.Summary.QoE, rr.Summary.QoE, slack)
			}
			if o.Summary.SteerErrors != 0 || rr.Summary.SteerErrors != 0 {
				t.Fatalf("steer errors: %d, %d", o.Summary.SteerErrors, rr.Summary.SteerErrors)
			}
			if o.Incident != nil && !o.Summary.Failover.OK && name != "flapping" {
				t.Errorf("the oracle never failed over: %+v", o.Summary)
			}
		})
	}
}

func TestBaselines(t *testing.T) {
	sc := mustLoad(t, "hard-outage")
	res, err := RunBaselines(t.Context(), sc, RunOptions{Start: epoch})
	if err != nil {
		t.Fatal(err)
	}
	s := res["static"].Summary
	if s.Hurt != 1 || s.Failover.Why != "never" || s.Recovery.String() != "0s" {
		t.Errorf("static: %+v", s)
	}
	if r := res["round-robin"].Summary; r.Hurt < 0.25 || r.Hurt > 0.42 || r.Failover.OK {
		t.Errorf("round-robin: %+v", r)
	}
	if o := res["oracle"].Summary; o.Hurt != 0 || o.Failover.String() != "0s" {
		t.Errorf("oracle: %+v", o)
	}
	// cdn-a is down for 3 of 12 minutes: the best single CDN is another.
	loops, err := Baselines(t.Context(), sc, 0)
	if err != nil {
		t.Fatal(err)
	}
	best := loops["best-single"].(*BestSingle)
	if best.CDN == "cdn-a" || len(best.QoE) != 3 || best.QoE[best.CDN] != res["best-single"].Summary.QoE {
		t.Errorf("best single %s of %v; its run: %v", best.CDN, best.QoE, res["best-single"].Summary.QoE)
	}
	tab := Compare(res)
	if len(tab.Rows) != 4 || tab.Rows[0].Policy != "oracle" || !strings.Contains(tab.Markdown(), "| static |") {
		t.Errorf("table: %+v", tab)
	}
}

// Every beacon passes the real ingest validation, and every view keeps the
// protocol of docs/BEACONS.md.
func TestBeaconsFollowSchema(t *testing.T) {
	sc := mustLoad(t, "hard-outage") // failures at start and mid-view
	sc.Duration = Duration(8 * time.Minute)
	sc.SeekShare = ptr(0.3)
	rec := newRecorder(NewRoundRobin())
	res := run(t, sc, rec)
	if res.Summary.Beacons != len(rec.beacons) || res.Summary.Beacons != rec.Loop.(*RoundRobin).Sent() {
		t.Fatalf("beacons: summary %d, sent %d", res.Summary.Beacons, len(rec.beacons))
	}
	type state struct {
		started, warm, ended bool // warm: playing when the run began
		startup              int64
		seq, ts              int64
		played, rebuf, seekR int64
		types                []string
	}
	views := map[string]*state{}
	counts := map[string]int{}
	var ebvs, failedStart, midFail int
	for i, b := range rec.beacons {
		if _, err := b.Validate(time.UnixMilli(b.TS), time.Minute); err != nil {
			t.Fatalf("beacon %d %+v: %v", i, b, err)
		}
		v := views[b.ViewID]
		if v == nil {
			v = &state{seq: -1, warm: b.Type != "view_start" && b.StartupMS > 0 || b.Type == "heartbeat"}
			views[b.ViewID] = v
		}
		if v.ended {
			t.Fatalf("%s: %s after the view ended (%v)", b.ViewID, b.Type, v.types)
		}
		if b.Seq <= v.seq || b.TS < v.ts {
			t.Fatalf("%s: seq %d ts %d after seq %d ts %d", b.ViewID, b.Seq, b.TS, v.seq, v.ts)
		}
		v.seq, v.ts = b.Seq, b.TS
		v.types = append(v.types, b.Type)
		counts[b.Type]++
		if b.Service == "" || b.CDN == "" || b.Host != b.CDN+".demo.cdnpilot.test" || b.SessionID == "" || b.Player == "" {
			t.Fatalf("identity fields: %+v", b)
		}
		// What a view that started must repeat, and one that did not must leave 0.
		wantStartup := v.startup
		switch b.Type {
		case "view_start":
			if len(v.types) != 1 || b.StartupMS <= 0 || b.BitrateKbps <= 0 || b.ThroughputKbps <= 0 || b.TTFBMS <= 0 {
				t.Fatalf("%s: view_start %+v after %v", b.ViewID, b, v.types)
			}
			v.started, v.startup, wantStartup = true, b.StartupMS, b.StartupMS
		case "heartbeat":
			if !v.started && !v.warm {
				t.Fatalf("%s: heartbeat before view_start", b.ViewID)
			}
		case "view_end", "error":
			v.ended = true
			switch {
			case b.Type == "error" && (!b.Fatal || b.ErrorCode == ""):
				t.Fatalf("%s: error %+v", b.ViewID, b)
			case b.Type == "error" && v.started:
				midFail++
			case b.Type == "error" && !v.warm:
				failedStart++
			case !v.started && !v.warm:
				ebvs++
			}
		default:
			t.Fatalf("unexpected type %s", b.Type)
		}
		if !v.warm && b.Type != "heartbeat" && b.StartupMS != wantStartup {
			t.Fatalf("%s: %s has startup_ms %d, want %d", b.ViewID, b.Type, b.StartupMS, wantStartup)
		}
		if b.Type == "heartbeat" || b.Type == "view_end" {
			v.played += b.PlayedMS
			v.rebuf += b.RebufferMS
			v.seekR += b.SeekRebufferMS
			if b.PlayedMS > int64(sc.Heartbeat.D()/time.Millisecond)+1000 {
				t.Fatalf("%s: %d ms played in one heartbeat interval", b.ViewID, b.PlayedMS)
			}
		}
	}
	seeks := 0
	for _, v := range views {
		if v.seekR > 0 {
			seeks++
		}
	}
	for _, typ := range []string{"view_start", "heartbeat", "view_end", "error"} {
		if counts[typ] == 0 {
			t.Errorf("no %s beacon", typ)
		}
	}
	if failedStart == 0 || midFail == 0 || seeks == 0 {
		t.Errorf("failed starts %d, failures mid-view %d, views with seek stalls %d: want some of each", failedStart, midFail, seeks)
	}
	t.Logf("%d views, %v, %d exits before start, %d failed starts, %d failed mid-view, %d with seek stalls",
		len(views), counts, ebvs, failedStart, midFail, seeks)
}

type failing struct {
	*Static
	steer, send, advance error
}

func (f *failing) Steer(ctx context.Context, q steering.Query, c netip.Addr) (string, error) {
	if f.steer != nil {
		return "", f.steer
	}
	return f.Static.Steer(ctx, q, c)
}

func (f *failing) Send(ctx context.Context, c netip.Addr, b []beacons.Input) error {
	if f.send != nil {
		return f.send
	}
	return f.Static.Send(ctx, c, b)
}

func (f *failing) Advance(ctx context.Context, now time.Time) error {
	if f.advance != nil {
		return f.advance
	}
	return nil
}

func TestLoopErrors(t *testing.T) {
	sc := short(t, "degrade-region", time.Minute)
	boom := errors.New("boom")

	// A steering error: the view falls back to the service's first CDN.
	res, err := Run(t.Context(), sc, &failing{Static: NewStatic(), steer: boom}, RunOptions{Start: epoch})
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.SteerErrors == 0 || res.Summary.SteerErrors < res.Summary.Views {
		t.Errorf("steer errors %d for %d views (and the warm ones)", res.Summary.SteerErrors, res.Summary.Views)
	}
	last := res.Steps[len(res.Steps)-1].Active
	if last[0] == 0 || last[1] != 0 || last[2] != 0 {
		t.Errorf("active per CDN %v: want everything on cdn-a", last)
	}

	for _, f := range []*failing{{Static: NewStatic(), send: boom}, {Static: NewStatic(), advance: boom}} {
		if _, err := Run(t.Context(), sc, f, RunOptions{Start: epoch}); !errors.Is(err, boom) {
			t.Errorf("run error %v, want boom", err)
		}
	}
	if _, err := NewStatic().Steer(t.Context(), steering.Query{Service: "vod"}, netip.Addr{}); !errors.Is(err, errNotInRun) {
		t.Errorf("baseline outside a run: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Run(ctx, sc, NewStatic(), RunOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
	endless := short(t, "steady", 0)
	if _, err := Run(t.Context(), endless, NewStatic(), RunOptions{}); err == nil || !strings.Contains(err.Error(), "needs RealTime") {
		t.Errorf("endless without RealTime: %v", err)
	}
}

// In RealTime mode a step is processed once the wall clock passes its end.
func TestRealTimePacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := short(t, "degrade-region", 10*time.Second)
		rec := newRecorder(NewStatic())
		start := time.Now()
		res, err := Run(t.Context(), sc, rec, RunOptions{RealTime: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 10*time.Second {
			t.Errorf("a 10 s scenario took %v of (fake) wall time", got)
		}
		if !res.Start.Equal(start) || len(rec.advances) != 10 {
			t.Fatalf("start %v (want %v), %d advances", res.Start, start, len(rec.advances))
		}
		for i, a := range rec.advances {
			if want := start.Add(time.Duration(i+1) * time.Second); !a.Equal(want) {
				t.Errorf("advance %d to %v, want %v", i, a, want)
			}
		}
	})
}

// Duration 0 runs until ctx is done, and that is not an error.
func TestEndlessRealTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		rec := newRecorder(NewRoundRobin())
		sc := mustLoad(t, "steady")
		res, err := Run(ctx, sc, rec, RunOptions{RealTime: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.advances) < 89 || len(rec.advances) > 90 || res.Steps != nil || res.Summary.Views == 0 || len(rec.beacons) == 0 {
			t.Errorf("%d advances, %d steps, %d views, %d beacons", len(rec.advances), len(res.Steps), res.Summary.Views, len(rec.beacons))
		}
		ctx2, cancel2 := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel2()
		if err := Demo(ctx2, NewStatic(), nil); err != nil {
			t.Errorf("Demo: %v", err)
		}
	})
}

package sim

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIntensity(t *testing.T) {
	s := time.Second
	for _, c := range []struct {
		name string
		e    eventModel
		at   map[time.Duration]float64
	}{
		{"step", eventModel{at: 10 * s, dur: 20 * s},
			map[time.Duration]float64{0: 0, 9 * s: 0, 10 * s: 1, 29 * s: 1, 30 * s: 0, time.Hour: 0}},
		{"until the end", eventModel{at: 10 * s},
			map[time.Duration]float64{9 * s: 0, time.Hour: 1}},
		{"ramps", eventModel{at: 10 * s, dur: 40 * s, ramp: 20 * s, rampOut: 10 * s},
			map[time.Duration]float64{10 * s: 0, 15 * s: 0.25, 30 * s: 1, 50 * s: 1, 55 * s: 0.5, 60 * s: 0}},
		{"flap", eventModel{at: 10 * s, dur: 60 * s, flap: 10 * s},
			map[time.Duration]float64{10 * s: 1, 19 * s: 1, 20 * s: 0, 29 * s: 0, 30 * s: 1, 69 * s: 0, 70 * s: 0}},
	} {
		for at, want := range c.at {
			if got := c.e.intensity(at); math.Abs(got-want) > 1e-9 {
				t.Errorf("%s at %v: %v, want %v", c.name, at, got, want)
			}
		}
	}
}

func TestPerfAt(t *testing.T) {
	sc := &Scenario{
		Duration: Duration(10 * time.Minute),
		Services: []ServiceSpec{{Name: "vod", CDNs: []string{"a", "b"}}},
		Regions:  []RegionSpec{{Name: "eu-west", Rate: 1}, {Name: "us-east", Rate: 1}},
		CDNs: []CDNSpec{
			{Name: "a", Perf: Perf{ThroughputKbps: ptr(10000.0), TTFB: ptr(Duration(40 * time.Millisecond)), Capacity: ptr(100)}},
			{Name: "b", Perf: Perf{ThroughputKbps: ptr(5000.0)}, Regions: []RegionPerf{{Name: "us-east", Perf: Perf{Capacity: ptr(10)}}}},
		},
		Events: []EventSpec{
			{CDN: "a", At: Duration(time.Minute), Duration: Duration(time.Minute), Region: "eu-west",
				Multiply: Factors{Throughput: ptr(0.2), TTFB: ptr(5.0)}, Set: Perf{Failure: ptr(0.5)}},
			{CDN: "a", At: Duration(3 * time.Minute), Ramp: Duration(time.Minute), Set: Perf{ThroughputKbps: ptr(1000.0)}},
		},
	}
	m, err := compile(sc)
	if err != nil {
		t.Fatal(err)
	}
	eu, us := m.regions[0].asns[0], m.regions[1].asns[0]
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-6*max(1, want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	p := m.perfAt(0, eu, 90*time.Second, nil, 0)
	near("throughput in the event", p.tput, 2000)
	near("ttfb in the event", p.ttfb, 200)
	near("failure in the event", p.fail, 0.5)
	p = m.perfAt(0, us, 90*time.Second, nil, 0)
	near("throughput outside the event's region", p.tput, 10000)
	// Halfway through a geometric ramp from 10000 to 1000.
	near("ramped throughput", m.perfAt(0, us, 210*time.Second, nil, 0).tput, math.Sqrt(10000*1000))

	ld := newLoad(m)
	for range 199 {
		ld.add(m, 0, us, 1)
	}
	p = m.perfAt(0, eu, 0, ld, 1) // 200 views on a capacity of 100
	near("overloaded throughput", p.tput, 5000)
	near("overloaded failure", p.fail, defaultFailure+defaultOverloadFailure)
	// b's capacity counts us-east views only.
	for range 20 {
		ld.add(m, 1, eu, 1)
	}
	near("regional capacity elsewhere", m.perfAt(1, us, 0, ld, 0).tput, 5000)
	ld.add(m, 1, us, 20)
	near("regional capacity", m.perfAt(1, us, 0, ld, 0).tput, 2500)
}

func TestNoise(t *testing.T) {
	sc := mustLoad(t, "within-noise")
	m, err := compile(sc)
	if err != nil {
		t.Fatal(err)
	}
	var lo, hi float64 = math.Inf(1), 0
	for s := range 900 {
		at := time.Duration(s) * time.Second
		f := m.noise(0, 0, at)
		if f != m.noise(0, 0, at) {
			t.Fatal("noise is not a function of time")
		}
		lo, hi = min(lo, f), max(hi, f)
	}
	if lo > 0.95 || hi < 1.05 || lo < 0.4 || hi > 2.5 {
		t.Errorf("noise over 15 min in [%v, %v]: want mild drift", lo, hi)
	}
	if m.noise(0, 0, time.Minute) == m.noise(1, 0, time.Minute) {
		t.Error("two CDNs drift together")
	}
}

func TestViewScores(t *testing.T) {
	good := outcome{fate: fateStarted, startupMS: 1000, played: 600, bitrate: 4500, tput: 9000, ttfb: 40}
	stalled := good
	stalled.rebuf = 30
	low := good
	low.bitrate, low.tput, low.ttfb = 800, 1400, 200
	died := good
	died.fatal = true
	for _, c := range []struct {
		name   string
		o      outcome
		lo, hi float64
	}{
		{"good", good, 88, 95},
		{"stalled 5%", stalled, 78, 84},
		{"low bitrate", low, 78, 85},
		{"failed mid-view", died, 60, 72},
		{"exit before start after 10 s", outcome{fate: fateEBVS, startupMS: 10000, ttfb: 40}, 35, 50},
		{"failed at start", outcome{fate: fateFailedStart}, 0, 1e-3},
	} {
		if s := c.o.score(); s < c.lo || s > c.hi {
			t.Errorf("%s scores %.1f, want %v..%v", c.name, s, c.lo, c.hi)
		}
	}
}

// The oracle's expectation ranks CDNs the way their views turn out.
func TestExpectedQoE(t *testing.T) {
	m, err := compile(mustLoad(t, "degrade-region"))
	if err != nil {
		t.Fatal(err)
	}
	svc := &m.services[0]
	eu := m.regions[0].asns[0]
	a, b := m.cdnIndex["cdn-a"], m.cdnIndex["cdn-b"]
	before := m.expectedQoE(m.perfAt(a, eu, time.Minute, nil, 0), svc)
	during := m.expectedQoE(m.perfAt(a, eu, 5*time.Minute, nil, 0), svc)
	other := m.expectedQoE(m.perfAt(b, eu, 5*time.Minute, nil, 0), svc)
	if before <= other || during >= other || before-during < 5 {
		t.Errorf("cdn-a %.1f before, %.1f during; cdn-b %.1f", before, during, other)
	}
	dead := m.perfAt(a, eu, 0, nil, 0)
	dead.fail = 1
	if q := m.expectedQoE(dead, svc); q > 1e-3 {
		t.Errorf("a CDN that fails every view: %v", q)
	}
}

func TestPlotShares(t *testing.T) {
	sc := mustLoad(t, "degrade-region")
	sc.Duration = Duration(6 * time.Minute)
	res := run(t, sc, NewOracle())
	path := filepath.Join(t.TempDir(), "shares.png")
	if err := PlotShares(res, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 200 {
		t.Errorf("image is %v", b)
	}
	if err := PlotShares(&Result{}, path); err == nil {
		t.Error("plotted a result without steps")
	}
	if err := PlotShares(res, filepath.Join(t.TempDir(), "missing", "x.png")); err == nil {
		t.Error("wrote into a missing directory")
	}
}

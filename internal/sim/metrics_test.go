package sim

import (
	"flag"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// series builds a per-step scope series over CDNs (bad, other) from a
// compact spec: one string per step, each character a new view: 'b' on
// the bad CDN (index 0), 'o' elsewhere (index 1); "" is a step without
// views. rep repeats a spec.
func series(steps ...string) [][]int {
	out := make([][]int, len(steps))
	for i, s := range steps {
		out[i] = make([]int, 2)
		for _, c := range s {
			if c == 'b' {
				out[i][0]++
			} else {
				out[i][1]++
			}
		}
	}
	return out
}

func rep(n int, s string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestFailover(t *testing.T) {
	const hold = 5 // steps of 1 s
	for _, c := range []struct {
		name       string
		steps      []string
		start, end int
		want       string
	}{
		{"instant", cat(rep(10, "bb"), rep(30, "oo")), 10, 40, "0s"},
		// Switched at step 17; the window from step 16 already has 9 of its
		// 10 views elsewhere.
		{"after 7 steps", cat(rep(10, "bb"), rep(7, "bo"), rep(30, "oo")), 10, 47, "6s"},
		// One view a second: the window stretches to HoldViews views.
		{"sparse", cat(rep(10, "b"), rep(3, "b"), rep(40, "o")), 10, 53, "2s"},
		// Empty steps count only as time: the window still needs views.
		{"gaps", cat(rep(10, "b"), rep(4, ""), rep(40, "o")), 10, 54, "0s"},
		// 1 view in 10 on the bad CDN is still a failover (exploration).
		{"tolerates 10%", cat(rep(10, "bb"), rep(40, "ooooobooooooooooooob")), 10, 50, "0s"},
		{"never", cat(rep(10, "b"), rep(40, "bo")), 10, 50, "never"},
		// A lucky stretch, then back to the bad CDN: not a failover...
		{"lucky stretch", cat(rep(10, "b"), rep(12, "o"), rep(30, "bo")), 10, 52, "never"},
		// ...until the policy commits for good.
		{"commits late", cat(rep(10, "b"), rep(12, "o"), rep(10, "bo"), rep(30, "o")), 10, 62, "21s"},
		// The window may run past the incident's end to collect views.
		{"window past the end", cat(rep(10, "b"), rep(3, "o"), rep(20, "o")), 10, 13, "0s"},
		{"no views", cat(rep(10, "b"), rep(20, "")), 10, 30, "never"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := failover(series(c.steps...), 0, c.start, c.end, hold, time.Second)
			if got.String() != c.want {
				t.Fatalf("failover = %v, want %s", got, c.want)
			}
		})
	}
}

func TestRecovery(t *testing.T) {
	const hold, before = 5, 300
	for _, c := range []struct {
		name       string
		steps      []string
		start, end int
		want       string
	}{
		{"back at once", cat(rep(10, "bo"), rep(10, "oo"), rep(20, "bo")), 10, 20, "0s"},
		{"back after 8 steps", cat(rep(10, "bo"), rep(10, "oo"), rep(8, "oo"), rep(20, "bo")), 10, 20, "8s"},
		// 90% of a half share is 45%: 4 of 9 views is not enough.
		{"not quite", cat(rep(10, "bo"), rep(10, "oo"), rep(30, "booboobbo")), 10, 20, "never"},
		{"no share before", cat(rep(10, "oo"), rep(10, "oo"), rep(20, "bo")), 10, 20, "n/a"},
		{"incident to the end", cat(rep(10, "bo"), rep(10, "oo")), 10, 20, "n/a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := recovery(series(c.steps...), 0, c.start, c.end, hold, before, time.Second)
			if got.String() != c.want {
				t.Fatalf("recovery = %v, want %s", got, c.want)
			}
		})
	}
}

func TestHurtFlipsShareMove(t *testing.T) {
	s := series(cat(rep(10, "b"), rep(10, "bo"), rep(10, "o"))...)
	if h := hurt(s, 0, 10, 30); h != 10.0/30 {
		t.Errorf("hurt = %v, want 1/3", h)
	}
	if h := hurt(series(rep(5, "")...), 0, 0, 5); h != -1 {
		t.Errorf("hurt without views = %v, want -1", h)
	}
	for _, c := range []struct {
		name  string
		steps []string
		w     int
		want  int
	}{
		{"steady", rep(30, "bbo"), 5, 0},
		{"one switch", cat(rep(10, "b"), rep(10, "o")), 5, 1},
		{"alternating", cat(rep(5, "b"), rep(5, "o"), rep(5, "b"), rep(5, "o")), 5, 3},
		// A window without views keeps the majority; a tie keeps it too.
		{"gap and tie", cat(rep(5, "b"), rep(5, ""), rep(5, "bo"), rep(5, "o")), 5, 1},
	} {
		if got := flips(series(c.steps...), c.w); got != c.want {
			t.Errorf("flips %s = %d, want %d", c.name, got, c.want)
		}
	}
	// Minute windows of 60 steps: 100% b, then 50%, then 0%: moves of 0.5.
	m := series(cat(rep(60, "b"), rep(60, "bo"), rep(60, ""), rep(60, "o"))...)
	if got := maxShareMove(m, 60); got != 0.5 {
		t.Errorf("maxShareMove = %v, want 0.5", got)
	}
}

func TestSummarize(t *testing.T) {
	steps := cat(rep(60, "bo"), rep(10, "bb"), rep(50, "oo"), rep(60, "bo"))
	s := series(steps...)
	r := &Result{Scenario: "hand", Policy: "p", Step: time.Second, CDNs: []string{"bad", "good"},
		Incident: &Incident{CDN: "bad", Start: 60 * time.Second, End: 120 * time.Second}}
	for i := range s {
		r.Steps = append(r.Steps, StepStats{At: time.Duration(i) * time.Second, Scope: s[i], Cells: s[i]})
	}
	r.Summary = Summary{Views: 10, TotalQoE: 900}
	summarize(r)
	got := r.Summary
	if got.QoE != 90 || got.Failover.String() != "10s" || got.Recovery.String() != "0s" || got.Hurt != 20.0/120 {
		t.Errorf("summary %+v", got)
	}
	if want := flips(s, 10); got.Flips != float64(want) || want == 0 {
		t.Errorf("flips of one cell = %v, want %d (> 0)", got.Flips, want)
	}
	if got.FlipsPer10Min != got.Flips/(180.0/600) {
		t.Errorf("flips per 10 min %v from %v flips", got.FlipsPer10Min, got.Flips)
	}
}

// TestCellFlips: flips are counted per (service, ASN) cell and weighted
// by the cells' views. Two cells that each keep their CDN never flip,
// though the majority of their sum changes with the arrivals.
func TestCellFlips(t *testing.T) {
	cells := func(a, b string) []int { return append(series(a)[0], series(b)[0]...) }
	var steady, oneSwitch []StepStats
	for i := range 40 {
		// Cell 0 gets 2 or 0 views on b, cell 1 one view on o.
		a := "bb"
		if i%20 >= 10 {
			a = ""
		}
		steady = append(steady, StepStats{Cells: cells(a, "o")})
		// Cell 0 (three views a step) moves from b to o halfway; cell
		// 1 (one view) stays.
		b := "bbb"
		if i >= 20 {
			b = "ooo"
		}
		oneSwitch = append(oneSwitch, StepStats{Cells: cells(b, "o")})
	}
	for _, c := range []struct {
		name  string
		steps []StepStats
		want  float64
	}{
		{"cells keep their CDNs", steady, 0},
		{"the busier cell switches once", oneSwitch, 3.0 / 4},
	} {
		r := &Result{CDNs: []string{"bad", "good"}, Steps: c.steps}
		for _, tally := range []Tally{Picks, Leads} { // no Leads: both tally picks
			if got := cellFlips(r, tally, 5); got != c.want {
				t.Errorf("%s: cellFlips(%v) = %v, want %v", c.name, tally, got, c.want)
			}
		}
	}
	var whole [][]int
	for _, st := range steady {
		whole = append(whole, []int{st.Cells[0] + st.Cells[2], st.Cells[1] + st.Cells[3]})
	}
	if flips(whole, 5) == 0 {
		t.Error("the steady cells' sum should flip: the test would show nothing")
	}
}

// TestDecisionFlips: an exploration pick that is a window's only view
// flips the majority of picks there and back; the decisions, which all
// led with one CDN, did not flip. A decision that moves does.
func TestDecisionFlips(t *testing.T) {
	var steps []StepStats
	for i := range 60 {
		pick, lead := "o", "o" // one view every 5 steps: a window of one
		switch {
		case i%5 != 0:
			pick, lead = "", ""
		case i == 20:
			pick = "b" // explored
		case i >= 40:
			pick, lead = "b", "b" // the decision moved
		}
		steps = append(steps, StepStats{Cells: series(pick)[0], Leads: series(lead)[0]})
	}
	r := &Result{CDNs: []string{"bad", "good"}, Steps: steps}
	for _, c := range []struct {
		tally Tally
		want  float64
	}{{Leads, 1}, {Picks, 3}} {
		if got := cellFlips(r, c.tally, 5); got != c.want {
			t.Errorf("cellFlips(%v) = %v, want %v", c.tally, got, c.want)
		}
	}
}

// TestSummarizeRamp: a ramped incident times failover from when it is in
// full effect and recovery from when it is undone.
func TestSummarizeRamp(t *testing.T) {
	steps := cat(rep(60, "bo"), rep(10, "bb"), rep(70, "oo"), rep(60, "bo"))
	for _, tc := range []struct {
		name               string
		full, over         time.Duration
		failover, recovery string
	}{
		{"abrupt", 0, 0, "10s", "20s"},
		{"ramped in over 10s", 70 * time.Second, 0, "0s", "20s"},
		{"ramped out over 20s", 0, 140 * time.Second, "10s", "0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := series(steps...)
			r := &Result{Scenario: "hand", Policy: "p", Step: time.Second, CDNs: []string{"bad", "good"},
				Incident: &Incident{CDN: "bad", Start: 60 * time.Second, End: 120 * time.Second, Full: tc.full, Over: tc.over}}
			for i := range s {
				r.Steps = append(r.Steps, StepStats{At: time.Duration(i) * time.Second, Scope: s[i]})
			}
			summarize(r)
			if got := r.Summary; got.Failover.String() != tc.failover || got.Recovery.String() != tc.recovery || got.Hurt != 20.0/120 {
				t.Errorf("failover %v recovery %v hurt %v; want %s, %s, %v", got.Failover, got.Recovery, got.Hurt, tc.failover, tc.recovery, 20.0/120)
			}
		})
	}
}

func TestCompareMarkdown(t *testing.T) {
	mk := func(policy string, qoe float64, fo Timing, hurt float64) *Result {
		return &Result{Scenario: "hand-made", Policy: policy, Scope: "eu-west",
			Incident: &Incident{Name: "outage", CDN: "cdn-a", Region: "eu-west", Start: time.Minute, End: 4 * time.Minute},
			Summary: Summary{Views: 100, QoE: qoe, TotalQoE: 100 * qoe, Failover: fo, Hurt: hurt,
				FlipsPer10Min: 1.5, PickFlipsPer10Min: 2.5, MaxShareMove: 0.25, Recovery: notApplicable}}
	}
	tab := Compare(map[string]*Result{
		"static":      mk("static", 80, Timing{Why: "never"}, 1),
		"oracle":      mk("oracle", 90, Timing{OK: true}, 0),
		"engine":      mk("engine", 88.5, Timing{D: 12 * time.Second, OK: true}, 0.04),
		"round-robin": mk("round-robin", 85, Timing{Why: "never"}, 1.0/3),
	})
	var order []string
	for _, r := range tab.Rows {
		order = append(order, r.Policy)
	}
	if strings.Join(order, " ") != "oracle engine round-robin static" {
		t.Errorf("order %v", order)
	}
	if r := tab.Rows[1]; !r.HasLoss || r.Loss != 1.5 {
		t.Errorf("engine loss %+v", r)
	}
	got := tab.Markdown()
	golden := "testdata/compare.golden.md"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("Markdown differs from %s (run with -update):\n%s", golden, got)
	}
	// Without an oracle there is no loss.
	if r := Compare(map[string]*Result{"x": mk("x", 1, notApplicable, -1)}).Rows[0]; r.HasLoss {
		t.Errorf("loss without an oracle: %+v", r)
	}
}

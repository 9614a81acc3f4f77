package sim

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Result is one run of one policy over one scenario.
type Result struct {
	Scenario string
	Policy   string
	Start    time.Time
	Step     time.Duration
	Duration time.Duration // 0: endless
	CDNs     []string      // the order of every per-CDN series
	// Scope is the metrics scope: the incident's, the scenario's scope, or
	// every viewer ("eu-west", "eu-west/AS64496", "all viewers").
	Scope    string
	Incident *Incident   // nil without one
	Steps    []StepStats // one per step; nil for endless runs
	Summary  Summary
}

// Incident is the event the metrics are about. Times are offsets from
// the start of the run.
type Incident struct {
	Name       string
	CDN        string // the bad CDN
	Region     string // empty: every region
	ASN        uint32 // 0: every ASN of the region
	Start, End time.Duration
	// Full is when a ramped change is in full effect (Start plus the
	// ramp), Over when it is undone (End plus the ramp out); both equal
	// Start and End for an abrupt one. Failover is timed from Full:
	// during a ramp in the CDN may still be the best there is, and
	// leaving it at once would be wrong. Recovery is timed from Over: a
	// CDN halfway through a slow recovery is not yet recovered.
	Full, Over time.Duration

	scope scopeModel
}

// StepStats is one step. The warm population is in Active only.
type StepStats struct {
	At     time.Duration // offset of the step's start
	New    []int         // new views per CDN
	Scope  []int         // new views per CDN in the metrics scope
	Active []int         // views starting or playing per CDN at the step's end
	// Cells are the scope's new views per (service, ASN) cell and CDN,
	// cell-major: what one steering decision covers at most.
	Cells []int
	// Leads are the same views per cell and the CDN their decision gave
	// the most weight: the CDN the ranking led with, whichever CDN the
	// view was picked for.
	Leads []int
	// QoE is the mean true QoE of the views that arrived in this step,
	// ScopeQoE of those in the scope; -1 without any.
	QoE, ScopeQoE float64
}

// Summary is a run's figures; the README defines each. Steering metrics
// are over new views in the metrics scope.
type Summary struct {
	Views       int // new views (play intents) in the run
	ScopeViews  int
	Beacons     int
	SteerErrors int
	QoE         float64 // mean true QoE per new view, 0-100
	TotalQoE    float64 // sum of the views' true QoE ("QoE delivered")
	ScopeQoE    float64 // mean true QoE of the views in the scope
	// Failover: from incident start until new views avoid the bad CDN.
	Failover Timing
	// Hurt is the share of the scope's new views during the incident that
	// went to the bad CDN; -1 without an incident.
	Hurt float64
	// Flips counts changes of the decision: of the CDN most new views'
	// decisions led with, between consecutive FlipWindow windows, in each
	// (service, ASN) cell of the scope, the cells weighted by their share
	// of the scope's new views: the flips of the decision an average view
	// got. (Over the whole scope, the majority would flip with the
	// arrivals alone wherever cells rightly chose different CDNs about as
	// often.) FlipsPer10Min scales it.
	Flips         float64
	FlipsPer10Min float64
	// PickFlips counts the same changes of the CDN most new views were
	// picked for. A window whose only view an exploration pick sent
	// elsewhere flips it there and back, though no decision changed.
	PickFlips         float64
	PickFlipsPer10Min float64
	// MaxShareMove is the largest change of one CDN's share of the
	// scope's new views from one minute to the next, 0..1.
	MaxShareMove float64
	// Recovery: from incident end until the bad CDN has its share back.
	Recovery Timing
}

// Timing is a measured duration, or why there is none.
type Timing struct {
	D   time.Duration
	OK  bool
	Why string // "never" (not within the run) or "n/a" (does not apply)
}

func (t Timing) String() string {
	if t.OK {
		return t.D.String()
	}
	return t.Why
}

var notApplicable = Timing{Why: "n/a"}

// Metric parameters (README: Metrics).
const (
	// AvoidShare is the share of new views that must avoid the bad CDN.
	AvoidShare = 0.9
	// Hold is how long the avoidance must last...
	Hold = 5 * time.Second
	// ...over at least HoldViews new views, so a lucky second with one
	// view does not count.
	HoldViews = 10
	// FlipWindow is the window the majority CDN is taken over.
	FlipWindow = 10 * time.Second
	// RecoverShare of the bad CDN's pre-incident share counts as recovered.
	RecoverShare = 0.9
	// Before is how far before the incident its share is measured.
	Before = 5 * time.Minute
)

func summarize(r *Result) {
	s := &r.Summary
	if s.Views > 0 {
		s.QoE = s.TotalQoE / float64(s.Views)
	}
	if s.ScopeViews > 0 {
		s.ScopeQoE /= float64(s.ScopeViews)
	}
	s.Failover, s.Recovery, s.Hurt = notApplicable, notApplicable, -1
	if len(r.Steps) == 0 {
		return
	}
	series := make([][]int, len(r.Steps))
	for i, st := range r.Steps {
		series[i] = st.Scope
	}
	per10Min := float64(len(r.Steps)) * float64(r.Step) / float64(10*time.Minute)
	s.Flips = cellFlips(r, Leads, stepsOf(FlipWindow, r.Step))
	s.PickFlips = cellFlips(r, Picks, stepsOf(FlipWindow, r.Step))
	s.FlipsPer10Min, s.PickFlipsPer10Min = s.Flips/per10Min, s.PickFlips/per10Min
	s.MaxShareMove = maxShareMove(series, stepsOf(time.Minute, r.Step))
	if inc := r.Incident; inc != nil {
		bad := slices.Index(r.CDNs, inc.CDN)
		start, end := int(inc.Start/r.Step), int((inc.End+r.Step-1)/r.Step)
		end = min(end, len(series))
		full := min(max(start, int(inc.Full/r.Step)), end)
		over := max(end, int((inc.Over+r.Step-1)/r.Step))
		hold := stepsOf(Hold, r.Step)
		s.Failover = failover(series, bad, full, end, hold, r.Step)
		s.Hurt = hurt(series, bad, start, end)
		s.Recovery = recovery(series, bad, start, over, hold, stepsOf(Before, r.Step), r.Step)
	}
}

func stepsOf(d, step time.Duration) int { return max(1, int((d+step-1)/step)) }

func sum(xs []int) (n int) {
	for _, x := range xs {
		n += x
	}
	return n
}

// window sums new views from step i on until it spans at least hold steps
// and HoldViews views; ok is false if the series ends first.
func window(series [][]int, cdn, i, hold int) (n, on int, ok bool) {
	for j := i; j < len(series); j++ {
		n += sum(series[j])
		on += series[j][cdn]
		if j-i+1 >= hold && n >= HoldViews {
			return n, on, true
		}
	}
	return n, on, false
}

// tally sums new views over steps [i, j).
func tally(series [][]int, cdn, i, j int) (n, on int) {
	for ; i < j && i < len(series); i++ {
		n += sum(series[i])
		on += series[i][cdn]
	}
	return n, on
}

// failover is the time from the incident's start step to the first step
// i from which the policy keeps new views off the bad CDN: a window from i
// (Hold long, HoldViews views) has at least AvoidShare of its new views
// elsewhere, and so has all of [i, end). The first condition makes the
// switch prompt, the second makes it last (a policy that sends a third of
// the views to the bad CDN has lucky windows, but never a lucky rest of
// the incident). "never" if there is no such step before the end.
func failover(series [][]int, bad, start, end, hold int, step time.Duration) Timing {
	for i := start; i < end; i++ {
		n, on, ok := window(series, bad, i, hold)
		if !ok {
			break
		}
		if !atLeast(n-on, n, AvoidShare) {
			continue
		}
		if rn, ron := tally(series, bad, i, end); atLeast(rn-ron, rn, AvoidShare) {
			return Timing{D: time.Duration(i-start) * step, OK: true}
		}
	}
	return Timing{Why: "never"}
}

// atLeast reports k/n >= share, forgiving float rounding (9 of 10 is 90%).
func atLeast(k, n int, share float64) bool { return float64(k) >= share*float64(n)-1e-9 }

// hurt is the bad CDN's share of the scope's new views during the incident.
func hurt(series [][]int, bad, start, end int) float64 {
	n, on := tally(series, bad, start, end)
	if n == 0 {
		return -1
	}
	return float64(on) / float64(n)
}

// recovery is the time from the incident's end to the first step from
// which a window (Hold, HoldViews), and the rest of the run, give the bad
// CDN at least RecoverShare of the share it had over Before the incident;
// "n/a" when it had none (under 1%) or the incident lasts to the end of
// the run.
func recovery(series [][]int, bad, start, end, hold, before int, step time.Duration) Timing {
	n, on := tally(series, bad, max(0, start-before), start)
	if n == 0 || float64(on) < 0.01*float64(n) || end >= len(series) {
		return notApplicable
	}
	target := RecoverShare * float64(on) / float64(n)
	for i := end; i < len(series); i++ {
		wn, won, ok := window(series, bad, i, hold)
		if !ok {
			break
		}
		if !atLeast(won, wn, target) {
			continue
		}
		if rn, ron := tally(series, bad, i, len(series)); atLeast(ron, rn, target) {
			return Timing{D: time.Duration(i-end) * step, OK: true}
		}
	}
	return Timing{Why: "never"}
}

// Change is one change of the majority CDN between consecutive flip
// windows: the window's first step, the CDNs (indexes into Result.CDNs),
// and the window's new views per CDN.
type Change struct {
	Step     int
	From, To int
	Counts   []int
}

// changes lists the changes of the majority CDN between consecutive
// windows of w steps. A window without views keeps the majority; on a tie
// the majority stays if it is among the tied, else the first tied CDN wins.
func changes(series [][]int, w int) []Change {
	if len(series) == 0 {
		return nil
	}
	var out []Change
	cur := -1
	for i := 0; i < len(series); i += w {
		counts := make([]int, len(series[0]))
		for j := i; j < min(i+w, len(series)); j++ {
			for c, x := range series[j] {
				counts[c] += x
			}
		}
		best := slices.Max(counts)
		if best == 0 {
			continue
		}
		if cur >= 0 && counts[cur] == best {
			continue
		}
		next := slices.Index(counts, best)
		if cur >= 0 {
			out = append(out, Change{Step: i, From: cur, To: next, Counts: counts})
		}
		cur = next
	}
	return out
}

// flips counts changes of the majority CDN between consecutive windows of
// w steps (see changes).
func flips(series [][]int, w int) int { return len(changes(series, w)) }

// Tally is what a cell's majority is taken over: the views' decisions or
// their picks.
type Tally int

const (
	Leads Tally = iota // the CDN each view's decision led with
	Picks              // the CDN each view was picked for
)

// CellChanges are the majority changes in each (service, ASN) cell of the
// scope, FlipWindow apart, with the cell's new views: what the flip count
// is taken from, one by one (a tuning aid).
func CellChanges(r *Result, t Tally) (cells [][]Change, views []int) {
	return cellChanges(r, t, stepsOf(FlipWindow, r.Step))
}

// cellChanges is CellChanges over windows of w steps. Steps without
// Leads (made by hand, as in tests) tally picks.
func cellChanges(r *Result, t Tally, w int) (cells [][]Change, views []int) {
	n := len(r.CDNs)
	if len(r.Steps) == 0 || len(r.Steps[0].Cells) == 0 {
		return nil, nil
	}
	series := make([][]int, len(r.Steps))
	for c := range len(r.Steps[0].Cells) / n {
		v := 0
		for i, st := range r.Steps {
			counts := st.Cells
			if t == Leads && st.Leads != nil {
				counts = st.Leads
			}
			series[i] = counts[c*n : (c+1)*n]
			v += sum(series[i])
		}
		cells, views = append(cells, changes(series, w)), append(views, v)
	}
	return cells, views
}

// cellFlips is the view-weighted mean of the flips of each (service, ASN)
// cell of the scope, over windows of w steps.
func cellFlips(r *Result, t Tally, w int) float64 {
	cells, views := cellChanges(r, t, w)
	var total, weighted float64
	for c, ch := range cells {
		total += float64(views[c])
		weighted += float64(views[c]) * float64(len(ch))
	}
	if total == 0 {
		return 0
	}
	return weighted / total
}

// maxShareMove is the largest change of a CDN's share of new views between
// consecutive windows of w steps that have views.
func maxShareMove(series [][]int, w int) float64 {
	var prev []float64
	var most float64
	for i := 0; i < len(series); i += w {
		counts := make([]float64, len(series[i]))
		var n float64
		for j := i; j < min(i+w, len(series)); j++ {
			for c, x := range series[j] {
				counts[c] += float64(x)
				n += float64(x)
			}
		}
		if n == 0 {
			continue
		}
		for c := range counts {
			counts[c] /= n
			if prev != nil {
				most = max(most, math.Abs(counts[c]-prev[c]))
			}
		}
		prev = counts
	}
	return most
}

// Table compares the runs of several policies over one scenario.
type Table struct {
	Scenario string
	Scope    string
	Incident *Incident
	Rows     []Row
}

// Row is one policy's figures. Loss is the oracle's mean QoE minus this
// policy's (HasLoss is false when there is no run named "oracle").
type Row struct {
	Policy        string
	Views         int
	QoE, TotalQoE float64
	Loss          float64
	HasLoss       bool
	Failover      Timing
	Hurt          float64
	FlipsPer10Min float64
	// PickFlipsPer10Min: the flips of the CDN the views were picked for.
	PickFlipsPer10Min float64
	MaxShareMove      float64
	Recovery          Timing
}

// Compare tabulates runs keyed by policy name: "oracle" first, then by
// name. A run named "oracle" gives every row its loss.
func Compare(results map[string]*Result) Table {
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "oracle":
			return -1
		case b == "oracle":
			return 1
		}
		return strings.Compare(a, b)
	})
	var t Table
	oracle := results["oracle"]
	for _, n := range names {
		r := results[n]
		if t.Scenario == "" {
			t.Scenario, t.Scope, t.Incident = r.Scenario, r.Scope, r.Incident
		}
		s := r.Summary
		row := Row{Policy: n, Views: s.Views, QoE: s.QoE, TotalQoE: s.TotalQoE, Failover: s.Failover, Hurt: s.Hurt,
			FlipsPer10Min: s.FlipsPer10Min, PickFlipsPer10Min: s.PickFlipsPer10Min, MaxShareMove: s.MaxShareMove, Recovery: s.Recovery}
		if oracle != nil {
			row.Loss, row.HasLoss = oracle.Summary.QoE-s.QoE, true
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// Markdown renders the table with a heading line naming the scenario,
// the scope and the incident.
func (t Table) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\nScope: %s.", t.Scenario, t.Scope)
	if inc := t.Incident; inc != nil {
		fmt.Fprintf(&b, " Incident: %s on %s, %v to %v.", inc.Name, inc.CDN, inc.Start, inc.End)
		if inc.Full > inc.Start || inc.Over > inc.End {
			fmt.Fprintf(&b, " The change is in full effect from %v and undone by %v: failover is timed from the first, recovery from the second.", inc.Full, inc.Over)
		}
	}
	b.WriteString("\n\n| policy | views | mean QoE | QoE delivered | loss vs oracle | failover | hurt | decision flips / 10 min (pick flips) | max share moved / min | recovery |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range t.Rows {
		loss, hurt := "n/a", "n/a"
		if r.HasLoss {
			loss = fmt.Sprintf("%.2f", r.Loss)
		}
		if r.Hurt >= 0 {
			hurt = fmt.Sprintf("%.1f%%", 100*r.Hurt)
		}
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.0f | %s | %s | %s | %.1f (%.1f) | %.0f%% | %s |\n", r.Policy, r.Views, r.QoE,
			r.TotalQoE, loss, r.Failover, hurt, r.FlipsPer10Min, r.PickFlipsPer10Min, 100*r.MaxShareMove, r.Recovery)
	}
	return b.String()
}

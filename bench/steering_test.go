package bench

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/sim"
	"github.com/cdnpilot/cdnpilot/internal/simloop"
	"github.com/cdnpilot/cdnpilot/steering"
)

var (
	steeringOut   = flag.String("steering.out", "../docs/bench", "where BenchmarkSteering writes its tables and plots")
	steeringScale = flag.Float64("steering.scale", 10, "arrival-rate multiplier of the scenarios")
	steeringOnly  = flag.String("steering.only", "", "run only these scenarios (comma-separated); the report then goes to steering-only.md")
	steeringRuns  = flag.Int("steering.runs", 3, "closed-loop runs of the engine per scenario: the goals table shows each metric's median run, and every run's loss ratio and decision flips (pick flips)")
	steeringTrace = flag.String("steering.trace", "", "log every change of health, reason or leader of the engine's ranking of this scope (service/region[/ASnnn]), and its weights every 10 s; service/region/* (region may be *): which ranking answers each ASN, and its top CDN")
	steeringStats = flag.Bool("steering.trace.stats", false, "with -steering.trace, add each CDN's window figures, views and beacons to the 10-s weights lines")
	steeringCells = flag.Bool("steering.cells", false, "log, for every run, each (service, ASN) cell's changes of majority CDN between 10-s windows, with the window's views per CDN: of the CDN the views' decisions led with (the flips the goal counts, one by one), then of the CDN they were picked for")
	steeringFirst = flag.Int("steering.first", 0, "draw of the first run: run k uses draw first+k, so one misbehaving run (first = its number - 1, runs = 1) can be traced alone")
)

// BenchmarkSteering is make bench-steering: every shipped scenario through
// the closed loop (players -> HTTP ingest -> Kafka -> scorer -> rankings
// topic -> a node's Table -> players) in virtual time, against the oracle,
// round-robin, best-single and static policies on the same viewers. It
// writes one PNG per scenario and a Markdown report with the goals
// checked, and reports the worst figures as metrics.
func BenchmarkSteering(b *testing.B) {
	if err := os.MkdirAll(*steeringOut, 0o755); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var report strings.Builder
		fmt.Fprintf(&report, "<!-- written by make bench-steering (bench/steering_test.go), scale %g, %s -->\n\n", *steeringScale, time.Now().UTC().Format(time.DateOnly))
		var verdicts []string
		worstFailover, worstLossRatio, worstFlips, worstRecovery := 0.0, 0.0, 0.0, 0.0
		only := map[string]bool{}
		for _, n := range strings.Split(*steeringOnly, ",") {
			if n = strings.TrimSpace(n); n != "" {
				if !slices.Contains(sim.Names(), n) {
					b.Fatalf("-steering.only: no scenario %q (have %s)", n, strings.Join(sim.Names(), ", "))
				}
				only[n] = true
			}
		}
		for _, name := range sim.Names() {
			if name == "steady" || len(only) > 0 && !only[name] {
				continue
			}
			sc, err := sim.Load(name)
			if err != nil {
				b.Fatal(err)
			}
			sc = sc.Scaled(*steeringScale)
			t0 := time.Now()
			all, err := sim.RunBaselines(b.Context(), sc, sim.RunOptions{Start: steeringEpoch, CostMargin: steering.DefaultPolicy().Cost.Margin})
			if err != nil {
				b.Fatal(err)
			}
			var runs []*sim.Result
			var vs []verdict
			for k := range max(1, *steeringRuns) {
				res := runEngine(b, b.Context(), sc, steeringEpoch.AddDate(0, 0, k+1+*steeringFirst))
				all["engine"] = res
				v := judge(name, res, all)
				b.Logf("%s: run %d: %s; loss by phase: %s", name, k+1+*steeringFirst, v.line, phaseLoss(res, all["oracle"]))
				if *steeringCells {
					b.Logf("%s: run %d: majority changes per cell, of decisions:\n%s", name, k+1+*steeringFirst, cellFlips(res, sim.Leads))
					b.Logf("%s: run %d: majority changes per cell, of picks:\n%s", name, k+1+*steeringFirst, cellFlips(res, sim.Picks))
				}
				runs, vs = append(runs, res), append(vs, v)
			}
			v, mid := medianRun(vs)
			res := runs[mid]
			all["engine"] = res
			table := sim.Compare(all)
			report.WriteString(table.Markdown())
			png := filepath.Join(*steeringOut, "steering-"+name+".png")
			if err := sim.PlotShares(res, png); err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(&report, "\n![%s](%s)\n\n", name, filepath.Base(png))
			verdicts = append(verdicts, v.line)
			worstFailover = max(worstFailover, v.failover)
			worstLossRatio = max(worstLossRatio, v.lossRatio)
			worstFlips = max(worstFlips, v.flips)
			worstRecovery = max(worstRecovery, v.recovery)
			b.Logf("%s: median of %d: %s (%v wall)", name, len(runs), v.line, time.Since(t0).Round(time.Second))
		}
		out := fmt.Sprintf("## Goals\n\nEach figure is the median of %d closed-loop runs of the engine (the last column lists every run's loss ratio and decision flips); flips count changes of the CDN most of a cell's new views' decisions led with, and in brackets of the CDN most were picked for, which exploration picks also flip; the tables and plots below are of the run with the median loss.\n\n", max(1, *steeringRuns)) +
			"| scenario | failover ≤ 10 s | loss ≤ 20% of round-robin's | decision flips ≤ 2 / 10 min (pick flips) | recovery ≤ 5 min | runs: loss ratio, decision flips (pick flips) |\n| --- | --- | --- | --- | --- | --- |\n" +
			strings.Join(verdicts, "\n") + "\n\n## Scenarios\n\n" + report.String()
		file := "steering.md"
		if len(only) > 0 {
			file = "steering-only.md" // a partial run does not replace the whole report
		}
		if err := os.WriteFile(filepath.Join(*steeringOut, file), []byte(out), 0o644); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(worstFailover, "worst_failover_s")
		b.ReportMetric(worstLossRatio, "worst_loss/rr_loss")
		b.ReportMetric(worstFlips, "worst_flips/10min")
		b.ReportMetric(worstRecovery, "worst_recovery_s")
	}
}

// steeringEpoch is the virtual start of the baselines; engine run k
// starts k days later. A start is part of every view id, which the
// engine hashes to pick a view's CDN among the weights, so a start drawn
// from the wall clock gave every run, and every invocation, another
// draw of which views went where: the same build's runs of a scenario
// differed by up to 16 points of loss ratio, and no two invocations
// could be compared. Fixed starts make each run repeatable (up to the
// order in which the scorer reads a step's beacons, which Kafka's
// partitions interleave), while the runs of one invocation still differ
// by their draws. January: no run crosses a month (the cost commits'
// accounting period).
var steeringEpoch = time.Date(2026, time.January, 5, 0, 0, 0, 0, time.UTC)

// runEngine runs a scenario once through the closed loop from start.
func runEngine(b *testing.B, ctx context.Context, sc *sim.Scenario, start time.Time) *sim.Result {
	b.Helper()
	health, err := sc.Health()
	if err != nil {
		b.Fatal(err)
	}
	l, err := simloop.Start(ctx, simloop.Options{Catalog: sc.Catalog(), Policy: steering.DefaultPolicy(), Start: start,
		Health: func(cdn string, at time.Time) bool { return health(cdn, at.Sub(start)) }})
	if err != nil {
		b.Fatal(err)
	}
	var loop sim.Loop = l
	if *steeringTrace != "" {
		loop = &tracer{Loop: l, b: b, scope: *steeringTrace, start: start}
	}
	res, err := sim.Run(ctx, sc, loop, sim.RunOptions{Start: start, Policy: "engine"})
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// medianRun is the verdict made of each metric's median run (the upper
// median for an even count), and the index of the run with the median
// loss ratio.
func medianRun(vs []verdict) (verdict, int) {
	mid := func(val func(verdict) float64) int {
		idx := make([]int, len(vs))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(val(vs[a]), val(vs[b])) })
		return idx[len(idx)/2]
	}
	f := mid(func(v verdict) float64 { return v.failover })
	l := mid(func(v verdict) float64 { return v.lossRatio })
	fl := mid(func(v verdict) float64 { return v.flips })
	r := mid(func(v verdict) float64 { return v.recovery })
	out := verdict{failover: vs[f].failover, lossRatio: vs[l].lossRatio, flips: vs[fl].flips, recovery: vs[r].recovery,
		cells: [4]string{vs[f].cells[0], vs[l].cells[1], vs[fl].cells[2], vs[r].cells[3]}}
	var each []string
	for _, v := range vs {
		each = append(each, fmt.Sprintf("%.0f%%, %.2f (%.1f)", 100*min(v.lossRatio, 9.99), v.flips, v.pickFlips))
	}
	out.line = fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", vs[0].name, out.cells[0], out.cells[1], out.cells[2], out.cells[3], strings.Join(each, "; "))
	return out, l
}

// lossResolution is the smallest loss against the oracle (QoE points per
// view) the benchmark tells apart from none: the same build's losses
// differ by about that much from run to run.
const lossResolution = 0.1

type verdict struct {
	name, line                           string
	cells                                [4]string // failover, loss, flips, recovery
	failover, lossRatio, flips, recovery float64
	pickFlips                            float64
}

// judge checks one scenario against the goals. A goal that does
// not apply to a scenario (no incident, no recovery) reads "n/a".
func judge(name string, res *sim.Result, all map[string]*sim.Result) verdict {
	s := res.Summary
	v := verdict{}
	cell := func(ok bool, fig string) string {
		if ok {
			return "✅ " + fig
		}
		return "❌ " + fig
	}
	failover := "n/a"
	if inc := sc(res); inc {
		if s.Failover.OK {
			v.failover = s.Failover.D.Seconds()
		} else {
			v.failover = 1e9
		}
		failover = cell(s.Failover.OK && s.Failover.D <= 10*time.Second, s.Failover.String())
	}
	oracle, rr := all["oracle"].Summary.QoE, all["round-robin"].Summary.QoE
	loss, rrLoss := oracle-s.QoE, oracle-rr
	ratio := loss / rrLoss
	lossCell := cell(ratio <= 0.2, fmt.Sprintf("%.2f of %.2f (%.0f%%)", loss, rrLoss, 100*ratio))
	if rrLoss < lossResolution {
		// Round-robin did as well as the oracle (capacity: the greedy
		// oracle and round-robin's even spread come out level): a ratio
		// to a loss that small is noise. The goal is then to lose no
		// more than the benchmark can resolve either.
		ratio = 0
		if loss > lossResolution {
			ratio = 1e9
		}
		lossCell = cell(loss <= lossResolution, fmt.Sprintf("%.2f; round-robin %.2f", loss, rrLoss))
	}
	v.lossRatio = ratio
	v.flips, v.pickFlips = s.FlipsPer10Min, s.PickFlipsPer10Min
	// Two decimals: the goal is a line a median can sit on.
	fig := fmt.Sprintf("%.2f (%.1f)", s.FlipsPer10Min, s.PickFlipsPer10Min)
	flips := cell(s.FlipsPer10Min <= 2, fig)
	if name != "flapping" && name != "within-noise" {
		flips = fig
	}
	recovery := "n/a"
	if s.Recovery.OK || s.Recovery.Why == "never" {
		if s.Recovery.OK {
			v.recovery = s.Recovery.D.Seconds()
		} else {
			v.recovery = 1e9
		}
		recovery = cell(s.Recovery.OK && s.Recovery.D <= 5*time.Minute, s.Recovery.String())
	}
	v.name, v.cells = name, [4]string{failover, lossCell, flips, recovery}
	v.line = fmt.Sprintf("| %s | %s | %s | %s | %s |", name, failover, lossCell, flips, recovery)
	return v
}

func sc(r *sim.Result) bool { return r.Summary.Failover.OK || r.Summary.Failover.Why == "never" }

// phaseLoss splits the engine's QoE loss against the oracle (mean per view
// of the whole run, as in the table) into before, during and after the
// incident, and says how much of each came from the metrics scope, so a
// tuning run shows where the loss comes from.
func phaseLoss(res, oracle *sim.Result) string {
	if oracle == nil || len(res.Steps) != len(oracle.Steps) {
		return "n/a"
	}
	names := []string{"before", "during", "after"}
	var loss, inScope [3]float64
	views := 0
	sum := func(xs []int) (n int) {
		for _, x := range xs {
			n += x
		}
		return n
	}
	for i, st := range res.Steps {
		o := oracle.Steps[i]
		n, no := sum(st.New), sum(o.New)
		views += n
		p := 1 // without an incident, all of it is "during"
		if inc := res.Incident; inc != nil {
			switch {
			case st.At < inc.Start:
				p = 0
			case st.At >= inc.Over:
				p = 2
			}
		}
		if st.QoE >= 0 && o.QoE >= 0 {
			loss[p] += o.QoE*float64(no) - st.QoE*float64(n)
		}
		if st.ScopeQoE >= 0 && o.ScopeQoE >= 0 {
			inScope[p] += o.ScopeQoE*float64(sum(o.Scope)) - st.ScopeQoE*float64(sum(st.Scope))
		}
	}
	if views == 0 {
		return "n/a"
	}
	var parts []string
	for i, l := range loss {
		parts = append(parts, fmt.Sprintf("%s %.2f (scope %.2f)", names[i], l/float64(views), inScope[i]/float64(views)))
	}
	return strings.Join(parts, ", ")
}

// tracer logs how the engine's ranking of one scope changes as the run
// goes: a tuning aid (-steering.trace), not part of the report.
type tracer struct {
	*simloop.Loop
	b     *testing.B
	scope string
	start time.Time
	last  map[string]string
}

func (t *tracer) Advance(ctx context.Context, now time.Time) error {
	if err := t.Loop.Advance(ctx, now); err != nil {
		return err
	}
	parts := strings.Split(t.scope, "/")
	snap := t.Table().Snapshot(parts[0])
	if snap == nil {
		return nil
	}
	if len(parts) == 3 && parts[2] == "*" {
		return t.cells(snap, parts[1], now.Sub(t.start))
	}
	sc := steering.Scope{Service: parts[0]}
	if len(parts) > 1 {
		sc.Level, sc.Region = steering.LevelRegion, parts[1]
	}
	if len(parts) > 2 {
		var asn uint32
		if _, err := fmt.Sscanf(parts[2], "AS%d", &asn); err != nil {
			return fmt.Errorf("-steering.trace %q: %w", t.scope, err)
		}
		sc.Level, sc.ASN = steering.LevelASN, asn
	}
	r := snap.Ranking(sc)
	if r == nil {
		return nil
	}
	at := now.Sub(t.start)
	if t.last == nil {
		t.last = map[string]string{}
	}
	var weights []string
	for _, c := range r.Choices {
		st := fmt.Sprintf("%s leader=%v %s", c.Health, c.Leader, c.Reason)
		if t.last[c.CDN] != st {
			t.b.Logf("trace %v %s: %s (score %.1f fast %.1f)", at, c.CDN, st, c.Score, c.FastScore)
			t.last[c.CDN] = st
		}
		weights = append(weights, fmt.Sprintf("%s %.2f s%.1f@%s f%.1f", c.CDN, c.Weight, c.Score, c.ScoreScope, c.FastScore))
		if *steeringStats && c.Stats != nil {
			weights = append(weights, fmt.Sprintf("[v=%.1f n=%.0f %+v]", c.Views, c.Samples, *c.Stats))
		}
	}
	if at%(10*time.Second) == 0 {
		t.b.Logf("trace %v %s %v: %s", at, r.Rule, r.Fired.Names(), strings.Join(weights, ", "))
	}
	return nil
}

// cells logs, for every ASN of a region that the service's snapshot knows,
// which scope answers it and the CDN with the most weight there, when
// either changes.
func (t *tracer) cells(snap *steering.Snapshot, region string, at time.Duration) error {
	if t.last == nil {
		t.last = map[string]string{}
	}
	regions := map[string]bool{}
	for _, r := range snap.Rankings {
		if r.Scope.Level != steering.LevelASN || region != "*" && r.Scope.Region != region {
			continue
		}
		regions[r.Scope.Region] = true
		t.cell(snap, steering.Location{Region: r.Scope.Region, ASN: r.Scope.ASN}, at)
	}
	for reg := range regions {
		t.cell(snap, steering.Location{Region: reg, ASN: 1}, at) // an ASN without a ranking of its own
	}
	return nil
}

func (t *tracer) cell(snap *steering.Snapshot, loc steering.Location, at time.Duration) {
	r := snap.Lookup(loc)
	if r == nil || len(r.Choices) == 0 {
		return
	}
	top := r.Choices[0]
	st := fmt.Sprintf("answered by %s: %s %.2f (score %.1f, conf %.2f, from %s)", r.Scope, top.CDN, top.Weight, top.Score, top.Confidence, top.ScoreScope)
	key := fmt.Sprintf("%s/AS%d", loc.Region, loc.ASN)
	if prev := t.last[key]; prev == "" || !strings.HasPrefix(prev, fmt.Sprintf("answered by %s: %s", r.Scope, top.CDN)) {
		t.b.Logf("cell %v %s: %s", at, key, st)
	}
	t.last[key] = st
}

// cellFlips lists every change of majority CDN between consecutive 10-s
// windows in each (service, ASN) cell of the metrics scope, as sim's flip
// count takes them: when, from and to, and the window's new views per CDN.
func cellFlips(res *sim.Result, t sim.Tally) string {
	cells, views := sim.CellChanges(res, t)
	var b strings.Builder
	for c, ch := range cells {
		if views[c] == 0 {
			continue
		}
		var each []string
		for _, x := range ch {
			each = append(each, fmt.Sprintf("%v %s->%s %v", time.Duration(x.Step)*res.Step, res.CDNs[x.From], res.CDNs[x.To], x.Counts))
		}
		fmt.Fprintf(&b, "  cell %d: %d views, %d changes: %s\n", c, views[c], len(ch), strings.Join(each, ", "))
	}
	return b.String()
}

package bench

import (
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
			res, all := runScenario(b, b.Context(), sc)
			table := sim.Compare(all)
			report.WriteString(table.Markdown())
			png := filepath.Join(*steeringOut, "steering-"+name+".png")
			if err := sim.PlotShares(res, png); err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(&report, "\n![%s](%s)\n\n", name, filepath.Base(png))
			v := judge(name, res, all)
			verdicts = append(verdicts, v.line)
			worstFailover = max(worstFailover, v.failover)
			worstLossRatio = max(worstLossRatio, v.lossRatio)
			worstFlips = max(worstFlips, v.flips)
			worstRecovery = max(worstRecovery, v.recovery)
			b.Logf("%s: %s (%v wall)", name, v.line, time.Since(t0).Round(time.Second))
			b.Logf("%s: engine's loss vs oracle by phase: %s", name, phaseLoss(res, all["oracle"]))
		}
		out := "## Goals\n\n| scenario | failover ≤ 10 s | loss ≤ 20% of round-robin's | flips ≤ 2 / 10 min | recovery ≤ 5 min |\n| --- | --- | --- | --- | --- |\n" +
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

func runScenario(b *testing.B, ctx context.Context, sc *sim.Scenario) (*sim.Result, map[string]*sim.Result) {
	b.Helper()
	start := time.Now().Truncate(time.Second)
	l, err := simloop.Start(ctx, simloop.Options{Catalog: sc.Catalog(), Policy: steering.DefaultPolicy(), Start: start})
	if err != nil {
		b.Fatal(err)
	}
	res, err := sim.Run(ctx, sc, l, sim.RunOptions{Start: start, Policy: "engine"})
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	all, err := sim.RunBaselines(ctx, sc, sim.RunOptions{Start: start})
	if err != nil {
		b.Fatal(err)
	}
	all["engine"] = res
	return res, all
}

type verdict struct {
	line                                 string
	failover, lossRatio, flips, recovery float64
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
	if rrLoss <= 0 {
		// Round-robin did as well as the oracle: the goal is then to lose
		// nothing either.
		ratio = 0
		if loss > 0 {
			ratio = 1e9
		}
		lossCell = cell(loss <= 0, fmt.Sprintf("%.2f; round-robin %.2f", loss, rrLoss))
	}
	v.lossRatio = ratio
	v.flips = s.FlipsPer10Min
	flips := cell(s.FlipsPer10Min <= 2, fmt.Sprintf("%.1f", s.FlipsPer10Min))
	if name != "flapping" && name != "within-noise" {
		flips = fmt.Sprintf("%.1f", s.FlipsPer10Min)
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
	v.line = fmt.Sprintf("| %s | %s | %s | %s | %s |", name, failover, lossCell, flips, recovery)
	return v
}

func sc(r *sim.Result) bool { return r.Summary.Failover.OK || r.Summary.Failover.Why == "never" }

// phaseLoss splits the engine's QoE loss against the oracle (mean per view
// of the whole run, as in the table) into before, during and after the
// incident, so a tuning run shows where the loss comes from.
func phaseLoss(res, oracle *sim.Result) string {
	if oracle == nil || len(res.Steps) != len(oracle.Steps) {
		return "n/a"
	}
	names := []string{"before", "during", "after"}
	var loss [3]float64
	views := 0
	for i, st := range res.Steps {
		n, no := 0, 0
		for _, v := range st.New {
			n += v
		}
		for _, v := range oracle.Steps[i].New {
			no += v
		}
		views += n
		if st.QoE < 0 || oracle.Steps[i].QoE < 0 {
			continue
		}
		p := 1 // without an incident, all of it is "during"
		if inc := res.Incident; inc != nil {
			switch {
			case st.At < inc.Start:
				p = 0
			case st.At >= inc.Over:
				p = 2
			}
		}
		loss[p] += oracle.Steps[i].QoE*float64(no) - st.QoE*float64(n)
	}
	if views == 0 {
		return "n/a"
	}
	var parts []string
	for i, l := range loss {
		parts = append(parts, fmt.Sprintf("%s %.2f", names[i], l/float64(views)))
	}
	return strings.Join(parts, ", ")
}

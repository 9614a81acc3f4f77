package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/sim"
	"github.com/cdnpilot/cdnpilot/internal/simloop"
	"github.com/cdnpilot/cdnpilot/steering"
)

// runSimulate plays a scenario in virtual time through the real steering
// path (ingest, Kafka, the scorer, a node's table) and, with --baselines,
// through the oracle, round-robin, best-single and static policies, then
// prints the comparison. With --steer-path other than engine, the loop
// also runs the steering DNS, redirector and content steering server over
// the node's table on loopback (simulate runs no serving process of its
// own to ask), and the players ask them over the network.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	scenario := fs.String("scenario", "", "scenario name (see --list) or YAML file")
	steerPath := fs.String("steer-path", "engine", "how the simulated players ask for a CDN: engine (the node's table, in process), "+
		"dns (a query with EDNS Client Subnet), http (the 302 redirector), hls or dash (a content steering request), "+
		"mixed (each view one of dns, http, hls and dash); the network paths go to the loop's own servers on loopback")
	scale := fs.Float64("scale", 10, "multiply the scenario's arrival rates (and capacities) by this")
	baselines := fs.Bool("baselines", true, "also run the oracle, round-robin, best-single and static policies")
	plot := fs.String("plot", "", "write the engine's share-per-CDN chart to this PNG file")
	list := fs.Bool("list", false, "list the shipped scenarios and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *list {
		for _, n := range sim.Names() {
			fmt.Fprintln(stdout, n)
		}
		return nil
	}
	if *scenario == "" {
		return fmt.Errorf("simulate: --scenario is required (one of %s, or a YAML file)", strings.Join(sim.Names(), ", "))
	}
	path, err := simloop.ParsePath(*steerPath)
	if err != nil {
		return fmt.Errorf("simulate: --steer-path %w", err)
	}
	if !(*scale > 0 && *scale <= 100) {
		return fmt.Errorf("simulate: --scale %v is outside (0, 100]", *scale)
	}
	sc, err := loadScenario(*scenario)
	if err != nil {
		return err
	}
	if sc.Duration.D() == 0 {
		return fmt.Errorf("simulate: scenario %q runs forever (it is the demo's); pick one with a duration", *scenario)
	}
	sc = sc.Scaled(*scale)
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, cf.logJSON)
	res, stats, err := simulateEngine(ctx, sc, cfg.Policy(), path, log)
	if err != nil {
		return err
	}
	name := "engine"
	if path != simloop.PathEngine {
		name = "engine via " + string(path)
	}
	results := map[string]*sim.Result{name: res}
	if *baselines {
		all, err := sim.RunBaselines(ctx, sc, sim.RunOptions{Start: res.Start, Logger: log, CostMargin: cfg.Policy().Cost.Margin})
		if err != nil {
			return fmt.Errorf("simulate: baselines: %w", err)
		}
		for k, v := range all {
			results[k] = v
		}
	}
	fmt.Fprint(stdout, sim.Compare(results).Markdown())
	if path != simloop.PathEngine {
		fmt.Fprint(stdout, steerStats(path, stats))
	}
	if *plot != "" {
		if err := sim.PlotShares(res, *plot); err != nil {
			return fmt.Errorf("simulate: plot: %w", err)
		}
		fmt.Fprintf(stdout, "\nshares plotted to %s\n", *plot)
	}
	return nil
}

func loadScenario(name string) (*sim.Scenario, error) {
	if slices.Contains(sim.Names(), name) {
		return sim.Load(name)
	}
	data, err := os.ReadFile(filepath.Clean(name))
	if err != nil {
		return nil, fmt.Errorf("simulate: %q is neither a shipped scenario (%s) nor a readable file: %w", name, strings.Join(sim.Names(), ", "), err)
	}
	sc, err := sim.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("simulate: %s: %w", name, err)
	}
	return sc, nil
}

// simulateEngine runs a scenario through the closed loop with a policy,
// its views steered through path.
func simulateEngine(ctx context.Context, sc *sim.Scenario, pol steering.Policy, path simloop.Path, log *slog.Logger) (*sim.Result, map[simloop.Path]simloop.PathStats, error) {
	start := time.Now().Truncate(time.Second)
	health, err := sc.Health()
	if err != nil {
		return nil, nil, fmt.Errorf("simulate: %w", err)
	}
	l, err := simloop.Start(ctx, simloop.Options{Catalog: sc.Catalog(), Policy: pol, Start: start, SteerPath: path, Logger: log,
		Health: func(cdn string, at time.Time) bool { return health(cdn, at.Sub(start)) }})
	if err != nil {
		return nil, nil, fmt.Errorf("simulate: %w", err)
	}
	res, err := sim.Run(ctx, sc, l, sim.RunOptions{Start: start, Policy: "engine"})
	stats := l.Stats()
	if cerr := l.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("simulate: %w", err)
	}
	return res, stats, nil
}

// steerStats says how many views each actuator steered, and how many of
// its requests failed (those views took the engine's answer).
func steerStats(path simloop.Path, stats map[simloop.Path]simloop.PathStats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nSteering path %s (the loop's steering DNS, redirector and content steering on loopback):\n\n", path)
	b.WriteString("| path | requests | failed (engine's answer used) |\n| --- | ---: | ---: |\n")
	for _, p := range simloop.Paths {
		if s, ok := stats[p]; ok {
			fmt.Fprintf(&b, "| %s | %d | %d |\n", p, s.Requests, s.Failures)
		}
	}
	return b.String()
}

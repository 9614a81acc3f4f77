// Command cdnpilot is every role of the multi-CDN steering control plane in
// one binary: run `cdnpilot demo` for all of them in one process on the
// embedded defaults, or one role per process in production.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"syscall"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"demo":         {"run every role in one process on the embedded defaults, with synthetic players", runDemo},
		"ingest":       {"serve the beacon and CMCD ingest endpoints, publishing to Kafka", runIngest},
		"score":        {"rank CDNs from the beacon topic and publish ranking snapshots every second", runScore},
		"steer":        {"serve the steering DNS (and the rankings API) from the ranking snapshots on Kafka", runSteer},
		"simulate":     {"play a scenario through the real steering path in virtual time and compare with baselines", runSimulate},
		"consume":      {"move beacons from Kafka into the analytics store", runConsume},
		"migrate":      {"create or upgrade the ClickHouse schema, then exit", runMigrate},
		"manifest":     {"add content steering (HLS/DASH) and per-CDN pathways to a plain manifest", runManifest},
		"admin":        {"serve the admin API (overrides, audit, explain, replay) and the web UI over Kafka and ClickHouse", runAdmin},
		"devbroker":    {"serve a single in-process Kafka-protocol broker on loopback, to run the roles apart without Kafka", runDevbroker},
		"ctl":          {"call the admin API: overrides list|add|extend|rm, explain, rankings, cdns, audit, whoami", runCtl},
		"check-config": {"validate a configuration file, then exit", runCheckConfig},
		"version":      {"print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// CDNPILOT_CPU_PROFILE=FILE writes a CPU profile of the whole run, for
	// finding where a role spends its time under real load.
	if path := os.Getenv("CDNPILOT_CPU_PROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			if err := pprof.StartCPUProfile(f); err == nil {
				defer func() {
					pprof.StopCPUProfile()
					_ = f.Close()
				}()
			}
		}
	}
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "cdnpilot:", err)
		}
		pprof.StopCPUProfile()
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		usage(stderr, cmds)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: cdnpilot <command> [flags]\n\ncommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\n`cdnpilot <command> -h` lists the command's flags.")
}

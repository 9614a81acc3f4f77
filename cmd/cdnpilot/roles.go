package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/config"
)

// loadRole parses a role's common flags (and --dns-addr for a role that
// serves DNS) and loads its config.
func loadRole(name string, args []string, stderr io.Writer, dns bool) (config.Config, commonFlags, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	if dns {
		cf.registerDNS(fs)
	}
	if err := parseFlags(fs, args); err != nil {
		return config.Config{}, cf, err
	}
	cfg, err := cf.load()
	return cfg, cf, err
}

func runRole(ctx context.Context, name string, roles app.Roles, args []string, stdout, stderr io.Writer) error {
	cfg, cf, err := loadRole(name, args, stderr, roles.Steer)
	if err != nil {
		return err
	}
	if cfg.Kafka.Embedded() {
		// A private in-process broker per role would hold data no other
		// process can read, lost at exit: only `demo` gets one.
		return fmt.Errorf("%s: no Kafka brokers: set --kafka, CDNPILOT_KAFKA_BROKERS or kafka.brokers (the in-process broker is for `cdnpilot demo` only)", name)
	}
	if (roles.Consume || roles.Admin) && cfg.ClickHouse.Addr == "" {
		return fmt.Errorf("%s: no ClickHouse address: set --clickhouse, CDNPILOT_CLICKHOUSE_ADDR or clickhouse.addr (the in-memory store is for `cdnpilot demo` only)", name)
	}
	log := newLogger(stderr, cfg.LogLevel, cf.logJSON).With("role", name)
	a, err := app.New(ctx, cfg, roles, log)
	if err != nil {
		return err
	}
	attrs := []any{"http", a.HTTPAddr(), "kafka", a.Brokers()}
	if a.DNSAddr() != "" {
		attrs = append(attrs, "dns", a.DNSAddr())
	}
	log.Info("serving", attrs...)
	return a.Run(ctx)
}

func runIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runRole(ctx, "ingest", app.Roles{Ingest: true}, args, stdout, stderr)
}

func runConsume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runRole(ctx, "consume", app.Roles{Consume: true}, args, stdout, stderr)
}

func runScore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runRole(ctx, "score", app.Roles{Score: true}, args, stdout, stderr)
}

// runSteer is a steering node: the table kept from the rankings topic,
// the steering DNS server on dns_addr, and the rankings API.
func runSteer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runRole(ctx, "steer", app.Roles{Steer: true}, args, stdout, stderr)
}

// runAdmin is the admin API: overrides written to the overrides topic,
// the audit trail and QoE queries in ClickHouse, rankings and explain from
// the rankings topic.
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runRole(ctx, "admin", app.Roles{Admin: true}, args, stdout, stderr)
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, cf, err := loadRole("migrate", args, stderr, false)
	if err != nil {
		return err
	}
	if cfg.ClickHouse.Addr == "" {
		return fmt.Errorf("migrate: no ClickHouse address (use --clickhouse or CDNPILOT_CLICKHOUSE_ADDR)")
	}
	log := newLogger(stderr, cfg.LogLevel, cf.logJSON)
	ch, err := analytics.OpenClickHouse(ctx, app.ClickHouseOptions(cfg.ClickHouse), log)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer ch.Close()
	fmt.Fprintf(stdout, "schema of database %s is up to date\n", cfg.ClickHouse.Database)
	return nil
}

func runCheckConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file to check (default: the built-in example)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" && fs.NArg() == 1 {
		*path = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("check-config: unexpected argument %q", fs.Arg(fs.NArg()-1))
	}
	cfg, err := config.Load(*path, func(string) string { return "" })
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	name := *path
	if name == "" {
		name = "built-in example"
	}
	fmt.Fprintf(stdout, "%s: OK\n", name)
	return nil
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	fmt.Fprintln(stdout, "cdnpilot", v)
	return nil
}

package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/cdnpilot/cdnpilot/internal/config"
)

// commonFlags are the flags every long-running role takes. Flags beat the
// environment, which beats the file, which beats the defaults.
type commonFlags struct {
	configPath string
	httpAddr   string
	dnsAddr    string
	kafka      string
	clickhouse string
	logLevel   string
	logJSON    bool
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.configPath, "config", "", "YAML config file (default: the built-in example)")
	fs.StringVar(&c.httpAddr, "http-addr", "", "HTTP listen address (default from config: 127.0.0.1:8080)")
	fs.StringVar(&c.kafka, "kafka", "", "comma-separated Kafka brokers (default: embedded broker)")
	fs.StringVar(&c.clickhouse, "clickhouse", "", "ClickHouse native address host:port (default: in-memory store)")
	fs.StringVar(&c.logLevel, "log-level", "", "debug, info, warn or error")
	fs.BoolVar(&c.logJSON, "log-json", false, "log JSON lines instead of text")
}

// registerDNS adds --dns-addr, for the roles that serve DNS.
func (c *commonFlags) registerDNS(fs *flag.FlagSet) {
	fs.StringVar(&c.dnsAddr, "dns-addr", "", "steering DNS listen address, UDP and TCP (default from config: 127.0.0.1:8053)")
}

func (c *commonFlags) load() (config.Config, error) {
	cfg, err := config.Load(c.configPath, os.Getenv)
	if err != nil {
		return cfg, err
	}
	if c.httpAddr != "" {
		cfg.HTTPAddr = c.httpAddr
	}
	if c.dnsAddr != "" {
		cfg.DNSAddr = c.dnsAddr
	}
	if c.kafka != "" {
		cfg.Kafka.Brokers = config.SplitList(c.kafka)
	}
	if c.clickhouse != "" {
		cfg.ClickHouse.Addr = c.clickhouse
	}
	if c.logLevel != "" {
		cfg.LogLevel = c.logLevel
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid config: %w", err)
	}
	return cfg, nil
}

func newLogger(w io.Writer, level string, asJSON bool) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	opts := &slog.HandlerOptions{Level: l}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

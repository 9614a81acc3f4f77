package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/auth"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	cf.registerDNS(fs)
	viewers := fs.Int("viewers", -1, "synthetic viewers (default from config: 300)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if *viewers >= 0 {
		cfg.Demo.Viewers = *viewers
	}
	// The synthetic players post from loopback with X-Forwarded-For set to
	// their own (documentation-range) addresses, so loopback is a trusted
	// proxy in the demo only.
	cfg.Ingest.TrustedProxies = append(cfg.Ingest.TrustedProxies, "127.0.0.1/32", "::1/128")
	// CDNPILOT_ADMIN_TOKEN is the demo's admin token; without it the demo
	// makes one up and prints it, so the API is never open.
	tokenNote := "from CDNPILOT_ADMIN_TOKEN"
	if cfg.Admin.Token == "" {
		if cfg.Admin.Token, err = auth.GenerateToken(); err != nil {
			return err
		}
		tokenNote = "generated; set CDNPILOT_ADMIN_TOKEN to choose it"
	}
	log := newLogger(stderr, cfg.LogLevel, cf.logJSON)
	a, err := app.New(ctx, cfg, app.Roles{Ingest: true, Consume: true, Score: true, Steer: true, Admin: true, Players: true}, log)
	if err != nil {
		return err
	}
	base := "http://" + a.HTTPAddr()
	store := "in-memory analytics store"
	if cfg.ClickHouse.Addr != "" {
		store = "ClickHouse at " + cfg.ClickHouse.Addr
	}
	broker := fmt.Sprintf("embedded Kafka-protocol broker at %v", a.Brokers())
	if !cfg.Kafka.Embedded() {
		broker = fmt.Sprintf("Kafka at %v", a.Brokers())
	}
	dnsLine := "off (dns_addr is empty)"
	if addr := a.DNSAddr(); addr != "" {
		host, port, _ := net.SplitHostPort(addr)
		dnsLine = fmt.Sprintf("%s (UDP+TCP)  dig @%s -p %s vod.%s", addr, host, port, strings.TrimSuffix(cfg.DNS.Zones[0], "."))
	}
	fmt.Fprintf(stdout, `cdnpilot demo is running (%d synthetic viewers, %s, %s)

  web UI           %s/  (sign in with the admin token below)
  beacon ingest    POST %s/v1/beacons
  CMCD ingest      POST|GET %s/v1/cmcd?service=vod
  admin API        %s/api/v1/  (OpenAPI: /api/v1/openapi.json; docs/API.md)
  admin token      %s  (%s)
                   cdnpilot ctl --server %s --token <admin token> overrides list
  rankings         %s/api/v1/rankings?service=vod&region=eu-west
  steering DNS     %s
  HTTP redirect    %s/r/vod/path/to/master.m3u8  (302 to the chosen CDN)
  content steering %s/steer/vod  (HLS and DASH steering manifest)
  metrics          %s/metrics
  health           %s/healthz  %s/readyz

Press Ctrl-C to stop; accepted beacons are flushed before exit.
`, cfg.Demo.Viewers, broker, store, base, base, base, base, cfg.Admin.Token, tokenNote, base, base, dnsLine, base, base, base, base, base)
	return a.Run(ctx)
}

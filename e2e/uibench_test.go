package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/steering"
)

const (
	benchCDNs    = 50
	benchRegions = 300
	benchMinutes = 15 // of history backfilled into the analytics store
)

// bigWorld is the demo's configuration with 50 CDNs and 300 regions: a
// generated coverage file (one /24 per region, ASNs spread over them).
func bigWorld(b *testing.B) config.Config {
	b.Helper()
	var cov strings.Builder
	cov.WriteString("cidr,country,region,asn\n")
	for r := range benchRegions {
		fmt.Fprintf(&cov, "10.%d.%d.0/24,%s,%s,%d\n", r/256, r%256, country(r), region(r), 65000+r%97)
	}
	path := filepath.Join(b.TempDir(), "coverage.csv")
	if err := os.WriteFile(path, []byte(cov.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	cfg.HTTPAddr, cfg.DNSAddr = "127.0.0.1:0", ""
	cfg.Geo.Coverage = path
	cfg.Ingest.RateLimit.PerClientRPS = 0
	cfg.Ingest.TrustedProxies = append(cfg.Ingest.TrustedProxies, "127.0.0.1/32")
	cfg.CDNs = cfg.CDNs[:0]
	var names []string
	for i := range benchCDNs {
		n := fmt.Sprintf("cdn-%02d", i+1)
		names = append(names, n)
		cfg.CDNs = append(cfg.CDNs, config.CDN{Name: n, Host: n + ".example.net"})
	}
	// A service steers over at most steering.MaxCDNs (32): vod ranks the
	// first 32, live the last 32. The store holds all 50 for both
	// (backfill), so the overview's share chart has 50 lines.
	cfg.Services = []config.Service{
		{Name: "vod", CDNs: names[:steering.MaxCDNs]},
		{Name: "live", CDNs: names[benchCDNs-steering.MaxCDNs:]},
	}
	cfg.Demo.Viewers = 2000
	cfg.Admin.Token = "ui-bench-token-0123456789abcdef"
	return cfg
}

func region(r int) string  { return fmt.Sprintf("region-%03d", r) }
func country(r int) string { return fmt.Sprintf("%c%c", 'A'+r/26%26, 'A'+r%26) }

// backfill writes benchMinutes of history for every (service, CDN,
// region) into the analytics store: a view start and a heartbeat a
// minute each.
func backfill(b *testing.B, store app.Store, cfg config.Config) int {
	b.Helper()
	now := time.Now()
	n := 0
	for m := benchMinutes; m >= 1; m-- {
		at := now.Add(-time.Duration(m) * time.Minute).UnixMilli()
		rows := make([]record.Beacon, 0, 2*2*benchCDNs*benchRegions)
		for _, svc := range []string{"vod", "live"} {
			for ci, c := range cfg.CDNs {
				for r := range benchRegions {
					view := fmt.Sprintf("bf-%s-%d-%d-%d", svc, m, ci, r)
					base := record.Beacon{ReceivedAt: at, TS: at, ClientIP: fmt.Sprintf("10.%d.%d.7", r/256, r%256), Country: country(r), Region: region(r),
						ASN: uint32(65000 + r%97), Source: record.SourceBeacon, ViewID: view, Service: svc, CDN: c.Name}
					start := base
					start.EventID, start.Type, start.StartupMS, start.BitrateKbps = view+"-s", record.TypeViewStart, uint32(600+ci*20+r%200), 3000
					hb := base
					hb.EventID, hb.Type, hb.PlayedMS, hb.RebufferMS = view+"-h", record.TypeHeartbeat, 30_000, uint32((ci*7+r)%400)
					hb.ThroughputKbps, hb.TTFBMS, hb.BitrateKbps = uint32(8000-ci*60), uint32(40+ci), 3000
					rows = append(rows, start, hb)
				}
			}
		}
		if err := store.Insert(b.Context(), rows); err != nil {
			b.Fatal(err)
		}
		n += len(rows)
	}
	return n
}

// BenchmarkWebUI: the UI against the demo holding 50 CDNs x 300 regions
// (15 minutes of backfilled history for every CDN and region; 2,000
// synthetic viewers posting live; each service ranks 32 of the CDNs, the
// most a service may have): first contentful paint, and the longest main-thread task and
// frame gap while the overview and the regions matrix update. Run with
// `make bench-ui`; figures go to docs/BENCHMARKS.md.
func BenchmarkWebUI(b *testing.B) {
	if b.N > 1 {
		b.Skip("one run is the measurement: use -benchtime 1x")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		b.Fatal("node not installed (run .ci/deps)")
	}
	cfg := bigWorld(b)
	log := slog.New(slog.DiscardHandler)
	a, err := app.New(b.Context(), cfg, app.Roles{Ingest: true, Consume: true, Score: true, Steer: true, Admin: true, Fleet: true}, log)
	if err != nil {
		b.Fatal(err)
	}
	rows := backfill(b, a.Store(), cfg)
	ctx, cancel := context.WithCancel(context.WithoutCancel(b.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("app: %v", err)
		}
	}()
	base := "http://" + a.HTTPAddr() + "/"
	// Wait for rankings of (nearly) every region before measuring: the
	// scorer ranks a region once live viewers there have sent beacons,
	// and a random fleet leaves a few regions without any for a while.
	deadline := time.Now().Add(4 * time.Minute)
	n := 0
	for n < benchRegions*95/100 {
		if time.Now().After(deadline) {
			b.Fatalf("only %d regions ranked after 4 minutes", n)
		}
		time.Sleep(2 * time.Second)
		n = regionsRanked(base, cfg.Admin.Token)
	}
	b.Logf("store holds %d backfilled beacons; %d viewers live; %d regions ranked", rows, cfg.Demo.Viewers, n)

	b.ResetTimer()
	cmd := exec.CommandContext(b.Context(), node, "uibench.mjs", base, cfg.Admin.Token, artifactsDir(b, "uibench"))
	cmd.Dir = "js"
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var res map[string]float64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		b.Log(sc.Text())
		var m map[string]float64
		if json.Unmarshal(sc.Bytes(), &m) == nil && len(m) > 0 {
			res = m
		}
	}
	if err := cmd.Wait(); err != nil {
		b.Fatalf("uibench.mjs: %v", err)
	}
	b.StopTimer()
	for k, v := range res {
		b.ReportMetric(v, k)
	}
}

// regionsRanked is how many region scopes vod's rankings hold.
func regionsRanked(base, token string) int {
	req, _ := http.NewRequest("GET", base+"api/v1/rankings?service=vod&level=region&stats=false", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var r struct {
		Rankings []struct {
			Scope struct{ Level string }
		}
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil {
		return 0
	}
	n := 0
	for _, x := range r.Rankings {
		if x.Scope.Level == "region" {
			n++
		}
	}
	return n
}

// Package bench holds the pipeline benchmarks of docs/BENCHMARKS.md. They
// need a real ClickHouse (make bench starts one) and build the cdnpilot
// binary to run the consumer as its own process, as in production.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/chserver"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/internal/ledgertest"
)

// batchRows is the insert size of both the consumer and the bare loop:
// ClickHouse wants 10k-100k rows per insert, about one insert a second.
var batchRows = envInt("CDNPILOT_BENCH_BATCH_ROWS", 50000)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// batchInterval caps how long a partial batch waits. At the benchmark's
// rate batches fill by size in well under a second, so it only matters for
// the last batch of a finite run, which would otherwise sit idle for the
// production default (1s) and charge that second to the pipeline.
var batchInterval = envOr("CDNPILOT_BENCH_BATCH_INTERVAL", "250ms")

// connections is how many HTTP connections wrk keeps busy: players are
// many and each waits for its 202, so ingest is latency-bound below ~64.
var connections = envInt("CDNPILOT_BENCH_CONNECTIONS", 64)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

const (
	perPost = 50
	loadFor = 6 * time.Second
	group   = "bench-consume"
)

var clientAddrs = []string{"100.64.9.9", "100.65.1.1", "100.80.3.3", "100.96.2.2", "100.112.7.7", "198.18.4.4", "192.0.2.10"}

// BenchmarkPipeline: beacons/s end to end (HTTP ingest, 50 per POST, ->
// embedded broker -> consumer process -> ClickHouse, until every record is
// committed), against the same number of rows inserted straight into
// ClickHouse by a bare clickhouse-go batch loop, in the same run.
func BenchmarkPipeline(b *testing.B) {
	chAddr := chserver.ForTest(b)
	bin := buildBinary(b)
	// The machine is shared by every part of the pipeline and is noisy:
	// report medians over the iterations (-benchtime Nx).
	var e2es, bares, ratios, rsss []float64
	for b.Loop() {
		n, e2e, rss := endToEnd(b, bin, chAddr)
		bare := bareInsert(b, chAddr, n)
		b.Logf("run %d: e2e %.0f beacons/s, bare %.0f rows/s, ratio %.2f", len(ratios)+1, e2e, bare, e2e/bare)
		e2es, bares, ratios, rsss = append(e2es, e2e), append(bares, bare), append(ratios, e2e/bare), append(rsss, rss)
	}
	b.ReportMetric(median(e2es), "e2e_beacons/s")
	b.ReportMetric(median(bares), "bare_rows/s")
	b.ReportMetric(median(ratios), "e2e/bare")
	b.ReportMetric(slices.Max(rsss), "consumer_peak_rss_MiB")
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func buildBinary(b *testing.B) string {
	b.Helper()
	out := filepath.Join(b.TempDir(), "cdnpilot")
	cmd := exec.Command("go", "build", "-o", out, "github.com/cdnpilot/cdnpilot/cmd/cdnpilot")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, msg)
	}
	return out
}

func endToEnd(b *testing.B, bin, chAddr string) (accepted int, beaconsPerSec, consumerRSSMiB float64) {
	b.Helper()
	db := fmt.Sprintf("bench_e2e_%d", time.Now().UnixNano())
	cfg := config.Default()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Ingest.RateLimit.PerClientRPS = 0
	if d, err := time.ParseDuration(os.Getenv("CDNPILOT_BENCH_BATCH_TIMEOUT")); err == nil {
		cfg.Kafka.BatchTimeout = config.Duration(d)
	}
	cfg.Ingest.TrustedProxies = []string{"127.0.0.1/32"}
	ingest, err := app.New(b.Context(), cfg, app.Roles{Ingest: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- ingest.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// The consumer as its own process, as deployed, so its memory is its own.
	confPath := filepath.Join(b.TempDir(), "consume.yaml")
	conf := fmt.Sprintf("http_addr: 127.0.0.1:0\nclickhouse:\n  database: %s\nconsume:\n  group_id: %s\n  batch_rows: %d\n  batch_interval: %s\n", db, group, batchRows, batchInterval)
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	var consLog bytes.Buffer
	cons := exec.Command(bin, "consume", "--config", confPath, "--kafka", strings.Join(ingest.Brokers(), ","),
		"--clickhouse", chAddr, "--log-level", "warn")
	cons.Stdout, cons.Stderr = &consLog, &consLog
	cons.Env = append(os.Environ(), "CDNPILOT_CPU_PROFILE="+os.Getenv("CDNPILOT_BENCH_CONSUMER_PROFILE"))
	if err := cons.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cons.Process.Signal(os.Interrupt)
		_ = cons.Wait()
		if b.Failed() {
			b.Logf("consumer log:\n%s", consLog.String())
		}
	}()

	// The load comes from wrk (C, cheap) rather than a Go client in this
	// process, so the harness takes as little of the 2 cores as possible.
	url := "http://" + ingest.HTTPAddr() + "/v1/beacons"
	script := writeWrkScript(b, makeBodies(64))
	wrkDone := make(chan string, 1)
	chPid := clickhousePid(chAddr)
	cpu0 := [3]float64{procCPU(os.Getpid()), procCPU(cons.Process.Pid), procCPU(chPid)}
	start := time.Now()
	go func() {
		out, err := exec.Command("wrk", "-t2", "-c"+strconv.Itoa(connections), "-d"+loadFor.String(), "-s", script, url).CombinedOutput()
		if err != nil {
			out = append(out, []byte("\nwrk: "+err.Error())...)
		}
		wrkDone <- string(out)
	}()
	// Sample the consumer's memory while the load runs.
	stopSample := make(chan struct{})
	sampled := make(chan float64, 1)
	go func() {
		peak := 0.0
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v := rssMiB(cons.Process.Pid, "VmHWM:"); v > peak {
				peak = v
			}
			select {
			case <-stopSample:
				sampled <- peak
				return
			case <-t.C:
			}
		}
	}()
	wrkOut := <-wrkDone
	ingestDone := time.Since(start)
	if strings.Contains(wrkOut, "Non-2xx") || strings.Contains(wrkOut, "wrk:") || strings.Contains(wrkOut, "Socket errors") {
		b.Fatalf("load had failures:\n%s", wrkOut)
	}
	accepted = int(ledgertest.Counter(b, ingest.Registry(), "cdnpilot_beacons_accepted_total"))
	dctx, dcancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer dcancel()
	if err := kafkaio.WaitDrained(dctx, ingest.Brokers(), group, cfg.Kafka.BeaconsTopic); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.Logf("CPU seconds: ingest+broker %.1f, consumer %.1f, clickhouse %.1f (wrk not counted)",
		procCPU(os.Getpid())-cpu0[0], procCPU(cons.Process.Pid)-cpu0[1], procCPU(chPid)-cpu0[2])
	close(stopSample)
	peak := <-sampled
	b.Logf("end to end: %d beacons in %v (HTTP ingest alone: %.0f beacons/s)", accepted, elapsed.Round(time.Millisecond), float64(accepted)/ingestDone.Seconds())
	return accepted, float64(accepted) / elapsed.Seconds(), peak
}

func makeBodies(n int) [][]byte {
	now := time.Now().UnixMilli()
	out := make([][]byte, n)
	for i := range out {
		items := make([]map[string]any, perPost)
		for j := range items {
			k := i*perPost + j
			items[j] = map[string]any{"type": "heartbeat", "view_id": fmt.Sprintf("bench-view-%d", k/20), "session_id": fmt.Sprintf("bench-s-%d", k/20),
				"ts": now, "service": []string{"vod", "live"}[k%2], "cdn": []string{"cdn-a", "cdn-b", "cdn-c"}[k%3],
				"host": "edge.cdn.example", "player": "hls.js", "player_version": "1.7.0", "device": "desktop", "os": "linux",
				"played_ms": 5000, "rebuffer_ms": k % 3 * 100, "bitrate_kbps": 3000 + k%7*100, "throughput_kbps": 9000 + k%13*500, "ttfb_ms": 40 + k%50}
		}
		out[i], _ = json.Marshal(items)
	}
	return out
}

// bareInsert inserts the same number of equivalent rows into the same
// schema with nothing but a clickhouse-go batch loop: the ceiling the
// pipeline is compared with.
func bareInsert(b *testing.B, chAddr string, total int) float64 {
	b.Helper()
	db := fmt.Sprintf("bench_bare_%d", time.Now().UnixNano())
	store, err := analytics.OpenClickHouse(b.Context(), analytics.ClickHouseOptions{Addr: chAddr, Database: db}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	store.Close()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	now := time.Now()
	rows := make([]record.Beacon, total)
	for k := range rows {
		rows[k] = record.Beacon{EventID: fmt.Sprintf("bare-%d-%d", k, now.UnixNano()), ReceivedAt: now.UnixMilli(),
			ClientIP: "100.64.9.9", Country: "GB", Region: "eu-west", ASN: 64500, Type: record.TypeHeartbeat,
			ViewID: fmt.Sprintf("bench-view-%d", k/20), SessionID: fmt.Sprintf("bench-s-%d", k/20), TS: now.UnixMilli(),
			Service: []string{"vod", "live"}[k%2], CDN: []string{"cdn-a", "cdn-b", "cdn-c"}[k%3], Host: "edge.cdn.example",
			Player: "hls.js", PlayerVersion: "1.7.0", Device: "desktop", OS: "linux", PlayedMS: 5000,
			RebufferMS: uint32(k % 3 * 100), BitrateKbps: uint32(3000 + k%7*100), ThroughputKbps: uint32(9000 + k%13*500), TTFBMS: uint32(40 + k%50)}
	}
	const columns = "event_id, received_at, received_at_ms, client_ip, country, region, asn, source, type, " +
		"view_id, session_id, ts, ts_ms, seq, service, cdn, prev_cdn, host, content_id, player, player_version, " +
		"device, os, startup_ms, rebuffer_ms, rebuffer_count, seek_rebuffer_ms, seek, played_ms, bitrate_kbps, " +
		"throughput_kbps, ttfb_ms, dropped_frames, error_code, fatal"
	start := time.Now()
	for lo := 0; lo < len(rows); lo += batchRows {
		batch, err := conn.PrepareBatch(b.Context(), "INSERT INTO "+db+".beacons ("+columns+")")
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range rows[lo:min(lo+batchRows, len(rows))] {
			t := time.Unix(r.ReceivedAt/1000, 0)
			if err := batch.Append(r.EventID, t, r.ReceivedAt, r.ClientIP, r.Country, r.Region, r.ASN, uint8(r.Source), uint8(r.Type),
				r.ViewID, r.SessionID, t, r.TS, r.Seq, r.Service, r.CDN, r.PrevCDN, r.Host, r.ContentID, r.Player, r.PlayerVersion,
				r.Device, r.OS, r.StartupMS, r.RebufferMS, r.RebufferCount, r.SeekRebufferMS, uint8(0), r.PlayedMS, r.BitrateKbps,
				r.ThroughputKbps, r.TTFBMS, r.DroppedFrames, r.ErrorCode, uint8(0)); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Send(); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.Logf("bare insert: %d rows in %v", total, elapsed.Round(time.Millisecond))
	return float64(total) / elapsed.Seconds()
}

// rssMiB reads a memory line (VmHWM: peak, VmRSS: current) of a process.
func rssMiB(pid int, key string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// writeWrkScript writes a wrk Lua script that posts the bodies in turn,
// each from another client address (so several regions and partitions).
func writeWrkScript(b *testing.B, bodies [][]byte) string {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("local bodies = {\n")
	for _, body := range bodies {
		sb.WriteString("  " + strconv.Quote(string(body)) + ",\n")
	}
	sb.WriteString("}\nlocal addrs = {")
	for _, a := range clientAddrs {
		sb.WriteString(strconv.Quote(a) + ", ")
	}
	sb.WriteString(`}
local i = 0
request = function()
  i = i + 1
  local h = {["Content-Type"] = "application/json", ["X-Forwarded-For"] = addrs[(i % #addrs) + 1]}
  return wrk.format("POST", nil, h, bodies[(i % #bodies) + 1])
end
`)
	path := filepath.Join(b.TempDir(), "post.lua")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// procCPU is a process's user+system CPU time in seconds (0 if unknown).
func procCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" that closes the command name; utime and stime
	// are fields 14 and 15 of the whole line, in clock ticks (100/s).
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100
}

// clickhousePid finds the server listening on chAddr's port, for the CPU
// split in the log; 0 when it cannot tell.
func clickhousePid(chAddr string) int {
	out, err := exec.Command("pgrep", "-f", "clickhouse-server").Output()
	if err != nil {
		return 0
	}
	_, port, _ := strings.Cut(chAddr, ":")
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		cfg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		dir := strings.Split(string(cfg), "\x00")
		for _, a := range dir {
			if c, ok := strings.CutPrefix(a, "--config-file="); ok {
				if x, err := os.ReadFile(c); err == nil && strings.Contains(string(x), "<tcp_port>"+port+"</tcp_port>") {
					return pid
				}
			}
		}
	}
	return 0
}

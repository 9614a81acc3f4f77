package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/internal/syncbuf"
)

// TestDemo starts the demo as a user would, on a free port, and checks that
// synthetic beacons flow all the way into the store, that the process is
// ready, and that Ctrl-C (context cancel) stops it cleanly.
func TestDemo(t *testing.T) {
	pr, pw := io.Pipe()
	var stderr syncbuf.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--http-addr", "127.0.0.1:0", "--dns-addr", "127.0.0.1:0", "--viewers", "40"}, pw, &stderr)
		pw.Close()
	}()
	var base, dnsAddr string
	sc := bufio.NewScanner(pr)
	re := regexp.MustCompile(`POST (http://127\.0\.0\.1:\d+)/v1/beacons`)
	reDNS := regexp.MustCompile(`steering DNS\s+(127\.0\.0\.1:\d+) \(UDP\+TCP\)`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
		}
		if m := reDNS.FindStringSubmatch(sc.Text()); m != nil {
			dnsAddr = m[1]
		}
		if base != "" && dnsAddr != "" {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if base == "" || dnsAddr == "" {
		cancel()
		t.Fatalf("demo printed no ingest URL or DNS address; stderr:\n%s", stderr.String())
	}
	// The demo's steering DNS answers its zone.
	q := new(mdns.Msg)
	q.SetQuestion("vod.demo.cdnpilot.test.", mdns.TypeA)
	if r, err := mdns.Exchange(q, dnsAddr); err != nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("DNS at %s: %v, %v", dnsAddr, r, err)
	}
	// Ready once the override topic is read to its end: polled, as a
	// load balancer would.
	for _, path := range []string{"/healthz", "/readyz"} {
		var status string
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			status = resp.Status + ": " + string(body)
			if time.Now().After(end) {
				t.Errorf("%s: %s", path, status)
				break
			}
		}
	}
	// The web UI is served at / with no build step.
	if resp, err := http.Get(base + "/"); err != nil {
		t.Error(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), `src="/ui/app.js"`) {
			t.Errorf("GET /: %s %q %.200s", resp.Status, resp.Header.Get("Content-Type"), body)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored := metric(t, base, "cdnpilot_consumer_records_total")
		if stored > 0 && metric(t, base, `cdnpilot_beacons_accepted_total{source="beacon"}`) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no beacons stored within 30s; stderr:\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("demo did not stop within 40s of cancel")
	}
	if strings.Contains(stderr.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", stderr.String())
	}
}

func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, name)), 64)
			return v
		}
	}
	return 0
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("kafka:\n  partitons: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("consume:\n  batch_rows: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args    []string
		wantOut string
		wantErr string
	}{
		{args: []string{"version"}, wantOut: "cdnpilot "},
		{args: []string{"check-config"}, wantOut: "built-in example: OK"},
		{args: []string{"check-config", bad}, wantErr: "line 2: unknown key partitons"},
		{args: []string{"check-config", invalid}, wantErr: "consume.batch_rows"},
		{args: []string{"check-config", filepath.Join(dir, "missing.yaml")}, wantErr: "no such file"},
		{args: []string{"nope"}, wantErr: `unknown command "nope"`},
		{args: nil, wantErr: "no command given"},
		{args: []string{"demo", "--http-addr", "nonsense"}, wantErr: `http_addr: "nonsense" is not host:port`},
		{args: []string{"demo", "--bogus"}, wantErr: "flag provided but not defined: -bogus"},
		{args: []string{"demo", "extra"}, wantErr: `unexpected argument "extra"`},
		{args: []string{"migrate"}, wantErr: "no ClickHouse address"},
		{args: []string{"ingest"}, wantErr: "ingest: no Kafka brokers"},
		{args: []string{"consume", "--kafka", "127.0.0.1:1"}, wantErr: "consume: no ClickHouse address"},
		{args: []string{"check-config", "--config", "x", "y"}, wantErr: "unexpected argument"},
		{args: []string{"ingest", "--kafka", "no-port"}, wantErr: `kafka.brokers[0]: "no-port" is not host:port`},
		{args: []string{"score"}, wantErr: "score: no Kafka brokers"},
		{args: []string{"steer"}, wantErr: "steer: no Kafka brokers"},
		{args: []string{"steer", "--dns-addr", "nonsense"}, wantErr: `dns_addr: "nonsense" is not host:port`},
		{args: []string{"ingest", "--dns-addr", "127.0.0.1:53"}, wantErr: "flag provided but not defined: -dns-addr"},
		{args: []string{"simulate", "--list"}, wantOut: "hard-outage"},
		{args: []string{"simulate"}, wantErr: "--scenario is required"},
		{args: []string{"simulate", "--scenario", "hard-outage", "--steer-path", "doh"}, wantErr: `--steer-path "doh" is not one of engine, dns, http, hls, dash, mixed`},
		{args: []string{"simulate", "--scenario", "hard-outage", "--scale", "0"}, wantErr: "--scale 0 is outside"},
		{args: []string{"simulate", "--scenario", "steady"}, wantErr: "runs forever"},
		{args: []string{"simulate", "--scenario", filepath.Join(dir, "nope.yaml")}, wantErr: "neither a shipped scenario"},
		{args: []string{"simulate", "--scenario", bad}, wantErr: "line 1"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(t.Context(), tt.args, &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("output %q lacks %q", out.String(), tt.wantOut)
			}
		})
	}
}

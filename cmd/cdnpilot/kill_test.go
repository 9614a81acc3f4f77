package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/chserver"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/internal/ledgertest"
	"github.com/cdnpilot/cdnpilot/internal/syncbuf"
)

// The test binary doubles as cdnpilot, so the kill test runs the real
// command as its own process.
func TestMain(m *testing.M) {
	if os.Getenv("CDNPILOT_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestConsumerKilled: `cdnpilot consume` is killed with SIGKILL at random
// moments while beacons flow (no final flush, no commit: wherever it was,
// before an insert or between an insert and its commit), and restarted.
// Every beacon ingest acknowledged is in ClickHouse exactly once.
func TestConsumerKilled(t *testing.T) {
	chAddr := chserver.ForTest(t)
	db := fmt.Sprintf("t_kill_%d", time.Now().UnixNano())
	cfg := config.Default()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Ingest.RateLimit.PerClientRPS = 0
	ingest, err := app.New(t.Context(), cfg, app.Roles{Ingest: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- ingest.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	conf := filepath.Join(t.TempDir(), "consume.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "http_addr: 127.0.0.1:0\nclickhouse:\n  database: %s\nconsume:\n  batch_rows: 700\n  batch_interval: 100ms\n", db), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer // written by the children's copy goroutines, read on failure
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "consume", "--config", conf, "--kafka", ingest.Brokers()[0], "--clickhouse", chAddr, "--log-level", "warn")
		cmd.Env = append(os.Environ(), "CDNPILOT_TEST_RUN_MAIN=1")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	defer func() {
		if t.Failed() {
			t.Logf("consumer logs:\n%s", logs.String())
		}
	}()

	var (
		mu    sync.Mutex
		acked []string
	)
	post := func(k int) {
		items := make([]map[string]any, 50)
		for i := range items {
			items[i] = map[string]any{"type": "heartbeat", "view_id": fmt.Sprintf("v%d", k), "ts": time.Now().UnixMilli(),
				"service": "vod", "cdn": "cdn-a", "played_ms": 5000}
		}
		body, _ := json.Marshal(items)
		resp, err := http.Post("http://"+ingest.HTTPAddr()+"/v1/beacons", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		var res struct {
			EventIDs []string `json:"event_ids"`
		}
		if resp.StatusCode != http.StatusAccepted || json.NewDecoder(resp.Body).Decode(&res) != nil {
			t.Errorf("ingest answered %s", resp.Status)
			return
		}
		mu.Lock()
		acked = append(acked, res.EventIDs...)
		mu.Unlock()
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	cons := start()
	k := 0
	for round := range 3 {
		// Beacons keep flowing while the consumer works, then it dies at
		// a random moment.
		deadline := time.Now().Add(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		for time.Now().Before(deadline) {
			post(k)
			k++
		}
		if err := cons.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cons.Wait()
		t.Logf("round %d: killed the consumer after %d bodies", round, k)
		cons = start()
	}
	for range 40 {
		post(k)
		k++
	}
	dctx, dcancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer dcancel()
	if err := kafkaio.WaitDrained(dctx, ingest.Brokers(), cfg.Consume.GroupID, cfg.Kafka.BeaconsTopic); err != nil {
		t.Fatal(err)
	}
	_ = cons.Process.Signal(os.Interrupt)
	_ = cons.Wait()
	final, _, err := ledgertest.Stored(t.Context(), chAddr, db)
	if err != nil {
		t.Fatal(err)
	}
	ledgertest.Check(t, acked, final, false)
}

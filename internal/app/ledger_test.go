package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cdnpilot/cdnpilot/internal/chserver"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/internal/ledgertest"
)

// pipeline is a running App with ingest and consume over the embedded
// broker and a real ClickHouse.
type pipeline struct {
	app    *App
	cfg    config.Config
	db     string
	chAddr string
	url    string
	stop   func() error
}

func startPipeline(t *testing.T, chAddr string, mutate func(*config.Config)) *pipeline {
	t.Helper()
	cfg := config.Default()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ClickHouse.Addr = chAddr
	cfg.ClickHouse.Database = fmt.Sprintf("t_ledger_%d", time.Now().UnixNano())
	cfg.ClickHouse.DialTimeout = config.Duration(time.Second)
	cfg.ClickHouse.QueryTimeout = config.Duration(10 * time.Second)
	cfg.Consume.BatchRows = 5000
	cfg.Consume.BatchInterval = config.Duration(200 * time.Millisecond)
	cfg.Consume.InsertTimeout = config.Duration(10 * time.Second)
	cfg.Ingest.RateLimit.PerClientRPS = 0
	cfg.Ingest.TrustedProxies = []string{"127.0.0.1/32"}
	cfg.Ingest.MaxClockSkew = config.Duration(time.Hour)
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := New(t.Context(), cfg, Roles{Ingest: true, Consume: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return &pipeline{app: a, cfg: cfg, db: cfg.ClickHouse.Database, chAddr: chAddr, url: "http://" + a.HTTPAddr(), stop: stop}
}

// drain waits until the consumer group has committed every record.
func (p *pipeline) drain(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	if err := kafkaio.WaitDrained(ctx, p.app.Brokers(), p.cfg.Consume.GroupID, p.cfg.Kafka.BeaconsTopic); err != nil {
		t.Fatal(err)
	}
}

// sender posts beacons the way players do and keeps the ledger of what
// ingest acknowledged.
type sender struct {
	url      string
	client   *http.Client
	mu       sync.Mutex
	acked    []string
	statuses map[int]int
	seq      atomic.Int64
}

func newSender(url string) *sender {
	return &sender{url: url, client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		statuses: map[int]int{}}
}

var clientAddrs = []string{"100.64.9.9", "100.65.1.1", "100.80.3.3", "100.96.2.2", "100.112.7.7", "198.18.4.4", "192.0.2.10"}

// post sends one body of n beacons and records what was acknowledged.
func (s *sender) post(t *testing.T, n int) {
	t.Helper()
	now := time.Now().UnixMilli()
	items := make([]map[string]any, n)
	for i := range items {
		k := s.seq.Add(1)
		items[i] = map[string]any{"type": "heartbeat", "view_id": fmt.Sprintf("view-%d", k/10), "ts": now,
			"service": []string{"vod", "live"}[k%2], "cdn": []string{"cdn-a", "cdn-b", "cdn-c"}[k%3],
			"played_ms": 5000, "bitrate_kbps": 3000 + k%7*100, "throughput_kbps": 9000, "ttfb_ms": 40}
	}
	body, _ := json.Marshal(items)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/v1/beacons", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", clientAddrs[int(s.seq.Load())%len(clientAddrs)])
	resp, err := s.client.Do(req)
	if err != nil {
		if t.Context().Err() == nil {
			t.Errorf("post: %v", err)
		}
		return
	}
	defer resp.Body.Close()
	var res struct {
		Accepted int      `json:"accepted"`
		EventIDs []string `json:"event_ids"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Errorf("answer %s: %v", resp.Status, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses[resp.StatusCode]++
	switch resp.StatusCode {
	case http.StatusAccepted:
		if len(res.EventIDs) != res.Accepted {
			t.Errorf("202 with accepted=%d but %d event ids", res.Accepted, len(res.EventIDs))
		}
		s.acked = append(s.acked, res.EventIDs...)
	case http.StatusServiceUnavailable:
		if len(res.EventIDs) != 0 {
			t.Errorf("503 listed %d event ids as accepted", len(res.EventIDs))
		}
	default:
		t.Errorf("unexpected status %s", resp.Status)
	}
}

// run posts bodies of 50 from several workers until total beacons are sent
// or stop is closed; between is called after each body.
func (s *sender) run(t *testing.T, workers, bodies int, between func(i int)) {
	t.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > bodies || t.Failed() {
					return
				}
				s.post(t, 50)
				if between != nil {
					between(i)
				}
			}
		})
	}
	wg.Wait()
}

func (s *sender) check(t *testing.T, p *pipeline, allowUnacked bool) {
	t.Helper()
	p.drain(t)
	final, raw, err := ledgertest.Stored(t.Context(), p.chAddr, p.db)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("statuses %v; %d raw rows", s.statuses, raw)
	ledgertest.Check(t, s.acked, final, allowUnacked)
}

// TestLedger: beacons acknowledged over HTTP are all in ClickHouse, once.
func TestLedger(t *testing.T) {
	p := startPipeline(t, chserver.ForTest(t), nil)
	s := newSender(p.url)
	s.run(t, 8, 400, nil)
	s.check(t, p, false)
	if len(s.acked) != 400*50 {
		t.Fatalf("%d acked, want all %d", len(s.acked), 400*50)
	}
}

// TestLedgerClickHouseKilled: ClickHouse dies with SIGKILL mid-stream and
// comes back; ingest keeps accepting (Kafka holds the data) and nothing
// acknowledged is lost.
func TestLedgerClickHouseKilled(t *testing.T) {
	srv := chserver.ForTestServer(t)
	p := startPipeline(t, srv.Addr(), nil)
	s := newSender(p.url)
	var once sync.Once
	s.run(t, 6, 300, func(i int) {
		if i == 100 {
			once.Do(func() {
				if err := srv.Kill(); err != nil {
					t.Error(err)
				}
				go func() {
					time.Sleep(3 * time.Second)
					if err := srv.Restart(context.WithoutCancel(t.Context())); err != nil {
						t.Error(err)
					}
				}()
			})
		}
	})
	// The restart may still be under way; drain waits for the consumer.
	s.check(t, p, false)
	if n := ledgertest.Counter(t, p.app.Registry(), "cdnpilot_consumer_insert_errors_total"); n == 0 {
		t.Error("no insert failed: ClickHouse was not down while data flowed")
	}
	if len(s.acked) != 300*50 {
		t.Fatalf("%d acked, want all: the store being down must not reach clients", len(s.acked))
	}
}

// TestLedgerBrokerUnavailable: while the broker refuses writes, ingest
// answers 503 and never 202; when it stores a write but fails to
// acknowledge it, the retry's duplicate is removed downstream.
func TestLedgerBrokerUnavailable(t *testing.T) {
	p := startPipeline(t, chserver.ForTest(t), func(c *config.Config) {
		c.Kafka.ProduceRetries = 2
		c.Kafka.ProduceTimeout = config.Duration(2 * time.Second)
	})
	cluster := p.app.Embedded().Cluster()
	s := newSender(p.url)
	s.run(t, 4, 60, nil)

	// Phase 1: every produce refused before it is stored.
	down := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
	s.run(t, 4, 40, nil)
	down.Remove()
	s.mu.Lock()
	refused := s.statuses[http.StatusServiceUnavailable]
	s.mu.Unlock()
	if refused == 0 {
		t.Fatal("no 503 while the broker refused every write")
	}
	// A refused write is not stored: the ledger must match exactly.
	s.check(t, p, false)

	// Phase 2: writes stored but answered with an error, once per produce
	// for a while: the producer retries and the broker then holds the
	// same event twice.
	ambiguous := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicasAfterAppend, Count: 20})
	s.run(t, 4, 60, nil)
	ambiguous.Remove()
	s.run(t, 4, 20, nil)
	// An ambiguous write answered 503 may still have landed: that is a
	// stored beacon nobody acked, never an acked one that is missing.
	s.check(t, p, true)
}

package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/chserver"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/internal/ledgertest"
)

const (
	topic = "beacons"
	dlq   = "beacons.dlq"
	group = "analytics"
)

type env struct {
	broker *kafkaio.Embedded
	store  *analytics.ClickHouse
	chAddr string
	db     string
	dlqW   *kafkaio.Writer
	sink   *countingSink
}

func setup(t testing.TB, partitions int) *env {
	t.Helper()
	addr := chserver.ForTest(t)
	db := fmt.Sprintf("t_consume_%d", time.Now().UnixNano())
	store, err := analytics.OpenClickHouse(t.Context(), analytics.ClickHouseOptions{Addr: addr, Database: db}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	b, err := kafkaio.StartEmbedded(0, "", kafkaio.Topic{Name: topic, Partitions: partitions}, kafkaio.Topic{Name: dlq, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	w, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: b.Addrs(), Topic: dlq})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return &env{broker: b, store: store, chAddr: addr, db: db, dlqW: w, sink: &countingSink{Sink: store}}
}

// produce writes n valid records (plus the given raw values at random
// positions) and returns the event ids of the valid ones.
func (e *env) produce(t testing.TB, n int, raw ...[]byte) []string {
	t.Helper()
	w, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: e.broker.Addrs(), Topic: topic, Compression: "lz4"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := time.Now()
	ids := make([]string, 0, n)
	msgs := make([]kafka.Message, 0, n+len(raw))
	regions := []string{"eu-west", "us-east", "ap-south", "sa-east"}
	for i := range n {
		b := record.Beacon{
			EventID: fmt.Sprintf("ev-%06d-%d", i, now.UnixNano()), ReceivedAt: now.UnixMilli(),
			Region: regions[i%len(regions)], Country: "GB", ASN: 64500, Type: record.TypeHeartbeat,
			ViewID: "v" + strconv.Itoa(i%97), TS: now.UnixMilli(), Service: "vod", CDN: "cdn-a",
			PlayedMS: 5000, BitrateKbps: 3000,
		}
		v, _ := b.MarshalBinary()
		ids = append(ids, b.EventID)
		msgs = append(msgs, kafka.Message{Key: []byte(b.Region), Value: v})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, r := range raw {
		at := rng.IntN(len(msgs) + 1)
		msgs = append(msgs[:at], append([]kafka.Message{{Key: []byte("eu-west"), Value: r}}, msgs[at:]...)...)
	}
	for len(msgs) > 0 {
		chunk := msgs[:min(1000, len(msgs))]
		if err := w.WriteMessages(t.Context(), chunk...); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[len(chunk):]
	}
	return ids
}

// countingSink counts rows handed to the store, redeliveries included.
type countingSink struct {
	Sink
	rows atomic.Int64
}

func (s *countingSink) Insert(ctx context.Context, rows []record.Beacon) error {
	err := s.Sink.Insert(ctx, rows)
	if err == nil {
		s.rows.Add(int64(len(rows)))
	}
	return err
}

func (e *env) consumer(reader *kafka.Reader) *Consumer {
	return New(reader, e.dlqW, e.sink, Options{BatchRows: 300, BatchInterval: 50 * time.Millisecond, InsertTimeout: 10 * time.Second})
}

func (e *env) reader() *kafka.Reader {
	return kafkaio.NewReader(kafkaio.ReaderOptions{Brokers: e.broker.Addrs(), Topic: topic, GroupID: group})
}

// runToDrained runs a consumer until the group has committed everything,
// then stops it cleanly.
func (e *env) runToDrained(t *testing.T) {
	t.Helper()
	r := e.reader()
	defer r.Close()
	c := e.consumer(r)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	dctx, dcancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer dcancel()
	if err := kafkaio.WaitDrained(dctx, e.broker.Addrs(), group, topic); err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("consumer: %v", err)
	}
}

var errCrash = errors.New("simulated crash")

// TestCrashAtRandomPoints kills the consumer (no final flush, no commit)
// before an insert and between an insert and its commit, at random batches,
// round after round; then a last consumer drains. Every record must be
// stored exactly once in the deduplicated view.
func TestCrashAtRandomPoints(t *testing.T) {
	e := setup(t, 4)
	ids := e.produce(t, 6000)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for round := range 6 {
		r := e.reader()
		c := e.consumer(r)
		k, calls := 1+rng.IntN(4), 0
		hook := func() error {
			calls++
			if calls == k {
				return errCrash
			}
			return nil
		}
		point := "before insert"
		if round%2 == 0 {
			c.beforeInsert = hook
		} else {
			c.afterInsert = hook
			point = "after insert, before commit"
		}
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		err := c.Run(ctx)
		cancel()
		_ = r.Close()
		if !errors.Is(err, errCrash) {
			t.Fatalf("round %d: Run = %v, want the simulated crash", round, err)
		}
		t.Logf("round %d: crashed %s at batch %d", round, point, k)
	}
	e.runToDrained(t)
	final, _, err := ledgertest.Stored(t.Context(), e.chAddr, e.db)
	if err != nil {
		t.Fatal(err)
	}
	ledgertest.Check(t, ids, final, false)
	// A crash between insert and commit must have caused re-inserts; if
	// not, the test did not exercise the window it claims to.
	if n := e.sink.rows.Load(); n <= int64(len(ids)) {
		t.Errorf("%d rows inserted for %d records: no redelivery happened", n, len(ids))
	} else {
		t.Logf("%d rows inserted for %d records (redeliveries deduplicated)", n, len(ids))
	}
}

// TestPoisonRecords: undecodable records go to the dead-letter topic with
// their origin, and the partition keeps flowing past them.
func TestPoisonRecords(t *testing.T) {
	e := setup(t, 2)
	poison := [][]byte{[]byte("not a record"), {record.Magic, record.Version + 9}, {}, {record.Magic, record.Version, 0xff}}
	ids := e.produce(t, 500, poison...)
	e.runToDrained(t)

	final, _, err := ledgertest.Stored(t.Context(), e.chAddr, e.db)
	if err != nil {
		t.Fatal(err)
	}
	ledgertest.Check(t, ids, final, false)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.broker.Addrs(), Topic: dlq, Partition: 0, MaxWait: time.Second})
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got := map[string]bool{}
	for range poison {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("dead-letter topic: %v (got %d of %d)", err, len(got), len(poison))
		}
		h := map[string]string{}
		for _, kv := range m.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if h["cdnpilot-source-topic"] != topic || h["cdnpilot-source-offset"] == "" || h["cdnpilot-source-partition"] == "" || h["cdnpilot-error"] == "" {
			t.Errorf("dead letter headers incomplete: %v", h)
		}
		got[string(m.Value)] = true
	}
	for _, p := range poison {
		if !got[string(p)] {
			t.Errorf("poison record %q not in the dead-letter topic", p)
		}
	}
}

// TestInsertRetriedUntilStoreReturns: with ClickHouse killed, the consumer
// keeps the batch and retries; nothing is committed until the insert works.
func TestInsertRetriedUntilStoreReturns(t *testing.T) {
	srv := chserver.ForTestServer(t)
	db := fmt.Sprintf("t_retry_%d", time.Now().UnixNano())
	store, err := analytics.OpenClickHouse(t.Context(), analytics.ClickHouseOptions{Addr: srv.Addr(), Database: db, DialTimeout: time.Second, QueryTimeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b, err := kafkaio.StartEmbedded(0, "", kafkaio.Topic{Name: topic, Partitions: 2}, kafkaio.Topic{Name: dlq, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e := &env{broker: b, store: store, chAddr: srv.Addr(), db: db, sink: &countingSink{Sink: store}}
	if e.dlqW, err = kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: b.Addrs(), Topic: dlq}); err != nil {
		t.Fatal(err)
	}
	defer e.dlqW.Close()

	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	ids := e.produce(t, 1000)
	r := e.reader()
	defer r.Close()
	c := e.consumer(r)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(2 * time.Second) // let it fail a few inserts against the dead server
	lag, err := kafkaio.GroupLag(t.Context(), b.Addrs(), group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if lag != int64(len(ids)) {
		t.Fatalf("lag %d while the store is down, want %d: something was committed unstored", lag, len(ids))
	}
	if err := srv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer dcancel()
	if err := kafkaio.WaitDrained(dctx, b.Addrs(), group, topic); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	final, _, err := ledgertest.Stored(t.Context(), srv.Addr(), db)
	if err != nil {
		t.Fatal(err)
	}
	ledgertest.Check(t, ids, final, false)
}

package overrides

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/steering"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fake clock's start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const testTopic = "overrides"

// clock is a fake clock the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// startBroker starts an embedded broker with the compacted test topic
// (and any other topics) and stops it after the test.
func startBroker(t *testing.T, partitions int, more ...kafkaio.Topic) *kafkaio.Embedded {
	t.Helper()
	topics := append([]kafkaio.Topic{{Name: testTopic, Partitions: partitions, Compacted: true}}, more...)
	e, err := kafkaio.StartEmbedded(0, "", topics...)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// follow runs a follower of topic until the test ends; Run must then
// return nil.
func follow(t *testing.T, addrs []string, topic string, o FollowerOptions, onChange ...func([]steering.Override)) *Follower {
	t.Helper()
	o.Brokers, o.Topic, o.ClientID = addrs, topic, "test"
	f := NewFollower(o)
	for _, fn := range onChange {
		f.OnChange(fn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return f
}

// waitReady fails the test unless f becomes ready within 10 s.
func waitReady(t *testing.T, f *Follower) {
	t.Helper()
	select {
	case <-f.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("follower not ready after 10s")
	}
}

// waitRevision fails the test unless f holds id at rev within 10 s.
func waitRevision(t *testing.T, f *Follower, id string, rev uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := f.WaitRevision(ctx, id, rev); err != nil {
		t.Fatal(err)
	}
}

// newLog is a Log on topic, closed after the test.
func newLog(t *testing.T, addrs []string, topic string) *Log {
	t.Helper()
	l, err := NewLog(LogOptions{Brokers: addrs, Topic: topic, ClientID: "test"})
	if err != nil {
		t.Fatalf("NewLog: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// node is one API node: a store over a log and a ready follower.
type node struct {
	store *Store
	log   *Log
	f     *Follower
	reg   *prometheus.Registry
}

func newNode(t *testing.T, addrs []string, clk *clock) node {
	t.Helper()
	reg := prometheus.NewRegistry()
	f := follow(t, addrs, testTopic, FollowerOptions{Registerer: reg, Now: clk.Now})
	waitReady(t, f)
	l := newLog(t, addrs, testTopic)
	return node{store: NewStore(l, f, clk.Now), log: l, f: f, reg: reg}
}

// writeRaw produces one message as it is, nil value for a tombstone,
// with the same key hashing as Log.
func writeRaw(t *testing.T, addrs []string, topic string, key, value []byte) {
	t.Helper()
	w, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: addrs, Topic: topic, ClientID: "test"})
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Key: key, Value: value}); err != nil {
		t.Fatalf("write %q: %v", key, err)
	}
}

// override is a valid pin for service vod expiring in an hour.
func override(id string) steering.Override {
	return steering.Override{ID: id, Kind: steering.OverridePin, Service: "vod", Region: "eu-west", CDN: "cdn-b",
		Reason: "INC-1: cdn-a 5xx", Expires: t0.Add(time.Hour)}
}

// record is a stored record of override(id) at rev.
func record(id string, rev uint64) Record {
	return Record{Override: func() steering.Override {
		o := override(id)
		o.Created, o.Author = t0, "alice"
		return o
	}(), Revision: rev, UpdatedAt: t0, UpdatedBy: "alice"}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// metric reads a counter or gauge from reg: name, then label pairs.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

// isErr checks err against want, nil meaning no error.
func isErr(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

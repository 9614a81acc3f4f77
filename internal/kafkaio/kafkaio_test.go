package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startBroker starts an embedded broker for one test and stops it after.
func startBroker(t *testing.T, dataDir string, topics ...Topic) *Embedded {
	t.Helper()
	e, err := StartEmbedded(0, dataDir, topics...)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// client is a kafka-go client whose connections close when the test ends.
func client(t *testing.T, addrs []string) *kafka.Client {
	t.Helper()
	tr := &kafka.Transport{DialTimeout: 3 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &kafka.Client{Addr: kafka.TCP(addrs...), Timeout: 5 * time.Second, Transport: tr}
}

// partitions asks the broker, over the wire, how many partitions each topic
// has; a topic the broker does not know is absent from the map.
func partitions(t *testing.T, addrs []string, topics ...string) map[string]int {
	t.Helper()
	md, err := client(t, addrs).Metadata(t.Context(), &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	got := map[string]int{}
	for _, tp := range md.Topics {
		if tp.Error != nil {
			continue
		}
		got[tp.Name] = len(tp.Partitions)
	}
	return got
}

// cleanupPolicy reads a topic's cleanup.policy over the wire.
func cleanupPolicy(t *testing.T, addrs []string, topic string) string {
	t.Helper()
	res, err := client(t, addrs).DescribeConfigs(t.Context(), &kafka.DescribeConfigsRequest{
		Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"},
		}},
	})
	if err != nil {
		t.Fatalf("describe configs %s: %v", topic, err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			t.Fatalf("describe configs %s: %v", topic, r.Error)
		}
		for _, c := range r.ConfigEntries {
			if c.ConfigName == "cleanup.policy" {
				return c.ConfigValue
			}
		}
	}
	return ""
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

func TestStartEmbeddedCreatesTopics(t *testing.T) {
	tests := []struct {
		name   string
		topics []Topic
		want   map[string]int
	}{
		{"none", nil, map[string]int{}},
		{"one", []Topic{{Name: "beacons", Partitions: 6}}, map[string]int{"beacons": 6}},
		{"several", []Topic{
			{Name: "beacons", Partitions: 3},
			{Name: "rankings", Partitions: 1, Compacted: true},
			{Name: "overrides", Partitions: 2, Compacted: true},
		}, map[string]int{"beacons": 3, "rankings": 1, "overrides": 2}},
		// A name given twice is created once, with the first count.
		{"duplicate", []Topic{{Name: "beacons", Partitions: 2}, {Name: "beacons", Partitions: 5}}, map[string]int{"beacons": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startBroker(t, "", tt.topics...)
			if len(e.Addrs()) == 0 {
				t.Fatal("no listen addresses")
			}
			names := make([]string, 0, len(tt.topics))
			for _, tp := range tt.topics {
				names = append(names, tp.Name)
			}
			got := map[string]int{}
			if len(names) > 0 {
				got = partitions(t, e.Addrs(), names...)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("partitions = %v, want %v", got, tt.want)
			}
			for _, tp := range tt.topics {
				policy := cleanupPolicy(t, e.Addrs(), tp.Name)
				if tp.Compacted && policy != "compact" {
					t.Errorf("%s: cleanup.policy = %q, want compact", tp.Name, policy)
				}
				if !tp.Compacted && policy == "compact" {
					t.Errorf("%s: cleanup.policy = compact, want the default", tp.Name)
				}
			}
		})
	}
}

func TestStartEmbeddedDataDirKeepsTopicsAndRecords(t *testing.T) {
	dir := t.TempDir()
	first, err := StartEmbedded(0, dir, Topic{Name: "beacons", Partitions: 3})
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	produce(t, first.Addrs(), "beacons", []int{2, 1, 0})
	first.Close()

	// The second start asks for another count: the stored topic wins, and
	// the new topic is added next to it.
	second := startBroker(t, dir, Topic{Name: "beacons", Partitions: 1}, Topic{Name: "rankings", Partitions: 2, Compacted: true})
	got := partitions(t, second.Addrs(), "beacons", "rankings")
	if want := map[string]int{"beacons": 3, "rankings": 2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after restart: partitions = %v, want %v", got, want)
	}
	lag, err := GroupLag(t.Context(), second.Addrs(), "fresh", "beacons")
	if err != nil {
		t.Fatalf("GroupLag after restart: %v", err)
	}
	if lag != 3 {
		t.Errorf("after restart: %d records, want the 3 produced before", lag)
	}
}

func TestEnsureTopics(t *testing.T) {
	e := startBroker(t, "", Topic{Name: "existing", Partitions: 2})
	topics := []Topic{
		{Name: "existing", Partitions: 8}, // an operator decision: stays 2
		{Name: "new", Partitions: 3},
		{Name: "new-compacted", Partitions: 1, Compacted: true},
	}
	want := map[string]int{"existing": 2, "new": 3, "new-compacted": 1}
	for round := range 2 { // the second round finds everything in place
		if err := EnsureTopics(t.Context(), e.Addrs(), topics...); err != nil {
			t.Fatalf("round %d: EnsureTopics: %v", round, err)
		}
		got := partitions(t, e.Addrs(), "existing", "new", "new-compacted")
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("round %d: partitions = %v, want %v", round, got, want)
		}
	}
	if p := cleanupPolicy(t, e.Addrs(), "new-compacted"); p != "compact" {
		t.Errorf("new-compacted: cleanup.policy = %q, want compact", p)
	}
}

func TestEnsureTopicsErrors(t *testing.T) {
	closed := closedAddr(t)
	tests := []struct {
		name    string
		brokers []string
		want    string
	}{
		{"no brokers", nil, "no brokers"},
		{"closed port", []string{closed}, "dial " + closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := EnsureTopics(t.Context(), tt.brokers, Topic{Name: "x", Partitions: 1})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("EnsureTopics = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// silentAddr accepts connections and never answers: a hung broker.
func silentAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func TestCallsEndWithContextOnHungBroker(t *testing.T) {
	addr := silentAddr(t)
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"EnsureTopics", func(ctx context.Context) error {
			return EnsureTopics(ctx, []string{addr}, Topic{Name: "x", Partitions: 1})
		}},
		{"Ping", func(ctx context.Context) error { return Ping(ctx, []string{addr}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := tt.call(ctx)
			if err == nil {
				t.Fatal("nil error from a broker that never answers")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("returned after %v; the context allowed 300ms", d)
			}
		})
	}
}

func TestCodec(t *testing.T) {
	tests := []struct {
		name    string
		want    kafka.Compression
		wantErr bool
	}{
		{"", 0, false},
		{"none", 0, false},
		{"gzip", kafka.Gzip, false},
		{"snappy", kafka.Snappy, false},
		{"lz4", kafka.Lz4, false},
		{"zstd", kafka.Zstd, false},
		{"GZIP", 0, true}, // names are exact, as in the config file
		{"brotli", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Codec(tt.name)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Codec(%q) error = %v, wantErr %v", tt.name, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.name)) {
				t.Errorf("error %q does not name the compression %q", err, tt.name)
			}
			if got != tt.want {
				t.Errorf("Codec(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestNewWriterSettings(t *testing.T) {
	tests := []struct {
		name         string
		o            WriterOptions
		wantCodec    kafka.Compression
		wantBatch    int
		wantBatchDur time.Duration
		wantErr      bool
	}{
		{"defaults", WriterOptions{Brokers: []string{"127.0.0.1:1"}, Topic: "t"}, 0, 1000, 2 * time.Millisecond, false},
		{"set", WriterOptions{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Compression: "zstd", BatchSize: 50, BatchTimeout: time.Second}, kafka.Zstd, 50, time.Second, false},
		{"lz4", WriterOptions{Topic: "t", Compression: "lz4"}, kafka.Lz4, 1000, 2 * time.Millisecond, false},
		{"unknown compression", WriterOptions{Topic: "t", Compression: "bzip2"}, 0, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWriter(tt.o)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.o.Compression) {
					t.Fatalf("NewWriter = %v, want an error naming %q", err, tt.o.Compression)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewWriter: %v", err)
			}
			defer w.Close()
			if w.RequiredAcks != kafka.RequireAll {
				t.Errorf("RequiredAcks = %v, want RequireAll", w.RequiredAcks)
			}
			if w.MaxAttempts != 1 {
				t.Errorf("MaxAttempts = %d, want 1 (callers retry the failed indexes)", w.MaxAttempts)
			}
			if w.Compression != tt.wantCodec {
				t.Errorf("Compression = %v, want %v", w.Compression, tt.wantCodec)
			}
			if w.BatchSize != tt.wantBatch || w.BatchTimeout != tt.wantBatchDur {
				t.Errorf("batch = %d/%v, want %d/%v", w.BatchSize, w.BatchTimeout, tt.wantBatch, tt.wantBatchDur)
			}
			if w.Topic != tt.o.Topic {
				t.Errorf("Topic = %q, want %q", w.Topic, tt.o.Topic)
			}
		})
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			t.Parallel()
			e := startBroker(t, "", Topic{Name: "beacons", Partitions: 3})
			w, err := NewWriter(WriterOptions{Brokers: e.Addrs(), Topic: "beacons", ClientID: "test", Compression: codec})
			if err != nil {
				t.Fatalf("NewWriter: %v", err)
			}
			defer w.Close()
			const n = 12
			var want []string
			msgs := make([]kafka.Message, n)
			for i := range msgs {
				v := fmt.Sprintf("beacon-%02d", i)
				want = append(want, v)
				msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("view-%d", i)), Value: []byte(v)}
			}
			if err := w.WriteMessages(t.Context(), msgs...); err != nil {
				t.Fatalf("WriteMessages: %v", err)
			}

			r := NewReader(ReaderOptions{Brokers: e.Addrs(), Topic: "beacons", GroupID: "g", ClientID: "test"})
			defer r.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			var got []string
			var fetched []kafka.Message
			for range n {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					t.Fatalf("FetchMessage after %d: %v", len(got), err)
				}
				got = append(got, string(m.Value))
				fetched = append(fetched, m)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("read %v, want %v", got, want)
			}
			if lag, err := GroupLag(ctx, e.Addrs(), "g", "beacons"); err != nil || lag != n {
				t.Fatalf("before commit: GroupLag = %d, %v; want %d", lag, err, n)
			}
			gauge := NewLagGauge(e.Addrs(), "g", "beacons", time.Second, nil)
			if v := testutil.ToFloat64(gauge.gauge); v != -1 {
				t.Errorf("lag gauge before a measurement = %v, want -1", v)
			}
			if err := gauge.Update(ctx); err != nil || testutil.ToFloat64(gauge.gauge) != n {
				t.Fatalf("lag gauge before commit = %v, %v; want %d", testutil.ToFloat64(gauge.gauge), err, n)
			}
			if err := r.CommitMessages(ctx, fetched...); err != nil {
				t.Fatalf("CommitMessages: %v", err)
			}
			if lag, err := GroupLag(ctx, e.Addrs(), "g", "beacons"); err != nil || lag != 0 {
				t.Fatalf("after commit: GroupLag = %d, %v; want 0", lag, err)
			}
			if err := gauge.Update(ctx); err != nil || testutil.ToFloat64(gauge.gauge) != 0 {
				t.Fatalf("lag gauge after commit = %v, %v; want 0", testutil.ToFloat64(gauge.gauge), err)
			}
			e.Close() // the broker gone: unknown, not a stale figure
			if err := gauge.Update(ctx); err == nil || testutil.ToFloat64(gauge.gauge) != -1 {
				t.Fatalf("lag gauge with the broker gone = %v, %v; want -1 and an error", testutil.ToFloat64(gauge.gauge), err)
			}
		})
	}
}

// produce writes count[p] records to partition p, acknowledged by the broker.
func produce(t *testing.T, addrs []string, topic string, count []int) {
	t.Helper()
	c := client(t, addrs)
	for p, n := range count {
		if n == 0 {
			continue
		}
		recs := make([]kafka.Record, n)
		for i := range recs {
			recs[i] = kafka.Record{Value: kafka.NewBytes([]byte(fmt.Sprintf("p%d-%d", p, i)))}
		}
		res, err := c.Produce(t.Context(), &kafka.ProduceRequest{
			Topic: topic, Partition: p, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...),
		})
		if err == nil {
			err = res.Error
		}
		if err != nil {
			t.Fatalf("produce %d records to %s/%d: %v", n, topic, p, err)
		}
	}
}

// commit commits offsets for group as an admin would (no member).
func commit(t *testing.T, addrs []string, group, topic string, offsets map[int]int64) {
	t.Helper()
	var cs []kafka.OffsetCommit
	for p, o := range offsets {
		cs = append(cs, kafka.OffsetCommit{Partition: p, Offset: o})
	}
	res, err := client(t, addrs).OffsetCommit(t.Context(), &kafka.OffsetCommitRequest{
		GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{topic: cs},
	})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	for _, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				t.Fatalf("commit partition %d: %v", p.Partition, p.Error)
			}
		}
	}
}

func TestGroupLag(t *testing.T) {
	e := startBroker(t, "", Topic{Name: "beacons", Partitions: 3})
	produce(t, e.Addrs(), "beacons", []int{5, 3, 0})
	tests := []struct {
		group     string
		committed map[int]int64
		want      int64
	}{
		{"nothing-committed", nil, 8},
		{"one-partition", map[int]int64{0: 5}, 3},
		{"partial", map[int]int64{0: 2, 1: 3}, 3},
		{"all", map[int]int64{0: 5, 1: 3}, 0},
		{"all-and-empty-partition", map[int]int64{0: 5, 1: 3, 2: 0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.group, func(t *testing.T) {
			if tt.committed != nil {
				commit(t, e.Addrs(), tt.group, "beacons", tt.committed)
			}
			lag, err := GroupLag(t.Context(), e.Addrs(), tt.group, "beacons")
			if err != nil {
				t.Fatalf("GroupLag: %v", err)
			}
			if lag != tt.want {
				t.Errorf("GroupLag = %d, want %d", lag, tt.want)
			}
		})
	}
}

func TestGroupLagErrors(t *testing.T) {
	e := startBroker(t, "", Topic{Name: "beacons", Partitions: 1})
	tests := []struct {
		name    string
		brokers []string
		topic   string
		want    string
	}{
		{"unknown topic", e.Addrs(), "no-such-topic", "no-such-topic"},
		{"closed port", []string{closedAddr(t)}, "beacons", "group lag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := GroupLag(t.Context(), tt.brokers, "g", tt.topic)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("GroupLag = %v, want an error naming %q", err, tt.want)
			}
		})
	}
	// Asking must not create the topic as a side effect.
	if got := partitions(t, e.Addrs(), "no-such-topic"); len(got) != 0 {
		t.Errorf("GroupLag created the unknown topic: %v", got)
	}
}

func TestWaitDrained(t *testing.T) {
	e := startBroker(t, "", Topic{Name: "beacons", Partitions: 2})
	produce(t, e.Addrs(), "beacons", []int{4, 2})
	commit(t, e.Addrs(), "done", "beacons", map[int]int64{0: 4, 1: 2})
	commit(t, e.Addrs(), "behind", "beacons", map[int]int64{0: 3})
	tests := []struct {
		group, topic string
		want         []string // substrings of the error; nil for success
	}{
		{"done", "beacons", nil},
		{"behind", "beacons", []string{"3 records left"}},
		{"never-committed", "beacons", []string{"6 records left"}},
		{"done", "no-such-topic", []string{"no-such-topic"}},
	}
	for _, tt := range tests {
		t.Run(tt.group+"/"+tt.topic, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
			defer cancel()
			err := WaitDrained(ctx, e.Addrs(), tt.group, tt.topic)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("WaitDrained: %v", err)
				}
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WaitDrained = %v, want the context's deadline error", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("WaitDrained = %q, want it to name %q", err, s)
				}
			}
		})
	}
}

func TestWaitDrainedSeesCommitsArrive(t *testing.T) {
	e := startBroker(t, "", Topic{Name: "beacons", Partitions: 1})
	produce(t, e.Addrs(), "beacons", []int{3})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- WaitDrained(ctx, e.Addrs(), "late", "beacons") }()
	select {
	case err := <-done:
		t.Fatalf("WaitDrained returned %v before anything was committed", err)
	case <-time.After(250 * time.Millisecond):
	}
	commit(t, e.Addrs(), "late", "beacons", map[int]int64{0: 3})
	if err := <-done; err != nil {
		t.Fatalf("WaitDrained after commit: %v", err)
	}
}

func TestPing(t *testing.T) {
	e := startBroker(t, "")
	closed := closedAddr(t)
	tests := []struct {
		name    string
		brokers []string
		wantErr bool
	}{
		{"embedded", e.Addrs(), false},
		{"closed then embedded", append([]string{closed}, e.Addrs()...), false},
		{"closed", []string{closed}, true},
		{"none", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			err := Ping(ctx, tt.brokers)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Ping = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "%!") {
				t.Errorf("Ping error is garbled: %q", err)
			}
		})
	}
}

package beacons

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
)

// One embedded broker serves the whole package, started on first use so
// that the decode tests and fuzz workers never pay for it. Every test gets
// its own topic, so tests stay independent and faults are scoped by topic.
var (
	brokerOnce sync.Once
	broker     *kafkaio.Embedded
	brokerErr  error
	topicSeq   atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if broker != nil {
		broker.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func testBroker(t testing.TB) *kafkaio.Embedded {
	t.Helper()
	brokerOnce.Do(func() { broker, brokerErr = kafkaio.StartEmbedded(0, "") })
	if brokerErr != nil {
		t.Fatalf("embedded broker: %v", brokerErr)
	}
	return broker
}

// newTopic creates a fresh topic on the shared broker.
func newTopic(t testing.TB, partitions int) string {
	t.Helper()
	b := testBroker(t)
	name := fmt.Sprintf("beacons-test-%d", topicSeq.Add(1))
	if err := b.Cluster().CreateTopic(name, int32(partitions), nil); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return name
}

// newWriter builds the production writer for topic and closes it, with its
// transport, when the test ends.
func newWriter(t testing.TB, topic string, batchSize int) *kafkaio.Writer {
	t.Helper()
	w, err := kafkaio.NewWriter(kafkaio.WriterOptions{
		Brokers: testBroker(t).Addrs(), Topic: topic, ClientID: "beacons-test", BatchSize: batchSize,
	})
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Cleanup(func() {
		_ = w.Close()
		if tr, ok := w.Transport.(*kafka.Transport); ok {
			tr.CloseIdleConnections()
		}
	})
	return w
}

// clock is an injectable Options.Now.
type clock struct{ ms atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ms.Store(t.UnixMilli())
	return c
}

func (c *clock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }
func (c *clock) Set(t time.Time)         { c.ms.Store(t.UnixMilli()) }

// testNow is the server clock of most tests: 2025-11-27T18:45:50Z, inside
// the hls.js fixture session.
var testNow = time.UnixMilli(1764269150000).UTC()

// env is one ingest handler wired to a real producer, a real broker topic
// and the demo geo coverage, served over loopback HTTP.
type env struct {
	srv   *httptest.Server
	h     *Handler
	reg   *prometheus.Registry
	topic string
	clock *clock
}

type envConfig struct {
	opts       Options
	partitions int
	retries    int
	batchSize  int
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	if cfg.partitions == 0 {
		cfg.partitions = 3
	}
	topic := newTopic(t, cfg.partitions)
	w := newWriter(t, topic, cfg.batchSize)
	reg := prometheus.NewRegistry()
	p := NewProducer(w, ProducerOptions{Retries: cfg.retries, Timeout: 10 * time.Second, Registerer: reg})
	o := cfg.opts
	e := &env{reg: reg, topic: topic}
	if o.Now == nil {
		e.clock = newClock(testNow)
		o.Now = e.clock.Now
	}
	o.Registerer = reg
	e.h = NewHandler(p, geo.Demo(), o)
	mux := http.NewServeMux()
	e.h.Register(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// answer is one HTTP exchange with the handler.
type answer struct {
	status int
	header http.Header
	res    Result
	raw    string
}

type req struct {
	method string
	path   string // with the query
	body   []byte
	header map[string]string
}

func (e *env) do(t testing.TB, r req) answer {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/v1/beacons"
	}
	ctx := context.Background()
	if tt, ok := t.(*testing.T); ok {
		ctx = tt.Context()
	}
	hr, err := http.NewRequestWithContext(ctx, r.method, e.srv.URL+r.path, bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	return e.send(t, hr)
}

func (e *env) send(t testing.TB, hr *http.Request) answer {
	t.Helper()
	resp, err := e.srv.Client().Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", hr.Method, hr.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.res); err != nil {
			t.Fatalf("answer %d is not a Result: %v\n%s", resp.StatusCode, err, raw)
		}
	}
	return a
}

// postJSON posts a JSON body to /v1/beacons.
func (e *env) postJSON(t testing.TB, body string, header ...string) answer {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = header[i+1]
	}
	return e.do(t, req{body: []byte(body), header: h})
}

// published is a record read back from the topic.
type published struct {
	record.Beacon
	Key       string
	Partition int
}

// readTopic returns everything on the topic, partition by partition, by
// reading each partition up to the end offset it has now.
func (e *env) readTopic(t *testing.T) []published { t.Helper(); return readTopic(t, e.topic) }

func readTopic(t *testing.T, topic string) []published {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	brokers := testBroker(t).Addrs()
	tr := &kafka.Transport{ClientID: "beacons-test-reader"}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 5 * time.Second}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata %s: %v %+v", topic, err, md)
	}
	var offs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		offs = append(offs, kafka.LastOffsetOf(p.ID))
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: offs}})
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	var out []published
	for _, po := range lo.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("partition %d: %v", po.Partition, po.Error)
		}
		if po.LastOffset == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: brokers, Topic: topic, Partition: po.Partition,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond,
		})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				_ = r.Close()
				t.Fatalf("read %s/%d: %v", topic, po.Partition, err)
			}
			var b record.Beacon
			if err := b.UnmarshalBinary(m.Value); err != nil {
				t.Errorf("record at %d/%d: %v", m.Partition, m.Offset, err)
			}
			out = append(out, published{Beacon: b, Key: string(m.Key), Partition: m.Partition})
			if m.Offset >= po.LastOffset-1 {
				break
			}
		}
		_ = r.Close()
	}
	return out
}

// eventIDs returns the ids on the topic, each with how often it is there.
func eventIDs(ps []published) map[string]int {
	m := map[string]int{}
	for _, p := range ps {
		m[p.EventID]++
	}
	return m
}

// partitionOf is the partition kafka-go's Hash balancer (the production
// one) gives a key among n partitions.
func partitionOf(key string, n int) int {
	ps := make([]int, n)
	for i := range ps {
		ps[i] = i
	}
	return (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(key)}, ps...)
}

// counter reads one counter from the injected registry, as a scrape would.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
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
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s%v not registered", name, labels)
	return 0
}

// beacon is a valid beacon as JSON, with overrides merged in.
func beacon(over map[string]any) map[string]any {
	b := map[string]any{
		"type": "heartbeat", "view_id": "6f1f0d3c-7a21-4b0c-9a43-1e2ad9f65f8d", "session_id": "s-42",
		"ts": testNow.UnixMilli() - 1500, "seq": 7, "service": "vod", "cdn": "cdn-a",
		"host": "Edge1.CDN-A.example", "content_id": "bbb", "player": "hls.js", "player_version": "1.7.0",
		"device": "desktop", "os": "macOS", "played_ms": 30000, "bitrate_kbps": 6221, "throughput_kbps": 12300,
		"ttfb_ms": 180, "dropped_frames": 3,
	}
	for k, v := range over {
		if v == nil {
			delete(b, k)
			continue
		}
		b[k] = v
	}
	return b
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

// gatherCounters scrapes the registry: `name{label="value"}` -> value, for
// the named counter families.
func gatherCounters(t *testing.T, reg *prometheus.Registry, names ...string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !slices.Contains(names, mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

package scorer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/steering"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var catalog = steering.Catalog{
	CDNs:     []steering.CDN{{Name: "cdn-a", Host: "a.example"}, {Name: "cdn-b", Host: "b.example"}},
	Services: []steering.Service{{Name: "vod", CDNs: []string{"cdn-a", "cdn-b"}}},
}

// TestScoreAndSubscribe runs the whole distribution path over a real
// Kafka-protocol broker: beacon records in, the scorer's snapshots out to
// the compacted rankings topic, a subscriber's Table deciding from them.
// A record that does not decode is counted and skipped.
func TestScoreAndSubscribe(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	broker, err := kafkaio.StartEmbedded(0, "", kafkaio.Topic{Name: "beacons", Partitions: 3}, kafkaio.Topic{Name: "rankings", Partitions: 1, Compacted: true})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	brokers := broker.Addrs()

	now := time.Now().Truncate(time.Millisecond)
	var msgs []kafka.Message
	for i := range 300 {
		cdn, fatal := "cdn-a", true // cdn-a fails every view
		if i%2 == 1 {
			cdn, fatal = "cdn-b", false
		}
		b := record.Beacon{EventID: fmt.Sprint("e", i), ReceivedAt: now.Add(time.Duration(i) * time.Millisecond).UnixMilli(),
			ClientIP: fmt.Sprintf("198.51.100.%d", i%200), Region: "eu-west", Country: "GB", ASN: 64496,
			Service: "vod", CDN: cdn, ViewID: fmt.Sprint("v", i), TS: now.UnixMilli()}
		if fatal {
			b.Type, b.Fatal, b.ErrorCode = record.TypeError, true, "E1"
		} else {
			b.Type, b.StartupMS, b.BitrateKbps = record.TypeViewStart, 800, 3000
		}
		v, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte("eu-west"), Value: v})
	}
	msgs = append(msgs, kafka.Message{Key: []byte("eu-west"), Value: []byte("not a record")})
	w, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: "beacons"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	eng, err := steering.NewEngine(catalog, steering.DefaultPolicy(), now)
	if err != nil {
		t.Fatal(err)
	}
	rd := kafkaio.NewReader(kafkaio.ReaderOptions{Brokers: brokers, Topic: "beacons", GroupID: "score-test"})
	defer rd.Close()
	rw, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: "rankings", Compression: "zstd", BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	reg := prometheus.NewRegistry()
	var local []*steering.Snapshot
	s := New(eng, rd, rw, Options{Registerer: reg, Sinks: []func(*steering.Snapshot){func(sn *steering.Snapshot) { local = append(local, sn) }}})
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	for s.Observed() < int64(len(msgs)) {
		if ctx.Err() != nil {
			t.Fatalf("observed %d of %d", s.Observed(), len(msgs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	snaps := s.Tick(ctx, now.Add(time.Second))
	if len(snaps) != 1 || len(local) != 1 || local[0] != snaps[0] {
		t.Fatalf("tick gave %d snapshots, sinks got %d", len(snaps), len(local))
	}
	if got := counter(t, reg, "cdnpilot_scorer_observations_total", "undecodable"); got != 1 {
		t.Errorf("undecodable = %v, want 1", got)
	}
	if got := counter(t, reg, "cdnpilot_scorer_observations_total", "ok"); got != 300 {
		t.Errorf("ok = %v, want 300", got)
	}

	table, err := steering.NewTable(catalog, steering.DefaultPolicy().Stale, func() time.Time { return now.Add(2 * time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	sub := NewSubscriber(table, []string{"vod"}, SubscriberOptions{Brokers: brokers, Topic: "rankings", Registerer: reg})
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Run(sctx) }()
	for table.Snapshot("vod") == nil {
		if ctx.Err() != nil {
			t.Fatal("no snapshot reached the table")
		}
		time.Sleep(10 * time.Millisecond)
	}
	d, err := table.Decide(steering.Query{Service: "vod", Location: steering.Location{Region: "eu-west", Country: "GB", ASN: 64496}, ViewID: "x"})
	if err != nil || d.CDN != "cdn-b" || d.Version != snaps[0].Version || d.Stale {
		t.Fatalf("decision %+v %v, want cdn-b from version %d: cdn-a fails every view", d, err, snaps[0].Version)
	}
	if age := gauge(t, reg, "cdnpilot_snapshot_age_seconds"); age < 0.9 || age > 1.1 {
		t.Errorf("snapshot age = %v, want 1s", age)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-subDone; err != nil {
		t.Fatal(err)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	for _, m := range gather(t, reg, name) {
		for _, l := range m.GetLabel() {
			if l.GetName() == "result" && l.GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{result=%q}", name, result)
	return 0
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	ms := gather(t, reg, name)
	if len(ms) == 0 {
		t.Fatalf("no %s", name)
	}
	return ms[0].GetGauge().GetValue()
}

func gather(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

func TestObservation(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   record.Beacon
		want steering.Observation
	}{
		{"view start", record.Beacon{ReceivedAt: 1000, ClientIP: "192.0.2.7", Region: "r", Country: "GB", ASN: 1, Service: "vod", CDN: "a", Type: record.TypeViewStart, StartupMS: 900},
			steering.Observation{At: time.UnixMilli(1000), Service: "vod", CDN: "a", Location: steering.Location{Region: "r", Country: "GB", ASN: 1}, Kind: steering.KindViewStart, StartupMS: 900}},
		{"cmcd end", record.Beacon{ReceivedAt: 5, Service: "vod", CDN: "a", Type: record.TypeViewEnd, Source: record.SourceCMCD},
			steering.Observation{At: time.UnixMilli(5), Service: "vod", CDN: "a", Kind: steering.KindViewEnd, CMCD: true}},
		{"fatal", record.Beacon{Service: "vod", CDN: "a", Type: record.TypeError, Fatal: true, RebufferMS: 10, PlayedMS: 20, TTFBMS: 30, ThroughputKbps: 40, BitrateKbps: 50},
			steering.Observation{At: time.UnixMilli(0), Service: "vod", CDN: "a", Kind: steering.KindError, Fatal: true, RebufferMS: 10, PlayedMS: 20, TTFBMS: 30, ThroughputKbps: 40, BitrateKbps: 50}},
		{"bitrate change", record.Beacon{Service: "vod", CDN: "a", Type: record.TypeBitrateChange},
			steering.Observation{At: time.UnixMilli(0), Service: "vod", CDN: "a", Kind: steering.KindOther}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Observation(&tc.in)
			if tc.in.ClientIP != "" {
				if got.Client == 0 {
					t.Fatal("client key not set")
				}
				got.Client = 0
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestSubscriberNeedsBrokers(t *testing.T) {
	table, err := steering.NewTable(catalog, steering.DefaultPolicy().Stale, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = NewSubscriber(table, []string{"vod"}, SubscriberOptions{Topic: "rankings"}).Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "no brokers") {
		t.Fatalf("err = %v", err)
	}
}

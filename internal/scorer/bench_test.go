package scorer

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/steering"
)

// BenchmarkGroupThroughput is how fast a scorer group reads a backlog of
// 300,000 beacons (60 regions over 6 partitions) with one member and with
// two: beacons/s from the moment the members have their partitions until
// every beacon is in an engine (read, decoded, observed, shared). The
// members and the broker share one process and the machine's cores.
//
//	go test -run '^$' -bench GroupThroughput -benchtime 3x ./internal/scorer/
func BenchmarkGroupThroughput(b *testing.B) {
	const n = 300_000
	broker, err := kafkaio.StartEmbedded(0, "", kafkaio.Topic{Name: "rankings", Partitions: 1, Compacted: true})
	if err != nil {
		b.Fatal(err)
	}
	defer broker.Close()
	brokers := broker.Addrs()
	now := time.Now()
	cat := steering.Catalog{
		CDNs:     []steering.CDN{{Name: "cdn-a", Host: "a.example"}, {Name: "cdn-b", Host: "b.example"}, {Name: "cdn-c", Host: "c.example"}},
		Services: []steering.Service{{Name: "vod", CDNs: []string{"cdn-a", "cdn-b", "cdn-c"}}},
	}
	msgs := make([]kafka.Message, 0, n)
	for i := range n {
		region := fmt.Sprintf("r-%02d", i%60)
		bc := record.Beacon{EventID: fmt.Sprint("e", i), ReceivedAt: now.Add(time.Duration(i) * time.Microsecond).UnixMilli(), TS: now.UnixMilli(),
			ClientIP: fmt.Sprintf("10.%d.%d.9", i/250%250, i%250), Region: region, Country: "GB", ASN: uint32(64500 + i%7),
			Service: "vod", CDN: cat.CDNs[i%3].Name, ViewID: fmt.Sprint("v", i/4), Type: record.TypeHeartbeat,
			PlayedMS: 10_000, RebufferMS: uint32(i % 50), BitrateKbps: 3000, ThroughputKbps: 9000, TTFBMS: 40}
		if i%4 == 0 {
			bc.Type, bc.StartupMS = record.TypeViewStart, 900
		}
		v, err := bc.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(region), Value: v})
	}
	rankings, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: "rankings", Compression: "zstd"})
	if err != nil {
		b.Fatal(err)
	}
	defer rankings.Close()

	run := 0
	// One scoring of the backlog by a fresh group of the given size.
	once := func(members int) float64 {
		run++
		beacons, deltas, parts := fmt.Sprintf("beacons-%d", run), fmt.Sprintf("deltas-%d", run), fmt.Sprintf("parts-%d", run)
		for _, t := range []string{beacons, deltas, parts} {
			np := int32(1)
			if t == beacons {
				np = 6
			}
			if err := broker.Cluster().CreateTopic(t, np, nil); err != nil {
				b.Fatal(err)
			}
		}
		dw, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: deltas, Compression: "zstd", BatchTimeout: time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		pw, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: parts, Compression: "zstd", BatchTimeout: time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
		bw, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: beacons, Compression: "lz4", BatchSize: 5000})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i += 5000 {
			if err := bw.WriteMessages(ctx, msgs[i:i+5000]...); err != nil {
				b.Fatal(err)
			}
		}
		_ = bw.Close()
		var regs []*prometheus.Registry
		done := make(chan error, members)
		for m := range members {
			reg := prometheus.NewRegistry()
			regs = append(regs, reg)
			g, err := NewGroup(dw, pw, GroupOptions{Brokers: brokers, ClientID: fmt.Sprint("m", m), GroupID: fmt.Sprint("bench-", run),
				Beacons: beacons, Deltas: deltas, Parts: parts, Interval: time.Second, Rankings: rankings, SessionTimeout: 6 * time.Second,
				NewEngine: func(now time.Time) (*steering.Engine, error) {
					return steering.NewEngine(cat, steering.DefaultPolicy(), now)
				}, Registerer: reg})
			if err != nil {
				b.Fatal(err)
			}
			go func() { done <- g.Run(ctx) }()
		}
		// Observed beacons over the members, and the partitions they own
		// (negative while one of them owns none).
		seen := func() (total, owned float64) {
			for _, reg := range regs {
				total += observed(b, reg)
				owned += gaugeOf(b, reg, "cdnpilot_scorer_partitions")
				if gaugeOf(b, reg, "cdnpilot_scorer_partitions") == 0 {
					owned = -100
				}
			}
			return total, owned
		}
		// The clock starts when the partitions are assigned: the
		// group's join is not what is measured. A member that started
		// alone and was rebalanced would count beacons twice: Fatal below.
		for {
			if _, owned := seen(); owned == 6 {
				break
			}
			if ctx.Err() != nil {
				b.Fatal("the members did not split the partitions")
			}
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		for {
			total, _ := seen()
			if total >= n {
				break
			}
			if ctx.Err() != nil {
				b.Fatalf("observed %v of %d", total, n)
			}
			time.Sleep(2 * time.Millisecond)
		}
		elapsed := time.Since(start)
		if total, owned := seen(); owned != 6 || total != n {
			b.Fatalf("a rebalance during the run: %v partitions owned, %v observed", owned, total)
		}
		rate := n / elapsed.Seconds()
		b.Logf("members=%d: all observed after %v", members, elapsed.Round(time.Millisecond))
		cancel()
		for range members {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		_ = dw.Close()
		_ = pw.Close()
		for _, t := range []string{beacons, deltas, parts} {
			_ = broker.Cluster().DeleteTopic(t)
		}
		runtime.GC()
		return rate
	}
	// The two sizes take turns, so the machine's drift hits both alike.
	var one, two []float64
	for range b.N {
		one = append(one, once(1))
		two = append(two, once(2))
	}
	slices.Sort(one)
	slices.Sort(two)
	b.ReportMetric(one[len(one)/2], "beacons/s@1")
	b.ReportMetric(two[len(two)/2], "beacons/s@2")
	b.ReportMetric(two[len(two)/2]/one[len(one)/2], "x")
}

func observed(b *testing.B, reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cdnpilot_scorer_observations_total" {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		return sum
	}
	return 0
}

func gaugeOf(b *testing.B, reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

package consume

import (
	"context"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
)

// BenchmarkConsume: records/s from the broker into ClickHouse, the
// consumer's share of the pipeline (records produced beforehand).
func BenchmarkConsume(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		e := setup(b, 6)
		const n = 200_000
		e.produce(b, n)
		r := e.reader()
		c := New(r, e.dlqW, e.sink, Options{BatchRows: 20000, BatchInterval: time.Second, InsertTimeout: 30 * time.Second})
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- c.Run(ctx) }()
		if err := kafkaio.WaitDrained(b.Context(), e.broker.Addrs(), group, topic); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		_ = r.Close()
		b.ReportMetric(n/elapsed.Seconds(), "records/s")
		b.StartTimer()
	}
}

package analytics_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/steering"
)

// fakeSink records batch sizes. fail, when set, decides each call's error;
// block, when set, is received from before each insert returns (or the
// insert's ctx ends).
type fakeSink struct {
	mu      sync.Mutex
	batches []int
	calls   int
	fail    func(call int) error
	block   chan struct{}
}

func (f *fakeSink) InsertDecisions(ctx context.Context, rows []steering.DecisionRecord) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(f.calls); err != nil {
			return err
		}
	}
	f.batches = append(f.batches, len(rows))
	return nil
}

func (f *fakeSink) got() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.batches)
}

func rec(i int) steering.DecisionRecord {
	return steering.DecisionRecord{At: t0.Add(time.Duration(i) * time.Millisecond), Protocol: "dns", Service: "vod", CDN: "cdn-a", Result: "NOERROR", Version: uint64(i)}
}

// startLog runs l in the test's bubble; stop cancels it and waits.
func startLog(t *testing.T, l *analytics.DecisionLog) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

func TestDecisionLogBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{}
		l, reg := newDecisionLog(t, sink, analytics.DecisionLogOptions{BatchRows: 4, FlushInterval: time.Second})
		stop := startLog(t, l)
		for i := range 10 {
			l.LogDecision(rec(i))
		}
		synctest.Wait()
		if g := sink.got(); g != "[4 4]" {
			t.Fatalf("after 10 records: batches %s, want [4 4] and 2 waiting for the interval", g)
		}
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if g := sink.got(); g != "[4 4]" {
			t.Fatalf("before the interval: batches %s", g)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if g := sink.got(); g != "[4 4 2]" {
			t.Fatalf("after the interval: batches %s, want [4 4 2]", g)
		}
		// Idle: no empty inserts.
		time.Sleep(time.Minute)
		synctest.Wait()
		// Shutdown flushes what is waiting.
		l.LogDecision(rec(11))
		l.LogDecision(rec(12))
		stop()
		if g := sink.got(); g != "[4 4 2 2]" {
			t.Fatalf("after stop: batches %s, want [4 4 2 2]", g)
		}
		if n := metricValue(t, reg, "cdnpilot_decision_log_written_total"); n != 12 {
			t.Fatalf("written = %v, want 12", n)
		}
	})
}

func TestDecisionLogShutdownFlushesInChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{}
		l, _ := newDecisionLog(t, sink, analytics.DecisionLogOptions{BatchRows: 4, Buffer: 100})
		// Logged before Run starts, then stopped at once: the final flush
		// takes the buffer in BatchRows chunks.
		for i := range 10 {
			l.LogDecision(rec(i))
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := l.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if g := sink.got(); g != "[4 4 2]" {
			t.Fatalf("batches %s, want [4 4 2]", g)
		}
		if err := l.Run(t.Context()); err == nil {
			t.Fatal("second Run accepted")
		}
	})
}

func TestDecisionLogRetries(t *testing.T) {
	errDown := errors.New("clickhouse down")
	cases := []struct {
		name        string
		fail        func(call int) error
		wantBatches string
		written     float64
		dropped     float64
		errors      float64
	}{
		{"ok", func(int) error { return nil }, "[3 3]", 6, 0, 0},
		{"recovers on the last attempt", func(call int) error {
			if call <= 2 {
				return errDown
			}
			return nil
		}, "[3 3]", 6, 0, 2},
		// Three attempts, then the batch is dropped; the next one goes in.
		{"gives up, then carries on", func(call int) error {
			if call <= 3 {
				return errDown
			}
			return nil
		}, "[3]", 3, 3, 3},
		{"always down", func(int) error { return errDown }, "[]", 0, 6, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sink := &fakeSink{fail: tc.fail}
				l, reg := newDecisionLog(t, sink, analytics.DecisionLogOptions{BatchRows: 3})
				stop := startLog(t, l)
				for i := range 3 {
					l.LogDecision(rec(i))
				}
				// Past every backoff.
				time.Sleep(time.Minute)
				synctest.Wait()
				for i := range 3 {
					l.LogDecision(rec(3 + i))
				}
				time.Sleep(time.Minute)
				synctest.Wait()
				stop()
				if g := sink.got(); g != tc.wantBatches {
					t.Errorf("batches %s, want %s", g, tc.wantBatches)
				}
				for _, m := range []struct {
					name   string
					labels []string
					want   float64
				}{
					{"cdnpilot_decision_log_written_total", nil, tc.written},
					{"cdnpilot_decision_log_dropped_total", []string{"reason", "insert_failed"}, tc.dropped},
					{"cdnpilot_decision_log_insert_errors_total", nil, tc.errors},
				} {
					if got := metricValue(t, reg, m.name, m.labels...); got != m.want {
						t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
					}
				}
			})
		})
	}
}

// A stop during the pause between attempts does not lose the batch: the
// final flush tries it again.
func TestDecisionLogStopDuringRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{fail: func(call int) error {
			if call == 1 {
				return errors.New("transient")
			}
			return nil
		}}
		l, reg := newDecisionLog(t, sink, analytics.DecisionLogOptions{BatchRows: 2})
		stop := startLog(t, l)
		l.LogDecision(rec(1))
		l.LogDecision(rec(2))
		synctest.Wait() // first attempt failed, pausing
		stop()
		if g := sink.got(); g != "[2]" {
			t.Fatalf("batches %s, want [2]", g)
		}
		if n := metricValue(t, reg, "cdnpilot_decision_log_dropped_total", "reason", "insert_failed"); n != 0 {
			t.Fatalf("dropped = %v, want 0", n)
		}
	})
}

// With the sink stuck, LogDecision still returns at once: the buffer fills
// and the rest is counted as dropped. A deadlock here fails the bubble.
func TestDecisionLogNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{block: make(chan struct{})}
		l, reg := newDecisionLog(t, sink, analytics.DecisionLogOptions{Buffer: 8, BatchRows: 1, InsertTimeout: time.Hour})
		stop := startLog(t, l)
		l.LogDecision(rec(0))
		synctest.Wait() // Run holds record 0 and waits in the sink
		start := time.Now()
		for i := 1; i <= 1000; i++ {
			l.LogDecision(rec(i))
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("logging took %s of bubble time", d)
		}
		if n := metricValue(t, reg, "cdnpilot_decision_log_dropped_total", "reason", "buffer_full"); n != 1000-8 {
			t.Fatalf("dropped{buffer_full} = %v, want %d", n, 1000-8)
		}
		close(sink.block)
		stop()
		if n := metricValue(t, reg, "cdnpilot_decision_log_written_total"); n != 1+8 {
			t.Fatalf("written = %v, want 9", n)
		}
	})
}

// A stuck insert is cut off by InsertTimeout and counts as a failed attempt.
func TestDecisionLogInsertTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{block: make(chan struct{})}
		l, reg := newDecisionLog(t, sink, analytics.DecisionLogOptions{BatchRows: 1, InsertTimeout: 2 * time.Second, Attempts: 2})
		stop := startLog(t, l)
		l.LogDecision(rec(0))
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := metricValue(t, reg, "cdnpilot_decision_log_dropped_total", "reason", "insert_failed"); n != 1 {
			t.Fatalf("dropped{insert_failed} = %v, want 1", n)
		}
		if n := metricValue(t, reg, "cdnpilot_decision_log_insert_errors_total"); n != 2 {
			t.Fatalf("insert errors = %v, want 2", n)
		}
		stop()
	})
}

func TestDecisionLogInvalidAndConcurrent(t *testing.T) {
	ring := analytics.NewDecisionRing(100_000)
	l, reg := newDecisionLog(t, ring, analytics.DecisionLogOptions{Buffer: 1024, BatchRows: 256, FlushInterval: time.Millisecond})
	stop := runLog(t, l)
	const writers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := rec(w*each + i)
				if i%100 == 0 {
					r.At = time.Time{} // invalid: dropped as such, not fatal to its batch
				}
				l.LogDecision(r)
			}
		})
	}
	wg.Wait()
	stop()
	written := metricValue(t, reg, "cdnpilot_decision_log_written_total")
	full := metricValue(t, reg, "cdnpilot_decision_log_dropped_total", "reason", "buffer_full")
	invalid := metricValue(t, reg, "cdnpilot_decision_log_dropped_total", "reason", "invalid")
	if written+full+invalid != writers*each {
		t.Fatalf("written %v + dropped %v + invalid %v != %d logged", written, full, invalid, writers*each)
	}
	if invalid == 0 || invalid > writers*each/100 {
		t.Fatalf("invalid = %v, want 1..%d", invalid, writers*each/100)
	}
	if float64(ring.Len()) != written {
		t.Fatalf("ring holds %d, written %v", ring.Len(), written)
	}
}

func TestDecisionLogSampling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{}
		l, reg := newDecisionLog(t, sink, analytics.DecisionLogOptions{SampleRate: 0.25, Buffer: 20_000})
		for i := range 20_000 {
			l.LogDecision(rec(i))
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := l.Run(ctx); err != nil {
			t.Fatal(err)
		}
		// 5000 expected, standard deviation about 61.
		if n := metricValue(t, reg, "cdnpilot_decision_log_written_total"); math.Abs(n-5000) > 500 {
			t.Fatalf("written %v of 20000 at rate 0.25", n)
		}
	})
}

func TestDecisionLogOptions(t *testing.T) {
	sink := &fakeSink{}
	cases := []struct {
		name  string
		o     analytics.DecisionLogOptions
		field string
	}{
		{"sample rate above 1", analytics.DecisionLogOptions{SampleRate: 1.5}, "sample_rate"},
		{"negative sample rate", analytics.DecisionLogOptions{SampleRate: -0.1}, "sample_rate"},
		{"NaN sample rate", analytics.DecisionLogOptions{SampleRate: math.NaN()}, "sample_rate"},
		{"negative buffer", analytics.DecisionLogOptions{Buffer: -1}, "buffer"},
		{"negative interval", analytics.DecisionLogOptions{FlushInterval: -time.Second}, "flush_interval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := analytics.NewDecisionLog(sink, tc.o); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error = %v, want one naming %s", err, tc.field)
			}
		})
	}
	if _, err := analytics.NewDecisionLog(nil, analytics.DecisionLogOptions{}); err == nil {
		t.Fatal("nil sink accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := analytics.NewDecisionLog(sink, analytics.DecisionLogOptions{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := analytics.NewDecisionLog(sink, analytics.DecisionLogOptions{Registerer: reg}); err == nil {
		t.Fatal("second registration of the same metrics accepted")
	}
}

// The DNS hot path calls LogDecision for every answer: it must not
// allocate, whether the record is queued or dropped.
func TestLogDecisionDoesNotAllocate(t *testing.T) {
	l, _ := newDecisionLog(t, &fakeSink{}, analytics.DecisionLogOptions{Buffer: 200})
	r := decisions()[0]
	if n := testing.AllocsPerRun(100, func() { l.LogDecision(r) }); n != 0 {
		t.Fatalf("LogDecision into the buffer: %v allocs", n)
	}
	if n := testing.AllocsPerRun(1000, func() { l.LogDecision(r) }); n != 0 {
		t.Fatalf("LogDecision into a full buffer: %v allocs", n)
	}
	sampled, _ := newDecisionLog(t, &fakeSink{}, analytics.DecisionLogOptions{Buffer: 10_000, SampleRate: 0.5})
	if n := testing.AllocsPerRun(1000, func() { sampled.LogDecision(r) }); n != 0 {
		t.Fatalf("sampled LogDecision: %v allocs", n)
	}
}

func TestDecisionRingKeepsTheLast(t *testing.T) {
	ring := analytics.NewDecisionRing(3)
	for i := 1; i <= 5; i++ {
		if err := ring.InsertDecisions(t.Context(), []steering.DecisionRecord{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ring.Decisions(t.Context(), analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{From: t0, To: t0.Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(versions(got)) != "[5 4 3]" || ring.Len() != 3 {
		t.Fatalf("ring holds %v (len %d), want [5 4 3]", versions(got), ring.Len())
	}
	// Same At: the later logged comes first.
	tie := analytics.NewDecisionRing(0)
	a, b := rec(1), rec(1)
	b.Version = 2
	if err := tie.InsertDecisions(t.Context(), []steering.DecisionRecord{a, b}); err != nil {
		t.Fatal(err)
	}
	got, _ = tie.Decisions(t.Context(), analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{From: t0, To: t0.Add(time.Hour)}})
	if fmt.Sprint(versions(got)) != "[2 1]" {
		t.Fatalf("tie order %v, want [2 1]", versions(got))
	}
}

// BenchmarkLogDecision is the DNS hot path's cost (go test -bench
// LogDecision -benchmem): queued into a buffer with room, dropped at a full
// one, and from every CPU with Run draining into a sink that keeps nothing.
// Run cannot keep up with a tight loop, so "running" reports how many took
// the drop path (dropped/op).
func BenchmarkLogDecision(b *testing.B) {
	r := decisions()[0]
	newLog := func(b *testing.B, o analytics.DecisionLogOptions) (*analytics.DecisionLog, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		o.Registerer = reg
		l, err := analytics.NewDecisionLog(discardSink{}, o)
		if err != nil {
			b.Fatal(err)
		}
		return l, reg
	}
	b.Run("queued", func(b *testing.B) {
		const chunk = 1 << 16
		b.ReportAllocs()
		var l *analytics.DecisionLog
		for i := 0; b.Loop(); i++ {
			if i%chunk == 0 {
				b.StopTimer()
				l, _ = newLog(b, analytics.DecisionLogOptions{Buffer: chunk})
				b.StartTimer()
			}
			l.LogDecision(r)
		}
	})
	b.Run("full", func(b *testing.B) {
		l, _ := newLog(b, analytics.DecisionLogOptions{Buffer: 1})
		l.LogDecision(r)
		b.ReportAllocs()
		for b.Loop() {
			l.LogDecision(r)
		}
	})
	b.Run("running", func(b *testing.B) {
		l, reg := newLog(b, analytics.DecisionLogOptions{})
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.LogDecision(r)
			}
		})
		b.StopTimer()
		cancel()
		<-done
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "cdnpilot_decision_log_dropped_total" {
				var n float64
				for _, m := range mf.GetMetric() {
					n += m.GetCounter().GetValue()
				}
				b.ReportMetric(n/float64(b.N), "dropped/op")
			}
		}
	})
}

type discardSink struct{}

func (discardSink) InsertDecisions(context.Context, []steering.DecisionRecord) error { return nil }

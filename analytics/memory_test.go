package analytics_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/beacons/record"
)

func TestMemoryContract(t *testing.T) {
	contract(t, func(t *testing.T) store {
		m := analytics.NewMemory(analytics.MemoryOptions{})
		t.Cleanup(func() { _ = m.Close() })
		return m
	}, true)
}

func beaconAt(id string, at time.Time) record.Beacon {
	return record.Beacon{EventID: id, ReceivedAt: at.UnixMilli(), Type: record.TypeViewStart, ViewID: id, Service: "vod", CDN: "cdn-a", StartupMS: 500}
}

func views(t *testing.T, m *analytics.Memory, from, to time.Time) uint64 {
	t.Helper()
	aggs, err := m.Window(t.Context(), analytics.WindowQuery{From: from, To: to})
	if err != nil {
		t.Fatalf("window: %v", err)
	}
	var n uint64
	for _, a := range aggs {
		n += a.Values[analytics.MetricViews].N
	}
	return n
}

func TestMemoryRetention(t *testing.T) {
	m := analytics.NewMemory(analytics.MemoryOptions{Retention: 10 * time.Minute})
	all := [2]time.Time{t0.Add(-time.Hour), t0.Add(time.Hour)}
	if err := m.Insert(t.Context(), []record.Beacon{beaconAt("old", t0)}); err != nil {
		t.Fatal(err)
	}
	// Eleven minutes later the first minute falls out of retention...
	if err := m.Insert(t.Context(), []record.Beacon{beaconAt("new", t0.Add(11*time.Minute))}); err != nil {
		t.Fatal(err)
	}
	if n := views(t, m, all[0], all[1]); n != 1 {
		t.Fatalf("views after expiry = %d, want 1", n)
	}
	// ...and late data older than retention is dropped, not resurrected.
	if err := m.Insert(t.Context(), []record.Beacon{beaconAt("late", t0)}); err != nil {
		t.Fatal(err)
	}
	if n := views(t, m, all[0], all[1]); n != 1 {
		t.Fatalf("views after late insert = %d, want 1", n)
	}
}

func TestMemoryMaxEventIDs(t *testing.T) {
	m := analytics.NewMemory(analytics.MemoryOptions{MaxEventIDs: 10})
	for i := range 5 {
		var rows []record.Beacon
		for j := range 4 {
			rows = append(rows, beaconAt(fmt.Sprintf("e%d-%d", i, j), t0.Add(time.Duration(i)*time.Minute)))
		}
		if err := m.Insert(t.Context(), rows); err != nil {
			t.Fatal(err)
		}
	}
	// 20 ids inserted with a cap of 10: only the newest two minutes remain.
	if n := views(t, m, t0, t0.Add(time.Hour)); n != 8 {
		t.Fatalf("views = %d, want 8", n)
	}
}

func TestMemoryConcurrent(t *testing.T) {
	m := analytics.NewMemory(analytics.MemoryOptions{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				// Every worker sends every id: each must count once.
				b := beaconAt(fmt.Sprintf("v%d", i), t0.Add(time.Duration(i%5)*time.Minute))
				if err := m.Insert(t.Context(), []record.Beacon{b}); err != nil {
					t.Error(err)
				}
				if w%2 == 0 {
					_ = views(t, m, t0, t0.Add(time.Hour))
				}
			}
		})
	}
	wg.Wait()
	if n := views(t, m, t0, t0.Add(time.Hour)); n != 50 {
		t.Fatalf("views = %d, want 50", n)
	}
}

package overrides

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/steering"
)

// TestTwoNodesSeeACreate is the reach guarantee: a create on one node is
// held by another node's follower within seconds.
func TestTwoNodesSeeACreate(t *testing.T) {
	e := startBroker(t, 3)
	clk := newClock()
	a := newNode(t, e.Addrs(), clk)
	b := follow(t, e.Addrs(), testTopic, FollowerOptions{Now: clk.Now})
	waitReady(t, b)

	const n = 10
	var reach, afterAnswer []time.Duration
	for i := range n {
		start := time.Now()
		o := override("")
		o.CDN = fmt.Sprintf("cdn-%d", i)
		rec, err := a.store.Create(t.Context(), o, "alice")
		if err != nil {
			t.Fatalf("Create %d: %v", i, err)
		}
		answered := time.Now()
		// Read-your-writes: the writing node holds it when Create returns.
		if got, ok := a.store.Get(rec.ID); !ok || !reflect.DeepEqual(got, rec) {
			t.Fatalf("node a right after Create: Get = %+v, %v; want %+v", got, ok, rec)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err = b.WaitRevision(ctx, rec.ID, 1)
		cancel()
		if err != nil {
			t.Fatalf("node b did not see create %d within 5s: %v", i, err)
		}
		seen := time.Now()
		reach = append(reach, seen.Sub(start))
		afterAnswer = append(afterAnswer, seen.Sub(answered))
		if got, _ := b.Get(rec.ID); !reflect.DeepEqual(got, rec) {
			t.Errorf("node b holds %+v, want %+v", got, rec)
		}
	}
	sort.Slice(reach, func(i, j int) bool { return reach[i] < reach[j] })
	sort.Slice(afterAnswer, func(i, j int) bool { return afterAnswer[i] < afterAnswer[j] })
	t.Logf("create -> second node (n=%d): min %v, median %v, max %v; after the API's answer: median %v, max %v",
		n, reach[0], reach[n/2], reach[n-1], afterAnswer[n/2], afterAnswer[n-1])
}

// TestRestartReadsWholeState: a follower started after the writes (a node
// restarting) holds exactly what a running one holds once Ready closes,
// and hands the whole active set to OnChange once, not record by record.
func TestRestartReadsWholeState(t *testing.T) {
	dir := t.TempDir()
	first, err := kafkaio.StartEmbedded(0, dir, kafkaio.Topic{Name: testTopic, Partitions: 3, Compacted: true})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	defer first.Close()
	clk := newClock()
	var want []Record
	var wantActive []steering.Override
	t.Run("write", func(t *testing.T) {
		// The writing node stops with this subtest.
		a := newNode(t, first.Addrs(), clk)
		var ids []string
		for i := range 8 {
			clk.Add(time.Minute)
			r, err := a.store.Create(t.Context(), override(fmt.Sprintf("ovr_%d", i)), "alice")
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			ids = append(ids, r.ID)
		}
		if _, _, err := a.store.Extend(t.Context(), ids[1], clk.Now().Add(3*time.Hour), "longer", "bob"); err != nil {
			t.Fatalf("Extend: %v", err)
		}
		if _, _, err := a.store.Delete(t.Context(), ids[2], "fixed", "bob"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		want = a.f.All()
		if wantActive, err = a.f.Active(t.Context(), clk.Now()); err != nil {
			t.Fatalf("Active: %v", err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	if len(want) != 8 || want[0].ID != "ovr_7" || want[7].ID != "ovr_0" {
		t.Errorf("All is not newest first: %v", ids(want))
	}

	// In order: the second case stops the first broker.
	tests := []struct {
		name  string
		addrs func(t *testing.T) []string
	}{
		{"node restart", func(*testing.T) []string { return first.Addrs() }},
		{"broker and node restart", func(t *testing.T) []string {
			first.Close()
			e, err := kafkaio.StartEmbedded(0, dir)
			if err != nil {
				t.Fatalf("restart broker: %v", err)
			}
			t.Cleanup(e.Close)
			return e.Addrs()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := make(chan []steering.Override, 100)
			b := follow(t, tt.addrs(t), testTopic, FollowerOptions{Now: clk.Now}, func(a []steering.Override) { calls <- a })
			waitReady(t, b)
			// Ready means complete: no waiting for anything else here.
			if got := b.All(); !reflect.DeepEqual(got, want) {
				t.Errorf("All =\n%+v\nwant\n%+v", got, want)
			}
			if got, err := b.Active(t.Context(), clk.Now()); err != nil || !reflect.DeepEqual(got, wantActive) {
				t.Errorf("Active = %v, %v; want %v", got, err, wantActive)
			}
			select {
			case got := <-calls:
				if !reflect.DeepEqual(got, wantActive) {
					t.Errorf("first OnChange = %v, want the whole active set %v", got, wantActive)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no OnChange call at ready")
			}
			if len(calls) != 0 {
				t.Errorf("%d more OnChange calls during catch-up; want one at ready", len(calls))
			}
		})
	}
}

func ids(rs []Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func TestReadyOnEmptyTopic(t *testing.T) {
	e := startBroker(t, 4)
	called := make(chan []steering.Override, 1)
	f := follow(t, e.Addrs(), testTopic, FollowerOptions{}, func(a []steering.Override) { called <- a })
	waitReady(t, f)
	got, err := f.Active(t.Context(), t0)
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("Active = %#v, %v; want an empty set", got, err)
	}
	select {
	case a := <-called:
		if len(a) != 0 {
			t.Errorf("OnChange at ready = %v, want empty", a)
		}
	case <-time.After(5 * time.Second):
		t.Error("no OnChange call at ready")
	}
}

func TestNotReadyRefuses(t *testing.T) {
	// A follower that never ran has read nothing: it must not be decided
	// from, nor changes planned on it.
	clk := newClock()
	f := NewFollower(FollowerOptions{Brokers: []string{closedAddr(t)}, Topic: testTopic, Now: clk.Now})
	if _, err := f.Active(t.Context(), t0); !errors.Is(err, ErrNotReady) {
		t.Errorf("Active before ready = %v, want ErrNotReady", err)
	}
	s := NewStore(nil, f, clk.Now)
	if _, err := s.PlanCreate(override(""), "alice"); !errors.Is(err, ErrNotReady) {
		t.Errorf("PlanCreate before ready = %v, want ErrNotReady", err)
	}
	if _, _, err := s.PlanDelete("x", "r", "alice"); !errors.Is(err, ErrNotReady) {
		t.Errorf("PlanDelete before ready = %v, want ErrNotReady", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := f.Run(ctx); err == nil {
		t.Error("Run against a closed port = nil, want an error")
	}
}

// TestSkipsInvalidMessages: garbage and a key that is not the record's id
// are counted and skipped; what was held stays, including under the key
// the garbage was written with.
func TestSkipsInvalidMessages(t *testing.T) {
	e := startBroker(t, 1) // one partition: the marker comes after everything
	clk := newClock()
	n := newNode(t, e.Addrs(), clk)
	held, err := n.store.Create(t.Context(), override("ovr_held"), "alice")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	other, _ := record("ovr_other", 1).MarshalJSON()
	bad := []struct{ key, value string }{
		{"ovr_x", "garbage"},
		{"ovr_held", `{"v":1,"id":"ovr_held"`},  // torn: must not remove ovr_held
		{"ovr_wrong", string(other)},            // key is not the id
		{"ovr_held", `{"v":2,"id":"ovr_held"}`}, // a future format
	}
	for _, m := range bad {
		writeRaw(t, e.Addrs(), testTopic, []byte(m.key), []byte(m.value))
	}
	if err := n.log.Put(t.Context(), record("ovr_marker", 1)); err != nil {
		t.Fatalf("Put marker: %v", err)
	}
	waitRevision(t, n.f, "ovr_marker", 1)

	if got, ok := n.f.Get("ovr_held"); !ok || !reflect.DeepEqual(got, held) {
		t.Errorf("ovr_held after garbage = %+v, %v; want %+v", got, ok, held)
	}
	for _, id := range []string{"ovr_x", "ovr_wrong", "ovr_other"} {
		if _, ok := n.f.Get(id); ok {
			t.Errorf("%s is held; it came from an invalid message", id)
		}
	}
	for result, want := range map[string]float64{"ok": 2, "invalid": float64(len(bad)), "tombstone": 0} {
		if got := metric(t, n.reg, "cdnpilot_override_records_total", "result", result); got != want {
			t.Errorf("records_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func TestTombstoneForgets(t *testing.T) {
	e := startBroker(t, 1)
	clk := newClock()
	n := newNode(t, e.Addrs(), clk)
	calls := make(chan []steering.Override, 10)
	n.f.OnChange(func(a []steering.Override) { calls <- a })
	r, err := n.store.Create(t.Context(), override("ovr_gone"), "alice")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := <-calls; len(got) != 1 || got[0].ID != r.ID {
		t.Fatalf("OnChange after create = %v", got)
	}
	writeRaw(t, e.Addrs(), testTopic, []byte("ovr_gone"), nil)
	writeRaw(t, e.Addrs(), testTopic, []byte("ovr_never_held"), nil)
	if err := n.log.Put(t.Context(), record("ovr_marker", 1)); err != nil {
		t.Fatalf("Put marker: %v", err)
	}
	waitRevision(t, n.f, "ovr_marker", 1)
	if got, ok := n.f.Get("ovr_gone"); ok {
		t.Errorf("after the tombstone Get = %+v; want it forgotten", got)
	}
	if got := n.store.List(Filter{}); len(got) != 1 || got[0].ID != "ovr_marker" {
		t.Errorf("List = %v, want only the marker", ids(got))
	}
	if got := <-calls; len(got) != 0 {
		t.Errorf("OnChange after the tombstone = %v, want empty", got)
	}
	if got := metric(t, n.reg, "cdnpilot_override_records_total", "result", "tombstone"); got != 2 {
		t.Errorf("records_total{result=tombstone} = %v, want 2", got)
	}
}

// TestRevisionOrder: the higher revision wins over an older one read
// later; of equal revisions the later message wins.
func TestRevisionOrder(t *testing.T) {
	e := startBroker(t, 1)
	clk := newClock()
	n := newNode(t, e.Addrs(), clk)
	rev := func(r uint64, reason string) Record {
		rec := record("ovr_a", r)
		rec.Reason = reason
		return rec
	}
	tests := []struct {
		name   string
		put    []Record
		reason string // of the record held after
		rev    uint64
	}{
		{"newer", []Record{rev(1, "one"), rev(3, "three")}, "three", 3},
		{"older after newer", []Record{rev(2, "two")}, "three", 3},
		{"equal: later wins", []Record{rev(3, "three again")}, "three again", 3},
		{"next", []Record{rev(4, "four"), rev(1, "one again")}, "four", 4},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range tt.put {
				if err := n.log.Put(t.Context(), r); err != nil {
					t.Fatalf("Put: %v", err)
				}
			}
			marker := fmt.Sprintf("ovr_marker_%d", i)
			if err := n.log.Put(t.Context(), record(marker, 1)); err != nil {
				t.Fatalf("Put marker: %v", err)
			}
			waitRevision(t, n.f, marker, 1)
			got, _ := n.f.Get("ovr_a")
			if got.Revision != tt.rev || got.Reason != tt.reason {
				t.Errorf("held revision %d %q, want %d %q", got.Revision, got.Reason, tt.rev, tt.reason)
			}
		})
	}
}

// TestActive: what the scorer and the steering table get at a time, and
// the active gauge.
func TestActive(t *testing.T) {
	e := startBroker(t, 2)
	clk := newClock()
	n := newNode(t, e.Addrs(), clk)
	calls := make(chan []steering.Override, 100)
	other := follow(t, e.Addrs(), testTopic, FollowerOptions{Now: clk.Now}, func(a []steering.Override) { calls <- a })
	waitReady(t, other)

	mk := func(id string, expires time.Duration) {
		clk.Add(time.Second)
		o := override(id)
		o.Expires = clk.Now().Add(expires)
		if _, err := n.store.Create(t.Context(), o, "alice"); err != nil {
			t.Fatalf("Create %s: %v", id, err)
		}
	}
	mk("ovr_long", 3*time.Hour)
	mk("ovr_short", 10*time.Minute)
	mk("ovr_deleted", time.Hour)
	if _, _, err := n.store.Delete(t.Context(), "ovr_deleted", "fixed", "bob"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	waitRevision(t, other, "ovr_deleted", 2)
	shortEnd := t0.Add(2*time.Second + 10*time.Minute)

	tests := []struct {
		name string
		now  time.Time
		want []string
	}{
		{"now", clk.Now(), []string{"ovr_long", "ovr_short"}},
		{"just before the short one ends", shortEnd.Add(-time.Nanosecond), []string{"ovr_long", "ovr_short"}},
		{"as the short one ends", shortEnd, []string{"ovr_long"}},
		{"after all", t0.Add(4 * time.Hour), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range []*Follower{n.f, other} {
				got, err := f.Active(t.Context(), tt.now)
				if err != nil {
					t.Fatalf("Active: %v", err)
				}
				var gotIDs []string
				for _, o := range got {
					gotIDs = append(gotIDs, o.ID)
				}
				if !slices.Equal(gotIDs, tt.want) {
					t.Errorf("Active(%v) = %v, want %v", tt.now, gotIDs, tt.want)
				}
			}
			clk.Set(tt.now)
			if got := metric(t, n.reg, "cdnpilot_overrides_active"); got != float64(len(tt.want)) {
				t.Errorf("cdnpilot_overrides_active = %v, want %d", got, len(tt.want))
			}
		})
	}

	// OnChange: at ready (empty), after each create, after the delete.
	var sizes []int
	for range 5 {
		select {
		case c := <-calls:
			sizes = append(sizes, len(c))
		case <-time.After(5 * time.Second):
			t.Fatalf("OnChange set sizes so far %v; no more calls", sizes)
		}
	}
	if want := []int{0, 1, 2, 3, 2}; !slices.Equal(sizes, want) {
		t.Errorf("OnChange set sizes = %v, want %v", sizes, want)
	}
	// The sets handed out are copies: changing one changes nothing held.
	got, _ := n.f.Active(t.Context(), t0)
	got[0].Reason = "changed"
	if again, _ := n.f.Active(t.Context(), t0); again[0].Reason == "changed" {
		t.Error("Active hands out the held overrides, not copies")
	}
}

func TestRunTwice(t *testing.T) {
	e := startBroker(t, 1)
	f := follow(t, e.Addrs(), testTopic, FollowerOptions{})
	waitReady(t, f)
	if err := f.Run(t.Context()); err == nil {
		t.Error("a second Run = nil, want an error")
	}
}

func TestRunUnknownTopic(t *testing.T) {
	e := startBroker(t, 1)
	f := NewFollower(FollowerOptions{Brokers: e.Addrs(), Topic: "no-such-topic", Registerer: prometheus.NewRegistry()})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := f.Run(ctx); err == nil || !strings.Contains(err.Error(), "no-such-topic") {
		t.Errorf("Run on an unknown topic = %v, want an error naming it", err)
	}
}

// TestRunCancelledWhileStarting: a follower stopped before it has read
// where the topic ends (a process shut down during start-up) returns nil,
// as it does when stopped later.
func TestRunCancelledWhileStarting(t *testing.T) {
	e := startBroker(t, 1)
	f := NewFollower(FollowerOptions{Brokers: e.Addrs(), Topic: testTopic, Registerer: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := f.Run(ctx); err != nil {
		t.Errorf("Run with its context cancelled = %v, want nil", err)
	}
}

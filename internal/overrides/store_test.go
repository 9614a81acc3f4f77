package overrides

import (
	"context"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/steering"
)

func TestCreate(t *testing.T) {
	e := startBroker(t, 2)
	clk := newClock()
	n := newNode(t, e.Addrs(), clk)
	split := override("")
	split.Kind, split.CDN, split.Split = steering.OverrideSplit, "", map[string]float64{"cdn-a": 40, "cdn-b": 60}

	tests := []struct {
		name   string
		o      steering.Override
		actor  string
		wantID string // a regexp
		err    error
		field  string
	}{
		{"new id", override(""), "alice", `^ovr_[0-9a-f]{16}$`, nil, ""},
		{"split", split, "alice", `^ovr_[0-9a-f]{16}$`, nil, ""},
		{"given id", override("ovr_mine"), "alice", `^ovr_mine$`, nil, ""},
		{"given id again", override("ovr_mine"), "alice", "", ErrConflict, ""},
		{"no reason", func() steering.Override { o := override(""); o.Reason = ""; return o }(), "alice", "", ErrInvalid, "reason"},
		{"no expiry", func() steering.Override { o := override(""); o.Expires = time.Time{}; return o }(), "alice", "", ErrInvalid, "expires"},
		{"expiry now", func() steering.Override { o := override(""); o.Expires = t0; return o }(), "alice", "", ErrInvalid, "expires"},
		{"expiry past", func() steering.Override { o := override(""); o.Expires = t0.Add(-time.Hour); return o }(), "alice", "", ErrInvalid, "expires"},
		{"no actor", override(""), "", "", ErrInvalid, "actor"},
		{"bad kind", func() steering.Override { o := override(""); o.Kind = "reroute"; return o }(), "alice", "", ErrInvalid, "kind"},
		{"no service", func() steering.Override { o := override(""); o.Service = ""; return o }(), "alice", "", ErrInvalid, "service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := n.store.Create(t.Context(), tt.o, tt.actor)
			if !isErr(err, tt.err) {
				t.Fatalf("Create = %v, want %v", err, tt.err)
			}
			var fe *FieldError
			if tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
			if err != nil {
				return
			}
			if !regexp.MustCompile(tt.wantID).MatchString(r.ID) {
				t.Errorf("ID = %q, want %s", r.ID, tt.wantID)
			}
			if r.Revision != 1 || !r.Created.Equal(t0) || r.Author != tt.actor || r.UpdatedBy != tt.actor || !r.UpdatedAt.Equal(t0) {
				t.Errorf("created record %+v", r)
			}
			if st := r.State(clk.Now()); st != StateActive {
				t.Errorf("State = %q", st)
			}
			if got, ok := n.store.Get(r.ID); !ok || !reflect.DeepEqual(got, r) {
				t.Errorf("Get after Create = %+v, %v; want %+v", got, ok, r)
			}
		})
	}
}

// TestPlanCommit is the API's path: plan, write the audit record, commit.
// If the audit record cannot be written nothing is committed, and the
// plan alone writes nothing.
func TestPlanCommit(t *testing.T) {
	e := startBroker(t, 1) // one partition: a marker proves what came before it
	clk := newClock()
	n := newNode(t, e.Addrs(), clk)
	// audit stands in for the audit store: commit only when it took the record.
	audit := func(ctx context.Context, auditOK bool, after Record) error {
		if !auditOK {
			return nil // fail closed: the caller stops here
		}
		return n.store.Commit(ctx, after)
	}

	planned, err := n.store.PlanCreate(override(""), "alice")
	if err != nil {
		t.Fatalf("PlanCreate: %v", err)
	}
	if err := audit(t.Context(), false, planned); err != nil {
		t.Fatal(err)
	}
	if err := n.log.Put(t.Context(), record("ovr_marker", 1)); err != nil {
		t.Fatalf("Put marker: %v", err)
	}
	waitRevision(t, n.f, "ovr_marker", 1)
	if _, ok := n.store.Get(planned.ID); ok {
		t.Fatal("a planned create whose audit failed was written")
	}
	if got := metric(t, n.reg, "cdnpilot_override_records_total", "result", "ok"); got != 1 {
		t.Errorf("%v records on the topic, want only the marker", got)
	}

	clk.Add(time.Minute)
	if err := audit(t.Context(), true, planned); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got, ok := n.store.Get(planned.ID); !ok || !reflect.DeepEqual(got, planned) {
		t.Fatalf("Get right after Commit = %+v, %v; want the planned %+v", got, ok, planned)
	}
	if err := n.store.Commit(t.Context(), planned); !errors.Is(err, ErrConflict) {
		t.Errorf("second Commit of a create = %v, want ErrConflict", err)
	}

	// Two extensions planned from the same revision: the second is stale.
	before1, after1, err := n.store.PlanExtend(planned.ID, clk.Now().Add(2*time.Hour), "longer", "bob")
	if err != nil {
		t.Fatalf("PlanExtend: %v", err)
	}
	_, after2, err := n.store.PlanExtend(planned.ID, clk.Now().Add(3*time.Hour), "longer still", "carol")
	if err != nil {
		t.Fatalf("PlanExtend: %v", err)
	}
	if !reflect.DeepEqual(before1, planned) || after1.Revision != 2 || !after1.Expires.Equal(t0.Add(time.Minute+2*time.Hour)) ||
		after1.UpdatedBy != "bob" || !after1.UpdatedAt.Equal(t0.Add(time.Minute)) || after1.Reason != planned.Reason {
		t.Errorf("PlanExtend = %+v -> %+v", before1, after1)
	}
	if err := audit(t.Context(), true, after1); err != nil {
		t.Fatalf("Commit extend: %v", err)
	}
	if err := audit(t.Context(), true, after2); !errors.Is(err, ErrConflict) {
		t.Errorf("Commit of a stale plan = %v, want ErrConflict", err)
	}
	if got, _ := n.store.Get(planned.ID); !reflect.DeepEqual(got, after1) {
		t.Errorf("after the extension Get = %+v, want %+v", got, after1)
	}

	before, after, err := n.store.PlanDelete(planned.ID, "fixed", "dave")
	if err != nil {
		t.Fatalf("PlanDelete: %v", err)
	}
	if !reflect.DeepEqual(before, after1) || after.Revision != 3 || !after.DeletedAt.Equal(clk.Now()) ||
		after.DeletedBy != "dave" || after.DeleteReason != "fixed" || after.State(clk.Now()) != StateDeleted {
		t.Errorf("PlanDelete = %+v -> %+v", before, after)
	}
	if err := audit(t.Context(), true, after); err != nil {
		t.Fatalf("Commit delete: %v", err)
	}
	if got, _ := n.store.Get(planned.ID); !reflect.DeepEqual(got, after) {
		t.Errorf("after the delete Get = %+v, want %+v", got, after)
	}

	// An extension planned just before the override expired, committed
	// after: it must not bring the override back.
	o := override("ovr_ending")
	o.Expires = clk.Now().Add(time.Minute)
	if _, err := n.store.Create(t.Context(), o, "alice"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	_, late, err := n.store.PlanExtend("ovr_ending", clk.Now().Add(time.Hour), "longer", "bob")
	if err != nil {
		t.Fatalf("PlanExtend: %v", err)
	}
	clk.Add(time.Minute)
	if err := audit(t.Context(), true, late); !errors.Is(err, ErrNotActive) {
		t.Errorf("Commit of an extension after the expiry = %v, want ErrNotActive", err)
	}

	bad := after
	bad.Kind = "nope"
	if err := n.store.Commit(t.Context(), bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("Commit of an invalid record = %v, want ErrInvalid", err)
	}
}

// TestChangeRefused: changes of unknown, expired and deleted overrides,
// and changes without a reason or a future expiry.
func TestChangeRefused(t *testing.T) {
	e := startBroker(t, 2)
	clk := newClock()
	n := newNode(t, e.Addrs(), clk)
	for id, d := range map[string]time.Duration{"ovr_live": 3 * time.Hour, "ovr_short": time.Hour, "ovr_gone": 3 * time.Hour} {
		o := override(id)
		o.Expires = t0.Add(d)
		if _, err := n.store.Create(t.Context(), o, "alice"); err != nil {
			t.Fatalf("Create %s: %v", id, err)
		}
	}
	if _, _, err := n.store.Delete(t.Context(), "ovr_gone", "fixed", "bob"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	clk.Set(t0.Add(90 * time.Minute)) // ovr_short has expired
	later := t0.Add(5 * time.Hour)

	extend := func(id string, exp time.Time, reason string) error {
		_, _, err := n.store.Extend(t.Context(), id, exp, reason, "carol")
		return err
	}
	del := func(id, reason string) error {
		_, _, err := n.store.Delete(t.Context(), id, reason, "carol")
		return err
	}
	tests := []struct {
		name  string
		call  func() error
		want  error
		field string
	}{
		{"extend unknown", func() error { return extend("ovr_nope", later, "r") }, ErrNotFound, ""},
		{"delete unknown", func() error { return del("ovr_nope", "r") }, ErrNotFound, ""},
		{"extend expired", func() error { return extend("ovr_short", later, "r") }, ErrNotActive, ""},
		{"delete expired", func() error { return del("ovr_short", "r") }, ErrNotActive, ""},
		{"extend deleted", func() error { return extend("ovr_gone", later, "r") }, ErrNotActive, ""},
		{"delete deleted", func() error { return del("ovr_gone", "r") }, ErrNotActive, ""},
		{"extend without reason", func() error { return extend("ovr_live", later, "") }, ErrInvalid, "reason"},
		{"extend without expiry", func() error { return extend("ovr_live", time.Time{}, "r") }, ErrInvalid, "expires"},
		{"extend into the past", func() error { return extend("ovr_live", t0.Add(time.Hour), "r") }, ErrInvalid, "expires"},
		{"delete without reason", func() error { return del("ovr_live", "") }, ErrInvalid, "reason"},
		{"extend live", func() error { return extend("ovr_live", later, "r") }, nil, ""},
		{"delete live", func() error { return del("ovr_live", "r") }, nil, ""},
		{"delete live again", func() error { return del("ovr_live", "r") }, ErrNotActive, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !isErr(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var fe *FieldError
			if tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
		})
	}
	if got, _ := n.store.Get("ovr_live"); got.Revision != 3 || !got.Expires.Equal(later) || got.DeletedBy != "carol" {
		t.Errorf("ovr_live = %+v, want extended then deleted", got)
	}
}

func TestList(t *testing.T) {
	e := startBroker(t, 3)
	clk := newClock()
	n := newNode(t, e.Addrs(), clk)
	create := func(id, service string, expires time.Duration) {
		t.Helper()
		clk.Add(time.Minute)
		o := override(id)
		o.Service, o.Expires = service, clk.Now().Add(expires)
		if _, err := n.store.Create(t.Context(), o, "alice"); err != nil {
			t.Fatalf("Create %s: %v", id, err)
		}
	}
	create("a", "vod", time.Hour)
	create("b", "live", time.Hour)
	create("c", "vod", time.Hour)
	create("d", "vod", 10*time.Minute)
	if _, _, err := n.store.Delete(t.Context(), "c", "fixed", "bob"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	clk.Set(t0.Add(20 * time.Minute)) // d has expired

	tests := []struct {
		f    Filter
		want []string
	}{
		{Filter{}, []string{"d", "c", "b", "a"}},
		{Filter{State: "all"}, []string{"d", "c", "b", "a"}},
		{Filter{State: StateActive}, []string{"b", "a"}},
		{Filter{State: StateActive, Service: "vod"}, []string{"a"}},
		{Filter{State: StateDeleted}, []string{"c"}},
		{Filter{State: StateExpired}, []string{"d"}},
		{Filter{Service: "vod"}, []string{"d", "c", "a"}},
		{Filter{Service: "none"}, []string{}},
		// The filter's own time: before d expired.
		{Filter{State: StateActive, Service: "vod", Now: t0.Add(5 * time.Minute)}, []string{"d", "a"}},
	}
	for _, tt := range tests {
		got := []string{}
		for _, r := range n.store.List(tt.f) {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%+v) = %v, want %v", tt.f, got, tt.want)
		}
	}
}

// TestLogDown: a broker that is gone refuses the write (the API answers
// 503) and nothing is held.
func TestLogDown(t *testing.T) {
	e := startBroker(t, 1)
	clk := newClock()
	f := follow(t, e.Addrs(), testTopic, FollowerOptions{Now: clk.Now})
	waitReady(t, f)
	l := newLog(t, []string{closedAddr(t)}, testTopic)

	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
	defer cancel()
	start := time.Now()
	err := l.Put(ctx, record("ovr_a", 1))
	if err == nil || !strings.Contains(err.Error(), testTopic) {
		t.Fatalf("Put to a closed broker = %v, want an error naming the topic", err)
	}
	t.Logf("Put to a closed broker failed after %v: %v", time.Since(start), err)

	s := NewStore(l, f, clk.Now)
	_, err = s.Create(ctx, override("ovr_a"), "alice")
	if err == nil || errors.Is(err, ErrNotSeen) || errors.Is(err, ErrConflict) {
		t.Fatalf("Create with the log down = %v, want the log's error", err)
	}
	if _, ok := s.Get("ovr_a"); ok {
		t.Error("a refused create is held")
	}
}

// TestCommitNotSeen: the log takes the write but this node never reads
// it back (here: it follows another topic). Commit says so, in time.
func TestCommitNotSeen(t *testing.T) {
	e := startBroker(t, 1, kafkaio.Topic{Name: "elsewhere", Partitions: 1, Compacted: true})
	clk := newClock()
	f := follow(t, e.Addrs(), "elsewhere", FollowerOptions{Now: clk.Now})
	waitReady(t, f)
	s := NewStore(newLog(t, e.Addrs(), testTopic), f, clk.Now)
	s.seen = 300 * time.Millisecond
	start := time.Now()
	_, err := s.Create(t.Context(), override("ovr_a"), "alice")
	if !errors.Is(err, ErrNotSeen) || !strings.Contains(err.Error(), "accepted") {
		t.Fatalf("Create = %v, want ErrNotSeen", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Create took %v with a 300ms wait", d)
	}
}

func TestEnsureTopic(t *testing.T) {
	e, err := kafkaio.StartEmbedded(0, "", kafkaio.Topic{Name: "plain", Partitions: 1})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	defer e.Close()
	for round := range 2 { // the second round finds it in place
		if err := EnsureTopic(t.Context(), e.Addrs(), "ovr", 3); err != nil {
			t.Fatalf("round %d: EnsureTopic: %v", round, err)
		}
	}
	if p, err := cleanupPolicy(t.Context(), e.Addrs(), "ovr"); err != nil || p != "compact" {
		t.Errorf("cleanup.policy = %q, %v; want compact", p, err)
	}
	// Three partitions, all read: a follower of the new topic is ready.
	f := follow(t, e.Addrs(), "ovr", FollowerOptions{})
	waitReady(t, f)

	err = EnsureTopic(t.Context(), e.Addrs(), "plain", 1)
	if err == nil || !strings.Contains(err.Error(), "cleanup.policy") {
		t.Errorf("EnsureTopic on a topic that is not compacted = %v, want an error about cleanup.policy", err)
	}
	if err := EnsureTopic(t.Context(), nil, "ovr", 1); err == nil {
		t.Error("EnsureTopic without brokers = nil")
	}
}

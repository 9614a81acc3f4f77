package scorer

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/steering"
)

var groupRegions = []string{"eu-1", "eu-2", "eu-3", "us-1", "us-2", "us-3", "ap-1", "bad-1"}

// groupWorld produces beacons keyed by region, as ingest does, and keeps
// every one it wrote for a reference engine.
type groupWorld struct {
	t   *testing.T
	w   *kafkaio.Writer
	mu  sync.Mutex
	obs []steering.Observation
	n   int
}

// batch writes one round: per region a view start on each CDN (cdn-a
// fails every view in bad-1) and a heartbeat, plus one beacon located by
// country only.
func (gw *groupWorld) batch(ctx context.Context) error {
	now := time.Now()
	var msgs []kafka.Message
	var obs []steering.Observation
	add := func(b record.Beacon) error {
		v, err := b.MarshalBinary()
		if err != nil {
			return err
		}
		msgs = append(msgs, kafka.Message{Key: []byte(b.Region), Value: v})
		obs = append(obs, Observation(&b))
		return nil
	}
	for ri, region := range groupRegions {
		for i := range 6 {
			cdn := []string{"cdn-a", "cdn-b"}[i%2]
			gw.n++
			b := record.Beacon{EventID: fmt.Sprint("e", gw.n), ReceivedAt: now.UnixMilli(), TS: now.UnixMilli(),
				ClientIP: fmt.Sprintf("10.%d.%d.1", gw.n/250%250, gw.n%250), Region: region, Country: "C" + fmt.Sprint(ri%3), ASN: uint32(64500 + ri),
				Service: "vod", CDN: cdn, ViewID: fmt.Sprint("v", gw.n), Type: record.TypeViewStart, StartupMS: uint32(700 + 40*ri), BitrateKbps: 3000, ThroughputKbps: 8000}
			if cdn == "cdn-a" && region == "bad-1" {
				b.Type, b.Fatal, b.ErrorCode, b.StartupMS = record.TypeError, true, "E1", 0
			}
			if err := add(b); err != nil {
				return err
			}
			b.EventID, b.Type, b.Fatal, b.ErrorCode, b.StartupMS, b.PlayedMS, b.RebufferMS = b.EventID+"h", record.TypeHeartbeat, false, "", 0, 5000, uint32(10*ri)
			if err := add(b); err != nil {
				return err
			}
		}
	}
	gw.n++
	if err := add(record.Beacon{EventID: fmt.Sprint("e", gw.n), ReceivedAt: now.UnixMilli(), TS: now.UnixMilli(), ClientIP: "192.0.2.1", Country: "ZZ",
		Service: "vod", CDN: "cdn-b", ViewID: "c", Type: record.TypeViewStart, StartupMS: 900}); err != nil {
		return err
	}
	if err := gw.w.WriteMessages(ctx, msgs...); err != nil {
		return err
	}
	gw.mu.Lock()
	gw.obs = append(gw.obs, obs...)
	gw.mu.Unlock()
	return nil
}

// globalSamples is what one engine fed every beacon written says the
// global window of cdn-a holds at t.
func (gw *groupWorld) globalSamples(t *testing.T, at time.Time) float64 {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	e, err := steering.NewEngine(catalog, steering.DefaultPolicy(), gw.obs[0].At)
	if err != nil {
		t.Fatal(err)
	}
	for i := range gw.obs {
		if err := e.Observe(&gw.obs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return choiceOf(t, e.Tick(at)[0].Ranking(steering.Scope{Service: "vod"}), "cdn-a").Samples
}

func choiceOf(t *testing.T, r *steering.Ranking, cdn string) steering.Choice {
	t.Helper()
	if r == nil {
		t.Fatal("no ranking")
	}
	for _, c := range r.Choices {
		if c.CDN == cdn {
			return c
		}
	}
	t.Fatalf("%s not in %s", cdn, r.Scope)
	return steering.Choice{}
}

type groupMember struct {
	g    *Group
	reg  *prometheus.Registry
	stop context.CancelFunc
	done chan error
}

// TestGroupSplitsPartitions runs a scorer group over a real
// Kafka-protocol broker: one member, then two splitting the four beacon
// partitions, then one again. At every stage the snapshots on the
// rankings topic rank every region (a member's through its parts) and the
// global scope holds every beacon once: the shared windows match one
// engine fed everything, so no beacon was lost or counted twice across
// the rebuilds.
func TestGroupSplitsPartitions(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	broker, err := kafkaio.StartEmbedded(0, "", kafkaio.Topic{Name: "beacons", Partitions: 4}, kafkaio.Topic{Name: "deltas", Partitions: 1},
		kafkaio.Topic{Name: "parts", Partitions: 1}, kafkaio.Topic{Name: "rankings", Partitions: 1, Compacted: true})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	brokers := broker.Addrs()
	writer := func(topic string) *kafkaio.Writer {
		w, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: topic, Compression: "zstd", BatchTimeout: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Close() })
		return w
	}
	gw := &groupWorld{t: t, w: writer("beacons")}
	rankings, deltas, parts := writer("rankings"), writer("deltas"), writer("parts")

	start := func(name string) *groupMember {
		reg := prometheus.NewRegistry()
		g, err := NewGroup(deltas, parts, GroupOptions{Brokers: brokers, ClientID: name, GroupID: "score", Beacons: "beacons", Deltas: "deltas", Parts: "parts",
			NewEngine: func(now time.Time) (*steering.Engine, error) {
				return steering.NewEngine(catalog, steering.DefaultPolicy(), now)
			},
			Interval: 200 * time.Millisecond, Rankings: rankings, RankingsTopic: "rankings", Services: []string{"vod"},
			SessionTimeout: 6 * time.Second, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		mctx, stop := context.WithCancel(ctx)
		m := &groupMember{g: g, reg: reg, stop: stop, done: make(chan error, 1)}
		go func() { m.done <- g.Run(mctx) }()
		return m
	}
	table, err := steering.NewTable(catalog, steering.DefaultPolicy().Stale, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub := NewSubscriber(table, []string{"vod"}, SubscriberOptions{Brokers: brokers, Topic: "rankings"})
	sctx, stopSub := context.WithCancel(ctx)
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Run(sctx) }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	produce := func(rounds int) {
		t.Helper()
		for range rounds {
			if err := gw.batch(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// check stops producing, lets the members share the last deltas, and
	// compares the newest snapshot with the reference.
	check := func(stage string) {
		t.Helper()
		time.Sleep(time.Second)
		var snap *steering.Snapshot
		waitFor(stage+": a snapshot after the last beacon", func() bool {
			snap = table.Snapshot("vod")
			return snap != nil && time.Since(snap.At) < 300*time.Millisecond
		})
		for _, region := range groupRegions {
			r := snap.Ranking(steering.Scope{Service: "vod", Level: steering.LevelRegion, Region: region})
			if r == nil {
				t.Errorf("%s: %s is not ranked", stage, region)
				continue
			}
			if got := choiceOf(t, r, "cdn-a"); got.ScoreScope != steering.LevelRegion || got.Samples == 0 {
				t.Errorf("%s: %s scored from %s with %v samples", stage, region, got.ScoreScope, got.Samples)
			}
		}
		if r := snap.Ranking(steering.Scope{Service: "vod", Level: steering.LevelRegion, Region: "bad-1"}); r != nil && r.Choices[0].CDN != "cdn-b" {
			t.Errorf("%s: bad-1 leads with %s, want cdn-b (cdn-a fails every view)", stage, r.Choices[0].CDN)
		}
		if snap.Ranking(steering.Scope{Service: "vod", Level: steering.LevelCountry, Country: "ZZ"}) == nil {
			t.Errorf("%s: the country scope is not ranked", stage)
		}
		got := choiceOf(t, snap.Ranking(steering.Scope{Service: "vod"}), "cdn-a").Samples
		want := gw.globalSamples(t, snap.At)
		if math.Abs(got-want) > 0.06*want { // an unchanged ranking is republished while its counts drift under 5 %
			t.Errorf("%s: global window of cdn-a holds %.2f samples, one engine fed everything %.2f", stage, got, want)
		}
	}

	a := start("a")
	waitFor("member a to own every partition", func() bool { return gauge(t, a.reg, "cdnpilot_scorer_partitions") == 4 })
	produce(20)
	check("one member")

	b := start("b")
	waitFor("the partitions split", func() bool {
		return gauge(t, a.reg, "cdnpilot_scorer_partitions") == 2 && gauge(t, b.reg, "cdnpilot_scorer_partitions") == 2
	})
	produce(20)
	check("two members")
	if l := gauge(t, a.reg, "cdnpilot_scorer_leader") + gauge(t, b.reg, "cdnpilot_scorer_leader"); l != 1 {
		t.Fatalf("%v leaders", l)
	}
	follower := a
	if gauge(t, a.reg, "cdnpilot_scorer_leader") == 1 {
		follower = b
	}
	if n := counter2(t, follower.reg, "cdnpilot_scorer_exchange_total", "delta", "ok"); n == 0 {
		t.Error("the follower applied no delta")
	}

	// The leader leaves: the other takes every partition and the lead.
	leader, other := a, b
	if follower == a {
		leader, other = b, a
	}
	leaderOf := func(snap *steering.Snapshot) steering.Choice {
		for _, c := range snap.Ranking(steering.Scope{Service: "vod"}).Choices {
			if c.Leader {
				return c
			}
		}
		return steering.Choice{}
	}
	before := leaderOf(table.Snapshot("vod"))
	leader.stop()
	if err := <-leader.done; err != nil {
		t.Fatal(err)
	}
	waitFor("the remaining member to own every partition", func() bool {
		return gauge(t, other.reg, "cdnpilot_scorer_partitions") == 4 && gauge(t, other.reg, "cdnpilot_scorer_leader") == 1
	})
	produce(10)
	check("after the leader left")
	// The new leader's engine was seeded with the last snapshot: the
	// global leader stays the leader since the same instant.
	if after := leaderOf(table.Snapshot("vod")); before.CDN == "" || after.CDN != before.CDN || after.LeaderSince != before.LeaderSince {
		t.Errorf("global leader %s since %d before the leader left, %s since %d after", before.CDN, before.LeaderSince, after.CDN, after.LeaderSince)
	}

	// A delta that does not decode is counted and skipped.
	if err := deltas.WriteMessages(ctx, kafka.Message{Value: []byte(`{"format":1}`)}); err != nil {
		t.Fatal(err)
	}
	// Another group's delta on the same topic is not this group's to add.
	foreign := `{"format":1,"group":"another","member":"x","at":"2026-12-06T10:00:00Z","offsets":[{"partition":0,"from":0,"to":99999}],` +
		`"delta":{"landmark":"` + time.Now().UTC().Format(time.RFC3339) + `","services":[{"service":"vod","newest":"2026-12-06T10:00:00Z",` +
		`"windows":[{"scope":{"service":"vod","level":"global"},"cdn":"cdn-a","last":"2026-12-06T10:00:00Z","beacons":1e6,"attempts":0,"failures":0,` +
		`"ebvs":0,"exits":0,"played":0,"stalled":0,"startup":{"i":null,"w":null},"tput":{"i":null,"w":null},"bitrate":{"i":null,"w":null},` +
		`"ttfb":{"i":null,"w":null},"fast":{},"probation":{}}]}]}}`
	if _, err := UnmarshalDeltaMessage([]byte(foreign)); err != nil {
		t.Fatal(err)
	}
	if err := deltas.WriteMessages(ctx, kafka.Message{Value: []byte(foreign)}); err != nil {
		t.Fatal(err)
	}
	waitFor("the bad and the foreign delta counted", func() bool {
		return counter2(t, other.reg, "cdnpilot_scorer_exchange_total", "delta", "invalid") == 1 &&
			counter2(t, other.reg, "cdnpilot_scorer_exchange_total", "delta", "other_group") == 1
	})
	produce(3)
	check("after a bad and a foreign delta")

	// A delta sent twice (its write timed out but landed) is applied once.
	first, last, err := partitionOffsets(ctx, brokers, "test", "deltas")
	if err != nil {
		t.Fatal(err)
	}
	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: "deltas", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer rd.Close()
	if err := rd.SetOffset(max(first, last-20)); err != nil {
		t.Fatal(err)
	}
	var again []byte
	for again == nil {
		msg, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := UnmarshalDeltaMessage(msg.Value); err == nil && d.Group == "score" {
			again = msg.Value
		}
	}
	if err := deltas.WriteMessages(ctx, kafka.Message{Value: again}); err != nil {
		t.Fatal(err)
	}
	waitFor("the copy counted as a duplicate", func() bool {
		return counter2(t, other.reg, "cdnpilot_scorer_exchange_total", "delta", "duplicate") == 1
	})
	check("after a delta sent twice")

	// Active probes reach the engine of the current generation: three
	// failures take cdn-a down in the published snapshot.
	for i := range 3 {
		other.g.ProbeResult(steering.ProbeResult{CDN: "cdn-a", At: time.Now(), OK: false, Detail: fmt.Sprint("probe ", i)})
	}
	waitFor("cdn-a down by its probes in the snapshot", func() bool {
		snap := table.Snapshot("vod")
		return snap != nil && choiceOf(t, snap.Ranking(steering.Scope{Service: "vod"}), "cdn-a").Health == steering.HealthDown
	})

	other.stop()
	if err := <-other.done; err != nil {
		t.Fatal(err)
	}
	stopSub()
	if err := <-subDone; err != nil {
		t.Fatal(err)
	}
}

func counter2(t *testing.T, reg *prometheus.Registry, name, kind, result string) float64 {
	t.Helper()
	for _, m := range gather(t, reg, name) {
		var k, r string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "kind":
				k = l.GetValue()
			case "result":
				r = l.GetValue()
			}
		}
		if k == kind && r == result {
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s{kind=%q,result=%q}", name, kind, result)
	return 0
}

func TestExchangeMessagesRefuse(t *testing.T) {
	at := `"at":"2026-12-06T10:00:00Z"`
	delta := `"delta":{"landmark":"2026-12-06T10:00:00Z","services":[]}`
	for _, tc := range []struct {
		name, in, want string
		part           bool
	}{
		{"not json", `{`, "decode delta", false},
		{"unknown field", `{"format":1,"group":"g","member":"m",` + at + `,"offsets":[{"partition":0,"from":1,"to":2}],` + delta + `,"x":1}`, `unknown field "x"`, false},
		{"format", `{"format":2,"member":"m",` + at + `}`, "format 2 is not 1", false},
		{"member", `{"format":1,"group":"g",` + at + `}`, "group or member is empty", false},
		{"group", `{"format":1,"member":"m",` + at + `}`, "group or member is empty", false},
		{"at", `{"format":1,"group":"g","member":"m"}`, "at is missing", false},
		{"no delta", `{"format":1,"group":"g","member":"m",` + at + `,"offsets":[{"partition":0,"from":1,"to":2}]}`, "delta is missing", false},
		{"no offsets", `{"format":1,"group":"g","member":"m",` + at + `,` + delta + `}`, "offsets are missing", false},
		{"backwards", `{"format":1,"group":"g","member":"m",` + at + `,"offsets":[{"partition":0,"from":3,"to":2}],` + delta + `}`, "offsets[0]", false},
		{"twice", `{"format":1,"group":"g","member":"m",` + at + `,"offsets":[{"partition":0,"from":1,"to":2},{"partition":0,"from":3,"to":4}],` + delta + `}`, "offsets[1]", false},
		{"trailing", `{"format":1,"group":"g","member":"m",` + at + `,"offsets":[{"partition":0,"from":1,"to":2}],` + delta + `} {}`, "data after", false},
		{"part format", `{"format":0,"service":"vod","member":"m",` + at + `}`, "format 0", true},
		{"part service", `{"format":1,"group":"g","member":"m",` + at + `}`, "service, group or member is empty", true},
		{"part at", `{"format":1,"group":"g","service":"vod","member":"m"}`, "at is missing", true},
		{"part global", `{"format":1,"group":"g","service":"vod","member":"m",` + at + `,"rankings":[{"scope":{"service":"vod","level":"global"},"rule":"measured","choices":[{"cdn":"cdn-a","host":"","weight":1,"score":1,"confidence":1,"score_scope":"global","health":"up","samples":1,"views":1,"fast_score":1}]}]}`, "global scope", true},
		{"part weights", `{"format":1,"group":"g","service":"vod","member":"m",` + at + `,"rankings":[{"scope":{"service":"vod","level":"region","region":"r"},"rule":"measured","choices":[{"cdn":"cdn-a","host":"","weight":0.5,"score":1,"confidence":1,"score_scope":"region","health":"up","samples":1,"views":1,"fast_score":1}]}]}`, "sum to 0.5", true},
		{"part other service", `{"format":1,"group":"g","service":"vod","member":"m",` + at + `,"rankings":[{"scope":{"service":"live","level":"region","region":"r"},"rule":"measured","choices":[{"cdn":"cdn-a","host":"","weight":1,"score":1,"confidence":1,"score_scope":"region","health":"up","samples":1,"views":1,"fast_score":1}]}]}`, `scope.service is "live"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.part {
				_, err = UnmarshalPartMessage([]byte(tc.in))
			} else {
				_, err = UnmarshalDeltaMessage([]byte(tc.in))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func FuzzExchangeMessages(f *testing.F) {
	f.Add([]byte(`{"format":1,"group":"g","member":"m","at":"2026-12-06T10:00:00Z","offsets":[{"partition":0,"from":1,"to":2}],"delta":{"landmark":"2026-12-06T10:00:00Z","services":[{"service":"vod","newest":"2026-12-06T10:00:00Z","windows":[{"scope":{"service":"vod","level":"global"},"cdn":"cdn-a","last":"2026-12-06T10:00:00Z","beacons":1,"attempts":1,"failures":0,"ebvs":0,"exits":0,"played":0,"stalled":0,"startup":{"i":[170],"w":[1]},"tput":{"i":null,"w":null},"bitrate":{"i":null,"w":null},"ttfb":{"i":null,"w":null},"fast":{},"probation":{}}]}]}}`))
	f.Add([]byte(`{"format":1,"group":"g","service":"vod","member":"m","generation":3,"partitions":[1],"at":"2026-12-06T10:00:00Z","rankings":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := UnmarshalDeltaMessage(data); err == nil {
			e, err := steering.NewEngine(catalog, steering.DefaultPolicy(), time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			e.Share()
			if e.ApplyDelta(m.Delta) == nil {
				e.Tick(time.Date(2026, 12, 6, 10, 0, 1, 0, time.UTC)) // must not panic
			}
		}
		if m, err := UnmarshalPartMessage(data); err == nil {
			global := &steering.Ranking{Scope: steering.Scope{Service: m.Service}, Choices: []steering.Choice{{CDN: "cdn-a", Weight: 1}}}
			own, err := steering.NewSnapshot(m.Service, 1, m.At, []*steering.Ranking{global})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := assemble(own, nil, []*PartMessage{m}, m.At, time.Minute); err != nil {
				t.Fatalf("a part that decodes does not assemble: %v", err)
			}
		}
	})
}

// TestAssemble: the leader's own regions stay its own, another region
// comes from the newest part that has it, and a part older than maxAge
// or of another service is left out.
func TestAssemble(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	rk := func(region, cdn string) *steering.Ranking {
		sc := steering.Scope{Service: "vod"}
		if region != "" {
			sc = steering.Scope{Service: "vod", Level: steering.LevelRegion, Region: region}
		}
		return &steering.Ranking{Scope: sc, Rule: steering.RuleMeasured, Choices: []steering.Choice{{CDN: cdn, Weight: 1}}}
	}
	own, err := steering.NewSnapshot("vod", 7, at, []*steering.Ranking{rk("", "cdn-a"), rk("eu-1", "cdn-a"), rk("us-1", "cdn-a")})
	if err != nil {
		t.Fatal(err)
	}
	part := func(member string, age time.Duration, service string, rs ...*steering.Ranking) *PartMessage {
		return &PartMessage{Format: 1, Group: "g", Service: service, Member: member, At: at.Add(-age), Rankings: rs}
	}
	parts := []*PartMessage{
		part("old", 3*time.Second, "vod", rk("us-1", "cdn-b"), rk("ap-1", "cdn-b")),
		part("new", time.Second, "vod", rk("us-1", "cdn-c"), rk("eu-1", "cdn-c")),
		part("gone", 10*time.Minute, "vod", rk("sa-1", "cdn-b")),
		part("live", time.Second, "live", rk("af-1", "cdn-b")),
	}
	// In either order: the newest part wins, not the last one read.
	for _, ps := range [][]*PartMessage{parts, reversed(parts)} {
		checkAssembled(t, own, ps, at)
	}
}

func checkAssembled(t *testing.T, own *steering.Snapshot, parts []*PartMessage, at time.Time) {
	t.Helper()
	got, err := assemble(own, map[string]bool{"eu-1": true}, parts, at, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"": "cdn-a", "eu-1": "cdn-a", "us-1": "cdn-c", "ap-1": "cdn-b"}
	if len(got.Rankings) != len(want) {
		t.Errorf("%d rankings, want %d", len(got.Rankings), len(want))
	}
	for region, cdn := range want {
		sc := steering.Scope{Service: "vod"}
		if region != "" {
			sc = steering.Scope{Service: "vod", Level: steering.LevelRegion, Region: region}
		}
		if r := got.Ranking(sc); r == nil || r.Choices[0].CDN != cdn {
			t.Errorf("%s: %+v, want %s", sc, r, cdn)
		}
	}
	if got.Version != 7 || !got.At.Equal(at) {
		t.Errorf("version %d at %s: not the leader's", got.Version, got.At)
	}
}

func reversed[T any](s []T) []T {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

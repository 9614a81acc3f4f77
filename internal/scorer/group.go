package scorer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/steering"
)

// GroupOptions configure a Group.
type GroupOptions struct {
	Brokers  []string
	ClientID string
	GroupID  string
	// Beacons is the beacon topic (keyed by region); Deltas and Parts the
	// group's own topics (exchange.go).
	Beacons, Deltas, Parts string
	// NewEngine makes the engine of a generation.
	NewEngine func(now time.Time) (*steering.Engine, error)
	// Interval between ticks.
	Interval time.Duration
	// Replay is how far back a member re-reads the partitions it is given
	// (and the deltas topic): five half-lives of the scoring windows keep
	// all but 3 % of their weight.
	Replay time.Duration
	// PartMaxAge: the regions of a member that stopped publishing stay in
	// the snapshots this long (frozen), then fall back to their parent.
	PartMaxAge time.Duration
	// Rankings is the rankings topic; the leader writes the snapshots.
	Rankings MessageWriter
	// RankingsTopic and Services, when set, seed every new engine with
	// the newest snapshot of each service on that topic
	// (steering.Engine.Seed): leaders and shares carry on across
	// rebalances and restarts.
	RankingsTopic string
	Services      []string
	Overrides     steering.OverrideStore
	// Sinks get every snapshot the leader publishes.
	Sinks []func(*steering.Snapshot)
	// SessionTimeout: a member that stops heartbeating loses its
	// partitions after this.
	SessionTimeout time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// Group is the score role when scorers scale with the beacon partitions.
// The members of consumer group GroupID split the partitions; beacons are
// keyed by region, so a member holds the whole windows of its regions and
// their ASNs. The global and country scopes take beacons from every
// partition: members share them through the deltas topic
// (steering.Engine.Share). Each member ranks its own regions and publishes
// them on the parts topic; the member that owns partition 0 (the leader)
// ranks the shared scopes and writes every service's whole snapshot to the
// rankings topic, so steering nodes read one snapshot as from a single
// scorer. A new generation (a member joins, leaves or dies) builds a new
// engine on every member from the last Replay of its partitions and of the
// deltas.
type Group struct {
	o   GroupOptions
	log *slog.Logger
	m   *metrics

	deltaW, partW MessageWriter

	scoring atomic.Bool // a generation has started scoring

	probeMu sync.Mutex
	probes  map[string][]steering.ProbeResult // the last few per CDN, for a new engine
	eng     *steering.Engine                  // the generation's, for probes
}

// maxProbeHistory is how many probe results per CDN a new engine is
// given: more than any rise or fall threshold.
const maxProbeHistory = 16

// NewGroup builds a group scorer. deltas and parts write to the group's
// topics (keyed by the caller: Group sets the keys).
func NewGroup(deltas, parts MessageWriter, o GroupOptions) (*Group, error) {
	switch {
	case len(o.Brokers) == 0:
		return nil, errors.New("scorer group: no brokers")
	case o.GroupID == "" || o.Beacons == "" || o.Deltas == "" || o.Parts == "":
		return nil, errors.New("scorer group: group id and topics are required")
	case o.NewEngine == nil || o.Interval <= 0:
		return nil, errors.New("scorer group: an engine and a positive interval are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Replay <= 0 {
		o.Replay = 5 * time.Minute
	}
	if o.PartMaxAge <= 0 {
		o.PartMaxAge = 5 * time.Minute
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 10 * time.Second
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Group{o: o, log: o.Logger.With("component", "scorer-group"), m: newMetrics(reg, o.GroupID),
		deltaW: deltas, partW: parts, probes: map[string][]steering.ProbeResult{}}, nil
}

// ProbeResult hands an active probe result to the current engine, and
// keeps it for the next one.
func (g *Group) ProbeResult(r steering.ProbeResult) {
	g.probeMu.Lock()
	defer g.probeMu.Unlock()
	h := append(g.probes[r.CDN], r)
	if len(h) > maxProbeHistory {
		h = h[len(h)-maxProbeHistory:]
	}
	g.probes[r.CDN] = h
	if g.eng != nil {
		if err := g.eng.Probe(r); err != nil {
			g.log.Warn("probe result dropped", "err", err)
		}
	}
}

func (g *Group) setEngine(eng *steering.Engine) {
	g.probeMu.Lock()
	defer g.probeMu.Unlock()
	g.eng = eng
	for _, h := range g.probes {
		for _, r := range h {
			_ = eng.Probe(r) // known CDNs only were kept
		}
	}
}

// Ready reports whether the member has been given its partitions and
// scores them (the first generation has started).
func (g *Group) Ready() bool { return g.scoring.Load() }

// Run takes part in the group until ctx is done.
func (g *Group) Run(ctx context.Context) error {
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: g.o.GroupID, Brokers: g.o.Brokers, Topics: []string{g.o.Beacons},
		Dialer:                 &kafka.Dialer{ClientID: g.o.ClientID, Timeout: 5 * time.Second, DualStack: true},
		HeartbeatInterval:      time.Second,
		SessionTimeout:         g.o.SessionTimeout,
		RebalanceTimeout:       g.o.SessionTimeout,
		JoinGroupBackoff:       time.Second,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 10 * time.Second,
		StartOffset:            kafka.LastOffset,
		Logger:                 nil,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			g.log.Debug(fmt.Sprintf(msg, args...))
		}),
	})
	if err != nil {
		return fmt.Errorf("scorer group %s: %w", g.o.GroupID, err)
	}
	defer cg.Close()
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			g.log.Warn("scorer group: no generation yet; retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		if err := g.generation(ctx, gen); err != nil && ctx.Err() == nil {
			// Holding partitions without reading them would stall their
			// regions: end the generation (after a pause, so a broker in
			// trouble is not hammered) and join the next.
			g.log.Warn("scorer group generation could not start; rejoining", "generation", gen.ID, "err", err)
			gen.Start(func(ctx context.Context) { sleep(ctx, 2*time.Second) })
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// member is one generation of this process in the group.
type member struct {
	g       *Group
	gen     *kafka.Generation
	eng     *steering.Engine
	owned   []int
	leader  bool
	started time.Time

	mu        sync.Mutex                 // guards the fields below and orders observations against TakeDelta
	published map[int]int64              // per partition, the highest offset any member shared (from the deltas topic)
	first     map[int]int64              // per partition, the first offset in the next delta
	read      map[int]int64              // per partition, the highest offset read
	regions   map[string]map[string]bool // service -> regions of this member's beacons
	parts     map[string]*PartMessage    // leader: the newest part per service and member
	unsent    []kafka.Message            // deltas the topic did not take yet, in order
}

func (g *Group) generation(ctx context.Context, gen *kafka.Generation) error {
	start := time.Now()
	var owned []int
	for _, pa := range gen.Assignments[g.o.Beacons] {
		owned = append(owned, pa.ID)
	}
	sort.Ints(owned)
	eng, err := g.o.NewEngine(start)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	eng.Share()
	for _, snap := range g.lastSnapshots(ctx) {
		if err := eng.Seed(snap); err != nil {
			g.log.Warn("seed from the last snapshot skipped", "service", snap.Service, "err", err)
		}
	}
	m := &member{g: g, gen: gen, eng: eng, owned: owned, leader: slices.Contains(owned, 0), started: start,
		published: map[int]int64{}, first: map[int]int64{}, read: map[int]int64{},
		regions: map[string]map[string]bool{}, parts: map[string]*PartMessage{}}
	// Probes go to this engine until the next generation's replaces it
	// (generation returns while its goroutines run on).
	g.setEngine(eng)
	g.m.partitions.Set(float64(len(owned)))
	g.m.leader.Set(b2f(m.leader))
	g.log.Info("scorer group generation", "generation", gen.ID, "member", gen.MemberID, "partitions", owned, "leader", m.leader)

	// The deltas of the last Replay, before any beacon: they say which
	// offsets earlier owners of these partitions have shared already.
	deltas, deltaEnd, err := m.openDeltas(ctx)
	if err != nil {
		return err
	}
	// Beacons are replayed from the same instant.
	from := map[int]int64{}
	for _, p := range owned {
		if from[p], err = g.offsetAt(ctx, g.o.Beacons, p, start.Add(-g.o.Replay)); err != nil {
			deltas.Close()
			return err
		}
	}
	if err := m.catchUpDeltas(ctx, deltas, deltaEnd); err != nil {
		deltas.Close()
		return err
	}
	var parts *kafka.Reader
	if m.leader {
		off, err := g.offsetAt(ctx, g.o.Parts, 0, start.Add(-10*g.o.Interval))
		if err != nil {
			deltas.Close()
			return err
		}
		parts = g.partitionReader(g.o.Parts, 0)
		if err := parts.SetOffset(off); err != nil {
			deltas.Close()
			parts.Close()
			return fmt.Errorf("parts: seek: %w", err)
		}
	}
	// Every function of a generation runs until the generation ends (one
	// returning would end it for this member).
	gen.Start(func(ctx context.Context) { g.follow(ctx, deltas, "deltas", m.applyDelta) })
	for _, p := range owned {
		gen.Start(func(ctx context.Context) { m.consume(ctx, p, from[p]) })
	}
	if parts != nil {
		gen.Start(func(ctx context.Context) { g.follow(ctx, parts, "parts", m.takePart) })
	}
	gen.Start(func(ctx context.Context) { m.tickLoop(ctx) })
	g.m.rebuild.Observe(time.Since(start).Seconds())
	g.scoring.Store(true)
	g.log.Info("scorer group scoring", "generation", gen.ID, "rebuilt_in", time.Since(start).Round(time.Millisecond))
	// Run returns to Next, which waits for the generation to end.
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (g *Group) partitionReader(topic string, p int) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers: g.o.Brokers, Topic: topic, Partition: p,
		Dialer:   &kafka.Dialer{ClientID: g.o.ClientID, Timeout: 5 * time.Second, DualStack: true},
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 500 * time.Millisecond,
		ReadBackoffMin: 50 * time.Millisecond, ReadBackoffMax: 500 * time.Millisecond,
	})
}

// offsetAt is the first offset of a partition at or after t, or its end.
func (g *Group) offsetAt(ctx context.Context, topic string, p int, t time.Time) (int64, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := leaderConn(dctx, g.o.Brokers, g.o.ClientID, topic, p)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	off, err := conn.ReadOffset(t)
	if err == nil && off < 0 { // nothing at or after t
		off, err = conn.ReadLastOffset()
	}
	if err != nil {
		return 0, fmt.Errorf("%s[%d]: offset at %s: %w", topic, p, t.UTC().Format(time.RFC3339), err)
	}
	return off, nil
}

// lastSnapshots are the newest snapshot of each service on the rankings
// topic, read from a few records before its end (every tick writes every
// service). Seeding is best effort: on any error, none.
func (g *Group) lastSnapshots(ctx context.Context) []*steering.Snapshot {
	if g.o.RankingsTopic == "" || len(g.o.Services) == 0 {
		return nil
	}
	first, last, err := partitionOffsets(ctx, g.o.Brokers, g.o.ClientID, g.o.RankingsTopic)
	if err != nil {
		g.log.Warn("no seed: rankings topic offsets", "err", err)
		return nil
	}
	if last <= first {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r := g.partitionReader(g.o.RankingsTopic, 0)
	defer r.Close()
	if err := r.SetOffset(max(first, last-int64(4*len(g.o.Services)))); err != nil {
		g.log.Warn("no seed: rankings topic seek", "err", err)
		return nil
	}
	newest := map[string]*steering.Snapshot{}
	for {
		msg, err := r.ReadMessage(dctx)
		if err != nil {
			g.log.Warn("no seed: rankings topic read", "err", err)
			return nil
		}
		if snap, err := steering.UnmarshalSnapshot(msg.Value); err == nil {
			if old := newest[snap.Service]; old == nil || snap.Version > old.Version {
				newest[snap.Service] = snap
			}
		}
		if msg.Offset >= last-1 {
			break
		}
	}
	out := make([]*steering.Snapshot, 0, len(newest))
	for _, svc := range g.o.Services {
		if snap := newest[svc]; snap != nil {
			out = append(out, snap)
		}
	}
	return out
}

// openDeltas opens the deltas topic Replay back and says where it ends now.
func (m *member) openDeltas(ctx context.Context) (*kafka.Reader, int64, error) {
	g := m.g
	off, err := g.offsetAt(ctx, g.o.Deltas, 0, m.started.Add(-g.o.Replay))
	if err != nil {
		return nil, 0, err
	}
	end, err := g.offsetAt(ctx, g.o.Deltas, 0, time.Now().Add(time.Hour))
	if err != nil {
		return nil, 0, err
	}
	r := g.partitionReader(g.o.Deltas, 0)
	if err := r.SetOffset(off); err != nil {
		r.Close()
		return nil, 0, fmt.Errorf("deltas: seek: %w", err)
	}
	if off >= end {
		return r, -1, nil
	}
	return r, end, nil
}

// catchUpDeltas applies the deltas up to end (exclusive) before the
// generation starts.
func (m *member) catchUpDeltas(ctx context.Context, r *kafka.Reader, end int64) error {
	if end < 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, m.g.o.SessionTimeout)
	defer cancel()
	for {
		msg, err := r.ReadMessage(cctx)
		if err != nil {
			return fmt.Errorf("deltas: catch up to offset %d: %w", end, err)
		}
		m.applyDelta(msg)
		if msg.Offset >= end-1 {
			return nil
		}
	}
}

// follow hands every record of r to fn until ctx ends, and closes r.
func (g *Group) follow(ctx context.Context, r *kafka.Reader, what string, fn func(kafka.Message)) {
	defer r.Close()
	for {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			g.log.Warn(what+": read; retrying", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		fn(msg)
	}
}

func (m *member) applyDelta(msg kafka.Message) {
	d, err := UnmarshalDeltaMessage(msg.Value)
	if err != nil {
		m.g.m.exchange.WithLabelValues("delta", "invalid").Inc()
		m.g.log.Warn("delta skipped", "offset", msg.Offset, "err", err)
		return
	}
	if d.Group != m.g.o.GroupID {
		m.g.m.exchange.WithLabelValues("delta", "other_group").Inc()
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// A delta whose write timed out on its member's side may have landed
	// all the same and been sent again: one whose every range ends at or
	// before what was applied of its partition is that copy. (A delta
	// that only overlaps is applied: a beacon counted twice in the
	// shared windows costs less than a live owner's delta lost.)
	seen := true
	for _, r := range d.Offsets {
		if prev, ok := m.published[r.Partition]; !ok || r.To > prev {
			seen = false
			break
		}
	}
	if seen {
		m.g.m.exchange.WithLabelValues("delta", "duplicate").Inc()
		m.g.log.Debug("delta applied already; skipped", "offset", msg.Offset, "member", d.Member)
		return
	}
	if err := m.eng.ApplyDelta(d.Delta); err != nil {
		m.g.m.exchange.WithLabelValues("delta", "invalid").Inc()
		m.g.log.Warn("delta skipped", "offset", msg.Offset, "err", err)
		return
	}
	m.g.m.exchange.WithLabelValues("delta", "ok").Inc()
	for _, r := range d.Offsets {
		if prev, ok := m.published[r.Partition]; !ok || r.To > prev {
			m.published[r.Partition] = r.To
		}
	}
}

// consume reads one owned partition from the replay offset: beacons that
// an earlier owner already shared are replayed, the rest observed (and
// shared in this member's next delta).
func (m *member) consume(ctx context.Context, p int, from int64) {
	r := m.g.partitionReader(m.g.o.Beacons, p)
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		// Returning ends the generation for this member: it rejoins.
		m.g.log.Error("beacons: seek; rejoining the group", "partition", p, "err", err)
		sleep(ctx, 2*time.Second)
		return
	}
	var b record.Beacon
	var in record.Interner
	for {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.g.log.Warn("beacons: read; retrying", "partition", p, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		m.handle(&b, &in, msg)
	}
}

func (m *member) handle(b *record.Beacon, in *record.Interner, msg kafka.Message) {
	// Decoding needs no lock: each partition's reader decodes its own.
	err := b.Decode(msg.Value, in)
	var o steering.Observation
	if err == nil {
		o = Observation(b)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.read[msg.Partition] = msg.Offset
	if err != nil {
		m.g.m.observe(err, true)
		return
	}
	if pub, ok := m.published[msg.Partition]; ok && msg.Offset <= pub {
		m.g.m.observe(m.eng.Replay(&o), false)
	} else {
		err := m.eng.Observe(&o)
		m.g.m.observe(err, false)
		if _, ok := m.first[msg.Partition]; !ok && err == nil {
			m.first[msg.Partition] = msg.Offset
		}
	}
	if o.Location.Region != "" {
		rs := m.regions[o.Service]
		if rs == nil {
			rs = map[string]bool{}
			m.regions[o.Service] = rs
		}
		rs[o.Location.Region] = true
	}
}

func (m *member) takePart(msg kafka.Message) {
	p, err := UnmarshalPartMessage(msg.Value)
	if err != nil {
		m.g.m.exchange.WithLabelValues("part", "invalid").Inc()
		m.g.log.Warn("part skipped", "offset", msg.Offset, "err", err)
		return
	}
	if p.Group != m.g.o.GroupID {
		m.g.m.exchange.WithLabelValues("part", "other_group").Inc()
		return
	}
	m.g.m.exchange.WithLabelValues("part", "ok").Inc()
	if p.Member == m.gen.MemberID {
		return // this process's own, from when it was not the leader
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := p.Service + "/" + p.Member
	if old := m.parts[key]; old == nil || p.At.After(old.At) {
		m.parts[key] = p
	}
}

func (m *member) tickLoop(ctx context.Context) {
	t := time.NewTicker(m.g.o.Interval)
	defer t.Stop()
	// At once: a new generation's first snapshot should not wait a tick
	// on top of the rebalance.
	m.tick(ctx, time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.tick(ctx, now)
		}
	}
}

// tick shares the delta, ranks, and publishes: the snapshots on the
// leader, the parts elsewhere.
func (m *member) tick(ctx context.Context, now time.Time) {
	g := m.g
	m.shareDelta(ctx, now)
	snaps := rank(ctx, m.eng, g.o.Overrides, now, g.m, g.log)
	if m.leader {
		m.publishSnapshots(ctx, snaps, now)
		return
	}
	m.publishParts(ctx, snaps, now)
}

// shareDelta publishes what this member's beacons added to the shared
// scopes since the last tick, then commits the offsets it covers.
func (m *member) shareDelta(ctx context.Context, now time.Time) {
	g := m.g
	m.mu.Lock()
	d := m.eng.TakeDelta()
	commit := map[int]int64{}
	for p, off := range m.read {
		commit[p] = off + 1
	}
	if d != nil {
		dm := DeltaMessage{Format: exchangeFormat, Group: g.o.GroupID, Member: m.gen.MemberID, Generation: m.gen.ID, At: now, Delta: d}
		for _, p := range m.owned {
			if f, ok := m.first[p]; ok {
				dm.Offsets = append(dm.Offsets, OffsetRange{Partition: p, From: f, To: m.read[p]})
			}
		}
		clear(m.first)
		if b, err := json.Marshal(dm); err != nil {
			g.log.Error("encode delta", "err", err)
		} else {
			m.unsent = append(m.unsent, kafka.Message{Key: []byte(m.gen.MemberID), Value: b})
		}
	}
	msgs := m.unsent
	m.mu.Unlock()
	if len(msgs) > 0 {
		pctx, cancel := context.WithTimeout(ctx, g.publishTimeout())
		err := g.deltaW.WriteMessages(pctx, msgs...)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				g.m.pubErrors.Inc()
				g.log.Warn("publish delta; it goes with the next", "err", err)
			}
			return // nothing is committed that was not shared
		}
		m.mu.Lock()
		m.unsent = m.unsent[len(msgs):]
		m.mu.Unlock()
	}
	if len(commit) > 0 {
		if err := m.gen.CommitOffsets(map[string]map[int]int64{g.o.Beacons: commit}); err != nil && ctx.Err() == nil {
			g.log.Debug("commit scorer offsets", "err", err)
		}
	}
}

func (m *member) publishSnapshots(ctx context.Context, snaps []*steering.Snapshot, now time.Time) {
	g := m.g
	m.mu.Lock()
	parts := make([]*PartMessage, 0, len(m.parts))
	for _, p := range m.parts {
		parts = append(parts, p)
	}
	mine := map[string]map[string]bool{}
	for svc, rs := range m.regions {
		mine[svc] = maps.Clone(rs)
	}
	m.mu.Unlock()
	sort.Slice(parts, func(i, j int) bool { return parts[i].At.Before(parts[j].At) })
	out := make([]*steering.Snapshot, 0, len(snaps))
	for _, s := range snaps {
		whole, err := assemble(s, mine[s.Service], parts, now, g.o.PartMaxAge)
		if err != nil {
			g.log.Error("assemble snapshot; publishing the leader's own", "service", s.Service, "err", err)
			whole = s
		}
		out = append(out, whole)
	}
	for _, sink := range g.o.Sinks {
		for _, s := range out {
			sink(s)
		}
	}
	if g.o.Rankings != nil {
		publishSnapshots(ctx, g.publishTimeout(), g.o.Rankings, out, g.m, g.log)
	}
}

func (m *member) publishParts(ctx context.Context, snaps []*steering.Snapshot, now time.Time) {
	g := m.g
	m.mu.Lock()
	mine := map[string]map[string]bool{}
	for svc, rs := range m.regions {
		mine[svc] = maps.Clone(rs)
	}
	m.mu.Unlock()
	msgs := make([]kafka.Message, 0, len(snaps))
	for _, s := range snaps {
		pm := PartMessage{Format: exchangeFormat, Group: g.o.GroupID, Service: s.Service, Member: m.gen.MemberID, Generation: m.gen.ID,
			Partitions: m.owned, At: now, Rankings: []*steering.Ranking{}}
		for _, r := range s.Rankings {
			if (r.Scope.Level == steering.LevelRegion || r.Scope.Level == steering.LevelASN) && mine[s.Service][r.Scope.Region] {
				pm.Rankings = append(pm.Rankings, r)
			}
		}
		b, err := json.Marshal(pm)
		if err != nil {
			g.log.Error("encode part", "service", s.Service, "err", err)
			continue
		}
		msgs = append(msgs, kafka.Message{Key: []byte(s.Service + "/" + m.gen.MemberID), Value: b})
	}
	pctx, cancel := context.WithTimeout(ctx, g.publishTimeout())
	defer cancel()
	if err := g.partW.WriteMessages(pctx, msgs...); err != nil && ctx.Err() == nil {
		g.m.pubErrors.Inc()
		g.log.Warn("publish parts; the leader keeps the last ones", "err", err)
	}
}

// publishTimeout bounds one write of a tick: a few ticks, never under 2 s
// (a busy broker).
func (g *Group) publishTimeout() time.Duration { return max(3*g.o.Interval, 2*time.Second) }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

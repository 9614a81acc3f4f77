// Package scorer runs the steering engine as a role: it reads the beacon
// topic with its own consumer group, ticks the engine every interval, and
// publishes each service's ranking snapshot to the compacted rankings
// topic (and to in-process sinks). Subscriber is the other end: it keeps a
// steering node's Table current from that topic.
package scorer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/steering"
)

// MessageReader is the beacon topic as the scorer reads it.
type MessageReader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// MessageWriter is the rankings topic.
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Options configure a Scorer.
type Options struct {
	// Interval between ticks. Zero: the caller ticks with Tick (the
	// simulator drives a virtual clock).
	Interval time.Duration
	// Now is the clock of the ticks; time.Now by default.
	Now func() time.Time
	// Overrides, when set, is read every tick.
	Overrides steering.OverrideStore
	// Sinks get every snapshot in-process (a steering node in the same
	// process, the demo's rankings API).
	Sinks []func(*steering.Snapshot)
	// PublishTimeout bounds one publish of a tick's snapshots.
	PublishTimeout time.Duration
	// CommitEvery is how often consumed offsets are committed. Scoring
	// tolerates replays (a restart re-reads at most this much), so
	// commits are batched rather than per message.
	CommitEvery time.Duration
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

// Scorer is the score role.
type Scorer struct {
	eng  *steering.Engine
	rd   MessageReader
	wr   MessageWriter
	opts Options
	log  *slog.Logger

	observed atomic.Int64 // messages handled, whatever their fate
	mu       sync.Mutex   // guards pending
	pending  map[int]kafka.Message

	m *metrics
}

// New builds a scorer. wr may be nil (no publishing: the demo's sinks and
// tests only).
func New(eng *steering.Engine, rd MessageReader, wr MessageWriter, o Options) *Scorer {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.CommitEvery == 0 {
		o.CommitEvery = time.Second
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Scorer{eng: eng, rd: rd, wr: wr, opts: o, log: o.Logger.With("component", "scorer"), pending: map[int]kafka.Message{},
		m: newMetrics(reg, "")}
	return s
}

// Observed is how many beacon messages the scorer has handled.
func (s *Scorer) Observed() int64 { return s.observed.Load() }

// ProbeResult hands an active probe result to the engine (probe.Sink).
// A result for a CDN the catalog does not have is logged and dropped.
func (s *Scorer) ProbeResult(r steering.ProbeResult) {
	if err := s.eng.Probe(r); err != nil {
		s.log.Warn("probe result dropped", "err", err)
	}
}

// Run consumes until ctx is done, ticking every Interval when set.
func (s *Scorer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		if err := s.consume(ctx); err != nil {
			errc <- err
			cancel()
		}
	})
	wg.Go(func() { every(ctx, s.opts.CommitEvery, func() { s.commit(ctx) }) })
	if s.opts.Interval > 0 {
		wg.Go(func() { every(ctx, s.opts.Interval, func() { s.Tick(ctx, s.opts.Now()) }) })
	}
	wg.Wait()
	// The last offsets, so a restart does not re-read them.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	s.commit(cctx)
	ccancel()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (s *Scorer) consume(ctx context.Context) error {
	var b record.Beacon
	var in record.Interner
	for {
		m, err := s.rd.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read beacons: %w", err)
		}
		s.handle(&b, &in, m)
		s.mu.Lock()
		s.pending[m.Partition] = m
		s.mu.Unlock()
		s.observed.Add(1)
	}
}

func (s *Scorer) handle(b *record.Beacon, in *record.Interner, m kafka.Message) {
	if err := b.Decode(m.Value, in); err != nil {
		s.m.observe(err, true)
		s.log.Debug("undecodable beacon skipped", "partition", m.Partition, "offset", m.Offset, "err", err)
		return
	}
	o := Observation(b)
	s.m.observe(s.eng.Observe(&o), false)
}

// every runs f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

func (s *Scorer) commit(ctx context.Context) {
	s.mu.Lock()
	msgs := make([]kafka.Message, 0, len(s.pending))
	for _, m := range s.pending {
		msgs = append(msgs, m)
	}
	clear(s.pending)
	s.mu.Unlock()
	if len(msgs) == 0 {
		return
	}
	if err := s.rd.CommitMessages(ctx, msgs...); err != nil && ctx.Err() == nil {
		s.log.Warn("commit scorer offsets (a restart re-reads them)", "err", err)
	}
}

// Tick recomputes every ranking at now, hands the snapshots to the sinks
// and publishes them. It returns them for callers that drive the clock.
func (s *Scorer) Tick(ctx context.Context, now time.Time) []*steering.Snapshot {
	snaps := rank(ctx, s.eng, s.opts.Overrides, now, s.m, s.log)
	for _, sink := range s.opts.Sinks {
		for _, snap := range snaps {
			sink(snap)
		}
	}
	if s.wr != nil {
		s.publish(ctx, snaps)
	}
	return snaps
}

func (s *Scorer) publish(ctx context.Context, snaps []*steering.Snapshot) {
	publishSnapshots(ctx, s.opts.PublishTimeout, s.wr, snaps, s.m, s.log)
}

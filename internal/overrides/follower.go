package overrides

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/cdnpilot/cdnpilot/steering"
)

var _ steering.OverrideStore = (*Follower)(nil)

// FollowerOptions configure a Follower.
type FollowerOptions struct {
	Brokers  []string
	Topic    string // DefaultTopic when empty
	ClientID string
	Logger   *slog.Logger
	// Registerer, when set, gets cdnpilot_overrides_active and
	// cdnpilot_override_records_total{result}.
	Registerer prometheus.Registerer
	// Now is the clock of the active gauge and of the sets handed to
	// OnChange; time.Now when nil.
	Now func() time.Time
}

// Follower holds the latest record of every override id in the topic. It
// reads every partition from the start (a compacted topic is the whole
// state) and then follows it. Of two records of one id the higher
// revision wins; on equal revisions the later message.
type Follower struct {
	brokers  []string
	topic    string
	clientID string
	now      func() time.Time
	log      *slog.Logger
	records  *prometheus.CounterVec

	// notify serializes applying a message with handing the result to
	// the OnChange funcs, so that they see the changes in order even
	// though partitions are read concurrently.
	notify sync.Mutex

	mu      sync.Mutex
	held    map[string]Record
	changed chan struct{} // closed and replaced on every change of held
	// announced is the revision of each id that the OnChange funcs have
	// been told of: WaitRevision waits for it, so a caller that wrote an
	// override and waited sees it applied (a steering table decides with
	// it), not just read.
	announced map[string]uint64
	handlers  []func(active []steering.Override)
	running   bool
	behind    map[int]int64 // partition -> the offset to reach to be ready
	ready     chan struct{}
	isReady   bool
}

// NewFollower builds a follower; Run reads the topic.
func NewFollower(o FollowerOptions) *Follower {
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	f := &Follower{
		brokers: o.Brokers, topic: o.Topic, clientID: o.ClientID, now: o.Now,
		log: o.Logger.With("component", "overrides", "topic", o.Topic),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdnpilot_override_records_total",
			Help: "Messages read from the override topic, by result (ok, invalid: skipped, tombstone: the id is forgotten).",
		}, []string{"result"}),
		held: map[string]Record{}, announced: map[string]uint64{}, changed: make(chan struct{}), behind: map[int]int64{}, ready: make(chan struct{}),
	}
	for _, r := range []string{"ok", "invalid", "tombstone"} {
		f.records.WithLabelValues(r)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(f.records, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cdnpilot_overrides_active",
			Help: "Overrides this node holds that are neither deleted nor expired.",
		}, func() float64 {
			f.mu.Lock()
			defer f.mu.Unlock()
			return float64(len(f.activeLocked(f.now())))
		}))
	}
	return f
}

// OnChange registers fn, called with the overrides that are neither
// deleted nor expired: once when the follower becomes ready, then after
// every change it applies. Register before Run. Calls come one at a
// time, in the order of the changes; fn must not block for long.
func (f *Follower) OnChange(fn func(active []steering.Override)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers = append(f.handlers, fn)
}

// Ready is closed once the follower has read every partition up to where
// it ended when Run started: before that its set may be incomplete.
func (f *Follower) Ready() <-chan struct{} { return f.ready }

// Active is the overrides that apply at now (steering.OverrideStore),
// oldest first. Before Ready it returns ErrNotReady: a half-read set must
// not steer.
func (f *Follower) Active(_ context.Context, now time.Time) ([]steering.Override, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.isReady {
		return nil, ErrNotReady
	}
	return f.activeLocked(now), nil
}

// activeLocked is the overrides neither deleted nor expired at now,
// oldest first (ties by id), with their maps copied.
func (f *Follower) activeLocked(now time.Time) []steering.Override {
	out := []steering.Override{}
	for _, r := range f.held {
		if r.State(now) == StateActive {
			out = append(out, r.clone().Override)
		}
	}
	slices.SortFunc(out, func(a, b steering.Override) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// All is every record held, in any state, newest first by Created (ties
// by id).
func (f *Follower) All() []Record {
	f.mu.Lock()
	out := make([]Record, 0, len(f.held))
	for _, r := range f.held {
		out = append(out, r.clone())
	}
	f.mu.Unlock()
	sortNewestFirst(out)
	return out
}

func sortNewestFirst(rs []Record) {
	slices.SortFunc(rs, func(a, b Record) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(a.ID, b.ID))
	})
}

// Get is the latest record of id.
func (f *Follower) Get(id string) (Record, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.held[id]
	return r.clone(), ok
}

// isReadyNow reports whether Ready is closed, without blocking.
func (f *Follower) isReadyNow() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isReady
}

// WaitRevision returns once the follower holds id at revision rev or
// later and has handed that change to the OnChange funcs, or with ctx's
// error.
func (f *Follower) WaitRevision(ctx context.Context, id string, rev uint64) error {
	for {
		f.mu.Lock()
		got, ok := f.announced[id]
		changed := f.changed
		f.mu.Unlock()
		if ok && got >= rev {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for override %s revision %d: %w", id, rev, ctx.Err())
		}
	}
}

// Run reads the topic until ctx ends. It finds the partitions and where
// each ends, then reads each from its first offset with a reader of its
// own (no consumer group: every node reads everything).
func (f *Follower) Run(ctx context.Context) error {
	f.mu.Lock()
	if f.running {
		f.mu.Unlock()
		return errors.New("override follower: already running")
	}
	f.running = true
	f.mu.Unlock()

	ends, err := f.partitionEnds(ctx)
	if err != nil {
		f.mu.Lock()
		f.running = false // the caller may try again
		f.mu.Unlock()
		if ctx.Err() != nil {
			// Stopped while it started: a shutdown, not a failure.
			return nil
		}
		return err
	}
	f.notify.Lock()
	f.mu.Lock()
	for p, e := range ends {
		if e.last > e.first {
			f.behind[p] = e.last - 1
		}
	}
	f.log.Info("reading the override topic", "partitions", len(ends), "behind", len(f.behind))
	list, notify := f.readyLocked()
	f.mu.Unlock()
	f.call(list, notify)
	f.notify.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	for p := range ends {
		g.Go(func() error { return f.follow(gctx, p) })
	}
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// offsets are where a partition starts and ends (the next offset to be
// written) when the follower starts.
type offsets struct{ first, last int64 }

// partitionEnds lists the topic's partitions and their offsets, as the
// kafkaio lag helpers do.
func (f *Follower) partitionEnds(ctx context.Context) (map[int]offsets, error) {
	if len(f.brokers) == 0 {
		return nil, errors.New("override follower: no brokers")
	}
	transport := &kafka.Transport{ClientID: f.clientID, DialTimeout: 5 * time.Second}
	defer transport.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(f.brokers...), Timeout: 10 * time.Second, Transport: transport}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{f.topic}})
	if err != nil {
		return nil, fmt.Errorf("override follower: metadata of %s: %w", f.topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, t := range md.Topics {
		if t.Name != f.topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("override follower: topic %s: %w", f.topic, t.Error)
		}
		for _, p := range t.Partitions {
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	if len(reqs) == 0 {
		return nil, fmt.Errorf("override follower: topic %s has no partitions", f.topic)
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{f.topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("override follower: offsets of %s: %w", f.topic, err)
	}
	ends := map[int]offsets{}
	for _, p := range lo.Topics[f.topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("override follower: offsets of %s/%d: %w", f.topic, p.Partition, p.Error)
		}
		ends[p.Partition] = offsets{first: p.FirstOffset, last: p.LastOffset}
	}
	if len(ends) != len(reqs)/2 {
		return nil, fmt.Errorf("override follower: offsets of %s: %d partitions answered, want %d", f.topic, len(ends), len(reqs)/2)
	}
	return ends, nil
}

// follow reads one partition from its first offset until ctx ends.
func (f *Follower) follow(ctx context.Context, partition int) error {
	cfg := kafka.ReaderConfig{
		Brokers: f.brokers, Topic: f.topic, Partition: partition,
		Dialer:   &kafka.Dialer{ClientID: f.clientID, Timeout: 5 * time.Second},
		MinBytes: 1, MaxBytes: 16 << 20,
		// As kafkaio.NewReader: under 1-2 s kafka-go's read deadline margin
		// is too thin on a busy machine. A fetch still returns as soon as a
		// record arrives.
		MaxWait:        2 * time.Second,
		ReadBackoffMin: 50 * time.Millisecond,
		ReadBackoffMax: 500 * time.Millisecond,
	}
	cfg.ErrorLogger = kafka.LoggerFunc(func(msg string, args ...any) {
		f.log.Warn(fmt.Sprintf(msg, args...), "partition", partition)
	})
	r := kafka.NewReader(cfg)
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		return fmt.Errorf("override follower: seek %s/%d to the start: %w", f.topic, partition, err)
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("override follower: read %s/%d: %w", f.topic, partition, err)
		}
		f.apply(m)
	}
}

// apply takes one message into the held set and tells the OnChange funcs.
func (f *Follower) apply(m kafka.Message) {
	f.notify.Lock()
	defer f.notify.Unlock()
	id := string(m.Key)
	result, changed := "ok", false
	f.mu.Lock()
	switch rec, err := DecodeRecord(m.Key, m.Value); {
	case m.Value == nil:
		result = "tombstone"
		if _, ok := f.held[id]; ok {
			delete(f.held, id)
			changed = true
		}
	case err != nil:
		result = "invalid"
		f.log.Warn("override record skipped; what was held stays", "partition", m.Partition, "offset", m.Offset,
			"key", truncate(id, 80), "err", err)
	default:
		if cur, ok := f.held[id]; ok && rec.Revision < cur.Revision {
			f.log.Debug("older override revision ignored", "id", id, "revision", rec.Revision, "held", cur.Revision)
			break
		}
		f.held[id] = rec
		changed = true
	}
	// Counted before the change is announced, so that a caller woken by
	// WaitRevision sees the count too.
	f.records.WithLabelValues(result).Inc()
	wasReady := f.isReady
	if target, ok := f.behind[m.Partition]; ok && m.Offset >= target {
		delete(f.behind, m.Partition)
	}
	list, notify := f.readyLocked()
	if wasReady && changed && len(f.handlers) > 0 {
		list, notify = f.activeLocked(f.now()), true
	}
	f.mu.Unlock()
	f.call(list, notify)
	if changed {
		// Waiters wake only now that the OnChange funcs have the change.
		f.mu.Lock()
		if rec, ok := f.held[id]; ok {
			f.announced[id] = rec.Revision
		} else {
			delete(f.announced, id)
		}
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}
}

// readyLocked closes Ready once no partition is behind, and then returns
// the set to hand to the OnChange funcs.
func (f *Follower) readyLocked() ([]steering.Override, bool) {
	if f.isReady || len(f.behind) > 0 {
		return nil, false
	}
	f.isReady = true
	close(f.ready)
	f.log.Info("override topic read to its end", "overrides", len(f.held))
	if len(f.handlers) == 0 {
		return nil, false
	}
	return f.activeLocked(f.now()), true
}

// call hands list to the OnChange funcs; the caller holds f.notify.
func (f *Follower) call(list []steering.Override, notify bool) {
	if !notify {
		return
	}
	f.mu.Lock()
	hs := slices.Clone(f.handlers)
	f.mu.Unlock()
	for _, h := range hs {
		h(list)
	}
}

package analytics

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// MemoryOptions configures NewMemory.
type MemoryOptions struct {
	// Retention is how far behind the newest beacon data is kept (default 6h).
	// The clock is the data's own ReceivedAt, so a replay of old beacons
	// behaves like live traffic.
	Retention time.Duration
	// MaxEventIDs caps the dedup set (default 2,000,000, about 150 MB); past
	// it the oldest minutes are dropped early.
	MaxEventIDs int
}

const (
	defaultRetention   = 6 * time.Hour
	defaultMaxEventIDs = 2_000_000
	// sketchAccuracy is DDSketch's relative accuracy: a p50 of 1000 ms is
	// reported between 990 and 1010 ms.
	sketchAccuracy = 0.01
)

// Memory is the in-process store for the embedded default: per-minute
// rollups with DDSketch quantiles, exact dedup of event_id within retention.
// It is safe for concurrent use.
type Memory struct {
	opts MemoryOptions

	mu        sync.RWMutex
	minutes   map[int64]*memMinute // key: minute start, Unix seconds
	seen      map[string]struct{}  // every event id held, across minutes
	eventIDs  int                  // sum of len(ids) over minutes
	watermark int64                // newest minute seen
}

// memMinute holds one minute of data. Event ids are listed with the minute
// they were received in, so dropping a minute forgets its ids; the lookup
// is global because a re-sent CMCD report (same derived id) arrives later,
// in another minute.
type memMinute struct {
	ids    map[string]struct{}
	groups map[groupKey]*memGroup
}

// memGroup is one rollup cell. Views are kept as sets, not counts, so that
// distinct views stay exact when minutes are merged.
type memGroup struct {
	beacons                      uint64
	views, fatalViews, ebvsViews map[string]struct{}
	startup, throughput, ttfb    *ddsketch.DDSketch
	played, rebuffer, rebufferN  uint64
	bitrateSum, bitrateN         uint64
}

// NewMemory returns an empty in-memory store.
func NewMemory(opts MemoryOptions) *Memory {
	opts.Retention = cmp.Or(opts.Retention, defaultRetention)
	opts.MaxEventIDs = cmp.Or(opts.MaxEventIDs, defaultMaxEventIDs)
	return &Memory{opts: opts, minutes: map[int64]*memMinute{}, seen: map[string]struct{}{}}
}

func newSketch() *ddsketch.DDSketch {
	s, err := ddsketch.NewDefaultDDSketch(sketchAccuracy)
	if err != nil {
		// Only an accuracy outside (0, 1) fails, and ours is a constant.
		panic(fmt.Sprintf("ddsketch: %v", err))
	}
	return s
}

func newMemGroup() *memGroup {
	return &memGroup{
		views: map[string]struct{}{}, fatalViews: map[string]struct{}{}, ebvsViews: map[string]struct{}{},
		startup: newSketch(), throughput: newSketch(), ttfb: newSketch(),
	}
}

// Insert adds rows, skipping event ids already seen within retention and rows
// older than retention. Rows are validated first: on error nothing is added.
func (m *Memory) Insert(ctx context.Context, rows []record.Beacon) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("insert beacons: %w", err)
	}
	if err := validateRows(rows); err != nil {
		return fmt.Errorf("insert beacons: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range rows {
		b := &rows[i]
		minute := floorDiv(b.ReceivedAt, 60_000) * 60
		if minute > m.watermark {
			m.watermark = minute
		}
		if minute <= m.watermark-int64(m.opts.Retention/time.Second) {
			continue
		}
		mm := m.minutes[minute]
		if mm == nil {
			mm = &memMinute{ids: map[string]struct{}{}, groups: map[groupKey]*memGroup{}}
			m.minutes[minute] = mm
		}
		if _, dup := m.seen[b.EventID]; dup {
			continue
		}
		m.seen[b.EventID] = struct{}{}
		mm.ids[b.EventID] = struct{}{}
		m.eventIDs++
		k := keyOf(b)
		g := mm.groups[k]
		if g == nil {
			g = newMemGroup()
			mm.groups[k] = g
		}
		g.add(b)
	}
	m.evict()
	return nil
}

// add applies the same rules as the ClickHouse aggregates in clickhouse.go.
func (g *memGroup) add(b *record.Beacon) {
	g.beacons++
	isEnd := b.Type == record.TypeViewEnd
	isFatal := b.Type == record.TypeError && b.Fatal
	// A play attempt; a view that fails before its first frame may never
	// send view_start.
	if b.Type == record.TypeViewStart || isEnd || isFatal {
		g.views[b.ViewID] = struct{}{}
	}
	if b.Type == record.TypeViewStart && b.StartupMS > 0 {
		_ = g.startup.Add(float64(b.StartupMS))
	}
	if isFatal {
		g.fatalViews[b.ViewID] = struct{}{}
	}
	// view_end repeats startup_ms; 0 means the first frame never showed.
	// CMCD sends msd once, not on its end event, so only SDK beacons tell.
	if isEnd && b.StartupMS == 0 && b.Source == record.SourceBeacon {
		g.ebvsViews[b.ViewID] = struct{}{}
	}
	// CMCD rows carry stall time but never play time.
	if (b.Type == record.TypeHeartbeat || isEnd) && b.Source == record.SourceBeacon {
		g.played += uint64(b.PlayedMS)
		g.rebuffer += uint64(b.RebufferMS)
		g.rebufferN++
	}
	if b.ThroughputKbps > 0 {
		_ = g.throughput.Add(float64(b.ThroughputKbps))
	}
	if b.BitrateKbps > 0 {
		g.bitrateSum += uint64(b.BitrateKbps)
		g.bitrateN++
	}
	if b.TTFBMS > 0 {
		_ = g.ttfb.Add(float64(b.TTFBMS))
	}
}

// evict drops minutes past retention, then the oldest ones while the dedup
// set is over its cap. Called with mu held.
func (m *Memory) evict() {
	cutoff := m.watermark - int64(m.opts.Retention/time.Second)
	for t, mm := range m.minutes {
		if t <= cutoff {
			m.dropMinute(t, mm)
		}
	}
	if m.eventIDs <= m.opts.MaxEventIDs {
		return
	}
	keys := make([]int64, 0, len(m.minutes))
	for t := range m.minutes {
		keys = append(keys, t)
	}
	slices.Sort(keys)
	for _, t := range keys[:len(keys)-1] { // always keep the newest minute
		if m.eventIDs <= m.opts.MaxEventIDs {
			break
		}
		m.dropMinute(t, m.minutes[t])
	}
}

func (m *Memory) dropMinute(t int64, mm *memMinute) {
	for id := range mm.ids {
		delete(m.seen, id)
	}
	m.eventIDs -= len(mm.ids)
	delete(m.minutes, t)
}

// memAcc merges groups into one result row.
type memAcc struct {
	bucket int64
	key    groupKey
	g      *memGroup
}

func (a *memAcc) merge(g *memGroup) {
	a.g.beacons += g.beacons
	maps.Copy(a.g.views, g.views)
	maps.Copy(a.g.fatalViews, g.fatalViews)
	maps.Copy(a.g.ebvsViews, g.ebvsViews)
	_ = a.g.startup.MergeWith(g.startup)
	_ = a.g.throughput.MergeWith(g.throughput)
	_ = a.g.ttfb.MergeWith(g.ttfb)
	a.g.played += g.played
	a.g.rebuffer += g.rebuffer
	a.g.rebufferN += g.rebufferN
	a.g.bitrateSum += g.bitrateSum
	a.g.bitrateN += g.bitrateN
}

func quantile(s *ddsketch.DDSketch, q float64) float64 {
	if s.IsEmpty() {
		return 0
	}
	v, err := s.GetValueAtQuantile(q)
	if err != nil {
		return 0
	}
	return v
}

func (a *memAcc) row() groupedRow {
	g := a.g
	return groupedRow{bucket: a.bucket, key: a.key, parts: parts{
		beacons: g.beacons, views: uint64(len(g.views)), fatalViews: uint64(len(g.fatalViews)), ebvsViews: uint64(len(g.ebvsViews)),
		startupP50: quantile(g.startup, 0.5), startupP90: quantile(g.startup, 0.9), startupN: uint64(g.startup.GetCount()),
		played: g.played, rebuffer: g.rebuffer, rebufferN: g.rebufferN,
		throughputP50: quantile(g.throughput, 0.5), throughputN: uint64(g.throughput.GetCount()),
		bitrateSum: g.bitrateSum, bitrateN: g.bitrateN,
		ttfbP50: quantile(g.ttfb, 0.5), ttfbN: uint64(g.ttfb.GetCount()),
	}}
}

func (m *Memory) grouped(ctx context.Context, f Filter, from, to time.Time, step time.Duration, dims []Dimension) ([]groupedRow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lo, hi := minuteRange(from, to)
	stepS := int64(step / time.Second)
	type accKey struct {
		bucket int64
		key    groupKey
	}
	accs := map[accKey]*memAcc{}
	m.mu.RLock()
	for t, mm := range m.minutes {
		if t < lo || t >= hi {
			continue
		}
		var bucket int64
		if stepS > 0 {
			bucket = floorDiv(t, stepS) * stepS
		}
		for k, g := range mm.groups {
			if !f.match(k) {
				continue
			}
			var pk groupKey
			for _, d := range dims {
				_ = pk.set(d, k.dim(d))
			}
			ak := accKey{bucket, pk}
			a := accs[ak]
			if a == nil {
				a = &memAcc{bucket: bucket, key: pk, g: newMemGroup()}
				accs[ak] = a
			}
			a.merge(g)
		}
	}
	m.mu.RUnlock()
	out := make([]groupedRow, 0, len(accs))
	for _, a := range accs {
		out = append(out, a.row())
	}
	return out, nil
}

// Series returns one metric over time.
func (m *Memory) Series(ctx context.Context, q SeriesQuery) ([]Series, error) {
	if err := q.validate(); err != nil {
		return nil, fmt.Errorf("series query: %w", err)
	}
	var dims []Dimension
	if q.GroupBy != DimNone {
		dims = []Dimension{q.GroupBy}
	}
	rows, err := m.grouped(ctx, q.Filter, q.From, q.To, q.Step, dims)
	if err != nil {
		return nil, fmt.Errorf("series %s: %w", q.Metric, err)
	}
	return seriesFrom(rows, q.Metric, q.GroupBy), nil
}

// Top ranks the values of one dimension by a metric.
func (m *Memory) Top(ctx context.Context, q TopQuery) ([]TopRow, error) {
	if err := q.validate(); err != nil {
		return nil, fmt.Errorf("top query: %w", err)
	}
	rows, err := m.grouped(ctx, q.Filter, q.From, q.To, 0, []Dimension{q.By})
	if err != nil {
		return nil, fmt.Errorf("top %s by %s: %w", q.Metric, q.By, err)
	}
	return topFrom(rows, q), nil
}

// Window returns every metric per (service, cdn, region, country, asn).
func (m *Memory) Window(ctx context.Context, q WindowQuery) ([]Aggregate, error) {
	if err := q.validate(); err != nil {
		return nil, fmt.Errorf("window query: %w", err)
	}
	rows, err := m.grouped(ctx, q.Filter, q.From, q.To, 0, windowDims)
	if err != nil {
		return nil, fmt.Errorf("window: %w", err)
	}
	return windowFrom(rows), nil
}

// Ping always succeeds: there is nothing to reach.
func (m *Memory) Ping(context.Context) error { return nil }

// Close releases the data.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.minutes = map[int64]*memMinute{}
	m.seen = map[string]struct{}{}
	m.eventIDs = 0
	return nil
}

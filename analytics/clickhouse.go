package analytics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// ClickHouseOptions configures OpenClickHouse.
type ClickHouseOptions struct {
	Addr     string // host:port of the native protocol (9000); HTTP is not supported
	Database string // created if missing; default "cdnpilot"
	Username string // default "default"
	Password string

	// Short by default: the driver's 30 s dial timeout would stall a consumer
	// for 30 s per try while ClickHouse is down.
	DialTimeout  time.Duration // default 3s
	QueryTimeout time.Duration // per query and insert; default 10s

	// ExactRange: queries whose range is at most this long read the raw table
	// with FINAL (exact, duplicates removed); longer ones read the per-minute
	// rollups, which count a redelivered beacon again. Default 6h; negative
	// means always use the rollups.
	ExactRange time.Duration
}

const (
	defaultDatabase     = "cdnpilot"
	defaultDialTimeout  = 3 * time.Second
	defaultQueryTimeout = 10 * time.Second
	defaultExactRange   = 6 * time.Hour
)

// ClickHouse is the production store.
type ClickHouse struct {
	conn   driver.Conn
	db     string // quoted identifier
	modern bool
	opts   ClickHouseOptions
	log    *slog.Logger
}

// OpenClickHouse connects, detects the server version and runs Migrate.
func OpenClickHouse(ctx context.Context, opts ClickHouseOptions, logger *slog.Logger) (*ClickHouse, error) {
	if opts.Addr == "" {
		return nil, errors.New("clickhouse addr: empty")
	}
	opts.Database = cmp.Or(opts.Database, defaultDatabase)
	opts.Username = cmp.Or(opts.Username, "default")
	opts.DialTimeout = cmp.Or(opts.DialTimeout, defaultDialTimeout)
	opts.QueryTimeout = cmp.Or(opts.QueryTimeout, defaultQueryTimeout)
	opts.ExactRange = cmp.Or(opts.ExactRange, defaultExactRange)
	if !validIdent(opts.Database) {
		return nil, fmt.Errorf("clickhouse database: %q is not a plain identifier", opts.Database)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:     []string{opts.Addr},
		Protocol: clickhouse.Native,
		// The "default" database always exists; ours may not yet, and every
		// statement names it explicitly.
		Auth:        clickhouse.Auth{Database: "default", Username: opts.Username, Password: opts.Password},
		DialTimeout: opts.DialTimeout,
		ReadTimeout: opts.QueryTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", opts.Addr, err)
	}
	c := &ClickHouse{conn: conn, db: "`" + opts.Database + "`", opts: opts, log: logger.With("component", "analytics.clickhouse")}
	if err := c.init(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *ClickHouse) init(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	v, err := c.conn.ServerVersion()
	if err != nil {
		return fmt.Errorf("clickhouse server version: %w", err)
	}
	c.modern = v.Version.Major >= modernMajor
	c.log.Info("clickhouse connected", "addr", c.opts.Addr, "version", fmt.Sprintf("%d.%d.%d", v.Version.Major, v.Version.Minor, v.Version.Patch), "modern_schema", c.modern)
	return c.Migrate(ctx)
}

// deadConn reports whether err is a pooled connection found dead: closed
// by the server while idle. (Drivers before clickhouse-go v2.51.0 also
// closed a connection already back in the pool when the context of the
// call that had used it ended just after: their context watchdog could
// fire after it was stopped. That failed make test with "use of closed
// network connection" on another goroutine's insert.)
func deadConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// query runs a read, once more on another connection if the pooled one
// was dead: a read has no effect to repeat.
func (c *ClickHouse) query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	rows, err := c.conn.Query(ctx, q, args...)
	if err != nil && ctx.Err() == nil && deadConn(err) {
		rows, err = c.conn.Query(ctx, q, args...)
	}
	return rows, err
}

// prepareBatch starts an insert, once more on another connection if the
// pooled one was dead: no row has been sent yet.
func (c *ClickHouse) prepareBatch(ctx context.Context, q string) (driver.Batch, error) {
	b, err := c.conn.PrepareBatch(ctx, q)
	if err != nil && ctx.Err() == nil && deadConn(err) {
		b, err = c.conn.PrepareBatch(ctx, q)
	}
	return b, err
}

// Modern reports whether the server got the LowCardinality/TTL schema.
func (c *ClickHouse) Modern() bool { return c.modern }

// Migrate applies pending schema migrations; it is idempotent and safe to run
// at every start-up.
func (c *ClickHouse) Migrate(ctx context.Context) error {
	applied, err := migrate(ctx, c.conn, c.opts.Database, c.modern)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", c.opts.Database, err)
	}
	if len(applied) > 0 {
		c.log.Info("schema migrated", "database", c.opts.Database, "applied", applied)
	}
	return nil
}

// Ping checks the connection.
func (c *ClickHouse) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	if err := c.conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping clickhouse: %w", err)
	}
	return nil
}

// Close closes the connection pool.
func (c *ClickHouse) Close() error { return c.conn.Close() }

const insertColumns = "event_id, received_at, received_at_ms, client_ip, country, region, asn, source, type, " +
	"view_id, session_id, ts, ts_ms, seq, service, cdn, prev_cdn, host, content_id, player, player_version, " +
	"device, os, startup_ms, rebuffer_ms, rebuffer_count, seek_rebuffer_ms, seek, played_ms, bitrate_kbps, " +
	"throughput_kbps, ttfb_ms, dropped_frames, error_code, fatal"

// Insert writes rows as one insert. It builds a fresh batch on every call:
// a batch that failed to Send is marked sent and cannot be retried, so a
// caller retries by calling Insert again with the same rows.
func (c *ClickHouse) Insert(ctx context.Context, rows []record.Beacon) error {
	if len(rows) == 0 {
		return nil
	}
	if err := validateRows(rows); err != nil {
		return fmt.Errorf("insert beacons: %w", err)
	}
	// Grouped by the leading, low-cardinality columns of the table's ORDER
	// BY, the server skips most of its sort. Bucketing is linear; a
	// comparison sort of 50k rows profiled as a tenth of the consumer's CPU.
	type lead struct{ service, region, cdn string }
	buckets := map[lead][]*record.Beacon{}
	for i := range rows {
		k := lead{rows[i].Service, rows[i].Region, rows[i].CDN}
		buckets[k] = append(buckets[k], &rows[i])
	}
	keys := make([]lead, 0, len(buckets))
	for k := range buckets {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b lead) int {
		return cmp.Or(strings.Compare(a.service, b.service), strings.Compare(a.region, b.region), strings.Compare(a.cdn, b.cdn))
	})
	sorted := make([]*record.Beacon, 0, len(rows))
	for _, k := range keys {
		sorted = append(sorted, buckets[k]...)
	}

	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	batch, err := c.prepareBatch(ctx, "INSERT INTO "+c.db+".beacons ("+insertColumns+")")
	if err != nil {
		return fmt.Errorf("insert beacons: prepare: %w", err)
	}
	// Column by column: the row API boxes 35 values per row into
	// interfaces, which profiled as most of the consumer's CPU.
	// The order is insertColumns'.
	cols := []any{
		column(sorted, func(b *record.Beacon) string { return b.EventID }),
		column(sorted, func(b *record.Beacon) time.Time { return msTime(b.ReceivedAt) }),
		column(sorted, func(b *record.Beacon) int64 { return b.ReceivedAt }),
		column(sorted, func(b *record.Beacon) string { return b.ClientIP }),
		column(sorted, func(b *record.Beacon) string { return b.Country }),
		column(sorted, func(b *record.Beacon) string { return b.Region }),
		column(sorted, func(b *record.Beacon) uint32 { return b.ASN }),
		column(sorted, func(b *record.Beacon) uint8 { return uint8(b.Source) }),
		column(sorted, func(b *record.Beacon) uint8 { return uint8(b.Type) }),
		column(sorted, func(b *record.Beacon) string { return b.ViewID }),
		column(sorted, func(b *record.Beacon) string { return b.SessionID }),
		column(sorted, func(b *record.Beacon) time.Time { return msTime(b.TS) }),
		column(sorted, func(b *record.Beacon) int64 { return b.TS }),
		column(sorted, func(b *record.Beacon) uint32 { return b.Seq }),
		column(sorted, func(b *record.Beacon) string { return b.Service }),
		column(sorted, func(b *record.Beacon) string { return b.CDN }),
		column(sorted, func(b *record.Beacon) string { return b.PrevCDN }),
		column(sorted, func(b *record.Beacon) string { return b.Host }),
		column(sorted, func(b *record.Beacon) string { return b.ContentID }),
		column(sorted, func(b *record.Beacon) string { return b.Player }),
		column(sorted, func(b *record.Beacon) string { return b.PlayerVersion }),
		column(sorted, func(b *record.Beacon) string { return b.Device }),
		column(sorted, func(b *record.Beacon) string { return b.OS }),
		column(sorted, func(b *record.Beacon) uint32 { return b.StartupMS }),
		column(sorted, func(b *record.Beacon) uint32 { return b.RebufferMS }),
		column(sorted, func(b *record.Beacon) uint32 { return b.RebufferCount }),
		column(sorted, func(b *record.Beacon) uint32 { return b.SeekRebufferMS }),
		column(sorted, func(b *record.Beacon) uint8 { return boolU8(b.Seek) }),
		column(sorted, func(b *record.Beacon) uint32 { return b.PlayedMS }),
		column(sorted, func(b *record.Beacon) uint32 { return b.BitrateKbps }),
		column(sorted, func(b *record.Beacon) uint32 { return b.ThroughputKbps }),
		column(sorted, func(b *record.Beacon) uint32 { return b.TTFBMS }),
		column(sorted, func(b *record.Beacon) uint32 { return b.DroppedFrames }),
		column(sorted, func(b *record.Beacon) string { return b.ErrorCode }),
		column(sorted, func(b *record.Beacon) uint8 { return boolU8(b.Fatal) }),
	}
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("insert beacons: append column %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert beacons: send %d rows: %w", len(rows), err)
	}
	return nil
}

// column extracts one column of rows for a column-wise append.
func column[T any](rows []*record.Beacon, f func(*record.Beacon) T) []T {
	out := make([]T, len(rows))
	for i, b := range rows {
		out[i] = f(b)
	}
	return out
}

// msTime converts ms since the epoch to a DateTime value. Out-of-range client
// clocks become the zero DateTime (1970-01-01) rather than failing the row;
// ts_ms keeps the raw value.
func msTime(ms int64) time.Time {
	s := ms / 1000
	if s < 0 || s > 1<<32-1 {
		s = 0
	}
	return time.Unix(s, 0).UTC()
}

func boolU8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// aggregate is one part of the metric computation: its SQL on the raw table
// and its -Merge on the rollup column of the same name. The materialized view
// in migrations/0002_beacons_1m.sql must use the same expressions as -State
// (TestAggregatesMatchRollup checks it), and memGroup.add in memory.go is the
// Go form of the same conditions. Type numbers: 1 view_start, 2 heartbeat,
// 6 error, 8 view_end; source 0 is /v1/beacons.
type aggregate struct{ raw, merge string }

var aggregates = []aggregate{
	{"count()", "countMerge(beacons)"},
	// A play attempt: view_start, view_end or a fatal error. A view that
	// fails before its first frame may never send view_start.
	{"uniqExactIf(view_id, type IN (1, 8) OR (type = 6 AND fatal = 1))", "uniqExactIfMerge(views)"},
	{"uniqExactIf(view_id, type = 6 AND fatal = 1)", "uniqExactIfMerge(fatal_views)"},
	// view_end repeats startup_ms; 0 means the first frame never showed.
	{"uniqExactIf(view_id, type = 8 AND startup_ms = 0 AND source = 0)", "uniqExactIfMerge(ebvs_views)"},
	{"quantilesIf(0.5, 0.9)(toFloat64(startup_ms), type = 1 AND startup_ms > 0)", "quantilesIfMerge(0.5, 0.9)(startup_q)"},
	{"countIf(type = 1 AND startup_ms > 0)", "countIfMerge(startup_n)"},
	// Play and stall deltas; CMCD rows (source 1) carry stall time but never
	// play time, so they would inflate the ratio.
	{"sumIf(toUInt64(played_ms), type IN (2, 8) AND source = 0)", "sumIfMerge(played)"},
	{"sumIf(toUInt64(rebuffer_ms), type IN (2, 8) AND source = 0)", "sumIfMerge(rebuffer)"},
	{"countIf(type IN (2, 8) AND source = 0)", "countIfMerge(rebuffer_n)"},
	{"quantileIf(0.5)(toFloat64(throughput_kbps), throughput_kbps > 0)", "quantileIfMerge(0.5)(throughput_q)"},
	{"countIf(throughput_kbps > 0)", "countIfMerge(throughput_n)"},
	{"sumIf(toUInt64(bitrate_kbps), bitrate_kbps > 0)", "sumIfMerge(bitrate_sum)"},
	{"countIf(bitrate_kbps > 0)", "countIfMerge(bitrate_n)"},
	{"quantileIf(0.5)(toFloat64(ttfb_ms), ttfb_ms > 0)", "quantileIfMerge(0.5)(ttfb_q)"},
	{"countIf(ttfb_ms > 0)", "countIfMerge(ttfb_n)"},
}

// buildQuery returns the SQL and its bound arguments for one grouped query.
// Only fixed fragments and the validated database name are spliced in; every
// value travels as a bound parameter.
func (c *ClickHouse) buildQuery(f Filter, from, to time.Time, step time.Duration, dims []Dimension) (string, []any) {
	lo, hi := minuteRange(from, to)
	rollup := c.opts.ExactRange < 0 || to.Sub(from) > c.opts.ExactRange
	timeCol, table := "received_at", c.db+".beacons FINAL"
	if rollup {
		timeCol, table = "minute", c.db+".beacons_1m"
	}

	var args []any
	var sb strings.Builder
	sb.WriteString("SELECT ")
	if step > 0 {
		sb.WriteString("toUInt64(intDiv(toUInt32(" + timeCol + "), ?) * ?)")
		secs := uint64(step / time.Second)
		args = append(args, secs, secs)
	} else {
		sb.WriteString("toUInt64(0)")
	}
	sb.WriteString(" AS bucket")
	for _, d := range dims {
		if d == DimASN {
			sb.WriteString(", toString(asn) AS g_asn")
		} else {
			sb.WriteString(", toString(" + string(d) + ") AS g_" + string(d))
		}
	}
	for _, a := range aggregates {
		sb.WriteString(", ")
		if rollup {
			sb.WriteString(a.merge)
		} else {
			sb.WriteString(a.raw)
		}
	}
	sb.WriteString(" FROM " + table + " WHERE " + timeCol + " >= toDateTime(?) AND " + timeCol + " < toDateTime(?)")
	args = append(args, lo, hi)
	for _, w := range []struct {
		col string
		val string
	}{{"service", f.Service}, {"cdn", f.CDN}, {"region", f.Region}, {"country", f.Country}} {
		if w.val != "" {
			sb.WriteString(" AND " + w.col + " = ?")
			args = append(args, w.val)
		}
	}
	if f.ASN != 0 {
		sb.WriteString(" AND asn = ?")
		args = append(args, f.ASN)
	}
	sb.WriteString(" GROUP BY bucket")
	for _, d := range dims {
		sb.WriteString(", g_" + string(d))
	}
	return sb.String(), args
}

func (c *ClickHouse) grouped(ctx context.Context, f Filter, from, to time.Time, step time.Duration, dims []Dimension) ([]groupedRow, error) {
	query, args := c.buildQuery(f, from, to, step, dims)
	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []groupedRow
	for rows.Next() {
		var (
			r        groupedRow
			bucket   uint64
			keys     = make([]string, len(dims))
			startupQ []float64
			p        = &r.parts
			dest     = []any{&bucket}
		)
		for i := range keys {
			dest = append(dest, &keys[i])
		}
		dest = append(dest, &p.beacons, &p.views, &p.fatalViews, &p.ebvsViews, &startupQ, &p.startupN,
			&p.played, &p.rebuffer, &p.rebufferN, &p.throughputP50, &p.throughputN,
			&p.bitrateSum, &p.bitrateN, &p.ttfbP50, &p.ttfbN)
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		if len(startupQ) == 2 {
			p.startupP50, p.startupP90 = startupQ[0], startupQ[1]
		}
		r.bucket = int64(bucket)
		for i, d := range dims {
			if err := r.key.set(d, keys[i]); err != nil {
				return nil, err
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Series returns one metric over time.
func (c *ClickHouse) Series(ctx context.Context, q SeriesQuery) ([]Series, error) {
	if err := q.validate(); err != nil {
		return nil, fmt.Errorf("series query: %w", err)
	}
	var dims []Dimension
	if q.GroupBy != DimNone {
		dims = []Dimension{q.GroupBy}
	}
	rows, err := c.grouped(ctx, q.Filter, q.From, q.To, q.Step, dims)
	if err != nil {
		return nil, fmt.Errorf("series %s: %w", q.Metric, err)
	}
	return seriesFrom(rows, q.Metric, q.GroupBy), nil
}

// Top ranks the values of one dimension by a metric.
func (c *ClickHouse) Top(ctx context.Context, q TopQuery) ([]TopRow, error) {
	if err := q.validate(); err != nil {
		return nil, fmt.Errorf("top query: %w", err)
	}
	rows, err := c.grouped(ctx, q.Filter, q.From, q.To, 0, []Dimension{q.By})
	if err != nil {
		return nil, fmt.Errorf("top %s by %s: %w", q.Metric, q.By, err)
	}
	return topFrom(rows, q), nil
}

// Window returns every metric per (service, cdn, region, country, asn).
func (c *ClickHouse) Window(ctx context.Context, q WindowQuery) ([]Aggregate, error) {
	if err := q.validate(); err != nil {
		return nil, fmt.Errorf("window query: %w", err)
	}
	rows, err := c.grouped(ctx, q.Filter, q.From, q.To, 0, windowDims)
	if err != nil {
		return nil, fmt.Errorf("window: %w", err)
	}
	return windowFrom(rows), nil
}

func (k *groupKey) set(d Dimension, v string) error {
	switch d {
	case DimService:
		k.Service = v
	case DimCDN:
		k.CDN = v
	case DimRegion:
		k.Region = v
	case DimCountry:
		k.Country = v
	case DimASN:
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("asn %q: %w", v, err)
		}
		k.ASN = uint32(n)
	}
	return nil
}

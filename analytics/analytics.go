// Package analytics stores QoE beacons and answers metric queries over them,
// in ClickHouse for production and in memory for the embedded default. It
// also keeps the sampled steering decision log (DecisionLog), in the same two
// places.
//
// Both stores compute every metric from the same per-group parts (counts,
// sums, quantiles) with the same rules, so a dashboard or the scorer gets the
// same answer from either, up to quantile approximation.
//
// # Beacon semantics the metrics rely on
//
// A view ends with exactly one of view_end or an error with Fatal set (a
// player sends no view_end after a fatal error). view_end repeats the view's
// StartupMS, 0 when the first frame never showed. A view may fail or be
// abandoned before its first frame without ever sending view_start, so views
// are counted from every beacon that marks a play attempt: view_start,
// view_end, or a fatal error.
//
// PlayedMS and RebufferMS on heartbeat and view_end beacons are DELTAS: the
// play and stall time since the view's previous heartbeat (or its
// view_start, for the first one). Summing them over any time range gives the
// time played and stalled in that range, which is what rebuffer_pct needs.
// Other beacon types may carry these fields for context but are not summed.
// Only source beacon (0) rows are summed: CMCD rows carry stall time (bsd)
// but never play time. Only view_start feeds the startup quantiles.
package analytics

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// Metric names a QoE metric. The string forms are the public API names.
type Metric string

// Metrics. See README.md for their exact definitions.
const (
	MetricBeacons       Metric = "beacons"             // rows
	MetricViews         Metric = "views"               // distinct view_id among view_start, view_end, fatal error
	MetricStartupP50    Metric = "startup_p50_ms"      // StartupMS>0 on view_start
	MetricStartupP90    Metric = "startup_p90_ms"      // StartupMS>0 on view_start
	MetricRebufferPct   Metric = "rebuffer_pct"        // 100*stall/(play+stall), heartbeat+view_end deltas, source beacon only
	MetricFailurePct    Metric = "failure_pct"         // 100*distinct views with a fatal error/views
	MetricEBVSPct       Metric = "ebvs_pct"            // 100*distinct views with a view_end whose StartupMS=0/views
	MetricThroughputP50 Metric = "throughput_p50_kbps" // ThroughputKbps>0
	MetricBitrateAvg    Metric = "bitrate_avg_kbps"    // BitrateKbps>0
	MetricTTFBP50       Metric = "ttfb_p50_ms"         // TTFBMS>0
)

// Metrics lists every metric, in a stable order.
var metrics = []Metric{
	MetricBeacons, MetricViews, MetricStartupP50, MetricStartupP90, MetricRebufferPct,
	MetricFailurePct, MetricEBVSPct, MetricThroughputP50, MetricBitrateAvg, MetricTTFBP50,
}

// Metrics returns every metric name, in a stable order.
func Metrics() []Metric { return slices.Clone(metrics) }

func (m Metric) valid() bool { return slices.Contains(metrics, m) }

// Dimension is a column a query can group by.
type Dimension string

// Dimensions. DimNone means no grouping.
const (
	DimNone    Dimension = ""
	DimService Dimension = "service"
	DimCDN     Dimension = "cdn"
	DimRegion  Dimension = "region"
	DimCountry Dimension = "country"
	DimASN     Dimension = "asn"
)

// windowDims is the grouping of Window: one Aggregate per combination.
var windowDims = []Dimension{DimService, DimCDN, DimRegion, DimCountry, DimASN}

func (d Dimension) valid() bool { return d == DimNone || slices.Contains(windowDims, d) }

// Filter restricts a query; empty fields match everything.
type Filter struct {
	Service, CDN, Region, Country string
	ASN                           uint32
}

func (f Filter) match(k groupKey) bool {
	return (f.Service == "" || f.Service == k.Service) &&
		(f.CDN == "" || f.CDN == k.CDN) &&
		(f.Region == "" || f.Region == k.Region) &&
		(f.Country == "" || f.Country == k.Country) &&
		(f.ASN == 0 || f.ASN == k.ASN)
}

// SeriesQuery asks for one metric over time.
//
// Time ranges have minute resolution, the resolution of the rollups: a beacon
// counts when the minute it was received in starts in
// [From truncated to the minute, To).
type SeriesQuery struct {
	Filter
	Metric   Metric
	From, To time.Time
	Step     time.Duration // a positive multiple of one minute; buckets align to it from the Unix epoch
	GroupBy  Dimension
}

// Series is one line of a chart: Key is the GroupBy value ("" without one).
type Series struct {
	Key    string
	Points []Point
}

// Point is one bucket. N is the number of samples behind V (beacons, views,
// quantile samples, ...); buckets with N == 0 are left out.
type Point struct {
	T time.Time
	V float64
	N uint64
}

// TopQuery ranks the values of one dimension by a metric over a range.
type TopQuery struct {
	Filter
	Metric    Metric
	From, To  time.Time
	By        Dimension
	N         int
	Ascending bool
}

// TopRow is one ranked value of TopQuery.By.
type TopRow struct {
	Key string
	V   float64
	N   uint64
}

// WindowQuery asks for every metric per (service, cdn, region, country, asn).
type WindowQuery struct {
	Filter
	From, To time.Time
}

// Value is a metric value and the number of samples behind it. V is 0, never
// NaN, when N is 0.
type Value struct {
	V float64
	N uint64
}

// Aggregate holds every metric of one (service, cdn, region, country, asn)
// over a window.
type Aggregate struct {
	Service, CDN, Region, Country string
	ASN                           uint32
	Values                        map[Metric]Value
}

const (
	maxBuckets = 100_000
	maxKeyLen  = 256
)

func checkRange(from, to time.Time) error {
	if from.IsZero() || to.IsZero() {
		return fmt.Errorf("from and to: must be set")
	}
	if !from.Before(to) {
		return fmt.Errorf("from: must be before to (from=%s to=%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return nil
}

func checkFilter(f Filter) error {
	for name, v := range map[string]string{"service": f.Service, "cdn": f.CDN, "region": f.Region, "country": f.Country} {
		if len(v) > maxKeyLen || !utf8.ValidString(v) {
			return fmt.Errorf("filter %s: must be valid UTF-8 of at most %d bytes", name, maxKeyLen)
		}
	}
	return nil
}

func (q SeriesQuery) validate() error {
	if !q.Metric.valid() {
		return fmt.Errorf("metric: unknown metric %q", q.Metric)
	}
	if !q.GroupBy.valid() {
		return fmt.Errorf("group_by: unknown dimension %q", q.GroupBy)
	}
	if q.Step <= 0 || q.Step%time.Minute != 0 {
		return fmt.Errorf("step: must be a positive multiple of 1m, got %s", q.Step)
	}
	if err := checkRange(q.From, q.To); err != nil {
		return err
	}
	if q.To.Sub(q.From)/q.Step > maxBuckets {
		return fmt.Errorf("step: more than %d buckets between from and to", maxBuckets)
	}
	return checkFilter(q.Filter)
}

func (q TopQuery) validate() error {
	if !q.Metric.valid() {
		return fmt.Errorf("metric: unknown metric %q", q.Metric)
	}
	if q.By == DimNone || !q.By.valid() {
		return fmt.Errorf("by: unknown dimension %q", q.By)
	}
	if q.N <= 0 {
		return fmt.Errorf("n: must be positive, got %d", q.N)
	}
	if err := checkRange(q.From, q.To); err != nil {
		return err
	}
	return checkFilter(q.Filter)
}

func (q WindowQuery) validate() error {
	if err := checkRange(q.From, q.To); err != nil {
		return err
	}
	return checkFilter(q.Filter)
}

// minuteRange turns [from, to) into whole minutes in Unix seconds: lo is from
// rounded down, hi is to rounded up, so a partial current minute is included.
func minuteRange(from, to time.Time) (lo, hi int64) {
	lo = floorDiv(from.Unix(), 60) * 60
	hi = floorDiv(to.Unix(), 60) * 60
	if to.After(time.Unix(hi, 0)) {
		hi += 60
	}
	return lo, hi
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// validateRows rejects a whole insert before anything is written, so a bad
// row never leaves a half-appended batch behind.
func validateRows(rows []record.Beacon) error {
	for i := range rows {
		if err := rows[i].Check(); err != nil {
			return fmt.Errorf("row %d (event %q): %w", i, rows[i].EventID, err)
		}
	}
	return nil
}

// groupKey is the rollup grouping of one beacon.
type groupKey struct {
	Service, CDN, Region, Country string
	ASN                           uint32
}

func keyOf(b *record.Beacon) groupKey {
	return groupKey{Service: b.Service, CDN: b.CDN, Region: b.Region, Country: b.Country, ASN: b.ASN}
}

func (k groupKey) dim(d Dimension) string {
	switch d {
	case DimService:
		return k.Service
	case DimCDN:
		return k.CDN
	case DimRegion:
		return k.Region
	case DimCountry:
		return k.Country
	case DimASN:
		return strconv.FormatUint(uint64(k.ASN), 10)
	}
	return ""
}

// parts are what every metric is computed from; both stores fill them.
// views, fatalViews and ebvsViews are distinct view_id counts; played,
// rebuffer and rebufferN cover heartbeat and view_end rows of source beacon.
type parts struct {
	beacons, views, fatalViews, ebvsViews uint64

	startupP50, startupP90 float64
	startupN               uint64

	played, rebuffer, rebufferN uint64

	throughputP50 float64
	throughputN   uint64

	bitrateSum, bitrateN uint64

	ttfbP50 float64
	ttfbN   uint64
}

// value computes one metric. Divisions by zero and empty quantiles give
// V = 0 with N = 0, never NaN.
func (p *parts) value(m Metric) Value {
	switch m {
	case MetricBeacons:
		return Value{V: float64(p.beacons), N: p.beacons}
	case MetricViews:
		return Value{V: float64(p.views), N: p.views}
	case MetricStartupP50:
		return quantileValue(p.startupP50, p.startupN)
	case MetricStartupP90:
		return quantileValue(p.startupP90, p.startupN)
	case MetricRebufferPct:
		return Value{V: pct(float64(p.rebuffer), float64(p.played)+float64(p.rebuffer)), N: p.rebufferN}
	case MetricFailurePct:
		return Value{V: pct(float64(p.fatalViews), float64(p.views)), N: p.views}
	case MetricEBVSPct:
		return Value{V: pct(float64(p.ebvsViews), float64(p.views)), N: p.views}
	case MetricThroughputP50:
		return quantileValue(p.throughputP50, p.throughputN)
	case MetricBitrateAvg:
		if p.bitrateN == 0 {
			return Value{}
		}
		return Value{V: float64(p.bitrateSum) / float64(p.bitrateN), N: p.bitrateN}
	case MetricTTFBP50:
		return quantileValue(p.ttfbP50, p.ttfbN)
	}
	return Value{}
}

func (p *parts) values() map[Metric]Value {
	out := make(map[Metric]Value, len(metrics))
	for _, m := range metrics {
		out[m] = p.value(m)
	}
	return out
}

func quantileValue(v float64, n uint64) Value {
	if n == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return Value{}
	}
	return Value{V: v, N: n}
}

func pct(num, den float64) float64 {
	if den == 0 {
		return 0
	}
	return 100 * num / den
}

// groupedRow is one query result row: a time bucket (Unix seconds, 0 without
// a step), the group's dimension values, and its parts.
type groupedRow struct {
	bucket int64
	key    groupKey // only the grouped dimensions are set
	parts  parts
}

func seriesFrom(rows []groupedRow, m Metric, by Dimension) []Series {
	idx := map[string]int{}
	var out []Series
	for i := range rows {
		r := &rows[i]
		v := r.parts.value(m)
		if v.N == 0 {
			continue
		}
		key := r.key.dim(by)
		j, ok := idx[key]
		if !ok {
			j = len(out)
			idx[key] = j
			out = append(out, Series{Key: key})
		}
		out[j].Points = append(out[j].Points, Point{T: time.Unix(r.bucket, 0).UTC(), V: v.V, N: v.N})
	}
	slices.SortFunc(out, func(a, b Series) int { return strings.Compare(a.Key, b.Key) })
	for i := range out {
		slices.SortFunc(out[i].Points, func(a, b Point) int { return a.T.Compare(b.T) })
	}
	return out
}

func topFrom(rows []groupedRow, q TopQuery) []TopRow {
	out := make([]TopRow, 0, len(rows))
	for i := range rows {
		v := rows[i].parts.value(q.Metric)
		if v.N == 0 {
			continue
		}
		out = append(out, TopRow{Key: rows[i].key.dim(q.By), V: v.V, N: v.N})
	}
	slices.SortFunc(out, func(a, b TopRow) int {
		c := compareFloat(a.V, b.V)
		if !q.Ascending {
			c = -c
		}
		if c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key) // ties: stable, readable order
	})
	if len(out) > q.N {
		out = out[:q.N]
	}
	return out
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func windowFrom(rows []groupedRow) []Aggregate {
	out := make([]Aggregate, 0, len(rows))
	for i := range rows {
		k := rows[i].key
		out = append(out, Aggregate{
			Service: k.Service, CDN: k.CDN, Region: k.Region, Country: k.Country, ASN: k.ASN,
			Values: rows[i].parts.values(),
		})
	}
	slices.SortFunc(out, func(a, b Aggregate) int {
		return compareKey(groupKey{a.Service, a.CDN, a.Region, a.Country, a.ASN},
			groupKey{b.Service, b.CDN, b.Region, b.Country, b.ASN})
	})
	return out
}

func compareKey(a, b groupKey) int {
	for _, c := range []int{
		strings.Compare(a.Service, b.Service), strings.Compare(a.CDN, b.CDN),
		strings.Compare(a.Region, b.Region), strings.Compare(a.Country, b.Country),
	} {
		if c != 0 {
			return c
		}
	}
	switch {
	case a.ASN < b.ASN:
		return -1
	case a.ASN > b.ASN:
		return 1
	}
	return 0
}

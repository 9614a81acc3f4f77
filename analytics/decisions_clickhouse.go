package analytics

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

// decisionColumns is the insert and select list of the decisions table
// (migrations/0003_decisions.sql).
const decisionColumns = "at, at_us, protocol, service, client, ecs, region, country, asn, " +
	"scope_level, scope_region, scope_country, scope_asn, cdn, rule, stale, version, result, latency_us"

// InsertDecisions writes rows as one insert into the decisions table. Rows
// are checked first: one bad row rejects the call and nothing is written.
// Like Insert, it builds a fresh batch on every call, so a failed call can
// be retried with the same rows.
func (c *ClickHouse) InsertDecisions(ctx context.Context, rows []steering.DecisionRecord) error {
	if len(rows) == 0 {
		return nil
	}
	if err := checkDecisions(rows); err != nil {
		return fmt.Errorf("insert decisions: %w", err)
	}
	n := len(rows)
	var (
		at                                    = make([]time.Time, n)
		atUS                                  = make([]int64, n)
		protocol, service, client, ecs        = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		region, country                       = make([]string, n), make([]string, n)
		asn, scopeASN, latency                = make([]uint32, n), make([]uint32, n), make([]uint32, n)
		scopeLevel, scopeRegion, scopeCountry = make([]string, n), make([]string, n), make([]string, n)
		cdn, rule, result                     = make([]string, n), make([]string, n), make([]string, n)
		stale                                 = make([]uint8, n)
		version                               = make([]uint64, n)
	)
	// Column by column, as Insert does: the row API boxes every value.
	for i := range rows {
		r := normalizeDecision(rows[i])
		at[i], atUS[i] = time.Unix(r.At.Unix(), 0).UTC(), r.At.UnixMicro()
		protocol[i], service[i] = r.Protocol, r.Service
		client[i], ecs[i] = addrText(r.Client), prefixText(r.ECS)
		region[i], country[i], asn[i] = r.Location.Region, r.Location.Country, r.Location.ASN
		scopeLevel[i], scopeRegion[i], scopeCountry[i], scopeASN[i] = r.Scope.Level.String(), r.Scope.Region, r.Scope.Country, r.Scope.ASN
		cdn[i], rule[i], stale[i], version[i] = r.CDN, string(r.Rule), boolU8(r.Stale), r.Version
		result[i], latency[i] = r.Result, latencyMicros(r.Latency)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	batch, err := c.prepareBatch(ctx, "INSERT INTO "+c.db+".decisions ("+decisionColumns+")")
	if err != nil {
		return fmt.Errorf("insert decisions: prepare: %w", err)
	}
	// The order is decisionColumns'.
	cols := []any{at, atUS, protocol, service, client, ecs, region, country, asn,
		scopeLevel, scopeRegion, scopeCountry, scopeASN, cdn, rule, stale, version, result, latency}
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("insert decisions: append column %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert decisions: send %d rows: %w", n, err)
	}
	return nil
}

// decisionWhere builds the WHERE clause of a decision query and its bound
// arguments; DecisionFilter.match is its Go form. Only fixed fragments are
// spliced in.
func decisionWhere(f DecisionFilter) (string, []any) {
	fromUS, toUS := f.From.UnixMicro(), f.To.UnixMicro()
	// at (whole seconds, in the sorting key and the partition key) prunes;
	// at_us decides. The last second that can hold a match is the one of
	// toUS - 1.
	loS := min(max(floorDiv(fromUS, 1_000_000), 0), maxDateTime)
	hiS := min(max(floorDiv(toUS-1, 1_000_000), 0), maxDateTime)
	var sb strings.Builder
	sb.WriteString(" WHERE at >= toDateTime(?) AND at <= toDateTime(?) AND at_us >= ? AND at_us < ?")
	args := []any{loS, hiS, fromUS, toUS}
	for _, w := range []struct{ col, val string }{
		{"service", f.Service}, {"protocol", f.Protocol}, {"region", f.Region}, {"cdn", f.CDN},
	} {
		if w.val != "" {
			sb.WriteString(" AND " + w.col + " = ?")
			args = append(args, w.val)
		}
	}
	if a := normalizeAddr(f.Client); a.IsValid() {
		// The stored ecs is masked, so "contains a" is "is one of a's
		// enclosing prefixes": plain set membership, on every server version.
		sb.WriteString(" AND (client = ? OR has(?, ecs))")
		args = append(args, a.String(), ecsCandidates(a))
	}
	return sb.String(), args
}

// Decisions returns the newest decisions matching q, newest first. Ties in
// At come back in no particular order.
func (c *ClickHouse) Decisions(ctx context.Context, q DecisionQuery) ([]steering.DecisionRecord, error) {
	limit, err := q.validate()
	if err != nil {
		return nil, fmt.Errorf("decision query: %w", err)
	}
	where, args := decisionWhere(q.DecisionFilter)
	query := "SELECT at_us, protocol, service, client, ecs, region, country, asn, scope_level, scope_region, " +
		"scope_country, scope_asn, cdn, rule, stale, version, result, latency_us FROM " + c.db + ".decisions" +
		where + " ORDER BY at_us DESC LIMIT " + strconv.Itoa(limit)
	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("decisions: %w", err)
	}
	defer rows.Close()
	var out []steering.DecisionRecord
	for rows.Next() {
		var (
			r                        steering.DecisionRecord
			atUS                     int64
			client, ecs, level, rule string
			stale                    uint8
			latency                  uint32
		)
		if err := rows.Scan(&atUS, &r.Protocol, &r.Service, &client, &ecs, &r.Location.Region, &r.Location.Country,
			&r.Location.ASN, &level, &r.Scope.Region, &r.Scope.Country, &r.Scope.ASN, &r.CDN, &rule, &stale,
			&r.Version, &r.Result, &latency); err != nil {
			return nil, fmt.Errorf("decisions: %w", err)
		}
		r.At = time.UnixMicro(atUS).UTC()
		// Text this package wrote; anything else reads as "none" rather
		// than failing the whole answer.
		r.Client, _ = netip.ParseAddr(client)
		r.ECS, _ = netip.ParsePrefix(ecs)
		r.Scope.Service = r.Service
		r.Scope.Level, _ = parseLevel(level)
		r.Rule = steering.Rule(rule)
		r.Stale = stale != 0
		r.Latency = time.Duration(latency) * time.Microsecond
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("decisions: %w", err)
	}
	return out, nil
}

// DecisionCounts counts matching decisions per minute, CDN and result.
func (c *ClickHouse) DecisionCounts(ctx context.Context, f DecisionFilter) ([]DecisionCount, error) {
	if err := validateCountFilter(f); err != nil {
		return nil, fmt.Errorf("decision count query: %w", err)
	}
	where, args := decisionWhere(f)
	// Minutes from at_us, not toStartOfMinute(at): arithmetic on the epoch
	// does not depend on the server's time zone.
	query := "SELECT toInt64(intDiv(at_us, 60000000) * 60) AS minute, cdn, result, count() FROM " + c.db + ".decisions" +
		where + " GROUP BY minute, cdn, result"
	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("decision counts: %w", err)
	}
	defer rows.Close()
	var out []DecisionCount
	for rows.Next() {
		var (
			d      DecisionCount
			minute int64
		)
		if err := rows.Scan(&minute, &d.CDN, &d.Result, &d.N); err != nil {
			return nil, fmt.Errorf("decision counts: %w", err)
		}
		d.Minute = time.Unix(minute, 0).UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("decision counts: %w", err)
	}
	sortDecisionCounts(out)
	return out, nil
}

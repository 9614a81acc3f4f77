// Package ledgertest checks the pipeline's promise against a real
// ClickHouse: every beacon acknowledged to a client is stored exactly once
// in the deduplicated view.
package ledgertest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Stored returns, per event_id, how many rows the deduplicated view (FINAL)
// holds, and how many raw rows exist before deduplication.
func Stored(ctx context.Context, addr, db string) (final map[string]int, raw int, err error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{addr}, DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second,
		Auth: clickhouse.Auth{Database: "default", Username: "default"},
	})
	if err != nil {
		return nil, 0, fmt.Errorf("open clickhouse: %w", err)
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT event_id, toUInt64(count()) FROM "+db+".beacons FINAL GROUP BY event_id")
	if err != nil {
		return nil, 0, fmt.Errorf("query final: %w", err)
	}
	defer rows.Close()
	final = map[string]int{}
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, 0, fmt.Errorf("scan: %w", err)
		}
		final[id] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("rows: %w", err)
	}
	var total uint64
	if err := conn.QueryRow(ctx, "SELECT toUInt64(count()) FROM "+db+".beacons").Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count raw: %w", err)
	}
	return final, int(total), nil
}

// Check fails t unless every acked id is stored exactly once. Ids stored but
// never acked are allowed only when allowUnacked (a publish whose outcome
// was ambiguous and was answered as failed may still have landed).
func Check(t testing.TB, acked []string, final map[string]int, allowUnacked bool) {
	t.Helper()
	var lost, dup []string
	seen := make(map[string]bool, len(acked))
	for _, id := range acked {
		if seen[id] {
			t.Fatalf("ledger: event id %s acked twice", id)
		}
		seen[id] = true
		switch n := final[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			dup = append(dup, id)
		}
	}
	var extra []string
	for id, n := range final {
		if n > 1 && !seen[id] {
			dup = append(dup, id)
		}
		if !seen[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		t.Errorf("ledger: %d of %d acked beacons lost, e.g. %s", len(lost), len(acked), strings.Join(lost[:min(5, len(lost))], ", "))
	}
	if len(dup) > 0 {
		t.Errorf("ledger: %d event ids duplicated in the deduplicated view, e.g. %s", len(dup), strings.Join(dup[:min(5, len(dup))], ", "))
	}
	if len(extra) > 0 && !allowUnacked {
		t.Errorf("ledger: %d stored beacons were never acked, e.g. %s", len(extra), strings.Join(extra[:min(5, len(extra))], ", "))
	}
	t.Logf("ledger: %d acked, %d distinct stored, %d lost, %d duplicated, %d unacked stored", len(acked), len(final), len(lost), len(dup), len(extra))
}

// Counter sums a counter's series in a registry (0 when absent).
func Counter(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

package analytics

import (
	"strings"
	"testing"
)

// TestAggregatesMatchRollup keeps the raw-table aggregates of clickhouse.go
// and the materialized view of the rollups in step: for every raw
// "fn(params)(args)" the view must select "fnState(params)(args) AS col",
// where col is the column the -Merge form reads.
func TestAggregatesMatchRollup(t *testing.T) {
	for _, modern := range []bool{false, true} {
		p, err := NewSchemaParams("cdnpilot", modern)
		if err != nil {
			t.Fatal(err)
		}
		migs, err := Migrations(p)
		if err != nil {
			t.Fatal(err)
		}
		var mv, table string
		for _, m := range migs {
			for _, s := range m.Statements {
				switch {
				case strings.Contains(s, "CREATE MATERIALIZED VIEW") && strings.Contains(s, "beacons_1m_mv"):
					mv = s
				case strings.Contains(s, "CREATE TABLE") && strings.Contains(s, ".beacons_1m\n"):
					table = s
				}
			}
		}
		if mv == "" || table == "" {
			t.Fatalf("modern=%v: rollup table or materialized view not found in the migrations", modern)
		}
		for _, a := range aggregates {
			fn, rest, ok := strings.Cut(a.raw, "(")
			if !ok {
				t.Fatalf("aggregate %q: no call", a.raw)
			}
			mergeFn, mergeRest, _ := strings.Cut(a.merge, "(")
			if mergeFn != fn+"Merge" {
				t.Errorf("aggregate %q is read with %q", a.raw, a.merge)
				continue
			}
			// The column is the last parenthesised argument of the merge.
			col := mergeRest[strings.LastIndex(mergeRest, "(")+1 : len(mergeRest)-1]
			state := fn + "State(" + rest + " AS " + col + ","
			if !strings.Contains(mv+",", state) && !strings.Contains(mv, fn+"State("+rest+" AS "+col+"\n") {
				t.Errorf("modern=%v: materialized view lacks %q", modern, strings.TrimSuffix(state, ","))
			}
			_, def, ok := strings.Cut(table, "\n    "+col+" ")
			def, _, _ = strings.Cut(def, "\n")
			if !ok || !strings.Contains(def, "AggregateFunction("+fn) {
				t.Errorf("modern=%v: rollup table lacks column %s AggregateFunction(%s, ...)", modern, col, fn)
			}
		}
	}
}

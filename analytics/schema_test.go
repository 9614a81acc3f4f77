package analytics_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdnpilot/cdnpilot/analytics"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func mustParams(t *testing.T, db string, modern bool) analytics.SchemaParams {
	t.Helper()
	p, err := analytics.NewSchemaParams(db, modern)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The Modern branch cannot run against the 18.16 server the tests have, so
// its SQL text is pinned here and reviewed when it changes.
func TestSchemaGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modern bool
	}{{"legacy", false}, {"modern", true}} {
		t.Run(tc.name, func(t *testing.T) {
			migs, err := analytics.Migrations(mustParams(t, "cdnpilot", tc.modern))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, m := range migs {
				b.WriteString("-- migration " + fmt.Sprintf("%04d %s", m.Version, m.Name) + "\n")
				for _, s := range m.Statements {
					b.WriteString(s + ";\n\n")
				}
			}
			got := b.String()
			if strings.Contains(got, "<no value>") {
				t.Fatal("template rendered <no value>")
			}
			if tc.modern != strings.Contains(got, "LowCardinality") || tc.modern != strings.Contains(got, "TTL ") {
				t.Fatalf("modern=%v but LowCardinality/TTL presence disagrees", tc.modern)
			}
			path := filepath.Join("testdata", "schema_"+tc.name+".sql")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if got != string(want) {
				t.Fatalf("rendered schema differs from %s (run with -update and review the diff):\n%s", path, got)
			}
		})
	}
}

func TestSchemaParamsRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "1abc", "a-b", "a`b", "db; DROP TABLE x", strings.Repeat("a", 65)} {
		if _, err := analytics.NewSchemaParams(name, false); err == nil {
			t.Errorf("database name %q accepted", name)
		}
	}
	if _, err := analytics.NewSchemaParams("cdnpilot_2", true); err != nil {
		t.Errorf("good name rejected: %v", err)
	}
}

package analytics

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Retention applied by TTL on servers that support it (Modern). Changing
// these does not alter tables that already exist: add a migration instead.
const (
	rawTTLDays      = 30
	rollupTTLDays   = 400
	decisionTTLDays = 7
)

// modernMajor is the first server major version that gets LowCardinality
// and TTL. Both exist from 19.x; 20 leaves out the early, buggy releases.
const modernMajor = 20

// SchemaParams are what the migration templates see.
type SchemaParams struct {
	DB              string // quoted database identifier
	Modern          bool   // the server supports LowCardinality and TTL
	Str             string // column type for low-cardinality strings
	RawTTLDays      int
	RollupTTLDays   int
	DecisionTTLDays int
}

// NewSchemaParams returns the template parameters for a database and a
// server generation.
func NewSchemaParams(database string, modern bool) (SchemaParams, error) {
	if !validIdent(database) {
		return SchemaParams{}, fmt.Errorf("database: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", database)
	}
	p := SchemaParams{DB: "`" + database + "`", Modern: modern, Str: "String", RawTTLDays: rawTTLDays, RollupTTLDays: rollupTTLDays,
		DecisionTTLDays: decisionTTLDays}
	if modern {
		p.Str = "LowCardinality(String)"
	}
	return p, nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// validIdent guards the one value that is spliced into SQL text: identifiers
// cannot be bound as parameters.
func validIdent(s string) bool { return identRE.MatchString(s) }

// Migration is one versioned schema step, rendered for a server generation.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// Migrations renders every embedded migration, in version order.
func Migrations(p SchemaParams) ([]Migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for _, path := range names {
		base := strings.TrimSuffix(path[len("migrations/"):], ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", path)
		}
		if len(out) > 0 && out[len(out)-1].Version == v {
			return nil, fmt.Errorf("migration %s: duplicate version %d", path, v)
		}
		src, err := migrationFS.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", path, err)
		}
		tmpl, err := template.New(path).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("parse migration %s: %w", path, err)
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, p); err != nil {
			return nil, fmt.Errorf("render migration %s: %w", path, err)
		}
		out = append(out, Migration{Version: v, Name: name, Statements: splitStatements(b.String())})
	}
	return out, nil
}

// splitStatements splits on a ';' that ends a line: the native protocol runs
// one statement per query, and our migrations never put ';' inside a literal.
func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if stmt := strings.TrimSpace(cur.String()); stmt != "" {
			out = append(out, stmt)
		}
		cur.Reset()
	}
	for line := range strings.SplitAfterSeq(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue // comments document the file, not the server's copy
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t\r\n"), ";"); ok {
			cur.WriteString(body)
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return out
}

// migrate creates the database and applies every migration not yet recorded
// in schema_migrations. Each statement is IF NOT EXISTS, so a crash between a
// statement and its record, or two processes migrating at once, only repeats
// harmless work.
func migrate(ctx context.Context, conn driver.Conn, database string, modern bool) (applied []int, err error) {
	p, err := NewSchemaParams(database, modern)
	if err != nil {
		return nil, err
	}
	migs, err := Migrations(p)
	if err != nil {
		return nil, err
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+p.DB); err != nil {
		return nil, fmt.Errorf("create database %s: %w", database, err)
	}
	if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+p.DB+".schema_migrations "+
		"(version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version"); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	done := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM "+p.DB+".schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		done[int(v)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	_ = rows.Close()

	for _, m := range migs {
		if done[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		// A batch, not INSERT ... VALUES in the query text: 18.16 waits for
		// data blocks after any INSERT over the native protocol.
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+p.DB+".schema_migrations (version, name, applied_at)")
		if err != nil {
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		if err := batch.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
			_ = batch.Abort()
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		if err := batch.Send(); err != nil {
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

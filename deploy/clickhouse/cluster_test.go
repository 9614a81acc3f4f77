package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/chserver"
)

// The ClickHouse driver starts goroutines; every one must be gone at the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	clusterDB   = "cdnpilot"                                      // the database the cluster DDL creates
	replicaPath = "/clickhouse/tables/{shard}/{database}/{table}" // every Replicated*MergeTree's Keeper path
	replicaName = "{replica}"
	clusterName = "{cluster}" // ON CLUSTER and Distributed both take the macro
	localSuffix = "_local"    // X_local is the replicated table behind the Distributed X
)

// clusterFile is one NNNN_name.sql file of this directory.
type clusterFile struct {
	version int
	name    string // the file name
	stmts   []statement
}

var fileNameRE = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

func loadClusterFiles(t *testing.T) []clusterFile {
	t.Helper()
	paths, err := filepath.Glob("*.sql")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no *.sql files in deploy/clickhouse (%v)", err)
	}
	slices.Sort(paths)
	var out []clusterFile
	for _, p := range paths {
		m := fileNameRE.FindStringSubmatch(p)
		if m == nil {
			t.Fatalf("%s: name must be NNNN_name.sql, mirroring analytics/migrations", p)
		}
		v, _ := strconv.Atoi(m[1])
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		stmts, err := parseFile(string(src))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(stmts) == 0 {
			t.Fatalf("%s: no statements", p)
		}
		out = append(out, clusterFile{version: v, name: p, stmts: stmts})
	}
	return out
}

// clusterObjects indexes every object the cluster files create by name.
func clusterObjects(t *testing.T, files []clusterFile) map[string]statement {
	t.Helper()
	objs := map[string]statement{}
	for _, f := range files {
		for _, s := range f.stmts {
			if s.kind == "DATABASE" {
				continue
			}
			if _, dup := objs[s.name.name]; dup {
				t.Errorf("%s: %s is created twice", f.name, s.name)
			}
			objs[s.name.name] = s
		}
	}
	return objs
}

// singleNode is the single-node schema as the migrations render it.
type singleNode struct {
	db      string
	version map[string]int       // object name -> migration version that creates it
	objs    map[string]statement // object name -> its CREATE
	migs    []analytics.Migration
}

func renderSingleNode(t *testing.T, db string, modern bool) singleNode {
	t.Helper()
	p, err := analytics.NewSchemaParams(db, modern)
	if err != nil {
		t.Fatal(err)
	}
	migs, err := analytics.Migrations(p)
	if err != nil {
		t.Fatal(err)
	}
	sn := singleNode{db: db, version: map[string]int{}, objs: map[string]statement{}, migs: migs}
	for _, m := range migs {
		for _, stmt := range m.Statements {
			toks, err := lex(stmt)
			if err != nil {
				t.Fatalf("migration %04d: %v", m.Version, err)
			}
			s, err := parseStatement(toks)
			if err != nil {
				t.Fatalf("migration %04d: %v", m.Version, err)
			}
			sn.version[s.name.name] = m.Version
			sn.objs[s.name.name] = s
		}
	}
	return sn
}

func engineName(e *engine) string {
	if e == nil {
		return "(none)"
	}
	return e.name
}

func logical(name string) string { return strings.TrimSuffix(name, localSuffix) }

func isReplicatedMergeTree(e *engine) bool {
	return e != nil && strings.HasPrefix(e.name, "Replicated") && strings.HasSuffix(e.name, "MergeTree")
}

// columnRefs are the bare identifiers of an expression that are not function
// names: the columns it reads.
func columnRefs(toks []token) []string {
	var out []string
	for i, t := range toks {
		if t.ident() && !(i+1 < len(toks) && toks[i+1].punct("(")) {
			out = append(out, t.text)
		}
	}
	return out
}

func columnNames(cols []column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.name
	}
	return out
}

// localized rewrites the single-node query's db.table references to the
// cluster's local tables: a cluster view must read and write local tables.
func localized(toks []token, fromDB string) []token {
	out := make([]token, 0, len(toks))
	for i := 0; i < len(toks); i++ {
		if toks[i].ident() && toks[i].text == fromDB && i+2 < len(toks) && toks[i+1].punct(".") && toks[i+2].ident() {
			out = append(out, token{tokWord, clusterDB}, toks[i+1], token{tokWord, toks[i+2].text + localSuffix})
			i += 2
			continue
		}
		out = append(out, toks[i])
	}
	return out
}

// diffColumns reports how got differs from want, column by column.
func diffColumns(t *testing.T, what string, got, want []column) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Errorf("%s: column %d %s %s missing", what, i+1, want[i].name, want[i].typ)
		case i >= len(want):
			t.Errorf("%s: column %d %s %s is not in the single-node schema", what, i+1, got[i].name, got[i].typ)
		case got[i].name != want[i].name || got[i].typ != want[i].typ:
			t.Errorf("%s: column %d is %s %s, want %s %s", what, i+1, got[i].name, got[i].typ, want[i].name, want[i].typ)
		case got[i].defaultKind != want[i].defaultKind || got[i].defaultExpr != want[i].defaultExpr:
			t.Errorf("%s: column %s has %q %q, want %q %q", what, got[i].name, got[i].defaultKind, got[i].defaultExpr,
				want[i].defaultKind, want[i].defaultExpr)
		}
	}
}

// TestClusterFiles checks the shape of the cluster DDL on its own and against
// the Modern rendering of the migrations; it needs no server.
func TestClusterFiles(t *testing.T) {
	files := loadClusterFiles(t)
	sn := renderSingleNode(t, "single_node", true)

	t.Run("mirror migrations", func(t *testing.T) {
		want := map[int]string{0: ""} // 0000: the database and what Migrate makes itself
		for _, m := range sn.migs {
			want[m.Version] = fmt.Sprintf("%04d_%s.sql", m.Version, m.Name)
		}
		have := map[int]clusterFile{}
		for _, f := range files {
			if _, dup := have[f.version]; dup {
				t.Errorf("%s: version %d twice", f.name, f.version)
			}
			have[f.version] = f
			if _, ok := want[f.version]; !ok {
				t.Errorf("%s: no migration %04d in analytics/migrations", f.name, f.version)
			}
		}
		for v, name := range want {
			f, ok := have[v]
			switch {
			case !ok && v == 0:
				t.Errorf("no 0000_*.sql (the database and schema_migrations)")
				continue
			case !ok:
				t.Errorf("migration %04d has no cluster file %s", v, name)
				continue
			case name != "" && f.name != name:
				t.Errorf("%s: migration %04d is %s", f.name, v, name)
			}
			var created, single []string
			for _, s := range f.stmts {
				if s.kind != "DATABASE" && !slices.Contains(created, logical(s.name.name)) {
					created = append(created, logical(s.name.name))
				}
			}
			for name, mv := range sn.version {
				if mv == v {
					single = append(single, name)
				}
			}
			slices.Sort(created)
			slices.Sort(single)
			if v == 0 {
				for _, c := range created {
					if _, ok := sn.version[c]; ok {
						t.Errorf("%s creates %s, which migration %04d creates: move it to that file", f.name, c, sn.version[c])
					}
				}
				continue
			}
			if !slices.Equal(created, single) {
				t.Errorf("%s creates %v; migration %04d creates %v", f.name, created, v, single)
			}
		}
	})

	t.Run("statements", func(t *testing.T) {
		defined := map[string]statement{} // in apply order
		targets := map[string]bool{}      // tables only a materialized view writes
		for _, f := range files {
			for _, s := range f.stmts {
				if s.to != nil {
					targets[s.to.name] = true
				}
			}
		}
		dbSeen := false
		for _, f := range files {
			for _, s := range f.stmts {
				where := f.name + ": " + s.kind + " " + s.name.String()
				if !s.ifNotExists {
					t.Errorf("%s: not IF NOT EXISTS (the files are re-applied)", where)
				}
				if s.onCluster == nil || s.onCluster.kind != tokString || s.onCluster.text != clusterName {
					t.Errorf("%s: not ON CLUSTER '%s'", where, clusterName)
				}
				if s.kind == "DATABASE" {
					if s.name != (qname{name: clusterDB}) || s.engine != nil {
						t.Errorf("%s: want CREATE DATABASE %s with the server's default engine", where, clusterDB)
					}
					dbSeen = true
					continue
				}
				if !dbSeen {
					t.Errorf("%s: before CREATE DATABASE", where)
				}
				if s.name.db != clusterDB {
					t.Errorf("%s: want the name qualified with %s.", where, clusterDB)
				}
				refs := []*qname{s.as, s.to}
				if s.kind == "MATERIALIZED VIEW" {
					src, err := s.source()
					if err != nil {
						t.Error(err)
					}
					refs = append(refs, &src)
				}
				for _, r := range refs {
					if r == nil {
						continue
					}
					if r.db != clusterDB {
						t.Errorf("%s: %s: want %s.", where, r, clusterDB)
					}
					if _, ok := defined[r.name]; !ok {
						t.Errorf("%s: refers to %s before it is created", where, r)
					}
				}
				checkStatement(t, where, s, defined, targets)
				defined[s.name.name] = s
			}
		}
		// Every local table has its Distributed table and the other way round.
		for name, s := range defined {
			if isReplicatedMergeTree(s.engine) {
				if d, ok := defined[logical(name)]; !ok || d.engine == nil || d.engine.name != "Distributed" {
					t.Errorf("%s has no Distributed table %s", name, logical(name))
				}
			}
		}
	})

	t.Run("equal to the Modern single-node schema", func(t *testing.T) {
		objs := clusterObjects(t, files)
		for name, single := range sn.objs {
			switch single.kind {
			case "TABLE":
				local, ok := objs[name+localSuffix]
				if !ok {
					t.Errorf("%s: no %s%s in the cluster DDL", name, name, localSuffix)
					continue
				}
				diffColumns(t, local.name.String(), local.columns, single.columns)
				if !slices.Equal(local.indexes, single.indexes) {
					t.Errorf("%s: indexes %v, want %v", local.name, local.indexes, single.indexes)
				}
				for _, c := range []string{"PARTITION BY", "ORDER BY", "PRIMARY KEY", "SAMPLE BY", "TTL"} {
					if got, want := local.clause(c), single.clause(c); got != want {
						t.Errorf("%s: %s %q, want %q (as migration %04d)", local.name, c, got, want, sn.version[name])
					}
				}
				if local.engine == nil || single.engine == nil || local.engine.name != "Replicated"+single.engine.name {
					t.Errorf("%s: engine %s, want Replicated%s", local.name, engineName(local.engine), engineName(single.engine))
				} else if len(local.engine.args) < 2 || len(local.engine.args)-2 != len(single.engine.args) {
					t.Errorf("%s: engine arguments %d, want the replication path and replica, then %d", local.name,
						len(local.engine.args), len(single.engine.args))
				} else {
					for i, a := range single.engine.args {
						if render(local.engine.args[i+2]) != render(a) {
							t.Errorf("%s: engine argument %d %s, want %s", local.name, i+3, render(local.engine.args[i+2]), render(a))
						}
					}
				}
			case "MATERIALIZED VIEW":
				checkView(t, objs, single, sn.db)
			default:
				t.Errorf("%s: a %s in the migrations has no cluster rule", name, single.kind)
			}
		}
	})
}

// checkStatement checks one TABLE or MATERIALIZED VIEW of the cluster DDL
// against the rules of the layout: X_local replicated, X Distributed over it.
func checkStatement(t *testing.T, where string, s statement, defined map[string]statement, targets map[string]bool) {
	t.Helper()
	switch {
	case s.kind == "MATERIALIZED VIEW":
		src, _ := s.source()
		for _, r := range []qname{*s.to, src} {
			if d := defined[r.name]; !isReplicatedMergeTree(d.engine) {
				t.Errorf("%s: %s is not a replicated local table: a view on every host must read and write local tables", where, r)
			}
		}
	case s.engine == nil:
		t.Errorf("%s: no ENGINE", where)
	case strings.HasSuffix(s.engine.name, "MergeTree"):
		if !isReplicatedMergeTree(s.engine) {
			t.Errorf("%s: engine %s is not replicated", where, s.engine.name)
		}
		if !strings.HasSuffix(s.name.name, localSuffix) {
			t.Errorf("%s: a replicated table's name ends in %s (the application reads the Distributed one)", where, localSuffix)
		}
		if s.engine.argString(0) != replicaPath || s.engine.argString(1) != replicaName ||
			len(s.engine.args) < 2 || s.engine.args[0][0].kind != tokString || s.engine.args[1][0].kind != tokString {
			t.Errorf("%s: want %s('%s', '%s', ...)", where, s.engine.name, replicaPath, replicaName)
		}
		if s.as != nil || len(s.columns) == 0 {
			t.Errorf("%s: a local table lists its columns (AS is for the Distributed one)", where)
		}
	case s.engine.name == "Distributed":
		checkDistributed(t, where, s, defined, targets)
	default:
		t.Errorf("%s: engine %s has no cluster rule", where, s.engine.name)
	}
}

func checkDistributed(t *testing.T, where string, s statement, defined map[string]statement, targets map[string]bool) {
	t.Helper()
	e := s.engine
	local := s.name.name + localSuffix
	if len(e.args) < 3 || len(e.args) > 4 || e.args[0][0].kind != tokString || e.argString(0) != clusterName ||
		e.argString(1) != clusterDB || e.argString(2) != local {
		t.Errorf("%s: want Distributed('%s', %s, %s[, sharding key])", where, clusterName, clusterDB, local)
		return
	}
	if len(s.clauses) > 0 {
		t.Errorf("%s: a Distributed table takes no %v", where, s.clauses)
	}
	l, ok := defined[local]
	if !ok || !isReplicatedMergeTree(l.engine) {
		t.Errorf("%s: %s is not a replicated table created before it", where, local)
		return
	}
	switch {
	case s.as != nil && *s.as != (qname{clusterDB, local}):
		t.Errorf("%s: AS %s, want AS %s.%s", where, s.as, clusterDB, local)
	case s.as == nil:
		diffColumns(t, where, s.columns, l.columns)
	}
	if len(e.args) == 3 {
		if !targets[local] { // a view's target: only the view writes it, locally
			t.Errorf("%s: no sharding key; the application inserts into %s", where, s.name)
		}
		return
	}
	key := e.args[3]
	refs := columnRefs(key)
	for _, r := range refs {
		if !slices.Contains(columnNames(l.columns), r) {
			t.Errorf("%s: sharding key %s reads %s, not a column of %s", where, render(key), r, local)
		}
	}
	// A Replacing/Collapsing table deduplicates within a shard only: its
	// copies must all go to one shard, so the key reads only sorting-key
	// columns (and reads some: rand() would scatter them).
	if strings.Contains(l.engine.name, "Replacing") || strings.Contains(l.engine.name, "Collapsing") {
		order, _ := lex(l.clauses["ORDER BY"])
		sorting := columnRefs(order)
		if len(refs) == 0 {
			t.Errorf("%s: %s deduplicates per shard; the sharding key %s must be a function of its sorting key", where, local, render(key))
		}
		for _, r := range refs {
			if !slices.Contains(sorting, r) {
				t.Errorf("%s: %s deduplicates per shard, but the sharding key reads %s, which is not in ORDER BY %s", where, local, r, render(order))
			}
		}
	}
}

// checkView compares the cluster's materialized view with the single-node
// one: same name (so the application's own CREATE ... IF NOT EXISTS finds it
// and does not hang a second view on the Distributed table), reading and
// writing the local tables, with the same query.
func checkView(t *testing.T, objs map[string]statement, single statement, singleDB string) {
	t.Helper()
	name := single.name.name
	mv, ok := objs[name]
	if !ok || mv.kind != "MATERIALIZED VIEW" {
		t.Errorf("%s: the cluster DDL has no materialized view %s", name, name)
		return
	}
	if want := (qname{clusterDB, single.to.name + localSuffix}); *mv.to != want {
		t.Errorf("%s: TO %s, want TO %s", name, mv.to, want)
	}
	src, _ := single.source()
	if got, _ := mv.source(); got != (qname{clusterDB, src.name + localSuffix}) {
		t.Errorf("%s: reads %s, want %s.%s%s", name, got, clusterDB, src.name, localSuffix)
	}
	if got, want := render(mv.query), render(localized(single.query, singleDB)); got != want {
		t.Errorf("%s: the query differs from the single-node view's\n got %s\nwant %s", name, got, want)
	}
}

// serverTable is what a real server reports for one object of the migrated
// single-node schema.
type serverTable struct {
	engine, partition, sorting, primary, sampling, create string
	columns                                               []column
}

// migratedServer migrates a fresh database on a real ClickHouse with
// cdnpilot's own Migrate and reads back system.tables and system.columns.
func migratedServer(t *testing.T) (db string, modern bool, tables map[string]*serverTable) {
	t.Helper()
	addr := chserver.ForTest(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	db = "cdnpilot_cluster_" + hex.EncodeToString(b[:])
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Protocol: clickhouse.Native,
		DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			t.Logf("drop %s: %v", db, err)
		}
		_ = conn.Close()
	})
	ch, err := analytics.OpenClickHouse(t.Context(), analytics.ClickHouseOptions{Addr: addr, Database: db}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("migrate a single-node database: %v", err)
	}
	modern = ch.Modern()
	_ = ch.Close()

	ctx := t.Context()
	tables = map[string]*serverTable{}
	// db is [0-9a-z_] only: safe to splice as a literal.
	rows, err := conn.Query(ctx, "SELECT name, engine, partition_key, sorting_key, primary_key, sampling_key, create_table_query "+
		"FROM system.tables WHERE database = '"+db+"'")
	if err != nil {
		t.Fatalf("read system.tables: %v", err)
	}
	for rows.Next() {
		var name string
		var st serverTable
		if err := rows.Scan(&name, &st.engine, &st.partition, &st.sorting, &st.primary, &st.sampling, &st.create); err != nil {
			t.Fatal(err)
		}
		tables[name] = &st
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	_ = rows.Close()
	// Columns come in table order (position, which 18.16 has no column for).
	rows, err = conn.Query(ctx, "SELECT table, name, type, default_kind, default_expression FROM system.columns WHERE database = '"+db+"'")
	if err != nil {
		t.Fatalf("read system.columns: %v", err)
	}
	for rows.Next() {
		var table string
		var c column
		if err := rows.Scan(&table, &c.name, &c.typ, &c.defaultKind, &c.defaultExpr); err != nil {
			t.Fatal(err)
		}
		st, ok := tables[table]
		if !ok {
			t.Fatalf("system.columns names %s, which system.tables does not", table)
		}
		c.typ, c.defaultExpr = normType(c.typ), normType(c.defaultExpr)
		st.columns = append(st.columns, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	_ = rows.Close()
	if len(tables) == 0 {
		t.Fatal("Migrate created no tables")
	}
	return db, modern, tables
}

// TestClusterMatchesSingleNodeServer is the cluster DDL against the truth: a
// database that cdnpilot's own Migrate created on a real server. For every
// table of it the cluster has X_local (the Replicated form of its engine,
// with its columns, partition, sorting and primary keys) and a Distributed X
// over it that the application queries unchanged; a materialized view has
// the same name on the local tables instead (no Distributed form: a view is
// not queried). The server in the tests is 18.16 (the Legacy generation), so
// the expected types are the server's with LowCardinality wherever the
// Modern rendering of the same migration has it; the test first checks that
// the renderings and the server agree, so neither can drift alone.
func TestClusterMatchesSingleNodeServer(t *testing.T) {
	db, modern, server := migratedServer(t)
	same := renderSingleNode(t, db, modern) // what the server ran
	mod := renderSingleNode(t, db, true)    // what production runs
	objs := clusterObjects(t, loadClusterFiles(t))

	names := make([]string, 0, len(server))
	for name := range server {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		st := server[name]
		t.Run(name, func(t *testing.T) {
			switch {
			case st.engine == "MaterializedView":
				toks, err := lex(st.create)
				if err != nil {
					t.Fatal(err)
				}
				view, err := parseStatement(toks)
				if err != nil {
					t.Fatalf("the server's CREATE: %v", err)
				}
				src, err := view.source()
				if err != nil {
					t.Fatal(err)
				}
				mv, ok := objs[name]
				if !ok || mv.kind != "MATERIALIZED VIEW" {
					t.Fatalf("the cluster DDL has no materialized view %s", name)
				}
				if want := (qname{clusterDB, view.to.name + localSuffix}); *mv.to != want {
					t.Errorf("TO %s; the server's view writes %s, so want %s", mv.to, view.to, want)
				}
				if got, _ := mv.source(); got != (qname{clusterDB, src.name + localSuffix}) {
					t.Errorf("reads %s; the server's view reads %s", got, src)
				}
				if single, ok := same.objs[name]; ok {
					checkView(t, objs, single, db)
				} else {
					t.Errorf("no migration creates the view %s", name)
				}
			case strings.HasSuffix(st.engine, "MergeTree"):
				checkAgainstServer(t, name, st, same, mod, objs)
			default:
				t.Errorf("engine %s has no cluster rule", st.engine)
			}
		})
	}
	for name, s := range objs {
		if _, ok := server[logical(name)]; !ok || (s.kind == "MATERIALIZED VIEW") != (server[logical(name)].engine == "MaterializedView") {
			t.Errorf("the cluster DDL creates %s %s, which matches nothing the single-node Migrate creates", s.kind, s.name)
		}
	}
}

func checkAgainstServer(t *testing.T, name string, st *serverTable, same, mod singleNode, objs map[string]statement) {
	t.Helper()
	want := slices.Clone(st.columns)
	if r, ok := same.objs[name]; ok {
		// The parser must read the migration the way the server did.
		diffColumns(t, "the parsed migration (the server's generation)", r.columns, st.columns)
	}
	if m, ok := mod.objs[name]; ok {
		if !slices.Equal(columnNames(m.columns), columnNames(st.columns)) {
			t.Fatalf("the Modern rendering has columns %v, the server %v", columnNames(m.columns), columnNames(st.columns))
		}
		for i, c := range m.columns {
			if withoutLowCardinality(c.typ) != withoutLowCardinality(st.columns[i].typ) {
				t.Errorf("column %s: Modern %s, server %s: the generations differ by more than LowCardinality", c.name, c.typ, st.columns[i].typ)
			}
			want[i].typ = c.typ
		}
	}
	local, ok := objs[name+localSuffix]
	if !ok {
		t.Fatalf("no %s%s in the cluster DDL", name, localSuffix)
	}
	diffColumns(t, local.name.String(), local.columns, want)
	if local.engine == nil || local.engine.name != "Replicated"+st.engine {
		t.Errorf("%s: engine %s, want Replicated%s", local.name, engineName(local.engine), st.engine)
	}
	primary := local.clause("PRIMARY KEY")
	if primary == "" {
		primary = local.clause("ORDER BY")
	}
	for _, k := range []struct{ clause, got, want string }{
		{"PARTITION BY", local.clause("PARTITION BY"), st.partition},
		{"ORDER BY", local.clause("ORDER BY"), st.sorting},
		{"PRIMARY KEY", primary, st.primary},
		{"SAMPLE BY", local.clause("SAMPLE BY"), st.sampling},
	} {
		if k.got != normType(k.want) {
			t.Errorf("%s: %s %q; the server has %q", local.name, k.clause, k.got, k.want)
		}
	}
	ttl := ""
	if m, ok := mod.objs[name]; ok {
		ttl = m.clause("TTL")
	}
	if got := local.clause("TTL"); got != ttl {
		t.Errorf("%s: TTL %q, want %q (the Modern rendering)", local.name, got, ttl)
	}
	dist, ok := objs[name]
	if !ok || dist.engine == nil || dist.engine.name != "Distributed" {
		t.Fatalf("no Distributed table %s, which is the name the application queries", name)
	}
	if dist.as == nil {
		diffColumns(t, dist.name.String(), dist.columns, want)
	} else if dist.as.name != local.name.name {
		t.Errorf("%s: AS %s, want %s", dist.name, dist.as, local.name)
	}
}

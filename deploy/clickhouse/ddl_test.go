package clickhouse

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A small parser for the DDL this repository writes: CREATE DATABASE, CREATE
// TABLE with a column list or AS another table, and CREATE MATERIALIZED VIEW
// ... TO. It knows enough of ClickHouse's grammar to pull out what the tests
// compare (columns, engine, keys, TTL, the view's query) and refuses what it
// does not know, so a construct it cannot read fails the test instead of
// being skipped.

type tokKind uint8

const (
	tokWord   tokKind = iota // bare identifier or keyword
	tokQuoted                // `identifier` or "identifier"
	tokString                // 'literal'
	tokNumber
	tokPunct
)

type token struct {
	kind tokKind
	text string // identifiers and literals unquoted; punctuation as written
}

func (t token) is(word string) bool { return t.kind == tokWord && strings.EqualFold(t.text, word) }
func (t token) punct(p string) bool { return t.kind == tokPunct && t.text == p }
func (t token) ident() bool         { return t.kind == tokWord || t.kind == tokQuoted }

// String renders the token canonically: identifiers bare (so `db` and db
// compare equal), literals single-quoted.
func (t token) String() string {
	if t.kind == tokString {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(t.text) + "'"
	}
	return t.text
}

// lex splits SQL into tokens, dropping whitespace and comments.
func lex(src string) ([]token, error) {
	var out []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.HasPrefix(src[i:], "--"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, errors.New("unterminated /* comment")
			}
			i += end + 4
		case c == '\'' || c == '`' || c == '"':
			val, n, err := quoted(src[i:])
			if err != nil {
				return nil, err
			}
			kind := tokQuoted
			if c == '\'' {
				kind = tokString
			}
			out = append(out, token{kind, val})
			i += n
		case isWordStart(c):
			j := i + 1
			for j < len(src) && (isWordStart(src[j]) || isDigit(src[j])) {
				j++
			}
			out = append(out, token{tokWord, src[i:j]})
			i = j
		case isDigit(c):
			j := i + 1
			for j < len(src) && (isDigit(src[j]) || isWordStart(src[j]) || src[j] == '.') {
				j++
			}
			out = append(out, token{tokNumber, src[i:j]})
			i = j
		default:
			n := 1
			for _, op := range []string{"!=", "<>", "<=", ">=", "==", "||", "->", "::"} {
				if strings.HasPrefix(src[i:], op) {
					n = 2
					break
				}
			}
			out = append(out, token{tokPunct, src[i : i+n]})
			i += n
		}
	}
	return out, nil
}

func isWordStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool     { return '0' <= c && c <= '9' }

// quoted reads a quoted literal or identifier at the start of s: backslash
// escapes and a doubled quote both stand for the quote.
func quoted(s string) (val string, n int, err error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == q && i+1 < len(s) && s[i+1] == q:
			i++
			b.WriteByte(q)
		case c == q:
			return b.String(), i + 1, nil
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated %c quote", q)
}

// render joins tokens in one canonical spacing, so that two texts that differ
// only in whitespace, comments or identifier quoting render the same.
func render(toks []token) string {
	var b strings.Builder
	for i, t := range toks {
		if i > 0 && spaced(toks[i-1], t) {
			b.WriteByte(' ')
		}
		b.WriteString(t.String())
	}
	return b.String()
}

func spaced(prev, cur token) bool {
	switch {
	case cur.punct(")"), cur.punct(","), cur.punct("."), prev.punct("("), prev.punct("."):
		return false
	case cur.punct("(") && (prev.ident() || prev.punct(")")):
		return false // a call, type parameters, or quantiles(0.5)(x)
	}
	return true
}

// splitStatements splits a file's tokens on ';'.
func splitStatements(toks []token) [][]token {
	var out [][]token
	start := 0
	for i, t := range toks {
		if t.punct(";") {
			if i > start {
				out = append(out, toks[start:i])
			}
			start = i + 1
		}
	}
	if start < len(toks) {
		out = append(out, toks[start:])
	}
	return out
}

// splitTop splits toks on commas outside parentheses.
func splitTop(toks []token) [][]token {
	var out [][]token
	depth, start := 0, 0
	for i, t := range toks {
		switch {
		case t.punct("("):
			depth++
		case t.punct(")"):
			depth--
		case t.punct(",") && depth == 0:
			out = append(out, toks[start:i])
			start = i + 1
		}
	}
	return append(out, toks[start:])
}

// unwrap removes one pair of parentheses around the whole of toks:
// ORDER BY (a, b) is the sorting key a, b.
func unwrap(toks []token) []token {
	if len(toks) < 2 || !toks[0].punct("(") || !toks[len(toks)-1].punct(")") {
		return toks
	}
	depth := 0
	for i, t := range toks {
		if t.punct("(") {
			depth++
		} else if t.punct(")") {
			depth--
			if depth == 0 && i != len(toks)-1 {
				return toks // (a) + (b): not one pair
			}
		}
	}
	return toks[1 : len(toks)-1]
}

type qname struct{ db, name string }

func (q qname) String() string {
	if q.db == "" {
		return q.name
	}
	return q.db + "." + q.name
}

type column struct {
	name, typ                string
	defaultKind, defaultExpr string // DEFAULT, MATERIALIZED, ALIAS or EPHEMERAL and its expression
	codec, comment, ttl      string
}

type engine struct {
	name string
	args [][]token
}

// argString is argument i as a string literal, or as a bare identifier
// (Distributed takes its database and table either way); "" when absent.
func (e engine) argString(i int) string {
	if i >= len(e.args) || len(e.args[i]) != 1 || (e.args[i][0].kind != tokString && !e.args[i][0].ident()) {
		return ""
	}
	return e.args[i][0].text
}

// statement is one parsed CREATE.
type statement struct {
	kind        string // DATABASE, TABLE or MATERIALIZED VIEW
	name        qname
	ifNotExists bool
	onCluster   *token // the ON CLUSTER argument; nil when absent

	columns []column
	indexes []string          // INDEX, PROJECTION and CONSTRAINT entries, rendered
	as      *qname            // CREATE TABLE ... AS other
	engine  *engine           // nil when absent
	clauses map[string]string // PARTITION BY, ORDER BY, PRIMARY KEY, SAMPLE BY, TTL, SETTINGS, COMMENT

	to    *qname  // materialized view target
	query []token // materialized view SELECT
}

// clause returns a table clause with one outer pair of parentheses removed
// (the form system.tables shows keys in).
func (s statement) clause(name string) string {
	toks, err := lex(s.clauses[name])
	if err != nil {
		return s.clauses[name]
	}
	return render(unwrap(toks))
}

var tableClauses = [][]string{{"ENGINE"}, {"PARTITION", "BY"}, {"ORDER", "BY"}, {"PRIMARY", "KEY"},
	{"SAMPLE", "BY"}, {"TTL"}, {"SETTINGS"}, {"COMMENT"}}

var columnModifiers = []string{"DEFAULT", "MATERIALIZED", "ALIAS", "EPHEMERAL", "CODEC", "COMMENT", "TTL", "NULL", "NOT", "PRIMARY"}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) eof() bool { return p.pos >= len(p.toks) }

func (p *parser) peek(off int) token {
	if p.pos+off >= len(p.toks) {
		return token{kind: tokPunct, text: "<end>"}
	}
	return p.toks[p.pos+off]
}

// equals consumes an optional "=" (ENGINE = X and ENGINE X are both valid).
func (p *parser) equals() {
	if p.peek(0).punct("=") {
		p.pos++
	}
}

// words consumes a run of keywords when they all come next.
func (p *parser) words(ws ...string) bool {
	for i, w := range ws {
		if !p.peek(i).is(w) {
			return false
		}
	}
	p.pos += len(ws)
	return true
}

func (p *parser) qname() (qname, error) {
	a := p.peek(0)
	if !a.ident() {
		return qname{}, fmt.Errorf("want a name, got %q", a.text)
	}
	p.pos++
	if !p.peek(0).punct(".") {
		return qname{name: a.text}, nil
	}
	b := p.peek(1)
	if !b.ident() {
		return qname{}, fmt.Errorf("want a name after %s., got %q", a.text, b.text)
	}
	p.pos += 2
	return qname{db: a.text, name: b.text}, nil
}

// parens consumes a parenthesised group and returns what is inside.
func (p *parser) parens() ([]token, error) {
	if !p.peek(0).punct("(") {
		return nil, fmt.Errorf("want (, got %q", p.peek(0).text)
	}
	depth := 0
	for i := p.pos; i < len(p.toks); i++ {
		if p.toks[i].punct("(") {
			depth++
		} else if p.toks[i].punct(")") {
			depth--
			if depth == 0 {
				inner := p.toks[p.pos+1 : i]
				p.pos = i + 1
				return inner, nil
			}
		}
	}
	return nil, errors.New("unbalanced (")
}

// parseStatement parses one CREATE statement.
func parseStatement(toks []token) (statement, error) {
	p := &parser{toks: toks}
	var s statement
	if !p.words("CREATE") {
		return s, fmt.Errorf("not a CREATE statement: %s", render(toks))
	}
	switch {
	case p.words("DATABASE"):
		s.kind = "DATABASE"
	case p.words("TABLE"):
		s.kind = "TABLE"
	case p.words("MATERIALIZED", "VIEW"):
		s.kind = "MATERIALIZED VIEW"
	default:
		return s, fmt.Errorf("CREATE %s: not a kind of object this parser reads", p.peek(0).text)
	}
	s.ifNotExists = p.words("IF", "NOT", "EXISTS")
	var err error
	if s.name, err = p.qname(); err != nil {
		return s, fmt.Errorf("CREATE %s: %w", s.kind, err)
	}
	if p.words("ON", "CLUSTER") {
		c := p.peek(0)
		if c.kind != tokString && !c.ident() {
			return s, fmt.Errorf("%s: ON CLUSTER wants a name, got %q", s.name, c.text)
		}
		s.onCluster = &c
		p.pos++
	}
	switch s.kind {
	case "DATABASE":
		if p.words("ENGINE") {
			p.equals()
			s.engine = &engine{name: p.peek(0).text}
			p.pos++
		}
		if !p.eof() {
			return s, fmt.Errorf("%s: unexpected %q", s.name, p.peek(0).text)
		}
		return s, nil
	case "MATERIALIZED VIEW":
		return s, p.view(&s)
	}
	return s, p.table(&s)
}

func (p *parser) table(s *statement) error {
	switch {
	case p.peek(0).punct("("):
		inner, err := p.parens()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := s.parseElements(inner); err != nil {
			return err
		}
	case p.words("AS"):
		if p.peek(0).is("SELECT") || p.peek(0).is("WITH") {
			return fmt.Errorf("%s: CREATE TABLE ... AS SELECT is not read by this parser", s.name)
		}
		q, err := p.qname()
		if err != nil {
			return fmt.Errorf("%s: AS: %w", s.name, err)
		}
		s.as = &q
	default:
		return fmt.Errorf("%s: want a column list or AS, got %q", s.name, p.peek(0).text)
	}
	return p.clauses(s)
}

func (p *parser) clauses(s *statement) error {
	s.clauses = map[string]string{}
	for !p.eof() {
		matched := false
		for _, c := range tableClauses {
			if !p.words(c...) {
				continue
			}
			matched = true
			name := strings.Join(c, " ")
			if _, dup := s.clauses[name]; dup || (name == "ENGINE" && s.engine != nil) {
				return fmt.Errorf("%s: %s twice", s.name, name)
			}
			if name == "ENGINE" {
				e, err := p.engine()
				if err != nil {
					return fmt.Errorf("%s: %w", s.name, err)
				}
				s.engine = &e
				break
			}
			start := p.pos
			p.skipToClause()
			if p.pos == start {
				return fmt.Errorf("%s: %s without a value", s.name, name)
			}
			s.clauses[name] = render(p.toks[start:p.pos])
			break
		}
		if !matched {
			return fmt.Errorf("%s: unexpected %q", s.name, p.peek(0).text)
		}
	}
	return nil
}

// skipToClause moves to the next table clause keyword outside parentheses.
func (p *parser) skipToClause() {
	depth := 0
	for ; !p.eof(); p.pos++ {
		t := p.peek(0)
		switch {
		case t.punct("("):
			depth++
		case t.punct(")"):
			depth--
		case depth == 0:
			for _, c := range tableClauses {
				ok := true
				for i, w := range c {
					ok = ok && p.peek(i).is(w)
				}
				if ok {
					return
				}
			}
		}
	}
}

func (p *parser) engine() (engine, error) {
	p.equals()
	name := p.peek(0)
	if name.kind != tokWord {
		return engine{}, fmt.Errorf("ENGINE wants a name, got %q", name.text)
	}
	p.pos++
	e := engine{name: name.text}
	if p.peek(0).punct("(") {
		inner, err := p.parens()
		if err != nil {
			return e, fmt.Errorf("ENGINE %s: %w", e.name, err)
		}
		if len(inner) > 0 {
			e.args = splitTop(inner)
		}
	}
	return e, nil
}

func (p *parser) view(s *statement) error {
	if !p.words("TO") {
		return fmt.Errorf("%s: a materialized view without TO is not read by this parser", s.name)
	}
	to, err := p.qname()
	if err != nil {
		return fmt.Errorf("%s: TO: %w", s.name, err)
	}
	s.to = &to
	if p.peek(0).punct("(") { // the server's own SHOW CREATE lists the columns here
		inner, err := p.parens()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := s.parseElements(inner); err != nil {
			return err
		}
	}
	if p.peek(0).is("DEFINER") || p.peek(0).is("SQL") { // newer servers' SHOW CREATE
		for !p.eof() && !p.peek(0).is("AS") {
			p.pos++
		}
	}
	if !p.words("AS") {
		return fmt.Errorf("%s: want AS SELECT, got %q", s.name, p.peek(0).text)
	}
	s.query = p.toks[p.pos:]
	if len(s.query) == 0 {
		return fmt.Errorf("%s: empty query", s.name)
	}
	return nil
}

// source is the table the view's query reads: the first FROM followed by a
// table name, looking into a FROM (subquery).
func (s statement) source() (qname, error) {
	for i, t := range s.query {
		if t.is("FROM") && i+1 < len(s.query) && s.query[i+1].ident() {
			p := &parser{toks: s.query, pos: i + 1}
			return p.qname()
		}
	}
	return qname{}, fmt.Errorf("%s: no FROM <table> in the query", s.name)
}

// parseElements reads a column list: columns, and INDEX / PROJECTION /
// CONSTRAINT entries.
func (s *statement) parseElements(inner []token) error {
	if len(inner) == 0 {
		return fmt.Errorf("%s: empty column list", s.name)
	}
	for _, el := range splitTop(inner) {
		if len(el) == 0 {
			return fmt.Errorf("%s: empty element in the column list", s.name)
		}
		if el[0].is("INDEX") || el[0].is("PROJECTION") || el[0].is("CONSTRAINT") {
			s.indexes = append(s.indexes, render(el))
			continue
		}
		c, err := parseColumn(el)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		s.columns = append(s.columns, c)
	}
	return nil
}

func parseColumn(el []token) (column, error) {
	if !el[0].ident() {
		return column{}, fmt.Errorf("want a column name, got %q", el[0].text)
	}
	c := column{name: el[0].text}
	// Each part runs up to the next modifier keyword outside parentheses.
	var parts [][]token
	depth, start := 0, 1
	for i := 1; i < len(el); i++ {
		t := el[i]
		switch {
		case t.punct("("):
			depth++
		case t.punct(")"):
			depth--
		case depth == 0 && i > start && isModifier(t):
			if start > 1 && i == start+1 {
				continue // the operand of the modifier before it: DEFAULT NULL, NOT NULL
			}
			parts = append(parts, el[start:i])
			start = i
		}
	}
	parts = append(parts, el[start:])
	if len(parts[0]) == 0 || isModifier(parts[0][0]) {
		return c, fmt.Errorf("column %s: no type (this parser wants every type written out)", c.name)
	}
	c.typ = render(parts[0])
	for _, m := range parts[1:] {
		kw, rest := strings.ToUpper(m[0].text), m[1:]
		switch kw {
		case "DEFAULT", "MATERIALIZED", "ALIAS", "EPHEMERAL":
			if c.defaultKind != "" {
				return c, fmt.Errorf("column %s: %s and %s", c.name, c.defaultKind, kw)
			}
			c.defaultKind, c.defaultExpr = kw, render(rest)
		case "CODEC":
			c.codec = render(m)
		case "COMMENT":
			c.comment = render(rest)
		case "TTL":
			c.ttl = render(rest)
		case "NULL":
			c.typ = "Nullable(" + c.typ + ")"
		case "NOT":
			if len(rest) != 1 || !rest[0].is("NULL") {
				return c, fmt.Errorf("column %s: NOT without NULL", c.name)
			}
		default:
			return c, fmt.Errorf("column %s: %s is not read by this parser", c.name, kw)
		}
	}
	return c, nil
}

func isModifier(t token) bool {
	for _, m := range columnModifiers {
		if t.is(m) {
			return true
		}
	}
	return false
}

// parseFile parses every statement of a SQL file.
func parseFile(src string) ([]statement, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	var out []statement
	for _, st := range splitStatements(toks) {
		s, err := parseStatement(st)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// normType renders a type the way the parser renders column types, for
// comparing with system.columns.
func normType(s string) string {
	toks, err := lex(s)
	if err != nil {
		return s
	}
	return render(toks)
}

// withoutLowCardinality strips LowCardinality(...) wrappers: the one
// difference between the Legacy and Modern generations of the schema.
func withoutLowCardinality(typ string) string {
	for {
		i := strings.Index(typ, "LowCardinality(")
		if i < 0 {
			return typ
		}
		depth, j := 0, i+len("LowCardinality")
		for ; j < len(typ); j++ {
			if typ[j] == '(' {
				depth++
			} else if typ[j] == ')' {
				depth--
				if depth == 0 {
					break
				}
			}
		}
		if j >= len(typ) {
			return typ
		}
		typ = typ[:i] + typ[i+len("LowCardinality("):j] + typ[j+1:]
	}
}

func TestParseColumns(t *testing.T) {
	src := "CREATE TABLE IF NOT EXISTS `db`.t ON CLUSTER '{cluster}' (\n" +
		"  -- a comment, with a ; and a ( in it\n" +
		"  a String,\n" +
		"  `b c` AggregateFunction(quantilesIf(0.5, 0.9), Float64, UInt8),\n" +
		"  d LowCardinality(String) DEFAULT 'x, y' CODEC(ZSTD(3)) COMMENT 'it''s',\n" +
		"  e DateTime('UTC') MATERIALIZED now() /* block */,\n" +
		"  f Map(String, Array(Tuple(UInt8, String))) NULL,\n" +
		"  g UInt8 NOT NULL,\n" +
		"  h Nullable(String) DEFAULT NULL,\n" +
		"  INDEX i a TYPE bloom_filter GRANULARITY 4\n" +
		") ENGINE = ReplicatedMergeTree('/p/{shard}', '{replica}') PARTITION BY toYYYYMM(e) ORDER BY (a, d) TTL e + INTERVAL 1 DAY SETTINGS index_granularity = 8192;\n" +
		"CREATE TABLE db.u AS db.t ENGINE = Distributed('{cluster}', db, t, sipHash64(a));\n" +
		"CREATE MATERIALIZED VIEW db.v TO db.t (a String) AS SELECT a, count() AS n FROM (SELECT a FROM db.x) GROUP BY a"
	got, err := parseFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d statements, want 3", len(got))
	}
	want := []column{
		{name: "a", typ: "String"},
		{name: "b c", typ: "AggregateFunction(quantilesIf(0.5, 0.9), Float64, UInt8)"},
		{name: "d", typ: "LowCardinality(String)", defaultKind: "DEFAULT", defaultExpr: "'x, y'", codec: "CODEC(ZSTD(3))", comment: `'it\'s'`},
		{name: "e", typ: "DateTime('UTC')", defaultKind: "MATERIALIZED", defaultExpr: "now()"},
		{name: "f", typ: "Nullable(Map(String, Array(Tuple(UInt8, String))))"},
		{name: "g", typ: "UInt8"},
		{name: "h", typ: "Nullable(String)", defaultKind: "DEFAULT", defaultExpr: "NULL"},
	}
	tbl := got[0]
	if fmt.Sprint(tbl.columns) != fmt.Sprint(want) {
		t.Errorf("columns\n got %v\nwant %v", tbl.columns, want)
	}
	if !tbl.ifNotExists || tbl.onCluster == nil || tbl.onCluster.text != "{cluster}" || tbl.name != (qname{"db", "t"}) {
		t.Errorf("header: %+v", tbl)
	}
	if len(tbl.indexes) != 1 || tbl.engine.name != "ReplicatedMergeTree" || tbl.engine.argString(0) != "/p/{shard}" || tbl.engine.argString(1) != "{replica}" {
		t.Errorf("indexes %v, engine %+v", tbl.indexes, tbl.engine)
	}
	for clause, want := range map[string]string{"PARTITION BY": "toYYYYMM(e)", "ORDER BY": "a, d", "TTL": "e + INTERVAL 1 DAY", "SETTINGS": "index_granularity = 8192"} {
		if got := tbl.clause(clause); got != want {
			t.Errorf("%s = %q, want %q", clause, got, want)
		}
	}
	dist := got[1]
	if dist.as == nil || *dist.as != (qname{"db", "t"}) || dist.engine.name != "Distributed" || len(dist.engine.args) != 4 ||
		dist.engine.argString(2) != "t" || render(dist.engine.args[3]) != "sipHash64(a)" {
		t.Errorf("distributed: %+v", dist)
	}
	mv := got[2]
	src2, err := mv.source()
	if err != nil || mv.to == nil || *mv.to != (qname{"db", "t"}) || src2 != (qname{"db", "x"}) || len(mv.columns) != 1 {
		t.Errorf("view: to %v, source %v (%v), columns %v", mv.to, src2, err, mv.columns)
	}
	if got, want := render(mv.query), "SELECT a, count() AS n FROM(SELECT a FROM db.x) GROUP BY a"; got != want {
		t.Errorf("query %q, want %q", got, want)
	}
}

func TestParseRejects(t *testing.T) {
	for _, src := range []string{
		"CREATE TABLE t (a) ENGINE = Memory",                    // no type
		"CREATE TABLE t (a String PRIMARY KEY) ENGINE = Memory", // column-level key
		"CREATE TABLE t (a String) ENGINE = Memory FOO BAR",
		"CREATE TABLE t AS SELECT 1",
		"CREATE MATERIALIZED VIEW v ENGINE = Memory AS SELECT 1",
		"CREATE VIEW v AS SELECT 1",
		"CREATE TABLE t (a String",
		"CREATE TABLE t (a 'x)",
		"INSERT INTO t VALUES (1)",
	} {
		if _, err := parseFile(src); err == nil {
			t.Errorf("accepted %q", src)
		}
	}
}

func TestWithoutLowCardinality(t *testing.T) {
	for in, want := range map[string]string{
		"LowCardinality(String)":                        "String",
		"Array(LowCardinality(Nullable(String)))":       "Array(Nullable(String))",
		"Map(LowCardinality(String), UInt8)":            "Map(String, UInt8)",
		"AggregateFunction(uniqExactIf, String, UInt8)": "AggregateFunction(uniqExactIf, String, UInt8)",
	} {
		if got := withoutLowCardinality(in); got != want {
			t.Errorf("%s -> %s, want %s", in, got, want)
		}
	}
}

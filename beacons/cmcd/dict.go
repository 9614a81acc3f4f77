package cmcd

import (
	"strconv"
	"strings"
)

// This file is a strict RFC 8941 dictionary parser cut down to what CMCD
// needs. It never allocates more than a small constant per member, because
// every byte it sees comes from an untrusted player.

// Limits on one dictionary (a query value, one header shard, one event line).
const (
	MaxLineBytes   = 8 << 10 // longest dictionary accepted
	MaxMembers     = 128     // most keys in one report, across header shards too
	maxInnerList   = 32      // most items in one inner list
	maxParams      = 8       // most parameters on one item
	maxKeyBytes    = 64      // keys are short; a long one is an attack or junk
	maxErrKeyBytes = 32      // how much of an invalid key an error echoes back
)

type kind uint8

const (
	kindInt kind = iota + 1
	kindDec
	kindString
	kindToken
	kindBytes
	kindBool
	kindList
)

func (k kind) String() string {
	switch k {
	case kindInt:
		return "integer"
	case kindDec:
		return "decimal"
	case kindString:
		return "string"
	case kindToken:
		return "token"
	case kindBytes:
		return "byte sequence"
	case kindBool:
		return "boolean"
	case kindList:
		return "inner list"
	}
	return "nothing"
}

// item is one bare item. Parameters are parsed for syntax and dropped, except
// the first boolean-true one: CMCD v2 tags list entries with their object
// type that way (`br=(3000;v 164;a)`), and which entry is video matters.
type item struct {
	kind kind
	i    int64   // kindInt; kindBool is 0 or 1
	f    float64 // kindDec
	s    string  // kindString (unescaped), kindToken, kindBytes (raw base64)
	tag  string  // first parameter whose value is boolean true
}

type value struct {
	item
	list []item // kindList
	raw  string // the member value as sent, for keys kept verbatim
}

type member struct {
	key string
	val value
}

type parser struct {
	s   string
	pos int
	key string // the member being parsed, for errors
}

func (p *parser) fail(reason string) *Error {
	return &Error{Key: p.key, Reason: reason}
}

func (p *parser) eof() bool { return p.pos >= len(p.s) }

func (p *parser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

func (p *parser) skipSP() {
	for p.pos < len(p.s) && p.s[p.pos] == ' ' {
		p.pos++
	}
}

func (p *parser) skipOWS() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

// parseDict parses one RFC 8941 dictionary. Beyond the RFC it rejects
// duplicate keys (the RFC keeps the last, which lets a client show one value
// to a CDN log and another to us) and enforces the size limits above.
func parseDict(s string) ([]member, error) {
	if len(s) > MaxLineBytes {
		return nil, &Error{Reason: "input longer than " + strconv.Itoa(MaxLineBytes) + " bytes"}
	}
	p := parser{s: strings.Trim(s, " \t")}
	if p.eof() {
		return nil, &Error{Reason: "empty dictionary"}
	}
	// A typical report has 10-25 keys; counting commas sizes the slice once.
	members := make([]member, 0, min(strings.Count(p.s, ",")+1, MaxMembers))
	for {
		p.key = ""
		key, err := p.parseKey()
		if err != nil {
			return nil, err
		}
		p.key = key
		if len(members) == MaxMembers {
			return nil, p.fail("more than " + strconv.Itoa(MaxMembers) + " members")
		}
		for i := range members {
			if members[i].key == key {
				return nil, p.fail("duplicate key")
			}
		}
		var v value
		start := p.pos
		if p.peek() == '=' {
			p.pos++
			start = p.pos
			if p.peek() == '(' {
				err = p.parseInnerList(&v)
			} else {
				v.item, err = p.parseItem()
			}
		} else {
			// A bare key is boolean true, possibly with parameters.
			v.item = item{kind: kindBool, i: 1}
			err = p.parseParams(&v.item)
		}
		if err != nil {
			return nil, err
		}
		v.raw = p.s[start:p.pos]
		members = append(members, member{key: key, val: v})

		p.skipOWS()
		if p.eof() {
			return members, nil
		}
		if p.peek() != ',' {
			return nil, p.fail("unexpected " + quoteByte(p.peek()) + " after value")
		}
		p.pos++
		p.skipOWS()
		if p.eof() {
			return nil, p.fail("trailing comma")
		}
	}
}

func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool   { return isLCAlpha(c) || (c >= 'A' && c <= 'Z') }

func isKeyChar(c byte) bool {
	return isLCAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*'
}

// isTChar is RFC 9110 tchar.
func isTChar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isBase64(c byte) bool {
	return isAlpha(c) || isDigit(c) || c == '+' || c == '/' || c == '='
}

func (p *parser) parseKey() (string, error) {
	start := p.pos
	if p.eof() || !(isLCAlpha(p.peek()) || p.peek() == '*') {
		p.key = badKey(p.s[start:])
		return "", p.fail("key must start with a-z or *")
	}
	p.pos++
	for !p.eof() && isKeyChar(p.peek()) {
		p.pos++
	}
	if p.pos-start > maxKeyBytes {
		p.key = badKey(p.s[start:])
		return "", p.fail("key longer than " + strconv.Itoa(maxKeyBytes) + " bytes")
	}
	return p.s[start:p.pos], nil
}

// badKey extracts a printable prefix of an invalid key so the error names
// what the client sent without echoing kilobytes or control bytes into logs.
func badKey(s string) string {
	end := 0
	for end < len(s) && end < maxErrKeyBytes && s[end] > ' ' && s[end] < 0x7f &&
		s[end] != '=' && s[end] != ',' && s[end] != ';' {
		end++
	}
	if end == 0 {
		if s == "" {
			return "(end of input)"
		}
		return "(" + quoteByte(s[0]) + ")"
	}
	return s[:end]
}

func quoteByte(c byte) string {
	return strconv.QuoteRune(rune(c))
}

func (p *parser) parseInnerList(v *value) error {
	p.pos++ // '('
	v.kind = kindList
	for {
		p.skipSP()
		if p.eof() {
			return p.fail("unterminated inner list")
		}
		if p.peek() == ')' {
			p.pos++
			// Inner-list parameters: syntax only.
			var ignored item
			return p.parseParams(&ignored)
		}
		if len(v.list) == maxInnerList {
			return p.fail("inner list longer than " + strconv.Itoa(maxInnerList) + " items")
		}
		it, err := p.parseItem()
		if err != nil {
			return err
		}
		v.list = append(v.list, it)
		if p.eof() {
			return p.fail("unterminated inner list")
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return p.fail("unexpected " + quoteByte(c) + " in inner list")
		}
	}
}

func (p *parser) parseItem() (item, error) {
	it, err := p.parseBareItem()
	if err != nil {
		return item{}, err
	}
	return it, p.parseParams(&it)
}

func (p *parser) parseParams(it *item) error {
	n := 0
	for p.peek() == ';' {
		p.pos++
		p.skipSP()
		if n == maxParams {
			return p.fail("more than " + strconv.Itoa(maxParams) + " parameters")
		}
		n++
		outer := p.key
		name, err := p.parseKey()
		p.key = outer // errors stay attributed to the member, not the parameter
		if err != nil {
			return p.fail("bad parameter key")
		}
		val := item{kind: kindBool, i: 1}
		if p.peek() == '=' {
			p.pos++
			if val, err = p.parseBareItem(); err != nil {
				return err
			}
		}
		if it.tag == "" && val.kind == kindBool && val.i == 1 {
			it.tag = name
		}
	}
	return nil
}

func (p *parser) parseBareItem() (item, error) {
	if p.eof() {
		return item{}, p.fail("missing value")
	}
	c := p.peek()
	switch {
	case c == '-' || isDigit(c):
		return p.parseNumber()
	case c == '"':
		return p.parseString()
	case c == '*' || isAlpha(c):
		return p.parseToken()
	case c == ':':
		return p.parseBytes()
	case c == '?':
		return p.parseBool()
	}
	return item{}, p.fail("unexpected " + quoteByte(c) + " at start of value")
}

// parseNumber follows RFC 8941 4.2.4: at most 15 integer digits, or 12.3 for
// decimals, so every accepted value fits an int64 and a float64 exactly.
func (p *parser) parseNumber() (item, error) {
	start := p.pos
	neg := false
	if p.peek() == '-' {
		neg = true
		p.pos++
	}
	intStart := p.pos
	for !p.eof() && isDigit(p.peek()) {
		p.pos++
	}
	intDigits := p.pos - intStart
	if intDigits == 0 {
		return item{}, p.fail("number without digits")
	}
	if p.peek() != '.' {
		if intDigits > 15 {
			return item{}, p.fail("integer longer than 15 digits")
		}
		n, err := strconv.ParseInt(p.s[intStart:p.pos], 10, 64)
		if err != nil {
			return item{}, p.fail("bad integer")
		}
		if neg {
			n = -n
		}
		return item{kind: kindInt, i: n}, nil
	}
	if intDigits > 12 {
		return item{}, p.fail("decimal with more than 12 integer digits")
	}
	p.pos++ // '.'
	fracStart := p.pos
	for !p.eof() && isDigit(p.peek()) {
		p.pos++
	}
	if frac := p.pos - fracStart; frac == 0 || frac > 3 {
		return item{}, p.fail("decimal needs 1 to 3 fraction digits")
	}
	f, err := strconv.ParseFloat(p.s[start:p.pos], 64)
	if err != nil {
		return item{}, p.fail("bad decimal")
	}
	return item{kind: kindDec, f: f}, nil
}

func (p *parser) parseString() (item, error) {
	p.pos++ // opening quote
	start := p.pos
	var b *strings.Builder // only allocated when the string has escapes
	for !p.eof() {
		c := p.s[p.pos]
		switch {
		case c == '"':
			s := p.s[start:p.pos]
			if b != nil {
				s = b.String()
			}
			p.pos++
			return item{kind: kindString, s: s}, nil
		case c == '\\':
			if p.pos+1 >= len(p.s) {
				return item{}, p.fail("unterminated string")
			}
			next := p.s[p.pos+1]
			if next != '"' && next != '\\' {
				return item{}, p.fail("bad escape in string")
			}
			if b == nil {
				b = &strings.Builder{}
				b.WriteString(p.s[start:p.pos])
			}
			b.WriteByte(next)
			p.pos += 2
		case c < 0x20 || c > 0x7e:
			return item{}, p.fail("non-printable byte in string")
		default:
			if b != nil {
				b.WriteByte(c)
			}
			p.pos++
		}
	}
	return item{}, p.fail("unterminated string")
}

func (p *parser) parseToken() (item, error) {
	start := p.pos
	p.pos++
	for !p.eof() {
		c := p.peek()
		if !isTChar(c) && c != ':' && c != '/' {
			break
		}
		p.pos++
	}
	return item{kind: kindToken, s: p.s[start:p.pos]}, nil
}

// parseBytes accepts a byte sequence and keeps its base64 text: no CMCD key
// we map is binary, so decoding it would only cost memory.
func (p *parser) parseBytes() (item, error) {
	p.pos++ // ':'
	start := p.pos
	for !p.eof() && isBase64(p.peek()) {
		p.pos++
	}
	if p.peek() != ':' {
		return item{}, p.fail("bad byte sequence")
	}
	raw := p.s[start:p.pos]
	p.pos++
	return item{kind: kindBytes, s: raw}, nil
}

func (p *parser) parseBool() (item, error) {
	p.pos++ // '?'
	switch p.peek() {
	case '0':
		p.pos++
		return item{kind: kindBool, i: 0}, nil
	case '1':
		p.pos++
		return item{kind: kindBool, i: 1}, nil
	}
	return item{}, p.fail("boolean must be ?0 or ?1")
}

package geo

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Coverage is a parsed coverage file: CIDR prefixes mapped to locations.
// It is immutable once loaded and safe for concurrent use.
//
// Lookup does not walk the prefixes. At load time the (possibly nested)
// prefixes of each address family are flattened into sorted, disjoint
// address spans, each pointing at the most specific entry that covers it;
// a lookup is one load from a radix index over the spans' leading bits and
// a short branch-free binary search. Compared with the alternatives:
//   - a per-prefix-length map costs one hash per distinct length, and real
//     coverage files mix many lengths (IPv6 alone often uses /29 to /64);
//   - a binary trie needs up to 32 (IPv4) or 128 (IPv6) dependent pointer
//     loads and a node per bit.
//
// The tables are flat slices without pointers, so the garbage collector
// never scans them, and Lookup allocates nothing.
type Coverage struct {
	entries []Location // file order, returned by Entries
	v4, v6  spans
}

// Compile-time check that Coverage fits in a Chain.
var _ Lookuper = (*Coverage)(nil)

// ParseError locates a problem in a coverage file.
type ParseError struct {
	Line  int    // 1-based line number in the file
	Field string // "header", "columns", "cidr", "country", "region" or "asn"
	Err   error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("line %d, field %s: %v", e.Line, e.Field, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// coverageHeader is the required first line. Requiring it catches files
// whose columns are in another order (a geofeed, say) before they load as
// nonsense.
var coverageHeader = [...]string{"cidr", "country", "region", "asn"}

// maxLineLen bounds one line: a valid line is well under 200 bytes, and the
// bound keeps a corrupt file from buffering without limit.
const maxLineLen = 4096

// LoadCoverage parses a coverage file: a header line "cidr,country,region,asn"
// then one prefix per line. "#" starts a comment that runs to the end of the
// line; blank lines are skipped. Errors are *ParseError values naming the
// line and the field.
func LoadCoverage(r io.Reader) (*Coverage, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLineLen)
	c := &Coverage{}
	seen := make(map[netip.Prefix]int)
	lineNo, header := 0, false
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if lineNo == 1 {
			// Spreadsheet exports often start with a byte order mark.
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		fields := strings.Split(line, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		if !header {
			if !slices.EqualFunc(fields, coverageHeader[:], strings.EqualFold) {
				return nil, fmt.Errorf("load coverage: %w", &ParseError{lineNo, "header",
					fmt.Errorf("got %q, want %q", line, strings.Join(coverageHeader[:], ","))})
			}
			header = true
			continue
		}
		loc, perr := parseCoverageLine(fields)
		if perr != nil {
			perr.Line = lineNo
			return nil, fmt.Errorf("load coverage: %w", perr)
		}
		if first, dup := seen[loc.Prefix]; dup {
			return nil, fmt.Errorf("load coverage: %w", &ParseError{lineNo, "cidr",
				fmt.Errorf("duplicate prefix %s (first on line %d)", loc.Prefix, first)})
		}
		seen[loc.Prefix] = lineNo
		c.entries = append(c.entries, loc)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("load coverage: %w", &ParseError{lineNo + 1, "columns",
				fmt.Errorf("line longer than %d bytes", maxLineLen)})
		}
		return nil, fmt.Errorf("load coverage: read after line %d: %w", lineNo, err)
	}
	if !header {
		// An empty file has no line 0; point at line 1.
		return nil, fmt.Errorf("load coverage: %w", &ParseError{max(lineNo, 1), "header",
			fmt.Errorf("missing %q line", strings.Join(coverageHeader[:], ","))})
	}
	c.v4, c.v6 = buildSpans(c.entries)
	return c, nil
}

// parseCoverageLine validates one data line; the caller fills in Line.
func parseCoverageLine(f []string) (Location, *ParseError) {
	if len(f) != len(coverageHeader) {
		return Location{}, &ParseError{Field: "columns",
			Err: fmt.Errorf("got %d fields, want %d (%s)", len(f), len(coverageHeader), strings.Join(coverageHeader[:], ","))}
	}
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		return Location{}, &ParseError{Field: "cidr", Err: err}
	}
	if p.Addr().Is4In6() {
		// Lookup unmaps addresses first, so such a prefix could never match.
		return Location{}, &ParseError{Field: "cidr",
			Err: fmt.Errorf("%s is an IPv4-mapped IPv6 prefix, write it as IPv4", p)}
	}
	if m := p.Masked(); m != p {
		return Location{}, &ParseError{Field: "cidr",
			Err: fmt.Errorf("%s has host bits set (network is %s)", p, m)}
	}
	country, err := normCountry(f[1])
	if err != nil {
		return Location{}, &ParseError{Field: "country", Err: err}
	}
	if err := checkRegion(f[2]); err != nil {
		return Location{}, &ParseError{Field: "region", Err: err}
	}
	asn, err := parseASN(f[3])
	if err != nil {
		return Location{}, &ParseError{Field: "asn", Err: err}
	}
	return Location{Country: country, Region: f[2], ASN: asn, Prefix: p}, nil
}

// parseASN accepts "64500", "AS64500" (as registries print it) and "" for
// unknown, which is stored as 0.
func parseASN(s string) (uint32, error) {
	if len(s) >= 2 && strings.EqualFold(s[:2], "as") {
		s = s[2:]
	}
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number in 0-4294967295", s)
	}
	return uint32(n), nil
}

// Lookup returns the location of the most specific prefix containing addr.
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, as a dual-stack socket
// reports IPv4 clients) are looked up as IPv4.
func (c *Coverage) Lookup(addr netip.Addr) (Location, bool) {
	addr = addr.Unmap()
	var i int
	switch {
	case addr.Is4():
		b := addr.As4()
		i = c.v4.find(u128{lo: uint64(binary.BigEndian.Uint32(b[:]))})
	case addr.Is6():
		i = c.v6.find(addrKey(addr))
	default:
		return Location{}, false
	}
	if i < 0 {
		return Location{}, false
	}
	return c.entries[i], true
}

// Entries returns a copy of every entry in file order.
func (c *Coverage) Entries() []Location {
	return slices.Clone(c.entries)
}

// u128 is an address as an unsigned integer; IPv4 uses lo only.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

// next returns a+1; callers never pass the family's highest address.
func (a u128) next() u128 {
	a.lo++
	if a.lo == 0 {
		a.hi++
	}
	return a
}

func (a u128) prev() u128 {
	if a.lo == 0 {
		a.hi--
	}
	a.lo--
	return a
}

func addrKey(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// prefixRange returns the first and last address of a masked prefix.
func prefixRange(p netip.Prefix) (first, last u128) {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		v := binary.BigEndian.Uint32(b[:])
		return u128{lo: uint64(v)}, u128{lo: uint64(v | lowMask32(32-p.Bits()))}
	}
	first = addrKey(p.Addr())
	host := 128 - p.Bits()
	last = u128{first.hi | lowMask64(max(host-64, 0)), first.lo | lowMask64(min(host, 64))}
	return first, last
}

// spans is one address family's lookup table: disjoint address ranges
// sorted by start, kept as parallel slices so the search touches only the
// starts, plus a radix index over them.
//
// Every span lies in the block of addresses sharing the first cp bits (the
// common prefix of the lowest and highest address covered). The next nb bits
// of an address pick a bucket, and bucket[b] is the last span starting at or
// before the bucket's lowest address; the answer for any address in bucket b
// lies in spans bucket[b]..bucket[b+1]. One load of the index thus replaces
// the top ~nb levels of the binary search, which on a large table are the
// cache misses: without it a 10k-entry table took ~2x as long per lookup.
type spans struct {
	first, last []u128
	entry       []int32
	bucket      []int32 // len 1<<nb + 1
	cp, nb      int
}

// maxIndexBits caps the index at 64k buckets (256 KiB) per family.
const maxIndexBits = 16

func newSpans(sp []span) spans {
	s := spans{}
	for _, x := range sp {
		s.first = append(s.first, x.first)
		s.last = append(s.last, x.last)
		s.entry = append(s.entry, x.entry)
	}
	n := len(sp)
	if n == 0 {
		return s
	}
	s.cp = leadingZeros(xor(s.first[0], s.last[n-1]))
	// Prefixes cluster (one ISP's /16s sit side by side), so buckets are
	// sized generously rather than one per span; small files still get a
	// small index.
	s.nb = min(bits.Len(uint(n))+8, maxIndexBits, 128-s.cp)
	s.bucket = make([]int32, 1<<s.nb+1)
	j := 0
	for b := range 1 << s.nb {
		low := s.bucketLow(b)
		for j+1 < n && !low.less(s.first[j+1]) {
			j++
		}
		s.bucket[b] = int32(j)
	}
	s.bucket[1<<s.nb] = int32(n - 1)
	return s
}

// bucketLow returns the lowest address of bucket b: the common prefix, then
// b in the next nb bits, then zeros.
func (s *spans) bucketLow(b int) u128 {
	block := mask(s.first[0], s.cp)
	return or(block, shl(u128{lo: uint64(b)}, 128-s.cp-s.nb))
}

// find returns the entry index covering k, or -1.
func (s *spans) find(k u128) int {
	f := s.first
	if len(f) == 0 || leadingZeros(xor(k, f[0])) < s.cp {
		return -1 // outside the block every span lies in
	}
	b := bucketOf(k, s.cp, s.nb)
	base := int(s.bucket[b])
	if k.less(f[base]) {
		return -1 // below the first span
	}
	// Branch-free binary search for the last span with first <= k in
	// [base, bucket[b+1]]. Client addresses are effectively random, so a
	// branch on the comparison would be mispredicted half the time.
	n := int(s.bucket[b+1]) - base + 1
	for n > 1 {
		half := n >> 1
		p := f[base+half]
		// The borrow out of k - p is 1 exactly when k < p.
		_, borrow := bits.Sub64(k.lo, p.lo, 0)
		_, borrow = bits.Sub64(k.hi, p.hi, borrow)
		base += half & int(borrow-1) // borrow-1 is all ones when p <= k
		n -= half
	}
	if s.last[base].less(k) {
		return -1
	}
	return int(s.entry[base])
}

// bucketOf returns bits [cp, cp+nb) of k.
func bucketOf(k u128, cp, nb int) int {
	var w uint64 // 64 bits of k starting at bit cp
	if cp < 64 {
		w = k.hi<<cp | k.lo>>(64-cp) // k.lo>>64 is 0 in Go, so cp == 0 works
	} else {
		w = k.lo << (cp - 64)
	}
	return int(w >> (64 - nb))
}

func xor(a, b u128) u128 { return u128{a.hi ^ b.hi, a.lo ^ b.lo} }

func or(a, b u128) u128 { return u128{a.hi | b.hi, a.lo | b.lo} }

func leadingZeros(a u128) int {
	if a.hi != 0 {
		return bits.LeadingZeros64(a.hi)
	}
	return 64 + bits.LeadingZeros64(a.lo)
}

// mask keeps the first n bits of a.
func mask(a u128, n int) u128 {
	return u128{a.hi & ^lowMask64(max(64-n, 0)), a.lo & ^lowMask64(min(128-n, 64))}
}

// shl shifts a left by n < 128 bits.
func shl(a u128, n int) u128 {
	if n >= 64 {
		return u128{hi: a.lo << (n - 64)}
	}
	return u128{a.hi<<n | a.lo>>(64-n), a.lo << n}
}

type span struct {
	first, last u128
	entry       int32
}

func buildSpans(entries []Location) (v4, v6 spans) {
	var i4, i6 []int
	for i, e := range entries {
		if e.Prefix.Addr().Is4() {
			i4 = append(i4, i)
		} else {
			i6 = append(i6, i)
		}
	}
	v4 = newSpans(flatten(entries, i4, u128{lo: 1<<32 - 1}))
	v6 = newSpans(flatten(entries, i6, u128{^uint64(0), ^uint64(0)}))
	return v4, v6
}

// flatten turns the prefixes entries[idx] of one family (whose highest
// address is top) into disjoint spans. CIDR prefixes either nest or do not
// overlap, so after sorting by start and then by length a stack of the
// prefixes that enclose the current one is enough: a span is emitted for
// each stretch an enclosing prefix owns between its nested ones.
func flatten(entries []Location, idx []int, top u128) []span {
	slices.SortFunc(idx, func(a, b int) int {
		pa, pb := entries[a].Prefix, entries[b].Prefix
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(pa.Bits(), pb.Bits())
	})
	type open struct {
		last  u128
		entry int32
	}
	var (
		out   []span
		stack []open
		cur   u128 // lowest address not yet assigned to a span
		done  bool // cur has run past top
	)
	emit := func(last u128, entry int32) {
		if done || last.less(cur) {
			return
		}
		out = append(out, span{cur, last, entry})
		if last == top {
			done = true
			return
		}
		cur = last.next()
	}
	for _, i := range idx {
		first, last := prefixRange(entries[i].Prefix)
		for len(stack) > 0 && stack[len(stack)-1].last.less(first) {
			emit(stack[len(stack)-1].last, stack[len(stack)-1].entry)
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && cur.less(first) {
			emit(first.prev(), stack[len(stack)-1].entry)
		}
		cur = first
		stack = append(stack, open{last, int32(i)})
	}
	for len(stack) > 0 {
		emit(stack[len(stack)-1].last, stack[len(stack)-1].entry)
		stack = stack[:len(stack)-1]
	}
	return out
}

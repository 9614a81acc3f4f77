package geo

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func loadFile(t testing.TB, path string) *Coverage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := LoadCoverage(f)
	if err != nil {
		t.Fatalf("LoadCoverage(%s): %v", path, err)
	}
	return c
}

// want builds the expected Location; region "" with ok=false means a miss.
type lookupCase struct {
	addr    string
	ok      bool
	country string
	region  string
	asn     uint32
	prefix  string
}

func checkLookups(t *testing.T, l Lookuper, cases []lookupCase) {
	t.Helper()
	for _, tc := range cases {
		var addr netip.Addr
		if tc.addr != "" {
			addr = netip.MustParseAddr(tc.addr)
		}
		got, ok := l.Lookup(addr)
		if ok != tc.ok {
			t.Errorf("Lookup(%s) ok = %v, want %v (got %+v)", tc.addr, ok, tc.ok, got)
			continue
		}
		if !tc.ok {
			if got != (Location{}) {
				t.Errorf("Lookup(%s) miss returned %+v, want zero Location", tc.addr, got)
			}
			continue
		}
		want := Location{Country: tc.country, Region: tc.region, ASN: tc.asn, Prefix: netip.MustParsePrefix(tc.prefix)}
		if got != want {
			t.Errorf("Lookup(%s) = %+v, want %+v", tc.addr, got, want)
		}
	}
}

func TestCoverageLookup(t *testing.T) {
	nested := loadFile(t, "testdata/good/nested.csv")
	checkLookups(t, nested, []lookupCase{
		{addr: "10.0.0.0", ok: true, country: "US", region: "us-east", asn: 64500, prefix: "10.0.0.0/8"},
		{addr: "10.1.0.0", ok: true, country: "US", region: "us-west", asn: 64501, prefix: "10.1.0.0/16"},
		{addr: "10.1.2.3", ok: true, country: "CA", region: "ca-east", asn: 64502, prefix: "10.1.2.0/24"},
		{addr: "10.1.2.127", ok: true, country: "CA", region: "ca-east", asn: 64502, prefix: "10.1.2.0/24"},
		{addr: "10.1.2.128", ok: true, country: "CA", region: "ca-west", asn: 64503, prefix: "10.1.2.128/25"},
		{addr: "10.1.2.254", ok: true, country: "CA", region: "ca-west", asn: 64503, prefix: "10.1.2.128/25"},
		{addr: "10.1.2.255", ok: true, country: "MX", region: "mx-central", asn: 64504, prefix: "10.1.2.255/32"},
		// The enclosing prefixes resume after their nested ones end.
		{addr: "10.1.3.0", ok: true, country: "US", region: "us-west", asn: 64501, prefix: "10.1.0.0/16"},
		{addr: "10.2.0.0", ok: true, country: "US", region: "us-east", asn: 64500, prefix: "10.0.0.0/8"},
		{addr: "10.255.255.255", ok: true, country: "US", region: "us-east", asn: 64500, prefix: "10.0.0.0/8"},
		{addr: "192.0.2.77", ok: true, country: "GB", region: "eu-west", asn: 64505, prefix: "192.0.2.0/24"},
		// IPv4-mapped IPv6, as a dual-stack listener reports IPv4 clients.
		{addr: "::ffff:10.1.2.3", ok: true, country: "CA", region: "ca-east", asn: 64502, prefix: "10.1.2.0/24"},
		{addr: "::ffff:192.0.2.1", ok: true, country: "GB", region: "eu-west", asn: 64505, prefix: "192.0.2.0/24"},
		{addr: "2001:db8::1", ok: true, country: "DE", region: "eu-central", asn: 64506, prefix: "2001:db8::/32"},
		{addr: "2001:db8:1::5", ok: true, country: "PL", region: "eu-central", asn: 64507, prefix: "2001:db8:1::/48"},
		{addr: "2001:db8:1:2:ffff:ffff:ffff:ffff", ok: true, country: "PL", region: "eu-east", asn: 64508, prefix: "2001:db8:1:2::/64"},
		{addr: "2001:db8:1:3::", ok: true, country: "PL", region: "eu-central", asn: 64507, prefix: "2001:db8:1::/48"},
		{addr: "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", ok: true, country: "DE", region: "eu-central", asn: 64506, prefix: "2001:db8::/32"},
		{addr: "2001:db8::1%eth0", ok: true, country: "DE", region: "eu-central", asn: 64506, prefix: "2001:db8::/32"},
		// Misses: just outside, other family, zero address.
		{addr: "9.255.255.255"},
		{addr: "11.0.0.0"},
		{addr: "0.0.0.0"},
		{addr: "255.255.255.255"},
		{addr: "192.0.3.0"},
		{addr: "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"},
		{addr: "2001:db9::"},
		{addr: "::"},
		// ::a01:203 is IPv4-compatible, not IPv4-mapped: it is IPv6.
		{addr: "::10.1.2.3"},
		{addr: ""},
	})

	edges := loadFile(t, "testdata/good/edges.csv")
	checkLookups(t, edges, []lookupCase{
		{addr: "0.0.0.0", ok: true, country: "ZZ", region: "low", asn: 1, prefix: "0.0.0.0/32"},
		{addr: "0.0.0.1", ok: true, country: "ZZ", region: "world", prefix: "0.0.0.0/0"},
		{addr: "255.255.255.254", ok: true, country: "ZZ", region: "world", prefix: "0.0.0.0/0"},
		{addr: "255.255.255.255", ok: true, country: "ZZ", region: "high", asn: 2, prefix: "255.255.255.255/32"},
		{addr: "::", ok: true, country: "ZZ", region: "low6", asn: 1, prefix: "::/128"},
		{addr: "::1", ok: true, country: "ZZ", region: "world6", prefix: "::/0"},
		{addr: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", ok: true, country: "ZZ", region: "world6", prefix: "::/0"},
		{addr: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ok: true, country: "ZZ", region: "high6", asn: 2, prefix: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"},
		{addr: "::ffff:255.255.255.255", ok: true, country: "ZZ", region: "high", asn: 2, prefix: "255.255.255.255/32"},
	})

	empty := loadFile(t, "testdata/good/header_only.csv")
	checkLookups(t, empty, []lookupCase{{addr: "10.0.0.1"}, {addr: "2001:db8::1"}})
}

func TestLoadCoverageGood(t *testing.T) {
	c := loadFile(t, "testdata/good/spreadsheet.csv")
	want := []Location{
		{Country: "US", Region: "us-east", ASN: 64500, Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{Country: "US", Region: "us-west", Prefix: netip.MustParsePrefix("10.1.0.0/16")},
		{Country: "DE", Region: "eu-central", ASN: 64501, Prefix: netip.MustParsePrefix("2001:db8::/32")},
	}
	if got := c.Entries(); !slices.Equal(got, want) {
		t.Errorf("Entries() = %+v\nwant %+v", got, want)
	}
	if n := len(loadFile(t, "testdata/good/header_only.csv").Entries()); n != 0 {
		t.Errorf("header-only file has %d entries, want 0", n)
	}
}

func TestEntriesIsACopy(t *testing.T) {
	c := loadFile(t, "testdata/good/nested.csv")
	e := c.Entries()
	e[0].Region = "changed"
	if got := c.Entries()[0].Region; got != "us-east" {
		t.Errorf("Entries()[0].Region = %q after caller's edit, want us-east", got)
	}
	if loc, _ := c.Lookup(netip.MustParseAddr("10.9.9.9")); loc.Region != "us-east" {
		t.Errorf("Lookup region = %q after caller's edit, want us-east", loc.Region)
	}
}

func TestLoadCoverageBad(t *testing.T) {
	tests := []struct {
		file  string
		line  int
		field string
		msg   string // substring of the error text
	}{
		{"bad_cidr.csv", 3, "cidr", "10.0.0.0/33"},
		{"host_bits.csv", 3, "cidr", "host bits set (network is 10.1.0.0/16)"},
		{"mapped_v6.csv", 2, "cidr", "IPv4-mapped"},
		{"bad_country.csv", 4, "country", `"USA"`},
		{"empty_region.csv", 2, "region", "empty"},
		{"bad_region.csv", 2, "region", `"US East"`},
		{"asn_not_number.csv", 2, "asn", `"sixty-four" is not a number`},
		{"asn_too_big.csv", 2, "asn", "not a number in 0-4294967295"},
		{"duplicate.csv", 5, "cidr", "duplicate prefix 2001:db8::/32 (first on line 3)"},
		{"missing_header.csv", 2, "header", "want"},
		{"columns.csv", 2, "columns", "got 3 fields, want 4"},
		{"empty.csv", 1, "header", "missing"},
		{"too_long.csv", 2, "columns", "longer than"},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/bad", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			c, err := LoadCoverage(bytes.NewReader(data))
			if err == nil {
				t.Fatalf("LoadCoverage succeeded with %d entries, want error", len(c.Entries()))
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Line != tc.line || pe.Field != tc.field {
				t.Errorf("error at line %d field %s, want line %d field %s (%v)", pe.Line, pe.Field, tc.line, tc.field, err)
			}
			wantPrefix := fmt.Sprintf("load coverage: line %d, field %s: ", tc.line, tc.field)
			if msg := err.Error(); !strings.HasPrefix(msg, wantPrefix) || !strings.Contains(msg, tc.msg) {
				t.Errorf("error %q, want prefix %q and to contain %q", msg, wantPrefix, tc.msg)
			}
		})
	}
	// Every bad fixture must be in the table, so none is silently unchecked.
	files, _ := filepath.Glob("testdata/bad/*.csv")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("fixture %s has no case in TestLoadCoverageBad", f)
		}
	}
}

// errReader fails after its data, like a network file system dropping out.
type errReader struct{ data *bytes.Reader }

func (r errReader) Read(p []byte) (int, error) {
	if r.data.Len() == 0 {
		return 0, errors.New("disk on fire")
	}
	return r.data.Read(p)
}

func TestLoadCoverageReadError(t *testing.T) {
	_, err := LoadCoverage(errReader{bytes.NewReader([]byte("cidr,country,region,asn\n10.0.0.0/8,US,us-east,1\n"))})
	if err == nil || !strings.Contains(err.Error(), "read after line 2: disk on fire") {
		t.Fatalf("err = %v, want read error after line 2", err)
	}
}

// naiveLookup is the specification: scan every entry, keep the longest match.
func naiveLookup(entries []Location, addr netip.Addr) (Location, bool) {
	addr = addr.Unmap()
	best, ok := Location{}, false
	for _, e := range entries {
		if e.Prefix.Contains(addr) && (!ok || e.Prefix.Bits() > best.Prefix.Bits()) {
			best, ok = e, true
		}
	}
	return best, ok
}

// randomNested builds a coverage file of n random prefixes that nest heavily:
// most are carved out of an earlier prefix, so the flattening meets deep
// stacks, shared starts and shared ends.
func randomNested(r *rand.Rand, n int, v6 bool) string {
	var b strings.Builder
	b.WriteString("cidr,country,region,asn\n")
	seen := map[netip.Prefix]bool{}
	var ps []netip.Prefix
	bits := 32
	if v6 {
		bits = 128
	}
	for len(ps) < n {
		var p netip.Prefix
		if len(ps) > 0 && r.IntN(4) != 0 {
			parent := ps[r.IntN(len(ps))]
			if parent.Bits() == bits {
				continue
			}
			l := parent.Bits() + 1 + r.IntN(min(8, bits-parent.Bits()))
			p = netip.PrefixFrom(Location{Prefix: parent}.RandomAddr(r), l).Masked()
		} else {
			var a netip.Addr
			if v6 {
				a = Location{Prefix: netip.MustParsePrefix("::/0")}.RandomAddr(r)
			} else {
				a = Location{Prefix: netip.MustParsePrefix("0.0.0.0/0")}.RandomAddr(r)
			}
			p = netip.PrefixFrom(a, r.IntN(bits/2+1)).Masked()
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		ps = append(ps, p)
		fmt.Fprintf(&b, "%s,ZZ,r%d,%d\n", p, len(ps), len(ps))
	}
	return b.String()
}

// probes returns addresses at and around every entry's edges, where a
// flattening bug would show, plus random ones.
func probes(r *rand.Rand, entries []Location) []netip.Addr {
	var out []netip.Addr
	for _, e := range entries {
		first := e.Prefix.Addr()
		last := lastAddr(e.Prefix)
		out = append(out, first, last, first.Prev(), last.Next(), e.RandomAddr(r))
	}
	return slices.DeleteFunc(out, func(a netip.Addr) bool { return !a.IsValid() })
}

func lastAddr(p netip.Prefix) netip.Addr {
	_, last := prefixRange(p)
	if p.Addr().Is4() {
		return netip.AddrFrom4([4]byte{byte(last.lo >> 24), byte(last.lo >> 16), byte(last.lo >> 8), byte(last.lo)})
	}
	var b [16]byte
	for i := range 8 {
		b[i] = byte(last.hi >> (56 - 8*i))
		b[8+i] = byte(last.lo >> (56 - 8*i))
	}
	return netip.AddrFrom16(b)
}

func TestLookupMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 40 {
		v6 := round%2 == 1
		c, err := LoadCoverage(strings.NewReader(randomNested(r, 1+r.IntN(60), v6)))
		if err != nil {
			t.Fatal(err)
		}
		entries := c.Entries()
		for _, a := range probes(r, entries) {
			got, gotOK := c.Lookup(a)
			want, wantOK := naiveLookup(entries, a)
			if got != want || gotOK != wantOK {
				t.Fatalf("round %d: Lookup(%s) = %+v, %v; linear scan says %+v, %v", round, a, got, gotOK, want, wantOK)
			}
		}
	}
}

func TestLookupAllocs(t *testing.T) {
	c := loadFile(t, "testdata/good/nested.csv")
	addrs := []netip.Addr{
		netip.MustParseAddr("10.1.2.3"),
		netip.MustParseAddr("::ffff:10.1.2.3"),
		netip.MustParseAddr("2001:db8:1::5"),
		netip.MustParseAddr("203.0.113.1"),
	}
	for _, a := range addrs {
		if n := testing.AllocsPerRun(100, func() { c.Lookup(a) }); n != 0 {
			t.Errorf("Lookup(%s) allocates %v times, want 0", a, n)
		}
	}
}

func TestRandomAddr(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []string{"0.0.0.0/0", "100.64.0.0/16", "192.0.2.0/24", "192.0.2.7/32", "::/0", "2001:db8:5::/48", "2001:db8::/63", "2001:db8::/65", "::1/128"} {
		p := netip.MustParsePrefix(s)
		l := Location{Prefix: p}
		distinct := map[netip.Addr]bool{}
		for range 200 {
			a := l.RandomAddr(r)
			if !p.Contains(a) {
				t.Fatalf("RandomAddr() = %s, outside %s", a, p)
			}
			distinct[a] = true
		}
		// A uniform draw of 200 from N addresses yields N(1-(1-1/N)^200)
		// distinct ones on average; a stuck bit would halve that.
		n := math.Exp2(float64(min(p.Addr().BitLen()-p.Bits(), 60)))
		if want := 0.8 * n * -math.Expm1(200*math.Log1p(-1/n)); float64(len(distinct)) < want {
			t.Errorf("%s: %d distinct addresses in 200 draws, want at least %.0f", s, len(distinct), want)
		}
	}
	// A /48 leaves 16 host bits in the high half: they must vary too.
	l := Location{Prefix: netip.MustParsePrefix("2001:db8:5::/48")}
	varied := false
	for range 50 {
		if b := l.RandomAddr(r).As16(); b[6] != 0 || b[7] != 0 {
			varied = true
		}
	}
	if !varied {
		t.Error("RandomAddr in a /48 never set bits 48-63")
	}
	if a := (Location{}).RandomAddr(r); a.IsValid() {
		t.Errorf("RandomAddr of zero Location = %s, want invalid", a)
	}
}

func FuzzLoadCoverage(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("cidr,country,region,asn\n0.0.0.0/0,zz,a,\n::/0,ZZ,b,AS1\n"))
	fields := map[string]bool{"header": true, "columns": true, "cidr": true, "country": true, "region": true, "asn": true}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := LoadCoverage(bytes.NewReader(data))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || !fields[pe.Field] {
				t.Fatalf("error %v does not name a line and a known field", err)
			}
			return
		}
		entries := c.Entries()
		r := rand.New(rand.NewPCG(uint64(len(data)), 0))
		for _, a := range probes(r, entries) {
			got, gotOK := c.Lookup(a)
			want, wantOK := naiveLookup(entries, a)
			if got != want || gotOK != wantOK {
				t.Fatalf("Lookup(%s) = %+v, %v; linear scan says %+v, %v", a, got, gotOK, want, wantOK)
			}
		}
	})
}

// syntheticCoverage is a realistic large table: n prefixes of mixed lengths
// (/12 to /24 for IPv4, /29 to /64 for IPv6), about a quarter nested inside
// another, as in a file that refines a few ISPs per city.
func syntheticCoverage(b *testing.B, n int, v6 bool) (*Coverage, []netip.Addr) {
	b.Helper()
	r := rand.New(rand.NewPCG(5, 6))
	var sb strings.Builder
	sb.WriteString("cidr,country,region,asn\n")
	seen := map[netip.Prefix]bool{}
	var ps []netip.Prefix
	root, lo, hi := netip.MustParsePrefix("0.0.0.0/0"), 12, 24
	if v6 {
		root, lo, hi = netip.MustParsePrefix("2000::/3"), 29, 64
	}
	for len(ps) < n {
		var p netip.Prefix
		if len(ps) > 0 && r.IntN(4) == 0 {
			parent := ps[r.IntN(len(ps))]
			if parent.Bits() >= hi {
				continue
			}
			p = netip.PrefixFrom(Location{Prefix: parent}.RandomAddr(r), parent.Bits()+1+r.IntN(hi-parent.Bits())).Masked()
		} else {
			p = netip.PrefixFrom(Location{Prefix: root}.RandomAddr(r), lo+r.IntN(hi-lo+1)).Masked()
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		ps = append(ps, p)
		fmt.Fprintf(&sb, "%s,US,us-east,%d\n", p, 64512+len(ps)%1000)
	}
	c, err := LoadCoverage(strings.NewReader(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	// Three of four probes hit an entry, the rest are random (mostly misses).
	addrs := make([]netip.Addr, 4096)
	for i := range addrs {
		if i%4 == 3 {
			addrs[i] = Location{Prefix: root}.RandomAddr(r)
		} else {
			addrs[i] = Location{Prefix: ps[r.IntN(len(ps))]}.RandomAddr(r)
		}
	}
	return c, addrs
}

func BenchmarkCoverageLookup(b *testing.B) {
	demo, err := LoadDemo()
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	var demoAddrs []netip.Addr
	for range 4096 {
		e := demo.entries[r.IntN(len(demo.entries))]
		demoAddrs = append(demoAddrs, e.RandomAddr(r))
	}
	mapped := make([]netip.Addr, 0, len(demoAddrs))
	for _, a := range demoAddrs {
		if a.Is4() {
			mapped = append(mapped, netip.AddrFrom16(a.As16()))
		}
	}
	v4s, v4sAddrs := syntheticCoverage(b, 1000, false)
	v6s, v6sAddrs := syntheticCoverage(b, 1000, true)
	v4, v4Addrs := syntheticCoverage(b, 10000, false)
	v6, v6Addrs := syntheticCoverage(b, 10000, true)
	for _, bc := range []struct {
		name  string
		c     *Coverage
		addrs []netip.Addr
	}{
		{"demo", demo, demoAddrs},
		{"demo-v4mapped", demo, mapped},
		{"1k-v4", v4s, v4sAddrs},
		{"1k-v6", v6s, v6sAddrs},
		{"10k-v4", v4, v4Addrs},
		{"10k-v6", v6, v6Addrs},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			hits, i := 0, 0
			for b.Loop() {
				if _, ok := bc.c.Lookup(bc.addrs[i%len(bc.addrs)]); ok {
					hits++
				}
				i++
			}
			if hits == 0 {
				b.Fatal("no lookup hit")
			}
		})
	}
}

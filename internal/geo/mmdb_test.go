package geo

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeMMDB writes a database of the given IP version to dir/name.
func writeMMDB(t testing.TB, dir, name string, ipVersion int, records map[string]mmdbtype.Map) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: "cdnpilot-test-" + name,
		IPVersion:    ipVersion,
		// Tests use documentation ranges, which the writer refuses by default.
		IncludeReservedNetworks: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range records {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatalf("insert %s: %v", cidr, err)
		}
	}
	path := filepath.Join(dir, name+".mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func country(cc string) mmdbtype.Map {
	return mmdbtype.Map{
		"iso_code":   mmdbtype.String(cc),
		"geoname_id": mmdbtype.Uint32(1),
		"names":      mmdbtype.Map{"en": mmdbtype.String("Somewhere " + cc), "de": mmdbtype.String("Irgendwo")},
	}
}

// testDBs writes a City-style IPv6 database and an IPv4-only ASN database,
// shaped like GeoLite2-City and GeoLite2-ASN.
func testDBs(t testing.TB) (countryPath, asnPath string) {
	t.Helper()
	dir := t.TempDir()
	countryPath = writeMMDB(t, dir, "city", 6, map[string]mmdbtype.Map{
		"192.0.2.0/24": {
			"country":            country("GB"),
			"registered_country": country("US"),
			"city":               mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("London")}},
			"location":           mmdbtype.Map{"latitude": mmdbtype.Float64(51.5), "longitude": mmdbtype.Float64(-0.1)},
		},
		// Only the registered country, as GeoLite2 has for some networks.
		"198.51.100.0/24": {"registered_country": country("de")},
		// A database built for cdnpilot names the region itself.
		"203.0.113.0/24": {"country": country("JP"), "cdnpilot_region": mmdbtype.String("ap-custom")},
		"100.64.0.0/10":  {"country": country("XX")},
		"2001:db8::/32":  {"country": country("US")},
		// No country at all: only a continent.
		"198.18.0.0/15": {"continent": mmdbtype.Map{"code": mmdbtype.String("EU")}},
	})
	asnPath = writeMMDB(t, dir, "asn", 4, map[string]mmdbtype.Map{
		"192.0.2.0/25":    {"autonomous_system_number": mmdbtype.Uint32(64500), "autonomous_system_organization": mmdbtype.String("Example Net")},
		"198.51.100.0/24": {"autonomous_system_number": mmdbtype.Uint32(64501)},
		"100.64.0.0/16":   {"autonomous_system_number": mmdbtype.Uint32(64502)},
		"198.18.0.0/16":   {"autonomous_system_number": mmdbtype.Uint32(64503)},
	})
	return countryPath, asnPath
}

var testRegions = map[string]string{"GB": "eu-west", "de": "eu-central", "JP": "ap-northeast", "US": "us-east"}

func openMMDB(t testing.TB, countryPath, asnPath string) *MMDB {
	t.Helper()
	m, err := OpenMMDB(countryPath, asnPath, testRegions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

func TestMMDBLookup(t *testing.T) {
	countryPath, asnPath := testDBs(t)

	t.Run("country+asn", func(t *testing.T) {
		checkLookups(t, openMMDB(t, countryPath, asnPath), []lookupCase{
			// The ASN network is the more specific one: it is the ECS scope.
			{addr: "192.0.2.1", ok: true, country: "GB", region: "eu-west", asn: 64500, prefix: "192.0.2.0/25"},
			{addr: "::ffff:192.0.2.1", ok: true, country: "GB", region: "eu-west", asn: 64500, prefix: "192.0.2.0/25"},
			{addr: "192.0.2.200", ok: true, country: "GB", region: "eu-west", prefix: "192.0.2.0/24"},
			{addr: "198.51.100.7", ok: true, country: "DE", region: "eu-central", asn: 64501, prefix: "198.51.100.0/24"},
			{addr: "203.0.113.9", ok: true, country: "JP", region: "ap-custom", prefix: "203.0.113.0/24"},
			// A country missing from the region map is a hit without a region.
			{addr: "100.64.1.1", ok: true, country: "XX", asn: 64502, prefix: "100.64.0.0/16"},
			{addr: "100.65.0.1", ok: true, country: "XX", prefix: "100.64.0.0/10"},
			// The IPv4-only ASN database is skipped for IPv6.
			{addr: "2001:db8::1", ok: true, country: "US", region: "us-east", prefix: "2001:db8::/32"},
			// Country record without a country, but the ASN database knows it.
			{addr: "198.18.0.1", ok: true, asn: 64503, prefix: "198.18.0.0/16"},
			{addr: "198.19.0.1"},
			{addr: "10.0.0.1"},
			{addr: "2001:db9::1"},
			{addr: ""},
		})
	})
	t.Run("country only", func(t *testing.T) {
		checkLookups(t, openMMDB(t, countryPath, ""), []lookupCase{
			{addr: "192.0.2.1", ok: true, country: "GB", region: "eu-west", prefix: "192.0.2.0/24"},
			{addr: "198.18.0.1"},
		})
	})
	t.Run("asn only", func(t *testing.T) {
		checkLookups(t, openMMDB(t, "", asnPath), []lookupCase{
			{addr: "192.0.2.1", ok: true, asn: 64500, prefix: "192.0.2.0/25"},
			{addr: "2001:db8::1"},
		})
	})
	t.Run("one database with both", func(t *testing.T) {
		both := writeMMDB(t, t.TempDir(), "both", 6, map[string]mmdbtype.Map{
			"2001:db8:1::/48": {"country": country("JP"), "autonomous_system_number": mmdbtype.Uint32(64510)},
		})
		checkLookups(t, openMMDB(t, both, ""), []lookupCase{
			{addr: "2001:db8:1::1", ok: true, country: "JP", region: "ap-northeast", asn: 64510, prefix: "2001:db8:1::/48"},
		})
	})
}

func TestOpenMMDBErrors(t *testing.T) {
	countryPath, _ := testDBs(t)
	garbage := filepath.Join(t.TempDir(), "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.mmdb")
	tests := []struct {
		name           string
		country, asn   string
		regions        map[string]string
		wantErrContain string
	}{
		{"no paths", "", "", nil, "no database path"},
		{"missing file", missing, "", nil, "open mmdb " + missing},
		{"not an mmdb", countryPath, garbage, nil, "open mmdb " + garbage},
		{"bad country key", countryPath, "", map[string]string{"GBR": "eu-west"}, `region map key: "GBR"`},
		{"bad region", countryPath, "", map[string]string{"gb": "EU West"}, `region map GB: "EU West"`},
		{"empty region", countryPath, "", map[string]string{"GB": ""}, "region map GB: empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := OpenMMDB(tc.country, tc.asn, tc.regions)
			if err == nil {
				_ = m.Close()
				t.Fatal("OpenMMDB succeeded, want error")
			}
			if !strings.Contains(err.Error(), tc.wantErrContain) {
				t.Errorf("error %q, want it to contain %q", err, tc.wantErrContain)
			}
		})
	}
}

func TestMMDBClose(t *testing.T) {
	countryPath, asnPath := testDBs(t)
	m, err := OpenMMDB(countryPath, asnPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if loc, ok := m.Lookup(netip.MustParseAddr("192.0.2.1")); ok {
		t.Errorf("Lookup after Close = %+v, want a miss", loc)
	}
}

func BenchmarkMMDBLookup(b *testing.B) {
	countryPath, asnPath := testDBs(b)
	m := openMMDB(b, countryPath, asnPath)
	r := rand.New(rand.NewPCG(11, 12))
	var addrs []netip.Addr
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "100.64.0.0/10", "2001:db8::/32"} {
		for range 256 {
			addrs = append(addrs, Location{Prefix: netip.MustParsePrefix(p)}.RandomAddr(r))
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := m.Lookup(addrs[i%len(addrs)]); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

package geo

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func TestDemo(t *testing.T) {
	c, err := LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(Demo().Entries(), c.Entries()) {
		t.Fatal("Demo() and LoadDemo() disagree")
	}
	entries := c.Entries()

	// Only reserved space, so no real network is implied.
	allowed := []netip.Prefix{
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
	}
	countries := map[string]map[string]bool{} // region -> countries
	asns := map[string]map[uint32]bool{}      // country -> ASNs
	for _, e := range entries {
		if !slices.ContainsFunc(allowed, func(a netip.Prefix) bool { return a.Bits() <= e.Prefix.Bits() && a.Contains(e.Prefix.Addr()) }) {
			t.Errorf("%s is outside the reserved ranges", e.Prefix)
		}
		if e.Region == "local" {
			if e.Country != "ZZ" || e.ASN != 0 {
				t.Errorf("%s: local entry is %s/AS%d, want ZZ/AS0", e.Prefix, e.Country, e.ASN)
			}
			continue
		}
		// RFC 5398 documentation and RFC 6996 private ASNs only.
		if e.ASN < 64496 || e.ASN > 65534 {
			t.Errorf("%s: AS%d is not a documentation or private ASN", e.Prefix, e.ASN)
		}
		if e.Prefix.Addr().Is6() && e.Prefix.Bits() != 48 {
			t.Errorf("%s: IPv6 demo prefixes are /48s", e.Prefix)
		}
		if countries[e.Region] == nil {
			countries[e.Region] = map[string]bool{}
		}
		countries[e.Region][e.Country] = true
		if asns[e.Country] == nil {
			asns[e.Country] = map[uint32]bool{}
		}
		asns[e.Country][e.ASN] = true
	}
	wantRegions := map[string][]string{
		"eu-west":      {"GB", "IE", "FR"},
		"eu-central":   {"DE", "PL"},
		"us-east":      {"US"},
		"us-west":      {"US"},
		"ap-south":     {"IN", "SG"},
		"ap-northeast": {"JP", "KR"},
		"sa-east":      {"BR"},
	}
	for region, ccs := range wantRegions {
		for _, cc := range ccs {
			if !countries[region][cc] {
				t.Errorf("region %s has no %s prefix", region, cc)
			}
		}
	}
	if len(countries) < 7 {
		t.Errorf("%d regions, want at least 7", len(countries))
	}
	multi := 0
	for _, set := range asns {
		if len(set) >= 2 {
			multi++
		}
	}
	if multi < 3 {
		t.Errorf("%d countries with several ASNs, want at least 3", multi)
	}
	// Each family is in the demo, and /16s carve up all of 100.64.0.0/10.
	v4, v6 := 0, 0
	for _, e := range entries {
		if e.Prefix.Bits() == 16 && netip.MustParsePrefix("100.64.0.0/10").Contains(e.Prefix.Addr()) {
			v4++
		}
		if e.Prefix.Bits() == 48 {
			v6++
		}
	}
	if v4 != 64 || v6 == 0 {
		t.Errorf("%d /16s in 100.64.0.0/10 (want 64) and %d /48s in 2001:db8::/32 (want some)", v4, v6)
	}

	checkLookups(t, c, []lookupCase{
		{addr: "127.0.0.1", ok: true, country: "ZZ", region: "local", prefix: "127.0.0.0/8"},
		{addr: "::1", ok: true, country: "ZZ", region: "local", prefix: "::1/128"},
		{addr: "::ffff:127.0.0.1", ok: true, country: "ZZ", region: "local", prefix: "127.0.0.0/8"},
		{addr: "100.64.1.2", ok: true, country: "GB", region: "eu-west", asn: 64496, prefix: "100.64.0.0/16"},
		{addr: "198.19.255.255", ok: true, country: "US", region: "us-east", asn: 64509, prefix: "198.18.0.0/15"},
		{addr: "2001:db8::1", ok: true, country: "GB", region: "eu-west", asn: 64496, prefix: "2001:db8::/48"},
		{addr: "100.128.0.0"},
		{addr: "10.0.0.1"},
	})

	// The player fleet draws clients with RandomAddr: each must resolve back
	// to the entry it was drawn from, or the demo's traffic lands elsewhere.
	r := rand.New(rand.NewPCG(9, 10))
	for _, e := range entries {
		for range 20 {
			a := e.RandomAddr(r)
			if got, ok := c.Lookup(a); !ok || got != e {
				t.Fatalf("address %s drawn from %s resolves to %+v, %v", a, e.Prefix, got, ok)
			}
		}
	}
}

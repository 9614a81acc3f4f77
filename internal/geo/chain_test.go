package geo

import (
	"strings"
	"testing"
)

func TestChain(t *testing.T) {
	countryPath, asnPath := testDBs(t)
	m := openMMDB(t, countryPath, asnPath)
	// The operator's file corrects the mmdb for one /25 and adds a network
	// the mmdb lacks.
	cov, err := LoadCoverage(strings.NewReader("cidr,country,region,asn\n192.0.2.128/25,IE,eu-west,64511\n10.0.0.0/8,ZZ,lab,0\n"))
	if err != nil {
		t.Fatal(err)
	}
	checkLookups(t, Chain{cov, m}, []lookupCase{
		{addr: "192.0.2.200", ok: true, country: "IE", region: "eu-west", asn: 64511, prefix: "192.0.2.128/25"},
		{addr: "192.0.2.1", ok: true, country: "GB", region: "eu-west", asn: 64500, prefix: "192.0.2.0/25"},
		{addr: "10.1.1.1", ok: true, country: "ZZ", region: "lab", prefix: "10.0.0.0/8"},
		{addr: "2001:db8::1", ok: true, country: "US", region: "us-east", prefix: "2001:db8::/32"},
		{addr: "198.19.0.1"},
	})
	// Order matters: the mmdb first hides the correction.
	checkLookups(t, Chain{m, cov}, []lookupCase{
		{addr: "192.0.2.200", ok: true, country: "GB", region: "eu-west", prefix: "192.0.2.0/24"},
	})
	checkLookups(t, Chain{}, []lookupCase{{addr: "192.0.2.1"}})
}

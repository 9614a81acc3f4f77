package dns

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/steering"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testNow is the tests' clock: snapshots are made at it, so none is stale.
var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// testCatalog covers every way a CDN is answered: a CNAME (with and
// without a port on the host), addresses, many addresses (for
// truncation), and an IP literal host.
func testCatalog() steering.Catalog {
	many := make([]netip.Addr, 60)
	for i := range many {
		many[i] = netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff::%x", i+1))
	}
	return steering.Catalog{
		CDNs: []steering.CDN{
			{Name: "cdn-a", Host: "cdn-a.example.net"},
			{Name: "cdn-b", Host: "cdn-b.example.net:8443"},
			{Name: "anycast", Host: "edge.example.com", Addrs: []netip.Addr{
				netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8::10"),
			}},
			{Name: "many", Host: "many.example.com", Addrs: many},
			{Name: "literal", Host: "198.51.100.7:8080"},
		},
		Services: []steering.Service{
			{Name: "vod", CDNs: []string{"cdn-a", "cdn-b"}},
			{Name: "live", CDNs: []string{"cdn-b", "cdn-a"}},
			{Name: "anycast", CDNs: []string{"anycast", "cdn-a"}},
			{Name: "big", CDNs: []string{"many"}},
			{Name: "lit", CDNs: []string{"literal"}},
		},
	}
}

func choice(cdn, host string, weight float64, h steering.Health) steering.Choice {
	return steering.Choice{CDN: cdn, Host: host, Weight: weight, Health: h, Score: 80, FastScore: 80}
}

// testTable answers vod from a snapshot: cdn-a globally, cdn-b in
// eu-west, and cdn-a in ap-northeast where cdn-b is down (an incident).
// Every other service has no snapshot: the static order answers, stale.
func testTable(t testing.TB) *steering.Table {
	t.Helper()
	tab, err := steering.NewTable(testCatalog(), steering.Stale{Freeze: 30 * time.Second, Static: 5 * time.Minute}, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	a, b := "cdn-a.example.net", "cdn-b.example.net:8443"
	snap := &steering.Snapshot{Service: "vod", Version: 7, At: testNow, Rankings: []*steering.Ranking{
		{Scope: steering.Scope{Service: "vod"}, Rule: steering.RuleMeasured, Choices: []steering.Choice{
			choice("cdn-a", a, 1, steering.HealthUp), choice("cdn-b", b, 0, steering.HealthUp)}},
		{Scope: steering.Scope{Service: "vod", Level: steering.LevelRegion, Region: "eu-west"}, Rule: steering.RuleMeasured, Choices: []steering.Choice{
			choice("cdn-b", b, 1, steering.HealthUp), choice("cdn-a", a, 0, steering.HealthUp)}},
		{Scope: steering.Scope{Service: "vod", Level: steering.LevelRegion, Region: "ap-northeast"}, Rule: steering.RuleMeasured, Fired: steering.FiredFailover, Choices: []steering.Choice{
			choice("cdn-a", a, 1, steering.HealthUp), choice("cdn-b", b, 0, steering.HealthDown)}},
	}}
	if err := tab.Store(snap); err != nil {
		t.Fatal(err)
	}
	return tab
}

// testOptions is the demo zone over the test catalog, without jitter so
// answers are stable.
func testOptions(t testing.TB, d Decider) Options {
	t.Helper()
	return Options{
		Zones: []string{"demo.cdnpilot.test."}, TTL: 30 * time.Second, IncidentTTL: 10 * time.Second, ApexTTL: time.Hour,
		SOA: SOA{
			MName: "ns1.demo.cdnpilot.test.", RName: "hostmaster.demo.cdnpilot.test.", Serial: 2026112501,
			Refresh: time.Hour, Retry: 10 * time.Minute, Expire: 7 * 24 * time.Hour, Minimum: time.Minute,
		},
		NS: []NameServer{
			{Name: "ns1.demo.cdnpilot.test.", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}},
			{Name: "ns2.example.net."},
		},
		Catalog: testCatalog(), Decider: d, Geo: geo.Demo(),
		Registerer: prometheus.NewRegistry(), Now: func() time.Time { return testNow },
	}
}

func testServer(t testing.TB, mutate ...func(*Options)) *Server {
	t.Helper()
	o := testOptions(t, testTable(t))
	for _, f := range mutate {
		f(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

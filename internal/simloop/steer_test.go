package simloop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/dns"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/internal/sim"
	"github.com/cdnpilot/cdnpilot/steering"
	"github.com/cdnpilot/cdnpilot/steering/redirect"
)

var testNow = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

const testZone = "demo.cdnpilot.test."

// testCatalog has a CDN for each way an actuator names one: cdn-a by a
// base URL with a path (redirector) and a CNAME (DNS), cdn-b by its host,
// cdn-c by IPv4 addresses only (DNS answers an IPv6 viewer from A).
func testCatalog() steering.Catalog {
	return steering.Catalog{
		CDNs: []steering.CDN{
			{Name: "cdn-a", Host: "cdn-a.example.net", BaseURL: "https://a.example.net/media"},
			{Name: "cdn-b", Host: "cdn-b.example.net"},
			{Name: "cdn-c", Host: "edge.example.com", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.30"), netip.MustParseAddr("192.0.2.31")}},
		},
		Services: []steering.Service{
			{Name: "vod", CDNs: []string{"cdn-a", "cdn-b", "cdn-c"}},
			{Name: "live", CDNs: []string{"cdn-b", "cdn-a", "cdn-c"}},
		},
	}
}

// testTable holds one vod snapshot in which a known CDN takes every new
// view: cdn-b in eu-west, cdn-c in us-east, cdn-a anywhere else (so a
// view placed at the loopback address shows up as cdn-a); but eu-central
// splits its views between cdn-a and cdn-b, by view id.
func testTable(t testing.TB) *steering.Table {
	t.Helper()
	tab, err := steering.NewTable(testCatalog(), steering.Stale{Freeze: 30 * time.Second, Static: 5 * time.Minute}, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	ranking := func(region string, weights ...float64) *steering.Ranking {
		r := &steering.Ranking{Scope: steering.Scope{Service: "vod"}, Rule: steering.RuleMeasured}
		if region != "" {
			r.Scope.Level, r.Scope.Region = steering.LevelRegion, region
		}
		for i, c := range []string{"cdn-a", "cdn-b", "cdn-c"} {
			r.Choices = append(r.Choices, steering.Choice{CDN: c, Weight: weights[i], Health: steering.HealthUp, Score: 80, FastScore: 80})
		}
		return r
	}
	snap := &steering.Snapshot{Service: "vod", Version: 3, At: testNow, Rankings: []*steering.Ranking{
		ranking("", 1, 0, 0),
		ranking("eu-west", 0, 1, 0),
		ranking("us-east", 0, 0, 1),
		ranking("eu-central", 0.5, 0.5, 0),
	}}
	if err := tab.Store(snap); err != nil {
		t.Fatal(err)
	}
	return tab
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// servers are the real steering DNS and the real redirector and content
// steering server over one table, on free loopback ports, until the test
// ends.
type servers struct {
	dnsAddr, httpBase string
}

func startServers(t *testing.T, tab *steering.Table, dnsOpts func(*dns.Options), httpOpts func(*redirect.Options)) servers {
	t.Helper()
	do := dns.Options{
		Zones: []string{testZone}, TTL: 20 * time.Second, IncidentTTL: 10 * time.Second, ApexTTL: time.Hour,
		SOA: dns.SOA{MName: "ns1." + testZone, RName: "hostmaster." + testZone, Serial: 1,
			Refresh: time.Hour, Retry: time.Minute, Expire: time.Hour, Minimum: time.Minute},
		NS:      []dns.NameServer{{Name: "ns1." + testZone, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}},
		Catalog: testCatalog(), Decider: tab, Geo: geo.Demo(),
		Registerer: prometheus.NewRegistry(), Now: func() time.Time { return testNow },
	}
	if dnsOpts != nil {
		dnsOpts(&do)
	}
	ds, err := dns.New(do)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- ds.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dns Run: %v", err)
		}
	})

	ro := redirect.Options{
		Catalog: testCatalog(), Decider: tab, Geo: geo.Demo(), TrustedProxies: loopback,
		Registerer: prometheus.NewRegistry(), Now: func() time.Time { return testNow },
	}
	if httpOpts != nil {
		httpOpts(&ro)
	}
	rs, err := redirect.New(ro)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	rs.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return servers{dnsAddr: ds.Addr(), httpBase: hs.URL}
}

func newTestLive(t *testing.T, tab *steering.Table, s servers, path Path, log *slog.Logger) *Live {
	t.Helper()
	l, err := NewLiveWith(tab, LiveOptions{
		Ingest: s.httpBase, Path: path, DNSAddr: s.dnsAddr, Zone: testZone, Catalog: testCatalog(), Logger: log,
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// viewer is a simulated viewer: the query the simulator would make for
// it (placed by the same coverage the servers use) and its address.
func viewer(t testing.TB, id, addr string) (steering.Query, netip.Addr) {
	t.Helper()
	a := netip.MustParseAddr(addr)
	loc, ok := geo.Demo().Lookup(a)
	if !ok {
		t.Fatalf("%s is not in the demo coverage", addr)
	}
	return steering.Query{Service: "vod", ViewID: id, Location: steering.Location{Region: loc.Region, Country: loc.Country, ASN: loc.ASN}}, a
}

// viewers are two regions with their own winner, over IPv4 and IPv6,
// and one region the global ranking answers.
var viewers = []struct{ addr, want string }{
	{"100.64.1.2", "cdn-b"},    // eu-west
	{"2001:db8:1::5", "cdn-b"}, // eu-west
	{"100.92.3.4", "cdn-c"},    // us-east
	{"2001:db8:1c::9", "cdn-c"},
	{"100.120.0.1", "cdn-a"}, // ap-northeast: the global ranking
}

// TestPaths steers viewers of two regions through each path against the
// real servers: each gets the CDN the table picks for it, and nothing
// falls back.
func TestPaths(t *testing.T) {
	tab := testTable(t)
	srv := startServers(t, tab, nil, nil)
	for _, path := range []Path{PathEngine, PathDNS, PathHTTP, PathHLS, PathDASH} {
		t.Run(string(path), func(t *testing.T) {
			l := newTestLive(t, tab, srv, path, nil)
			for i, v := range viewers {
				q, addr := viewer(t, fmt.Sprintf("view-%d", i), v.addr)
				d, err := tab.Decide(q)
				if err != nil {
					t.Fatal(err)
				}
				got, err := l.Steer(t.Context(), q, addr)
				if err != nil {
					t.Fatalf("%s: %v", v.addr, err)
				}
				if got != v.want || got != d.CDN {
					t.Errorf("%s: %s, want %s (the table: %s)", v.addr, got, v.want, d.CDN)
				}
			}

			// Where the table splits views, each gets its sticky pick:
			// the view's own over HTTP (named in the request), its /24's
			// over DNS (the ECS prefix is all the server knows of it).
			seen := map[string]bool{}
			const split = 16
			for i := range split {
				q, addr := viewer(t, fmt.Sprintf("split-%d", i), fmt.Sprintf("100.80.%d.7", i))
				if path == PathDNS {
					q.ViewID = fmt.Sprintf("100.80.%d.0/24", i)
				}
				d, err := tab.Decide(q)
				if err != nil {
					t.Fatal(err)
				}
				got, err := l.Steer(t.Context(), q, addr)
				if err != nil || got != d.CDN {
					t.Errorf("%s: %q, %v; want the table's %s", addr, got, err, d.CDN)
				}
				seen[got] = true
			}
			if !seen["cdn-a"] || !seen["cdn-b"] {
				t.Errorf("split views went to %v only", seen)
			}
			want := map[Path]PathStats{path: {Requests: int64(len(viewers) + split)}}
			if got := l.Stats(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("stats %v, want %v", got, want)
			}
		})
	}
}

// TestPathsServerSide covers what the servers do to the requests: a
// slipped DNS reply is asked again over TCP, and a redirector that does
// not trust the loopback proxy places every view at loopback (the global
// answer), which is why the demo trusts loopback.
func TestPathsServerSide(t *testing.T) {
	tab := testTable(t)
	cases := []struct {
		name     string
		path     Path
		dnsOpts  func(*dns.Options)
		httpOpts func(*redirect.Options)
		want     string // for every eu-west viewer
	}{
		{"dns rate limit slips: TCP", PathDNS, func(o *dns.Options) { o.RateLimit = dns.RateLimit{PerSecond: 1, Slip: 1} }, nil, "cdn-b"},
		{"redirector trusts loopback", PathHTTP, nil, nil, "cdn-b"},
		{"redirector trusts nobody", PathHTTP, nil, func(o *redirect.Options) { o.TrustedProxies = nil }, "cdn-a"},
		{"content steering trusts nobody", PathHLS, nil, func(o *redirect.Options) { o.TrustedProxies = nil }, "cdn-a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newTestLive(t, tab, startServers(t, tab, c.dnsOpts, c.httpOpts), c.path, nil)
			for i := range 4 {
				q, addr := viewer(t, fmt.Sprintf("view-%d", i), fmt.Sprintf("100.64.%d.2", i))
				if got, err := l.Steer(t.Context(), q, addr); err != nil || got != c.want {
					t.Fatalf("view %d: %q, %v; want %s", i, got, err, c.want)
				}
			}
			if s := l.Stats()[c.path]; s.Requests != 4 || s.Failures != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestMixed spreads views over the four actuators by view id, the same
// way every time.
func TestMixed(t *testing.T) {
	tab := testTable(t)
	srv := startServers(t, tab, nil, nil)
	l := newTestLive(t, tab, srv, PathMixed, nil)
	const n = 40
	for i := range n {
		q, addr := viewer(t, fmt.Sprintf("mixed-%d", i), viewers[i%len(viewers)].addr)
		got, err := l.Steer(t.Context(), q, addr)
		if err != nil || got != viewers[i%len(viewers)].want {
			t.Fatalf("view %d: %q, %v", i, got, err)
		}
		if p := l.s.pick(q.ViewID); p != l.s.pick(q.ViewID) {
			t.Fatalf("view %s picks %s, then %s", q.ViewID, p, l.s.pick(q.ViewID))
		}
	}
	stats := l.Stats()
	var total int64
	for _, p := range actuators {
		s := stats[p]
		if s.Requests == 0 || s.Failures != 0 {
			t.Errorf("%s: %+v", p, s)
		}
		total += s.Requests
	}
	if total != n || len(stats) != len(actuators) {
		t.Errorf("stats %v, want %d requests over %v", stats, n, actuators)
	}
}

// TestDeadServers: with the DNS and HTTP servers gone, every view falls
// back to the engine's answer and is counted; the failures are logged
// once, not once per view; and a whole simulated run goes on.
func TestDeadServers(t *testing.T) {
	tab := testTable(t)
	hs := httptest.NewServer(http.NotFoundHandler())
	hs.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadDNS := pc.LocalAddr().String()
	_ = pc.Close()

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	l := newTestLive(t, tab, servers{dnsAddr: deadDNS, httpBase: hs.URL}, PathMixed, log)
	const n = 20
	for i := range n {
		v := viewers[i%len(viewers)]
		q, addr := viewer(t, fmt.Sprintf("dead-%d", i), v.addr)
		if got, err := l.Steer(t.Context(), q, addr); err != nil || got != v.want {
			t.Fatalf("view %d: %q, %v; want the engine's %s", i, got, err, v.want)
		}
	}
	var total int64
	for p, s := range l.Stats() {
		if s.Failures != s.Requests {
			t.Errorf("%s: %+v, want every request failed", p, s)
		}
		total += s.Failures
	}
	if total != n {
		t.Errorf("%d failures, want %d", total, n)
	}
	if got := strings.Count(logs.String(), "steering request failed"); got != 1 {
		t.Errorf("%d failure logs, want 1:\n%s", got, logs.String())
	}

	// A run of the simulator through the dead servers (and a dead
	// ingest): every view steered, none by the players' default.
	sc, err := sim.Load("steady")
	if err != nil {
		t.Fatal(err)
	}
	sc.Duration = sim.Duration(30 * time.Second)
	sc = sc.Scaled(0.5) // some 9 new views: the test needs some
	cat := sc.Catalog()
	stab, err := steering.NewTable(cat, steering.DefaultPolicy().Stale, nil)
	if err != nil {
		t.Fatal(err)
	}
	run, err := NewLiveWith(stab, LiveOptions{Ingest: hs.URL, Path: PathMixed, DNSAddr: deadDNS, Zone: testZone, Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	res, err := sim.Run(t.Context(), sc, run, sim.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	total = 0
	for _, s := range run.Stats() {
		total += s.Failures
	}
	if res.Summary.SteerErrors != 0 || res.Summary.Views == 0 || total < int64(res.Summary.Views) {
		t.Errorf("views %d, steer errors %d, fallbacks %d", res.Summary.Views, res.Summary.SteerErrors, total)
	}
}

func TestParsePath(t *testing.T) {
	for _, s := range []string{"engine", "dns", "http", "hls", "dash", "mixed"} {
		if p, err := ParsePath(s); err != nil || string(p) != s {
			t.Errorf("ParsePath(%q) = %q, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "DNS", "steer", "http "} {
		if _, err := ParsePath(s); err == nil || !strings.Contains(err.Error(), "engine, dns, http, hls, dash, mixed") {
			t.Errorf("ParsePath(%q): %v", s, err)
		}
	}
}

func TestLiveOptions(t *testing.T) {
	tab := testTable(t)
	ok := LiveOptions{Ingest: "http://127.0.0.1:1", DNSAddr: "127.0.0.1:53", Zone: testZone, Catalog: testCatalog()}
	cases := []struct {
		name    string
		mutate  func(*LiveOptions)
		wantErr string
	}{
		{"engine needs nothing", func(o *LiveOptions) { *o = LiveOptions{} }, ""},
		{"mixed", func(o *LiveOptions) { o.Path = PathMixed }, ""},
		{"mixed without dns", func(o *LiveOptions) { o.Path, o.Mix, o.DNSAddr = PathMixed, []Path{PathHTTP, PathHLS, PathDASH}, "" }, ""},
		{"unknown path", func(o *LiveOptions) { o.Path = "doh" }, `"doh" is not one of`},
		{"mix of engine", func(o *LiveOptions) { o.Path, o.Mix = PathMixed, []Path{PathEngine} }, `"engine" is not one of dns, http, hls, dash`},
		{"empty mix", func(o *LiveOptions) { o.Path, o.Mix = PathMixed, []Path{} }, "no paths to mix"},
		{"mix without mixed", func(o *LiveOptions) { o.Path, o.Mix = PathDNS, []Path{PathDNS} }, "only for the mixed path"},
		{"dns without address", func(o *LiveOptions) { o.Path, o.DNSAddr = PathDNS, "" }, "is not host:port"},
		{"dns without zone", func(o *LiveOptions) { o.Path, o.Zone = PathDNS, "" }, "no zone"},
		{"dns without catalog", func(o *LiveOptions) { o.Path, o.Catalog = PathDNS, steering.Catalog{} }, "catalog"},
		{"http base not a URL", func(o *LiveOptions) { o.Path, o.Ingest = PathHLS, "127.0.0.1:8080" }, "not an absolute http(s) URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			c.mutate(&o)
			l, err := NewLiveWith(tab, o)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				l.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
		})
	}
}

// TestLead: a decision leads with its choice of most weight, the first of
// those tied, whatever CDN it picked; without a ranking, with its pick.
func TestLead(t *testing.T) {
	choices := func(w ...float64) *steering.Ranking {
		r := &steering.Ranking{}
		for i, x := range w {
			r.Choices = append(r.Choices, steering.Choice{CDN: fmt.Sprintf("cdn-%c", 'a'+i), Weight: x})
		}
		return r
	}
	for _, c := range []struct {
		name string
		d    steering.Decision
		want string
	}{
		{"explored", steering.Decision{CDN: "cdn-c", Ranking: choices(0.96, 0.02, 0.02)}, "cdn-a"},
		{"shift under way", steering.Decision{CDN: "cdn-a", Ranking: choices(0.38, 0.6, 0.02)}, "cdn-b"},
		{"tied", steering.Decision{CDN: "cdn-b", Ranking: choices(0.49, 0.49, 0.02)}, "cdn-a"},
		{"no ranking", steering.Decision{CDN: "cdn-b"}, "cdn-b"},
	} {
		if got := lead(c.d); got != c.want {
			t.Errorf("%s: lead %s, want %s", c.name, got, c.want)
		}
	}
}

// TestDNSOwnQuery: with nothing listening on the DNS server's port, a UDP
// client that the kernel gives that same port sends the query to itself,
// and reads it back with the query's ID. That is no answer (QR clear,
// NOERROR, nothing in it), and must not pass for one.
func TestDNSOwnQuery(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	_ = pc.Close()
	d, err := newDNSAsker(addr.String(), testZone, testCatalog())
	if err != nil {
		t.Fatal(err)
	}
	d.udp.Dialer = &net.Dialer{LocalAddr: addr} // what the kernel may pick at random
	_, err = d.ask(t.Context(), "vod", netip.MustParseAddr("192.0.2.1"))
	if !errors.Is(err, errNotResponse) {
		t.Fatalf("asking a port nothing listens on, from that port: %v, want %v", err, errNotResponse)
	}
}

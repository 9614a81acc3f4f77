package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/cdnpilot/cdnpilot/dns/dnstest"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/steering"
)

// ask sends one query through s's chain and returns the reply.
func ask(t testing.TB, s *Server, m *mdns.Msg, from string) *mdns.Msg {
	t.Helper()
	w := dnstest.NewRecorder(from, "udp")
	s.ServeDNS(w, m)
	if w.Err != nil {
		t.Fatal(w.Err)
	}
	if w.Msg == nil {
		t.Fatalf("no reply to %s", m.Question[0].String())
	}
	return w.Msg
}

type deciderFunc func(steering.Query) (steering.Decision, error)

func (f deciderFunc) Decide(q steering.Query) (steering.Decision, error) { return f(q) }

// TestStaticFallback: whatever the Decider does wrong, a steered name gets
// the first CDN of its static order with the incident TTL, never SERVFAIL
// or an empty answer.
func TestStaticFallback(t *testing.T) {
	for name, d := range map[string]deciderFunc{
		"error":       func(steering.Query) (steering.Decision, error) { return steering.Decision{}, errors.New("no snapshot") },
		"panic":       func(steering.Query) (steering.Decision, error) { panic("scorer gone") },
		"unknown cdn": func(steering.Query) (steering.Decision, error) { return steering.Decision{CDN: "gone"}, nil },
	} {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			s := testServer(t, func(o *Options) { o.Decider = d; o.Registerer = reg })
			for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
				m := ask(t, s, dnstest.Query("live.demo.cdnpilot.test.", qt), "127.0.0.1:53000")
				if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 {
					t.Fatalf("reply:\n%s", dnstest.Format(m))
				}
				c, ok := m.Answer[0].(*mdns.CNAME)
				if !ok || c.Target != "cdn-b.example.net." || c.Hdr.Ttl != 10 {
					t.Fatalf("answer %v, want the static order's first CDN with the incident TTL", m.Answer[0])
				}
			}
			if got := testutil.ToFloat64(s.m.fallbacks); got != 2 {
				t.Errorf("static fallback counted %v times, want 2", got)
			}
		})
	}
}

// TestAllDown: every CDN's probes fail, so the engine fails open; 10,000
// A and 10,000 AAAA queries from every region all get NOERROR with an
// answer, in the static order, with the incident TTL.
func TestAllDown(t *testing.T) {
	cat := testCatalog()
	pol := steering.DefaultPolicy()
	eng, err := steering.NewEngine(cat, pol, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cat.CDNs {
		for i := range pol.Probe.Fall {
			if err := eng.Probe(steering.ProbeResult{CDN: c.Name, At: testNow.Add(time.Duration(i) * time.Second), Detail: "status 503"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tab, err := steering.NewTable(cat, pol.Stale, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	for _, snap := range eng.Tick(testNow.Add(5 * time.Second)) {
		if err := tab.Store(snap); err != nil {
			t.Fatal(err)
		}
		if r := snap.Lookup(steering.Location{}); r.Rule != steering.RuleFailOpen {
			t.Fatalf("%s: rule %s, want fail_open", snap.Service, r.Rule)
		}
	}
	s := testServer(t, func(o *Options) { o.Decider = tab; o.TTLJitter = 0.3 })
	cov := geo.Demo()
	entries := cov.Entries()
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]string{"vod": "cdn-a.example.net.", "live": "cdn-b.example.net."}
	for i := range 20000 {
		svc := "vod"
		if i%3 == 0 {
			svc = "live"
		}
		qt := mdns.TypeA
		if i >= 10000 {
			qt = mdns.TypeAAAA
		}
		q := dnstest.Query(svc+".demo.cdnpilot.test.", qt)
		e := entries[rng.IntN(len(entries))]
		addr := e.RandomAddr(rng)
		if i%2 == 0 {
			bits := 24
			if addr.Is6() {
				bits = 56
			}
			q = dnstest.ECS(q, netip.PrefixFrom(addr, min(bits, addr.BitLen())).Masked())
		}
		m := ask(t, s, q, "192.0.2.53:5300")
		if m.Rcode != mdns.RcodeSuccess || len(m.Answer) == 0 {
			t.Fatalf("query %d (%s from %s): reply\n%s", i, svc, addr, dnstest.Format(m))
		}
		c, ok := m.Answer[0].(*mdns.CNAME)
		if !ok || c.Target != want[svc] || c.Hdr.Ttl > 10 || c.Hdr.Ttl < 7 {
			t.Fatalf("query %d: answer %v, want CNAME %s with the incident TTL", i, m.Answer[0], want[svc])
		}
	}
}

// TestRateLimit: per client /24 over UDP; over the limit every 2nd reply
// slips (empty, truncated) and the others are dropped; TCP and other
// networks are untouched; the next second starts afresh.
func TestRateLimit(t *testing.T) {
	var mu sync.Mutex
	now := testNow
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	reg := prometheus.NewRegistry()
	s := testServer(t, func(o *Options) {
		o.RateLimit = RateLimit{PerSecond: 2, Slip: 2}
		o.Now = clock
		o.Registerer = reg
	})
	send := func(from, proto string) *dnstest.Recorder {
		w := dnstest.NewRecorder(from, proto)
		s.ServeDNS(w, dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA))
		return w
	}
	var got []string
	for i := range 6 {
		w := send(fmt.Sprintf("100.64.1.%d:5300", i+1), "udp") // one /24, many addresses
		switch {
		case w.Msg == nil:
			got = append(got, "drop")
		case w.Msg.Truncated && len(w.Msg.Answer) == 0:
			got = append(got, "slip")
		default:
			got = append(got, "answer")
		}
	}
	if want := "answer answer drop slip drop slip"; strings.Join(got, " ") != want {
		t.Fatalf("got %s, want %s", strings.Join(got, " "), want)
	}
	if w := send("100.64.2.1:5300", "udp"); w.Msg == nil || len(w.Msg.Answer) != 1 {
		t.Fatal("another /24 was limited")
	}
	if w := send("100.64.1.1:5300", "tcp"); w.Msg == nil || len(w.Msg.Answer) != 1 {
		t.Fatal("TCP was limited")
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if w := send("100.64.1.1:5300", "udp"); w.Msg == nil || len(w.Msg.Answer) != 1 {
		t.Fatal("still limited the next second")
	}
	if d, sl := testutil.ToFloat64(s.m.rateLimited.WithLabelValues("drop")), testutil.ToFloat64(s.m.rateLimited.WithLabelValues("slip")); d != 2 || sl != 2 {
		t.Errorf("counted %v drops and %v slips, want 2 and 2", d, sl)
	}
}

type logSink struct {
	mu   sync.Mutex
	recs []steering.DecisionRecord
}

func (l *logSink) LogDecision(r steering.DecisionRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
}

// TestDecisionLog: a steered answer becomes one record with what explains
// it; other answers none; a full queue drops and counts instead of
// waiting; the drain hands over what was queued.
func TestDecisionLog(t *testing.T) {
	sink := &logSink{}
	s := testServer(t, func(o *Options) { o.DecisionLog = sink; o.LogSample = 1 })
	ask(t, s, dnstest.ECS(dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA), netip.MustParsePrefix("100.64.1.0/24")), "192.0.2.53:5300")
	ask(t, s, dnstest.Query("nope.demo.cdnpilot.test.", mdns.TypeA), "192.0.2.53:5300")
	ask(t, s, dnstest.Query("www.example.com.", mdns.TypeA), "192.0.2.53:5300")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s.logs.drain(ctx, sink) // a cancelled drain still hands over the queue
	if len(sink.recs) != 1 {
		t.Fatalf("%d records, want 1: %+v", len(sink.recs), sink.recs)
	}
	r := sink.recs[0]
	if r.Latency <= 0 || r.Latency > time.Second {
		t.Errorf("latency %v", r.Latency)
	}
	r.Latency = 0
	want := steering.DecisionRecord{
		At: testNow, Protocol: "dns", Service: "vod", Client: netip.MustParseAddr("192.0.2.53"),
		ECS:      netip.MustParsePrefix("100.64.1.0/24"),
		Location: steering.Location{Region: "eu-west", Country: "GB", ASN: 64496},
		Scope:    steering.Scope{Service: "vod", Level: steering.LevelRegion, Region: "eu-west"},
		CDN:      "cdn-b", Rule: steering.RuleMeasured, Version: 7, Result: "NOERROR",
	}
	if r != want {
		t.Fatalf("record\n%+v\nwant\n%+v", r, want)
	}

	for range decisionBuffer + 10 {
		ask(t, s, dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA), "192.0.2.53:5300")
	}
	if got := testutil.ToFloat64(s.m.logDropped); got != 10 {
		t.Errorf("dropped %v, want 10", got)
	}
}

// TestMetrics: replies are counted by CDN, region and rcode.
func TestMetrics(t *testing.T) {
	s := testServer(t)
	ask(t, s, dnstest.ECS(dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA), netip.MustParsePrefix("100.64.1.0/24")), "192.0.2.53:5300")
	ask(t, s, dnstest.Query("nope.demo.cdnpilot.test.", mdns.TypeA), "192.0.2.53:5300")
	ask(t, s, dnstest.Query("www.example.com.", mdns.TypeA), "127.0.0.1:5300")
	for _, c := range []struct {
		cdn, region, rcode string
	}{{"cdn-b", "eu-west", "NOERROR"}, {"", "eu-west", "NXDOMAIN"}, {"", "local", "REFUSED"}} {
		if got := testutil.ToFloat64(s.m.responses.WithLabelValues(c.cdn, c.region, c.rcode)); got != 1 {
			t.Errorf("responses{%s,%s,%s} = %v, want 1", c.cdn, c.region, c.rcode, got)
		}
	}
	var udp dto.Metric
	if err := s.m.udp.(prometheus.Metric).Write(&udp); err != nil {
		t.Fatal(err)
	}
	if n := udp.GetHistogram().GetSampleCount(); n != 3 {
		t.Errorf("%d udp latency samples, want 3", n)
	}
}

// TestTTLJitter: jitter only ever shortens the TTL, by at most its share,
// and spreads it.
func TestTTLJitter(t *testing.T) {
	s := testServer(t, func(o *Options) { o.TTLJitter = 0.5 })
	seen := map[uint32]bool{}
	for range 200 {
		m := ask(t, s, dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA), "127.0.0.1:5300")
		ttl := m.Answer[0].Header().Ttl
		if ttl < 15 || ttl > 30 {
			t.Fatalf("ttl %d outside 15..30", ttl)
		}
		seen[ttl] = true
	}
	if len(seen) < 5 {
		t.Errorf("only %d distinct TTLs in 200 answers", len(seen))
	}
}

type panicGeo struct{}

func (panicGeo) Lookup(netip.Addr) (geo.Location, bool) { panic("geo broke") }

// TestRecover: a panic outside the Decider is a SERVFAIL for that query,
// counted, and the server goes on.
func TestRecover(t *testing.T) {
	s := testServer(t, func(o *Options) { o.Geo = panicGeo{} })
	m := ask(t, s, dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA), "127.0.0.1:5300")
	if m.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("reply\n%s", dnstest.Format(m))
	}
	if got := testutil.ToFloat64(s.m.panics); got != 1 {
		t.Errorf("panics = %v", got)
	}
}

// TestOptionsRejected: New names what is missing.
func TestOptionsRejected(t *testing.T) {
	o := testOptions(t, testTable(t))
	o.Zones = []string{"bad zone"}
	o.TTL = 0
	o.NS = nil
	_, err := New(o)
	for _, want := range []string{`zone "bad zone"`, "ttl", "no name servers"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	o = testOptions(t, testTable(t))
	o.NS = []NameServer{{Name: "ns9.demo.cdnpilot.test."}}
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "has no addresses") {
		t.Errorf("in-zone name server without addresses: %v", err)
	}
}

package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/internal/ledgertest"
	"github.com/cdnpilot/cdnpilot/steering"
)

// TestSteerServesDNS: a steering node serves the demo zone on dns_addr
// (here :0), over UDP and TCP, before any snapshot arrived (the static
// order answers), and counts the answers on /metrics.
func TestSteerServesDNS(t *testing.T) {
	cfg := config.Default()
	cfg.HTTPAddr, cfg.DNSAddr = "127.0.0.1:0", "127.0.0.1:0"
	a, err := New(t.Context(), cfg, Roles{Steer: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := a.DNSAddr()
	if addr == "" || strings.HasSuffix(addr, ":0") {
		t.Fatalf("DNSAddr() = %q", addr)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	for _, proto := range []string{"udp", "tcp"} {
		c := &mdns.Client{Net: proto, Timeout: 5 * time.Second}
		m := new(mdns.Msg)
		m.SetQuestion("vod.demo.cdnpilot.test.", mdns.TypeA)
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if r.Rcode != mdns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
			t.Fatalf("%s reply: %v", proto, r)
		}
		if c, ok := r.Answer[0].(*mdns.CNAME); !ok || c.Target != "cdn-a.demo.cdnpilot.test." {
			t.Fatalf("%s answer %v, want the static order's cdn-a", proto, r.Answer[0])
		}
	}
	m := new(mdns.Msg)
	m.SetQuestion("demo.cdnpilot.test.", mdns.TypeSOA)
	if r, err := mdns.Exchange(m, addr); err != nil || len(r.Answer) != 1 {
		t.Fatalf("SOA: %v %v", r, err)
	}

	// Every steered answer reaches the decision log (in memory here).
	from := time.Now().Add(-time.Minute)
	var recs []steering.DecisionRecord
	for deadline := time.Now().Add(10 * time.Second); len(recs) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if recs, err = a.Decisions().Decisions(t.Context(), analytics.DecisionQuery{DecisionFilter: analytics.DecisionFilter{From: from, To: time.Now().Add(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(recs) != 2 {
		t.Fatalf("decision log holds %d records, want the 2 steered answers: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.Protocol != "dns" || r.Service != "vod" || r.CDN != "cdn-a" || r.Result != "NOERROR" || !r.Stale {
			t.Errorf("decision record %+v", r)
		}
	}

	resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `cdnpilot_dns_responses_total{cdn="cdn-a",rcode="NOERROR",region="local"} 2`) {
		t.Errorf("/metrics lacks the DNS answers:\n%s", grep(string(body), "cdnpilot_dns_"))
	}
}

func grep(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestSteerStartsWithClickHouseDown: a steering node whose decision log
// goes to ClickHouse starts and answers while ClickHouse is down (a pod
// restarted during an outage must not crash-loop); the decision log's
// failed inserts are counted.
func TestSteerStartsWithClickHouseDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	cfg := config.Default()
	cfg.HTTPAddr, cfg.DNSAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ClickHouse.Addr = dead
	a := runApp(t, cfg, Roles{Steer: true})
	m := new(mdns.Msg)
	m.SetQuestion("vod.demo.cdnpilot.test.", mdns.TypeA)
	r, err := mdns.Exchange(m, a.DNSAddr())
	if err != nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("DNS with ClickHouse down: %v %v", r, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for ledgertest.Counter(t, a.Registry(), "cdnpilot_decision_log_insert_errors_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failed decision log insert counted with ClickHouse down")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/internal/chserver"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/steering"
	"github.com/cdnpilot/cdnpilot/ui/api"
)

const testAdminToken = "app-test-admin-token-0123456789"

// runApp starts a process and stops it when the test ends.
func runApp(t *testing.T, cfg config.Config, roles Roles) *App {
	t.Helper()
	a, err := New(t.Context(), cfg, roles, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a
}

// dnsCDN is the CNAME target a steering node answers for vod, from a
// client in eu-west (an ECS subnet of the demo coverage).
func dnsCDN(t *testing.T, addr string) string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion("vod.demo.cdnpilot.test.", mdns.TypeA)
	o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
	o.SetUDPSize(1232)
	o.Option = append(o.Option, &mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{100, 64, 1, 0}})
	m.Extra = append(m.Extra, o)
	r, err := mdns.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("answer %v", r)
	}
	return r.Answer[0].(*mdns.CNAME).Target
}

func post(t *testing.T, method, url string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// TestOverrideReachesSteeringNode: an override made on the admin API of
// one process reaches a steering node in another process (over the
// overrides topic) within 5 s, and stops applying there at its expiry by
// itself. Deleting one reaches the node the same way.
func TestOverrideReachesSteeringNode(t *testing.T) {
	cfg := config.Default()
	cfg.HTTPAddr, cfg.DNSAddr, cfg.Demo.Viewers = "127.0.0.1:0", "", 0
	cfg.Admin.Token = testAdminToken
	admin := runApp(t, cfg, Roles{Consume: true, Score: true, Admin: true})

	node := cfg
	node.Kafka.Brokers = admin.Brokers()
	node.DNSAddr = "127.0.0.1:0"
	node.Admin.Token = ""
	steer := runApp(t, node, Roles{Steer: true})
	select {
	case <-steer.Overrides().Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("steering node never read the override topic")
	}
	if got := dnsCDN(t, steer.DNSAddr()); got != "cdn-a.demo.cdnpilot.test." {
		t.Fatalf("before any override the node answers %s", got)
	}

	base := "http://" + admin.HTTPAddr() + "/api/v1/overrides"
	reach := func(want string) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 5*time.Second {
			if dnsCDN(t, steer.DNSAddr()) == want {
				return time.Since(start)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("the steering node did not answer %s within 5 s", want)
		return 0
	}

	// A pin for eu-west, expiring in 3 s.
	exp := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
	code, body := post(t, "POST", base, api.OverrideRequest{Action: "pin", CDN: "cdn-b", Scope: api.ScopeJSON{Service: "vod", Region: "eu-west"},
		Reason: "INC-7: test", ExpiresAt: exp.Format(time.RFC3339)})
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	t.Logf("pin reached the steering node in %v", reach("cdn-b.demo.cdnpilot.test.").Round(time.Millisecond))
	// No message arrives at the expiry: the node ends the pin itself.
	time.Sleep(time.Until(exp) + 10*time.Millisecond)
	if d, _ := steer.Table().Decide(steering.Query{Service: "vod", Location: steering.Location{Region: "eu-west"}}); d.CDN != "cdn-a" || d.Rule == steering.RulePin {
		t.Errorf("10 ms after the expiry the node decides %s by %s, want cdn-a without the pin", d.CDN, d.Rule)
	}
	reach("cdn-a.demo.cdnpilot.test.")
	t.Logf("the node's DNS dropped the pin %v after its expiry", time.Since(exp).Round(time.Millisecond))

	// A ban of cdn-a for vod, then its deletion.
	code, body = post(t, "POST", base, api.OverrideRequest{Action: "ban", CDN: "cdn-a", Scope: api.ScopeJSON{Service: "vod"},
		Reason: "INC-8: test", ExpiresAt: time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	var o api.OverrideJSON
	if code != http.StatusCreated || json.Unmarshal(body, &o) != nil {
		t.Fatalf("create: %d %s", code, body)
	}
	if got := reach("cdn-b.demo.cdnpilot.test."); got > 5*time.Second {
		t.Fatalf("ban took %v", got)
	}
	code, body = post(t, "DELETE", base+"/"+o.ID, api.DeleteRequest{Reason: "INC-8 over"})
	if code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	t.Logf("delete reached the steering node in %v", reach("cdn-a.demo.cdnpilot.test.").Round(time.Millisecond))
}

// TestAdminReadyzAuditStore: /readyz of an admin process names its own
// dependency, the audit store: ready while ClickHouse answers, 503
// naming it once ClickHouse is gone.
func TestAdminReadyzAuditStore(t *testing.T) {
	srv := chserver.ForTestServer(t)
	cfg := config.Default()
	cfg.HTTPAddr, cfg.DNSAddr = "127.0.0.1:0", ""
	cfg.ClickHouse.Addr, cfg.ClickHouse.Database = srv.Addr(), "readyz_admin"
	cfg.Admin.Token = "readyz-admin-token-0123456789abcdef"
	a := runApp(t, cfg, Roles{Admin: true})
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for code, body := readyz(); code != http.StatusOK; code, body = readyz() {
		if time.Now().After(deadline) {
			t.Fatalf("admin not ready with ClickHouse up: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	code, body := readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "audit store:") {
		t.Fatalf("admin /readyz with ClickHouse killed: %d %q, want 503 naming the audit store", code, body)
	}
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/auth"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/internal/live"
	"github.com/cdnpilot/cdnpilot/internal/overrides"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Tokens of the test callers, by name.
var tokens = map[string]string{
	"viewer":        "viewer-token-0123456789abcdef",
	"operator":      "operator-token-0123456789abcdef",
	"operator-live": "operator-live-token-0123456789ab",
	"admin":         "admin-token-0123456789abcdef",
}

// clock is the API's and the table's clock, moved by tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is the API over real parts: a steering Table holding an engine's
// snapshot, the override log on an in-process Kafka-protocol broker, real
// authentication, an audit store and an in-memory analytics store.
type env struct {
	srv      *Server
	clk      *clock
	table    *steering.Table
	store    *overrides.Store
	follower *overrides.Follower
	audit    AuditStore
	qoe      *analytics.Memory
	live     *live.Tracker
	dec      *analytics.DecisionRing
}

type envOption func(*Options)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	e := &env{clk: &clock{t: at.Add(61 * time.Second)}}
	e.table = tableAt(t, e.clk.Now)
	broker, err := kafkaio.StartEmbedded(0, "", kafkaio.Topic{Name: overrides.DefaultTopic, Partitions: 1, Compacted: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	e.follower = overrides.NewFollower(overrides.FollowerOptions{Brokers: broker.Addrs(), Now: e.clk.Now})
	tbl := e.table
	e.follower.OnChange(func(active []steering.Override) {
		if err := tbl.SetOverrides(active); err != nil {
			t.Errorf("table refused overrides: %v", err)
		}
	})
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.follower.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("follower: %v", err)
		}
	}()
	log, err := overrides.NewLog(overrides.LogOptions{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		_ = log.Close()
	})
	select {
	case <-e.follower.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("override follower not ready")
	}
	e.store = overrides.NewStore(log, e.follower, e.clk.Now)
	a, err := auth.New(t.Context(), config.Admin{
		Token: tokens["admin"],
		Tokens: []config.AdminToken{
			{Name: "vic", SHA256: auth.HashToken(tokens["viewer"]), Role: "viewer"},
			{Name: "olga", SHA256: auth.HashToken(tokens["operator"]), Role: "operator"},
			{Name: "lee", SHA256: auth.HashToken(tokens["operator-live"]), Role: "operator", Services: []string{"live"}},
		},
	}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	e.audit = analytics.NewAuditMemory(0)
	e.qoe = analytics.NewMemory(analytics.MemoryOptions{})
	cov := geo.Demo()
	// The tracker is sampled by the tests (Sample), not run.
	if e.live, err = live.New(e.table, live.Options{Services: []string{"vod", "live"}, Now: e.clk.Now}); err != nil {
		t.Fatal(err)
	}
	e.dec = analytics.NewDecisionRing(0)
	o := Options{
		Live: e.live, Decisions: e.dec, DecisionSample: map[string]float64{"dns": 0.5, "http": 1, "hls": 1, "dash": 0},
		StreamMax: 50 * time.Millisecond,
		Auth:      a, Catalog: testCatalog, Rankings: e.table, Overrides: e.store, Audit: e.audit,
		QoE: e.qoe, Replay: e.qoe, Policy: steering.DefaultPolicy(), Geo: cov,
		ASNs:           map[uint32]geo.Location{64496: {Country: "GB", Region: "eu-west", ASN: 64496}},
		MaxOverrideTTL: 24 * time.Hour, Now: e.clk.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	e.audit = o.Audit
	e.srv = New(o)
	return e
}

// do sends one request as caller ("" for none) and returns the status and
// body.
func (e *env) do(t *testing.T, caller, method, url string, body any) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, url, rd)
	req.RemoteAddr = "192.0.2.10:40000"
	switch tok, ok := tokens[caller]; {
	case ok:
		req.Header.Set("Authorization", "Bearer "+tok)
	case caller != "":
		req.Header.Set("Authorization", "Bearer "+caller)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes(), rec.Header()
}

// create makes an override through the API and returns it.
func (e *env) create(t *testing.T, caller string, req OverrideRequest) OverrideJSON {
	t.Helper()
	code, body, _ := e.do(t, caller, "POST", "/api/v1/overrides", req)
	if code != http.StatusCreated {
		t.Fatalf("create %+v: %d %s", req, code, body)
	}
	var o OverrideJSON
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatal(err)
	}
	return o
}

func (e *env) expires(d time.Duration) string { return e.clk.Now().Add(d).UTC().Format(time.RFC3339) }

// pinB is a valid override request: pin cdn-b for vod in eu-west.
func (e *env) pinB() OverrideRequest {
	return OverrideRequest{Action: "pin", CDN: "cdn-b", Scope: ScopeJSON{Service: "vod", Region: "eu-west"},
		Reason: "INC-1: cdn-a 5xx in eu-west", ExpiresAt: e.expires(time.Hour)}
}

// auditRecords is the whole audit trail, newest first.
func (e *env) auditRecords(t *testing.T) []analytics.AuditRecord {
	t.Helper()
	p, err := e.audit.Audit(context.Background(), analytics.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return p.Records
}

package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/auth"
	"github.com/cdnpilot/cdnpilot/internal/chserver"
	"github.com/cdnpilot/cdnpilot/internal/overrides"
	"github.com/cdnpilot/cdnpilot/steering"
)

// callers of the route x role matrix, weakest first. "" sends no token,
// "bogus-token-…" a token nobody has.
var callers = []struct {
	name string
	role auth.Role // 0: not authenticated
}{
	{"", 0},
	{"bogus-token-0123456789abcdef", 0},
	{"viewer", auth.RoleViewer},
	{"operator", auth.RoleOperator},
	{"admin", auth.RoleAdmin},
}

// validRequest builds a request every caller with the role gets a 2xx
// for, so that the matrix tests the roles and nothing else.
func (e *env) validRequest(t *testing.T, r Route) (url string, body any) {
	t.Helper()
	switch r.Method + " " + r.Path {
	case "GET /api/v1/rankings":
		return "/api/v1/rankings?service=vod", nil
	case "GET /api/v1/decisions/explain":
		return "/api/v1/decisions/explain?service=vod&ip=100.64.1.2", nil
	case "GET /api/v1/qoe/series":
		return "/api/v1/qoe/series?metric=views&service=vod", nil
	case "GET /api/v1/overrides/:id", "POST /api/v1/overrides/:id/extend", "DELETE /api/v1/overrides/:id":
		// A fresh override per request: a delete ends it.
		rec, err := e.store.Create(t.Context(), steering.Override{Kind: steering.OverrideDrain, Service: "vod", CDN: "cdn-b",
			Reason: "matrix", Created: e.clk.Now(), Expires: e.clk.Now().Add(time.Hour)}, "setup")
		if err != nil {
			t.Fatal(err)
		}
		url = "/api/v1/overrides/" + rec.ID
		switch r.Method {
		case "POST":
			return url + "/extend", ExtendRequest{ExpiresAt: e.expires(2 * time.Hour), Reason: "still needed"}
		case "DELETE":
			return url, DeleteRequest{Reason: "done"}
		}
		return url, nil
	case "POST /api/v1/overrides":
		return "/api/v1/overrides", e.pinB()
	case "GET /api/v1/stream":
		return "/api/v1/stream?service=vod&backlog=60", nil
	case "GET /api/v1/decisions/rate":
		return "/api/v1/decisions/rate?service=vod", nil
	case "POST /api/v1/replay":
		return "/api/v1/replay", map[string]any{"service": "vod", "from": e.clk.Now().Add(-time.Hour).Format(time.RFC3339),
			"to": e.clk.Now().Format(time.RFC3339), "step": "5m"}
	}
	return strings.ReplaceAll(r.Path, ":id", "x"), nil
}

// TestRouteRoleMatrix tries every route gin has, with no token, a bad
// token and each role: 401, 403 or 2xx exactly as the route's role says,
// and every refusal is in the audit trail.
func TestRouteRoleMatrix(t *testing.T) {
	e := newEnv(t)
	declared := e.srv.Routes()
	var seen []string
	for _, gr := range e.srv.GinRoutes() {
		i := slices.IndexFunc(declared, func(r Route) bool { return r.Method == gr.Method && r.Path == gr.Path })
		if i < 0 {
			t.Errorf("gin serves %s %s, which Routes does not declare", gr.Method, gr.Path)
			continue
		}
		r := declared[i]
		seen = append(seen, r.Method+" "+r.Path)
		for _, c := range callers {
			name := c.name
			if name == "" {
				name = "no token"
			}
			t.Run(r.Method+" "+r.Path+" as "+name, func(t *testing.T) {
				url, body := e.validRequest(t, r)
				path := strings.SplitN(url, "?", 2)[0]
				denials := func() int {
					n := 0
					for _, a := range e.auditRecords(t) {
						if a.Action == "auth.denied" && a.Outcome == "denied" && a.Path == path && a.Method == r.Method {
							n++
						}
					}
					return n
				}
				before := denials()
				code, resp, _ := e.do(t, c.name, r.Method, url, body)
				want := "2xx"
				switch {
				case c.role == 0:
					want = "401"
				case c.role < r.Role:
					want = "403"
				}
				got := fmt.Sprint(code)
				if code/100 == 2 {
					got = "2xx"
				}
				if got != want {
					t.Fatalf("status %d, want %s: %s", code, want, resp)
				}
				if want != "2xx" {
					if n := denials(); n != before+1 {
						t.Errorf("denial not audited: %d denials of %s %s before, %d after", before, r.Method, path, n)
					}
				}
			})
		}
	}
	for _, r := range declared {
		if !slices.Contains(seen, r.Method+" "+r.Path) {
			t.Errorf("%s %s is declared but gin does not serve it", r.Method, r.Path)
		}
	}
}

// TestOperatorServiceScope: an operator limited to live may read vod but
// not change it; the refusal is audited and nothing is written.
func TestOperatorServiceScope(t *testing.T) {
	e := newEnv(t)
	code, body, _ := e.do(t, "operator-live", "POST", "/api/v1/overrides", e.pinB())
	if code != http.StatusForbidden || !strings.Contains(string(body), `"field":"scope.service"`) {
		t.Fatalf("create on vod by a live-only operator: %d %s", code, body)
	}
	if n := len(e.store.List(overrides.Filter{})); n != 0 {
		t.Fatalf("%d overrides written", n)
	}
	recs := e.auditRecords(t)
	if len(recs) != 1 || recs[0].Actor != "lee" || recs[0].Outcome != "denied" || recs[0].Role != "operator" {
		t.Fatalf("audit %+v", recs)
	}
	live := OverrideRequest{Action: "pin", CDN: "cdn-b", Scope: ScopeJSON{Service: "live"}, Reason: "test", ExpiresAt: e.expires(time.Hour)}
	e.create(t, "operator-live", live)
	// Extending or deleting someone else's vod override is refused too.
	o := e.create(t, "operator", e.pinB())
	code, _, _ = e.do(t, "operator-live", "DELETE", "/api/v1/overrides/"+o.ID, DeleteRequest{Reason: "mine now"})
	if code != http.StatusForbidden {
		t.Fatalf("delete of a vod override by a live-only operator: %d", code)
	}
}

// TestOverrideLifecycle: create, get, list, extend, delete through the
// API, each change audited with before and after, and the steering table
// deciding with the override while it is active.
func TestOverrideLifecycle(t *testing.T) {
	e := newEnv(t)
	q := steering.Query{Service: "vod", Location: steering.Location{Region: "eu-west"}, ViewID: "v1"}
	if d, _ := e.table.Decide(q); d.CDN != "cdn-a" {
		t.Fatalf("before the override the ranking picks %s, want cdn-a", d.CDN)
	}
	o := e.create(t, "operator", e.pinB())
	if o.State != "active" || o.Revision != 1 || o.CreatedBy != "olga" || !strings.HasPrefix(o.ID, "ovr_") {
		t.Fatalf("created %+v", o)
	}
	if d, _ := e.table.Decide(q); d.CDN != "cdn-b" || d.Rule != steering.RulePin {
		t.Fatalf("with the pin the table picks %s by %s", d.CDN, d.Rule)
	}
	code, body, _ := e.do(t, "viewer", "GET", "/api/v1/overrides/"+o.ID, nil)
	if code != 200 || !strings.Contains(string(body), o.ID) {
		t.Fatalf("get: %d %s", code, body)
	}
	e.clk.Add(time.Second) // the audit trail orders by time
	newExp := e.expires(3 * time.Hour)
	code, body, _ = e.do(t, "operator", "POST", "/api/v1/overrides/"+o.ID+"/extend", ExtendRequest{ExpiresAt: newExp, Reason: "INC-1 still open"})
	var ext OverrideJSON
	if code != 200 || json.Unmarshal(body, &ext) != nil || ext.Revision != 2 || ext.ExpiresAt.Format(time.RFC3339) != newExp {
		t.Fatalf("extend: %d %s", code, body)
	}
	e.clk.Add(time.Second)
	code, body, _ = e.do(t, "admin", "DELETE", "/api/v1/overrides/"+o.ID+"?reason=resolved", nil)
	var del OverrideJSON
	if code != 200 || json.Unmarshal(body, &del) != nil || del.State != "deleted" || del.DeletedBy != "admin" || del.DeleteReason != "resolved" {
		t.Fatalf("delete: %d %s", code, body)
	}
	if d, _ := e.table.Decide(q); d.CDN != "cdn-a" {
		t.Fatalf("after the delete the table picks %s, want cdn-a", d.CDN)
	}
	// A deleted override cannot be extended or deleted again.
	code, body, _ = e.do(t, "operator", "POST", "/api/v1/overrides/"+o.ID+"/extend", ExtendRequest{ExpiresAt: e.expires(time.Hour), Reason: "again"})
	if code != http.StatusConflict {
		t.Errorf("extend of a deleted override: %d %s", code, body)
	}
	code, body, _ = e.do(t, "operator", "DELETE", "/api/v1/overrides/"+o.ID, DeleteRequest{Reason: "again"})
	if code != http.StatusConflict {
		t.Errorf("delete of a deleted override: %d %s", code, body)
	}
	for state, n := range map[string]int{"active": 0, "deleted": 1, "all": 1, "expired": 0} {
		var l OverrideList
		code, body, _ := e.do(t, "viewer", "GET", "/api/v1/overrides?state="+state, nil)
		if code != 200 || json.Unmarshal(body, &l) != nil || len(l.Overrides) != n {
			t.Errorf("list %s: %d %s, want %d", state, code, body, n)
		}
	}
	recs := e.auditRecords(t)
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Action+":"+r.Outcome)
	}
	want := []string{"override.delete:ok", "override.extend:ok", "override.create:ok"}
	if !slices.Equal(actions, want) {
		t.Fatalf("audit actions %v, want %v", actions, want)
	}
	if recs[1].Before == "" || recs[1].After == "" || !strings.Contains(recs[1].Before, `"revision":1`) || !strings.Contains(recs[1].After, `"revision":2`) {
		t.Errorf("extend audit before/after: %q / %q", recs[1].Before, recs[1].After)
	}
	if recs[2].Source != "192.0.2.10" || recs[2].Actor != "olga" || recs[2].Reason != "INC-1: cdn-a 5xx in eu-west" {
		t.Errorf("create audit %+v", recs[2])
	}
}

// TestOverrideExpiresOnTheNode: the table stops applying an override at
// its expiry with no message and no new snapshot; the API lists it as
// expired.
func TestOverrideExpiresOnTheNode(t *testing.T) {
	e := newEnv(t)
	req := e.pinB()
	req.ExpiresAt = e.expires(30 * time.Second)
	o := e.create(t, "operator", req)
	q := steering.Query{Service: "vod", Location: steering.Location{Region: "eu-west"}, ViewID: "v1"}
	if d, _ := e.table.Decide(q); d.CDN != "cdn-b" {
		t.Fatalf("pinned: %s", d.CDN)
	}
	e.clk.Add(31 * time.Second)
	if d, _ := e.table.Decide(q); d.CDN != "cdn-a" || d.Rule == steering.RulePin {
		t.Fatalf("after the expiry: %s by %s, want cdn-a", d.CDN, d.Rule)
	}
	code, body, _ := e.do(t, "viewer", "GET", "/api/v1/overrides/"+o.ID, nil)
	if code != 200 || !strings.Contains(string(body), `"state":"expired"`) {
		t.Fatalf("get after expiry: %d %s", code, body)
	}
	code, _, _ = e.do(t, "operator", "POST", "/api/v1/overrides/"+o.ID+"/extend", ExtendRequest{ExpiresAt: e.expires(time.Hour), Reason: "late"})
	if code != http.StatusConflict {
		t.Fatalf("extend of an expired override: %d", code)
	}
}

// TestDryRun: the share change per scope, and nothing written or audited.
func TestDryRun(t *testing.T) {
	e := newEnv(t)
	req := e.pinB()
	req.DryRun = true
	code, body, _ := e.do(t, "operator", "POST", "/api/v1/overrides", req)
	var d DryRunJSON
	if code != 200 || json.Unmarshal(body, &d) != nil || !d.DryRun {
		t.Fatalf("dry run: %d %s", code, body)
	}
	if len(d.Changes) == 0 {
		t.Fatalf("no change: %s", body)
	}
	for _, ch := range d.Changes {
		if ch.Scope.Region != "eu-west" || ch.After["cdn-b"] != 1 || ch.Before["cdn-b"] >= 1 || ch.DeltaPP["cdn-b"] <= 0 {
			t.Errorf("change %+v", ch)
		}
	}
	if n := len(e.store.List(overrides.Filter{})); n != 0 {
		t.Errorf("dry run wrote %d overrides", n)
	}
	if n := len(e.auditRecords(t)); n != 0 {
		t.Errorf("dry run audited %d records", n)
	}
}

// TestBadRequests: every malformed or unacceptable request names the
// field to blame, with 400, 413 or 422, and changes nothing.
func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	exp := e.expires(time.Hour)
	for _, tc := range []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"empty body", ``, 400, "body"},
		{"not json", `pin cdn-b`, 400, "body"},
		{"truncated", `{"action": "pin"`, 400, "body"},
		{"two values", `{"action":"pin"} {}`, 400, "body"},
		{"unknown field", `{"action":"pin","cdn":"cdn-b","scope":{"service":"vod"},"reason":"r","expires_at":"` + exp + `","ttl":5}`, 400, "ttl"},
		{"unknown scope field", `{"action":"pin","cdn":"cdn-b","scope":{"service":"vod","pop":"fra"},"reason":"r","expires_at":"` + exp + `"}`, 400, "pop"},
		{"wrong type", `{"action":"pin","cdn":"cdn-b","scope":{"service":"vod","asn":"AS1"},"reason":"r","expires_at":"` + exp + `"}`, 400, "scope.asn"},
		{"no action", `{"cdn":"cdn-b","scope":{"service":"vod"},"reason":"r","expires_at":"` + exp + `"}`, 422, "action"},
		{"bad action", `{"action":"block","cdn":"cdn-b","scope":{"service":"vod"},"reason":"r","expires_at":"` + exp + `"}`, 422, "action"},
		{"no service", `{"action":"pin","cdn":"cdn-b","scope":{},"reason":"r","expires_at":"` + exp + `"}`, 422, "scope.service"},
		{"unknown service", `{"action":"pin","cdn":"cdn-b","scope":{"service":"radio"},"reason":"r","expires_at":"` + exp + `"}`, 422, "scope.service"},
		{"asn without region", `{"action":"pin","cdn":"cdn-b","scope":{"service":"vod","asn":64496},"reason":"r","expires_at":"` + exp + `"}`, 422, "scope.asn"},
		{"no cdn", `{"action":"pin","scope":{"service":"vod"},"reason":"r","expires_at":"` + exp + `"}`, 422, "cdn"},
		{"cdn not in service", `{"action":"ban","cdn":"cdn-a","scope":{"service":"live"},"reason":"r","expires_at":"` + exp + `"}`, 422, "cdn"},
		{"no reason", `{"action":"pin","cdn":"cdn-b","scope":{"service":"vod"},"reason":"  ","expires_at":"` + exp + `"}`, 422, "reason"},
		{"no expiry", `{"action":"pin","cdn":"cdn-b","scope":{"service":"vod"},"reason":"r"}`, 422, "expires_at"},
		{"bad expiry", `{"action":"pin","cdn":"cdn-b","scope":{"service":"vod"},"reason":"r","expires_at":"tomorrow"}`, 422, "expires_at"},
		{"past expiry", `{"action":"pin","cdn":"cdn-b","scope":{"service":"vod"},"reason":"r","expires_at":"2020-01-01T00:00:00Z"}`, 422, "expires_at"},
		{"expiry too far", `{"action":"pin","cdn":"cdn-b","scope":{"service":"vod"},"reason":"r","expires_at":"` + e.expires(25*time.Hour) + `"}`, 422, "expires_at"},
		{"weights on a pin", `{"action":"pin","cdn":"cdn-b","weights":{"cdn-b":100},"scope":{"service":"vod"},"reason":"r","expires_at":"` + exp + `"}`, 422, "weights"},
		{"weight without weights", `{"action":"weight","scope":{"service":"vod"},"reason":"r","expires_at":"` + exp + `"}`, 422, "weights"},
		{"weights not summing", `{"action":"weight","weights":{"cdn-a":50,"cdn-b":20},"scope":{"service":"vod"},"reason":"r","expires_at":"` + exp + `"}`, 422, "weights"},
		{"weight over 100", `{"action":"weight","weights":{"cdn-a":150},"scope":{"service":"vod"},"reason":"r","expires_at":"` + exp + `"}`, 422, "weights.cdn-a"},
		{"weight of unknown cdn", `{"action":"weight","weights":{"cdn-z":100},"scope":{"service":"vod"},"reason":"r","expires_at":"` + exp + `"}`, 422, "weights.cdn-z"},
		{"too big", `{"action":"pin","reason":"` + strings.Repeat("x", MaxBody) + `"}`, 413, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := e.do(t, "operator", "POST", "/api/v1/overrides", tc.body)
			var got struct{ Error, Field string }
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%d %s: %v", code, body, err)
			}
			if code != tc.status || got.Field != tc.field || got.Error == "" {
				t.Fatalf("%d %s, want %d naming %q", code, body, tc.status, tc.field)
			}
		})
	}
	if n := len(e.store.List(overrides.Filter{})); n != 0 {
		t.Fatalf("%d overrides written by bad requests", n)
	}
	// A split and a single weight are both accepted.
	split := OverrideRequest{Action: "weight", Weights: map[string]float64{"cdn-a": 70, "cdn-b": 30}, Scope: ScopeJSON{Service: "vod"}, Reason: "r", ExpiresAt: exp}
	if o := e.create(t, "operator", split); o.Weights["cdn-a"] != 70 || o.Action != "weight" {
		t.Errorf("split %+v", o)
	}
	one := OverrideRequest{Action: "weight", Weights: map[string]float64{"cdn-b": 25}, Scope: ScopeJSON{Service: "vod", Region: "us-east"}, Reason: "r", ExpiresAt: exp}
	if o := e.create(t, "operator", one); o.Weights["cdn-b"] != 25 {
		t.Errorf("weight %+v", o)
	}
}

// failingAudit is a ClickHouse audit store whose server is gone.
func downAudit(t *testing.T) *analytics.ClickHouse {
	t.Helper()
	srv := chserver.ForTestServer(t)
	ch, err := analytics.OpenClickHouse(t.Context(), analytics.ClickHouseOptions{Addr: srv.Addr(), Database: "audit_down"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestAuditFailClosed: with the audit store down, no mutation is
// accepted: create, extend and delete answer 503 and the override log is
// unchanged; reads still work.
func TestAuditFailClosed(t *testing.T) {
	ch := downAudit(t)
	e := newEnv(t)
	existing, err := e.store.Create(t.Context(), steering.Override{Kind: steering.OverrideDrain, Service: "vod", CDN: "cdn-b",
		Reason: "before the outage", Created: e.clk.Now(), Expires: e.clk.Now().Add(time.Hour)}, "setup")
	if err != nil {
		t.Fatal(err)
	}
	e.srv.o.Audit = ch
	for _, tc := range []struct {
		method, url string
		body        any
	}{
		{"POST", "/api/v1/overrides", e.pinB()},
		{"POST", "/api/v1/overrides/" + existing.ID + "/extend", ExtendRequest{ExpiresAt: e.expires(2 * time.Hour), Reason: "longer"}},
		{"DELETE", "/api/v1/overrides/" + existing.ID, DeleteRequest{Reason: "done"}},
	} {
		code, body, hdr := e.do(t, "admin", tc.method, tc.url, tc.body)
		if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "audit trail unavailable") || hdr.Get("Retry-After") == "" {
			t.Errorf("%s %s with the audit store down: %d %s", tc.method, tc.url, code, body)
		}
	}
	all := e.store.List(overrides.Filter{})
	if len(all) != 1 || all[0].Revision != 1 || all[0].State(e.clk.Now()) != "active" {
		t.Fatalf("the override log changed without an audit record: %+v", all)
	}
	if got := testutil.ToFloat64(e.srv.audits.WithLabelValues("error")); got != 3 {
		t.Errorf("cdnpilot_admin_audit_writes_total{result=error} = %v, want 3 (the alert on a down audit store reads it)", got)
	}
	if code, _, _ := e.do(t, "viewer", "GET", "/api/v1/overrides", nil); code != 200 {
		t.Errorf("reads with the audit store down: %d", code)
	}
}

// TestRateLimits: per token and per client address, 429 with Retry-After.
func TestRateLimits(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PerTokenRPS, o.PerClientRPS, o.Burst = 0.5, 0, 3 })
	var codes []int
	for range 4 {
		code, _, hdr := e.do(t, "viewer", "GET", "/api/v1/whoami", nil)
		codes = append(codes, code)
		if code == 429 && hdr.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if !slices.Equal(codes, []int{200, 200, 200, 429}) {
		t.Fatalf("per token: %v", codes)
	}
	// Another token is not limited by the first one's bucket.
	if code, _, _ := e.do(t, "admin", "GET", "/api/v1/whoami", nil); code != 200 {
		t.Fatalf("other token: %d", code)
	}

	e = newEnv(t, func(o *Options) { o.PerTokenRPS, o.PerClientRPS, o.Burst = 0, 0.5, 2 })
	codes = codes[:0]
	for _, tok := range []string{"viewer", "admin", "bogus-guess-0123456789"} {
		code, _, _ := e.do(t, tok, "GET", "/api/v1/whoami", nil)
		codes = append(codes, code)
	}
	if !slices.Equal(codes, []int{200, 200, 429}) {
		t.Fatalf("per client: %v (a token guesser is limited before the token is checked)", codes)
	}
}

// TestCORS: exact origins only, never "*".
func TestCORS(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CORSOrigins = []string{"https://ops.example.com"} })
	pre := func(origin string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("OPTIONS", "/api/v1/overrides", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		return rec
	}
	rec := pre("https://ops.example.com")
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "https://ops.example.com" ||
		!strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("allowed preflight: %d %v", rec.Code, rec.Header())
	}
	rec = pre("https://evil.example.com")
	if rec.Code != 403 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin: %d %v", rec.Code, rec.Header())
	}
	req := httptest.NewRequest("GET", "/api/v1/whoami", nil)
	req.Header.Set("Origin", "https://evil.example.com")
	req.Header.Set("Authorization", "Bearer "+tokens["viewer"])
	req.RemoteAddr = "192.0.2.1:1"
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, req)
	if w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS header for another origin: %v", w.Header())
	}
}

// TestExplain: the client is placed by address, subnet, ASN or region,
// and the answer says which override and ranking decided.
func TestExplain(t *testing.T) {
	e := newEnv(t)
	o := e.create(t, "operator", e.pinB())
	for _, tc := range []struct {
		name, query string
		status      int
		cdn, region string
	}{
		{"ip", "ip=100.64.1.2", 200, "cdn-b", "eu-west"},
		{"subnet", "subnet=100.64.1.0/24", 200, "cdn-b", "eu-west"},
		{"asn alone", "asn=64496", 200, "cdn-b", "eu-west"},
		{"region", "region=us-east", 200, "cdn-a", "us-east"},
		{"unknown address", "ip=10.1.2.3", 200, "cdn-a", ""},
		{"bad ip", "ip=300.1.1.1", 400, "", ""},
		{"two ways", "ip=100.64.1.2&subnet=100.64.1.0/24", 400, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := e.do(t, "viewer", "GET", "/api/v1/decisions/explain?service=vod&"+tc.query, nil)
			if code != tc.status {
				t.Fatalf("%d %s", code, body)
			}
			if code != 200 {
				return
			}
			var x ExplainJSON
			if err := json.Unmarshal(body, &x); err != nil {
				t.Fatal(err)
			}
			if x.Decision.CDN != tc.cdn || x.Location.Region != tc.region || len(x.Why) == 0 {
				t.Fatalf("%+v", x)
			}
			if tc.cdn == "cdn-b" && (len(x.Overrides) != 1 || x.Overrides[0].ID != o.ID || x.Decision.Rule != steering.RulePin) {
				t.Fatalf("override not explained: %+v", x)
			}
		})
	}
}

var (
	ovrID = regexp.MustCompile(`ovr_[0-9a-f]{16}`)
	audID = regexp.MustCompile(`aud_[0-9a-f]{32}`)
)

// TestOpenAPI: the document is valid OpenAPI 3, describes exactly the
// routes gin serves, and every golden answer matches its schema.
func TestOpenAPI(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newEnv(t)
	for _, r := range e.srv.GinRoutes() {
		p := regexp.MustCompile(`:(\w+)`).ReplaceAllString(r.Path, "{$1}")
		item := doc.Paths.Find(p)
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("%s %s is served but not in openapi.json", r.Method, p)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			gp := regexp.MustCompile(`\{(\w+)\}`).ReplaceAllString(path, ":$1")
			if !slices.ContainsFunc(e.srv.GinRoutes(), func(r gin.RouteInfo) bool { return r.Method == method && r.Path == gp }) {
				t.Errorf("openapi.json documents %s %s, which is not served", method, path)
			}
		}
	}
}

// TestGoldenResponses: the answers of the API, byte for byte (ids and
// times of created overrides scrubbed), each valid against openapi.json.
func TestGoldenResponses(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newEnv(t)
	o := e.create(t, "operator", e.pinB())
	if err := e.qoe.Insert(context.Background(), goldenBeacons(e.clk.Now())); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		golden, caller, method, url string
		body                        any
	}{
		{"whoami.json", "operator", "GET", "/api/v1/whoami", nil},
		{"explain.json", "viewer", "GET", "/api/v1/decisions/explain?service=vod&ip=100.64.1.2&view_id=v1", nil},
		{"cdns.json", "viewer", "GET", "/api/v1/cdns", nil},
		{"override.json", "viewer", "GET", "/api/v1/overrides/" + o.ID, nil},
		{"overrides.json", "viewer", "GET", "/api/v1/overrides?state=all", nil},
		{"dry_run.json", "operator", "POST", "/api/v1/overrides", func() OverrideRequest {
			r := e.pinB()
			r.DryRun, r.Scope.Region = true, ""
			return r
		}()},
		{"series.json", "viewer", "GET", "/api/v1/qoe/series?metric=views&service=vod&group_by=cdn&from=" + e.clk.Now().Add(-10*time.Minute).Truncate(time.Minute).Format(time.RFC3339) + "&to=" + e.clk.Now().Truncate(time.Minute).Add(time.Minute).Format(time.RFC3339), nil},
		{"audit.json", "admin", "GET", "/api/v1/audit?limit=5", nil},
		{"error_422.json", "operator", "POST", "/api/v1/overrides", OverrideRequest{Action: "pin", CDN: "cdn-z", Scope: ScopeJSON{Service: "vod"}, Reason: "r", ExpiresAt: e.expires(time.Hour)}},
		{"error_401.json", "", "GET", "/api/v1/rankings?service=vod", nil},
		{"error_403.json", "viewer", "GET", "/api/v1/audit", nil},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			code, body, hdr := e.do(t, tc.caller, tc.method, tc.url, tc.body)
			validateResponse(t, doc, tc.method, tc.url, code, hdr, body)
			got := ovrID.ReplaceAll(body, []byte("ovr_ID"))
			got = audID.ReplaceAll(got, []byte("aud_ID"))
			golden(t, tc.golden, got)
		})
	}
}

package redirect

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/steering"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var testNow = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

const testKey = "000102030405060708090a0b0c0d0e0f"

func testCatalog() steering.Catalog {
	return steering.Catalog{
		CDNs: []steering.CDN{
			{Name: "cdn-a", Host: "a.example.net", BaseURL: "https://a.example.net/media"},
			{Name: "cdn-b", Host: "127.0.0.1:9002", BaseURL: "http://127.0.0.1:9002/"},
			{Name: "cdn-c", Host: "c.example.net"},
		},
		Services: []steering.Service{
			{Name: "vod", CDNs: []string{"cdn-a", "cdn-b", "cdn-c"}},
			{Name: "live", CDNs: []string{"cdn-b", "cdn-a", "cdn-c"}},
		},
	}
}

// ranking is a global ranking of vod: CDN=weight:health, best first.
func ranking(rule steering.Rule, fired steering.Fired, choices ...steering.Choice) *steering.Snapshot {
	return &steering.Snapshot{
		Service: "vod", Version: 7, At: testNow,
		Rankings: []*steering.Ranking{{Scope: steering.Scope{Service: "vod"}, Rule: rule, Fired: fired, Choices: choices}},
	}
}

func choice(cdn string, w float64, h steering.Health) steering.Choice {
	return steering.Choice{CDN: cdn, Weight: w, Health: h, Score: 80}
}

type recordLog struct{ recs []steering.DecisionRecord }

func (l *recordLog) LogDecision(r steering.DecisionRecord) { l.recs = append(l.recs, r) }

type fixture struct {
	s   *Server
	tab *steering.Table
	log *recordLog
	reg *prometheus.Registry
	mux *http.ServeMux
}

func newFixture(t testing.TB, snap *steering.Snapshot, tweak func(*Options)) *fixture {
	t.Helper()
	tab, err := steering.NewTable(testCatalog(), steering.Stale{Freeze: 30 * time.Second, Static: 5 * time.Minute}, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	if snap != nil {
		if err := tab.Store(snap); err != nil {
			t.Fatal(err)
		}
	}
	sg, err := NewAkamai2(testKey, "", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{tab: tab, log: &recordLog{}, reg: prometheus.NewRegistry(), mux: http.NewServeMux()}
	o := Options{
		Catalog: testCatalog(), Decider: tab, Geo: geo.Demo(),
		Signers: map[string]Signer{"cdn-b": sg},
		TTL:     20 * time.Second, IncidentTTL: 10 * time.Second, MaxTTL: 300 * time.Second,
		DemoteFactor: 1.2, DemoteFor: 2 * time.Minute,
		DecisionLog: f.log, LogSample: 1, Registerer: f.reg,
		Now: func() time.Time { return testNow },
	}
	if tweak != nil {
		tweak(&o)
	}
	if f.s, err = New(o); err != nil {
		t.Fatal(err)
	}
	n := 0
	f.s.newView = func() string { n++; return fmt.Sprintf("new-view-%d", n) }
	f.s.Register(f.mux)
	return f
}

func (f *fixture) get(t testing.TB, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = "100.64.1.2:40000" // GB, eu-west, AS64496 in the demo coverage
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

func TestRedirect(t *testing.T) {
	onlyB := ranking(steering.RuleMeasured, 0, choice("cdn-b", 1, steering.HealthUp), choice("cdn-a", 0, steering.HealthUp), choice("cdn-c", 0, steering.HealthDown))
	onlyA := ranking(steering.RuleMeasured, 0, choice("cdn-a", 1, steering.HealthUp), choice("cdn-b", 0, steering.HealthUp), choice("cdn-c", 0, steering.HealthUp))
	cases := []struct {
		name     string
		snap     *steering.Snapshot
		target   string
		hdr      map[string]string
		code     int
		location string // without the token, which is checked apart
		signed   bool
		cookie   bool // a Set-Cookie with a new view is expected
	}{
		{"path and query kept", onlyA, "/r/vod/movies/42/master.m3u8?lang=en&x=1", nil, 302,
			"https://a.example.net/media/movies/42/master.m3u8?lang=en&x=1", false, true},
		{"escaped path kept byte for byte", onlyA, "/r/vod/a%20b/c%2Fd.m3u8", nil, 302,
			"https://a.example.net/media/a%20b/c%2Fd.m3u8", false, true},
		{"our view parameter is not passed on", onlyA, "/r/vod/m.mpd?cdnpilot_view=v-1&keep=2", nil, 302,
			"https://a.example.net/media/m.mpd?keep=2", false, false},
		{"view from the cookie sets none", onlyA, "/r/vod/m.mpd", map[string]string{"Cookie": "cdnpilot_view=abc"}, 302,
			"https://a.example.net/media/m.mpd", false, false},
		{"signed CDN gets a token", onlyB, "/r/vod/v0/index.m3u8?a=1", nil, 302,
			"http://127.0.0.1:9002/v0/index.m3u8?a=1", true, true},
		{"signed CDN without a query", onlyB, "/r/vod/v0/index.m3u8", nil, 302,
			"http://127.0.0.1:9002/v0/index.m3u8", true, true},
		{"no snapshot: static order", nil, "/r/live/x.m3u8", nil, 302,
			"http://127.0.0.1:9002/x.m3u8", true, true},
		{"unknown service", onlyA, "/r/radio/x.m3u8", nil, 404, "", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.snap, nil)
			rec := f.get(t, c.target, c.hdr)
			if rec.Code != c.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.code, rec.Body)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("Access-Control-Allow-Origin %q", got)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q", got)
			}
			if c.code != 302 {
				return
			}
			loc := rec.Header().Get("Location")
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatal(err)
			}
			if c.signed {
				q := u.Query()
				tok := q.Get("__token__")
				if tok == "" {
					t.Fatalf("no token in %s", loc)
				}
				if err := VerifyAkamai2(testKey, tok, u.Path, testNow.Add(59*time.Minute)); err != nil {
					t.Errorf("token does not verify: %v", err)
				}
				if err := VerifyAkamai2(testKey, tok, u.Path, testNow.Add(61*time.Minute)); err == nil {
					t.Error("token still valid after its expiry")
				}
				loc = loc[:strings.LastIndex(loc, "__token__=")-1]
			}
			if loc != c.location {
				t.Errorf("Location\n got %s\nwant %s", loc, c.location)
			}
			if got := rec.Header().Get("Set-Cookie") != ""; got != c.cookie {
				t.Errorf("Set-Cookie %q, want one: %v", rec.Header().Get("Set-Cookie"), c.cookie)
			}
			if len(f.log.recs) != 1 || f.log.recs[0].Protocol != "http" || f.log.recs[0].Result != "302" || f.log.recs[0].Location.Region != "eu-west" {
				t.Errorf("decision log %+v", f.log.recs)
			}
		})
	}
}

// TestRedirectSticky: a view keeps its CDN across requests, whichever of
// the three ways it names itself, and views spread by weight.
func TestRedirectSticky(t *testing.T) {
	f := newFixture(t, ranking(steering.RuleMeasured, 0,
		choice("cdn-a", 0.5, steering.HealthUp), choice("cdn-b", 0.3, steering.HealthUp), choice("cdn-c", 0.2, steering.HealthUp)), nil)
	hostOf := func(rec *httptest.ResponseRecorder) string {
		u, err := url.Parse(rec.Header().Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
	}
	counts := map[string]int{}
	for i := range 300 {
		view := "view-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		first := hostOf(f.get(t, "/r/vod/m.m3u8?cdnpilot_view="+view, nil))
		counts[first]++
		for _, again := range []*httptest.ResponseRecorder{
			f.get(t, "/r/vod/seg.m4s", map[string]string{"Cookie": "cdnpilot_view=" + view}),
			f.get(t, "/r/vod/seg.m4s?CMCD="+url.QueryEscape(`ot=v,sid="`+view+`"`), nil),
			f.get(t, "/r/vod/seg.m4s", map[string]string{"CMCD-Session": `sid="` + view + `",st=v`}),
		} {
			if h := hostOf(again); h != first {
				t.Fatalf("view %s went to %s, then %s", view, first, h)
			}
		}
	}
	// 300 views at 0.5/0.3/0.2: each share within a generous band.
	for host, want := range map[string]int{"a.example.net": 150, "127.0.0.1:9002": 90, "c.example.net": 60} {
		if n := counts[host]; n < want*2/3 || n > want*4/3 {
			t.Errorf("%s got %d of 300 views, want about %d (%v)", host, n, want, counts)
		}
	}
}

// TestSteering runs content steering requests and compares each answer
// with its golden file (the JSON with the opaque _ss token decoded).
func TestSteering(t *testing.T) {
	normal := ranking(steering.RuleMeasured, 0, choice("cdn-a", 0.9, steering.HealthUp), choice("cdn-b", 0.08, steering.HealthUp), choice("cdn-c", 0.02, steering.HealthUp))
	bDown := ranking(steering.RuleMeasured, steering.FiredFailover, choice("cdn-a", 1, steering.HealthUp), choice("cdn-b", 0, steering.HealthDown), choice("cdn-c", 0, steering.HealthUp))
	cBanned := ranking(steering.RuleMeasured, 0, choice("cdn-b", 1, steering.HealthUp), choice("cdn-a", 0, steering.HealthDrained), choice("cdn-c", 0, steering.HealthBanned))
	allDown := ranking(steering.RuleFailOpen, steering.FiredStaticOrder, choice("cdn-a", 1, steering.HealthDown), choice("cdn-b", 0, steering.HealthDown), choice("cdn-c", 0, steering.HealthDown))
	cFirst := ranking(steering.RuleMeasured, 0, choice("cdn-c", 0.9, steering.HealthUp), choice("cdn-a", 0.08, steering.HealthUp), choice("cdn-b", 0.02, steering.HealthUp))
	cloneC := func(o *Options) {
		o.Catalog.CDNs[2].BaseURL = "https://c.example.net/media/"
		o.Catalog.Services[0].Clones = map[string]string{"cdn-c": "cdn-a"}
	}
	st := func(v viewState) string { return string(v.encode(nil)) }
	demotedUntil := testNow.Add(time.Minute).Unix()
	cases := []struct {
		name, target string
		snap         *steering.Snapshot
		tweak        func(*Options)
		hdr          map[string]string
	}{
		{"hls_first_poll", "/steer/vod?ladder_min=300000&_HLS_pathway=.&_HLS_throughput=500000", normal, nil, nil},
		{"dash_first_poll", `/steer/vod?ladder_min=300000&_DASH_pathway=%22cdn-a,cdn-b,cdn-c%22&_DASH_throughput=0,0,0`, normal, nil, nil},
		{"hls_sticky_view", "/steer/vod?_ss=" + st(viewState{view: "v-42", expected: "cdn-a"}) + "&_HLS_pathway=cdn-a&_HLS_throughput=4000000", normal, nil, nil},
		{"hls_slow_demoted", "/steer/vod?ladder_min=300000&_ss=" + st(viewState{view: "v-42", expected: "cdn-a"}) + "&_HLS_pathway=cdn-a&_HLS_throughput=200000", normal, nil, nil},
		{"hls_demotion_holds", "/steer/vod?ladder_min=300000&_ss=" + st(viewState{view: "v-42", expected: "cdn-b", demoted: "cdn-a", until: demotedUntil}) + "&_HLS_pathway=cdn-b&_HLS_throughput=4000000", normal, nil, nil},
		{"hls_demotion_expires", "/steer/vod?ladder_min=300000&_ss=" + st(viewState{view: "v-42", expected: "cdn-b", demoted: "cdn-a", until: testNow.Unix()}) + "&_HLS_pathway=cdn-b&_HLS_throughput=4000000", normal, nil, nil},
		{"hls_slow_everywhere_is_the_client", "/steer/vod?ladder_min=300000&_ss=" + st(viewState{view: "v-42", expected: "cdn-b", demoted: "cdn-a", until: demotedUntil}) + "&_HLS_pathway=cdn-b&_HLS_throughput=100000", normal, nil, nil},
		{"hls_player_left_our_pathway", "/steer/vod?_ss=" + st(viewState{view: "v-42", expected: "cdn-a"}) + "&_HLS_pathway=cdn-b&_HLS_throughput=4000000", normal, nil, nil},
		{"dash_one_slow_location", `/steer/vod?ladder_min=300000&_ss=` + st(viewState{view: "v-42", expected: "cdn-a"}) + `&_DASH_pathway="cdn-a,cdn-b"&_DASH_throughput=150000,3000000`, normal, nil, nil},
		{"dash_all_slow", `/steer/vod?ladder_min=300000&_DASH_pathway="cdn-a,cdn-b"&_DASH_throughput=150000,200000`, normal, nil, nil},
		{"incident_down_last_short_ttl", "/steer/vod?_HLS_pathway=cdn-b", bDown, nil, nil},
		{"banned_not_offered_drained_last", "/steer/vod", cBanned, nil, nil},
		{"all_down_fail_open", "/steer/vod", allDown, nil, nil},
		{"no_snapshot_static_order", "/steer/live", nil, nil, nil},
		{"bad_values_default_priority", "/steer/vod?ladder_min=-5&_ss=%%%&_HLS_pathway=%22%3Cscript%3E&_HLS_throughput=NaN&_DASH_throughput=1,2,3", normal, nil, nil},
		{"forged_state_ignored", "/steer/vod?_ss=" + st(viewState{view: "v|x", expected: "cdn-a"}), normal, nil, nil},
		{"cmcd_sid_names_the_view", "/steer/vod?CMCD=" + url.QueryEscape(`sid="cmcd-view-1"`), normal, nil, nil},
		{"cmcd_header_names_the_view", "/steer/vod", normal, nil, map[string]string{"CMCD-Session": `sid="cmcd-view-2"`}},
		{"shed_raises_ttl", "/steer/vod?_ss=" + st(viewState{view: "v-1"}), normal, func(o *Options) { o.ShedAboveRPS = 0.5 }, nil},
		// cdn-c is not in vod's manifests: a clone of cdn-a's pathway on
		// its own host, ranked first.
		{"hls_clone_first", "/steer/vod?_HLS_pathway=cdn-a", cFirst, cloneC, nil},
		{"dash_clone_reported_back", `/steer/vod?_DASH_pathway="cdn-a,cdn-b,cdn-c"&_DASH_throughput=0,0,0`, cFirst, cloneC, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.snap, c.tweak)
			rec := f.get(t, c.target, c.hdr)
			if c.name == "shed_raises_ttl" {
				// The meter reads the last whole second: fill one, then ask
				// in the next.
				f.s.now = func() time.Time { return testNow.Add(time.Second) }
				rec = f.get(t, c.target, c.hdr)
			}
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			checkManifest(t, rec, f.s.services[strings.Split(strings.TrimPrefix(c.target, "/steer/"), "?")[0]])
			got := readable(t, rec)
			golden(t, filepath.Join("testdata", "steer", c.name+".json"), got)
			if len(f.log.recs) == 0 || f.log.recs[len(f.log.recs)-1].Result != "200" {
				t.Errorf("decision log %+v", f.log.recs)
			}
		})
	}
}

// checkManifest holds the rules players depend on: VERSION 1, a TTL,
// a RELOAD-URI, a non-empty priority of unique known pathways, CORS.
func checkManifest(t *testing.T, rec *httptest.ResponseRecorder, svc *service) {
	t.Helper()
	var m Manifest
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, rec.Body)
	}
	if m.Version != 1 || m.TTL < 1 || !strings.HasPrefix(m.Reload, "/steer/"+svc.name+"?") || len(m.Priority) == 0 {
		t.Fatalf("manifest breaks the rules: %s", rec.Body)
	}
	seen := map[string]bool{}
	for _, p := range m.Priority {
		if seen[p] || !svc.pathways[p] {
			t.Fatalf("priority %v repeats or names an unknown pathway", m.Priority)
		}
		seen[p] = true
	}
	clones := map[string]bool{}
	for _, c := range m.Clones {
		clones[c.ID] = true
	}
	for _, c := range m.Clones {
		if !svc.pathways[c.ID] || !svc.pathways[c.BaseID] || clones[c.BaseID] || c.URIReplacement.Host == "" {
			t.Fatalf("clone %+v: unknown pathway, a clone of a clone, or no host", c)
		}
	}
	if rec.Header().Get("Access-Control-Allow-Origin") != "*" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", rec.Header())
	}
}

// readable is the answer with its _ss token decoded, so a golden file
// says what state the view carries.
func readable(t *testing.T, rec *httptest.ResponseRecorder) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(m["RELOAD-URI"].(string))
	if err != nil {
		t.Fatal(err)
	}
	st, ok := decodeState(u.Query().Get("_ss"))
	if !ok {
		t.Fatalf("RELOAD-URI %s carries no state we can read", u)
	}
	q := u.Query()
	q.Set("_ss", "<state below>")
	u.RawQuery = q.Encode()
	m["RELOAD-URI"] = u.String()
	m["_ss (decoded)"] = map[string]any{"view": st.view, "expected": st.expected, "demoted": st.demoted, "until": st.until}
	m["Content-Type"] = rec.Header().Get("Content-Type")
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n got %s\nwant %s", path, got, want)
	}
}

// TestCloneHostPerPlayer: with a port in the base URLs, HOST is the host
// name for hls.js (which refuses a port there and keeps the base's) and
// host:port for dash.js (which takes the port from HOST).
func TestCloneHostPerPlayer(t *testing.T) {
	f := newFixture(t, ranking(steering.RuleMeasured, 0, choice("cdn-c", 1, steering.HealthUp), choice("cdn-b", 0, steering.HealthUp)), func(o *Options) {
		o.Catalog.CDNs[2].BaseURL = "http://127.0.0.3:9002"
		o.Catalog.Services[0].Clones = map[string]string{"cdn-c": "cdn-b"}
	})
	for _, c := range []struct{ target, host string }{
		{"/steer/vod?_HLS_pathway=cdn-b", "127.0.0.3"},
		{`/steer/vod?_DASH_pathway="cdn-a,cdn-b"`, "127.0.0.3:9002"},
		{"/steer/vod", "127.0.0.3:9002"}, // dash.js's first poll names no location yet
	} {
		var m Manifest
		if err := json.Unmarshal(f.get(t, c.target, nil).Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if len(m.Clones) != 1 || m.Clones[0].URIReplacement.Host != c.host || m.Priority[0] != "cdn-c" {
			t.Errorf("%s: clones %+v, priority %v; want cdn-c first on HOST %s", c.target, m.Clones, m.Priority, c.host)
		}
	}
}

func TestPreflight(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, target := range []string{"/steer/vod", "/r/vod/x.m3u8"} {
		req := httptest.NewRequest(http.MethodOptions, target, nil)
		req.Header.Set("Origin", "https://player.example")
		req.Header.Set("Access-Control-Request-Headers", "cmcd-request,cmcd-session")
		rec := httptest.NewRecorder()
		f.mux.ServeHTTP(rec, req)
		h := rec.Header()
		if rec.Code != 204 || h.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "CMCD-Session") {
			t.Errorf("%s: %d %v", target, rec.Code, h)
		}
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, ranking(steering.RuleMeasured, 0, choice("cdn-a", 1, steering.HealthUp), choice("cdn-b", 0, steering.HealthUp)), nil)
	f.get(t, "/r/vod/x.m3u8", nil)
	f.get(t, "/steer/vod?_HLS_pathway=cdn-a", nil)
	f.get(t, `/steer/vod?_DASH_pathway="cdn-a"`, nil)
	f.get(t, "/steer/vod?ladder_min=1000000&_ss="+string(viewState{view: "v-1", expected: "cdn-a"}.encode(nil))+"&_HLS_pathway=cdn-a&_HLS_throughput=10", nil)
	for _, c := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{f.s.m.response("http", "cdn-a", "eu-west", 302), 1},
		{f.s.m.response("hls", "cdn-a", "eu-west", 200), 1},
		{f.s.m.response("dash", "cdn-a", "eu-west", 200), 1},
		{f.s.m.response("hls", "cdn-b", "eu-west", 200), 1}, // the demoted view
		{f.s.m.demotions.WithLabelValues("vod", "slow"), 1},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%v: %v, want %v", c.c, got, c.want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	tab, err := steering.NewTable(testCatalog(), steering.Stale{Static: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := func() Options { return Options{Catalog: testCatalog(), Decider: tab, Geo: geo.Demo()} }
	for name, tweak := range map[string]func(*Options){
		"no decider":        func(o *Options) { o.Decider = nil },
		"incident over ttl": func(o *Options) { o.TTL, o.IncidentTTL = 5*time.Second, 10*time.Second },
		"jitter":            func(o *Options) { o.TTLJitter = 0.9 },
		"signer of no cdn":  func(o *Options) { o.Signers = map[string]Signer{"cdn-z": &Akamai2{}} },
		"bad base url": func(o *Options) {
			o.Catalog.CDNs[0].BaseURL = "ftp://x"
		},
		// cdn-c's base URL is https://c.example.net: not cdn-a's path.
		"clone on another path": func(o *Options) { o.Catalog.Services[0].Clones = map[string]string{"cdn-c": "cdn-a"} },
		"clone of a clone": func(o *Options) {
			o.Catalog.CDNs[2].BaseURL = "https://c.example.net/media"
			o.Catalog.Services[0].Clones = map[string]string{"cdn-c": "cdn-a", "cdn-a": "cdn-b"}
		},
	} {
		o := base()
		tweak(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

package redirect

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/cdnpilot/cdnpilot/steering"
)

// FuzzSteering: whatever query and CMCD header a player (or anyone)
// sends, the answer is a 200 manifest players accept: VERSION 1, a TTL, a
// RELOAD-URI whose state decodes, and a non-empty priority of unique
// pathways of the service, with the service's clone in one of its two
// forms. Never a 4xx, never a panic.
func FuzzSteering(f *testing.F) {
	for _, seed := range []string{
		"ladder_min=300000&_HLS_pathway=cdn-a&_HLS_throughput=500000",
		`_DASH_pathway="cdn-a,cdn-b"&_DASH_throughput=1,2`,
		"_ss=" + string(viewState{view: "v", expected: "cdn-a", demoted: "cdn-b", until: 1}.encode(nil)),
		"_ss=MXx8fHw&ladder_min=1e400&_HLS_throughput=-1",
		"CMCD=" + url.QueryEscape(`sid="abc",ot=v`),
		"%zz&&&=&_HLS_pathway=%22%22&_DASH_pathway=,,,",
	} {
		f.Add(seed, `sid="x"`)
	}
	fx := newFixture(f, ranking(steering.RuleMeasured, 0,
		choice("cdn-a", 0.6, steering.HealthUp), choice("cdn-b", 0.4, steering.HealthUp), choice("cdn-c", 0, steering.HealthDown)), func(o *Options) {
		o.Catalog.CDNs[2].BaseURL = "http://127.0.0.3:9002/"
		o.Catalog.Services[0].Clones = map[string]string{"cdn-c": "cdn-b"}
	})
	f.Fuzz(func(t *testing.T, query, cmcd string) {
		req := httptest.NewRequest(http.MethodGet, "/steer/vod", nil)
		req.URL.RawQuery = query
		req.RemoteAddr = "100.64.1.2:40000"
		if !strings.ContainsAny(cmcd, "\r\n\x00") {
			req.Header.Set("CMCD-Session", cmcd)
		}
		rec := httptest.NewRecorder()
		fx.mux.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("status %d for %q", rec.Code, query)
		}
		var m Manifest
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("not JSON for %q: %v\n%s", query, err, rec.Body)
		}
		u, err := url.Parse(m.Reload)
		if err != nil || m.Version != 1 || m.TTL < 1 || len(m.Priority) == 0 {
			t.Fatalf("bad manifest for %q: %s", query, rec.Body)
		}
		if _, ok := decodeState(u.Query().Get("_ss")); !ok {
			t.Fatalf("RELOAD-URI state does not decode for %q: %s", query, m.Reload)
		}
		seen := map[string]bool{}
		for _, p := range m.Priority {
			if seen[p] || !fx.s.services["vod"].pathways[p] {
				t.Fatalf("priority %v for %q", m.Priority, query)
			}
			seen[p] = true
		}
		if len(m.Clones) != 1 || m.Clones[0].ID != "cdn-c" || m.Clones[0].BaseID != "cdn-b" ||
			(m.Clones[0].URIReplacement.Host != "127.0.0.3" && m.Clones[0].URIReplacement.Host != "127.0.0.3:9002") {
			t.Fatalf("clones %+v for %q", m.Clones, query)
		}
	})
}

// FuzzRedirect: any path and query gets a 302 to one of the CDNs, with
// the path kept and our view parameter gone.
func FuzzRedirect(f *testing.F) {
	for _, seed := range []string{"a/b.m3u8?x=1", "?cdnpilot_view=%%", "x?cdnpilot_view=v1&cdnpilot_view=v2", "%2F%2E%2E/../x"} {
		f.Add(seed)
	}
	fx := newFixture(f, ranking(steering.RuleMeasured, 0, choice("cdn-a", 0.5, steering.HealthUp), choice("cdn-b", 0.5, steering.HealthUp)), nil)
	f.Fuzz(func(t *testing.T, rest string) {
		u, err := url.Parse("/r/vod/" + rest)
		if err != nil || strings.ContainsAny(rest, "#\x00\r\n ") {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL = u
		req.RequestURI = u.RequestURI()
		req.RemoteAddr = "100.64.1.2:40000"
		rec := httptest.NewRecorder()
		fx.mux.ServeHTTP(rec, req)
		if rec.Code == http.StatusNotFound || rec.Code == http.StatusMovedPermanently || rec.Code == http.StatusTemporaryRedirect {
			return // the mux's own answers to paths it cleans or does not route
		}
		loc := rec.Header().Get("Location")
		if rec.Code != 302 || !(strings.HasPrefix(loc, "https://a.example.net/media/") || strings.HasPrefix(loc, "http://127.0.0.1:9002/")) {
			t.Fatalf("%q: %d %q", rest, rec.Code, loc)
		}
		if lu, err := url.Parse(loc); err != nil || lu.Query().Has(viewParam) {
			t.Fatalf("%q: our view parameter leaked into %q", rest, loc)
		}
	})
}

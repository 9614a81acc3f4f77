package api

import (
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

var update = flag.Bool("update", false, "rewrite golden files")

var at = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

var testCatalog = steering.Catalog{
	CDNs:     []steering.CDN{{Name: "cdn-a", Host: "a.example"}, {Name: "cdn-b", Host: "b.example"}},
	Services: []steering.Service{{Name: "vod", CDNs: []string{"cdn-a", "cdn-b"}}, {Name: "live", CDNs: []string{"cdn-b"}}},
}

// tableAt is a real steering Table holding a snapshot of vod made by the
// engine from a minute of views in eu-west and us-east; live has none.
func tableAt(t *testing.T, now func() time.Time) *steering.Table {
	t.Helper()
	cat := testCatalog
	eng, err := steering.NewEngine(cat, steering.DefaultPolicy(), at)
	if err != nil {
		t.Fatal(err)
	}
	for s := range 60 {
		now := at.Add(time.Duration(s) * time.Second)
		for i := range 5 {
			for _, region := range []string{"eu-west", "us-east"} {
				cdn := []string{"cdn-a", "cdn-b"}[i%2]
				o := steering.Observation{At: now, Service: "vod", CDN: cdn, Location: steering.Location{Region: region, Country: "GB", ASN: 64496},
					Client: uint64(s*10 + i), Kind: steering.KindViewStart, StartupMS: uint32(800 + 400*(i%2)), BitrateKbps: 3000}
				if err := eng.Observe(&o); err != nil {
					t.Fatal(err)
				}
			}
		}
		eng.Tick(now)
	}
	tbl, err := steering.NewTable(cat, steering.DefaultPolicy().Stale, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range eng.Tick(at.Add(60 * time.Second)) {
		if s.Service == "vod" {
			if err := tbl.Store(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tbl
}

func TestRankingsAPI(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, method, url string
		status            int
		golden, contains  string
		absent            string
	}{
		{"one location", "GET", "/api/v1/rankings?service=vod&region=eu-west&asn=64496", 200, "rankings_location.json", "", ""},
		{"every scope", "GET", "/api/v1/rankings?service=vod", 200, "rankings_all.json", "", ""},
		{"unknown region falls back", "GET", "/api/v1/rankings?service=vod&region=mars", 200, "", `"level":"global"`, ""},
		{"no service", "GET", "/api/v1/rankings", 400, "", `{"error":"service: required","field":"service"}`, ""},
		{"unknown service", "GET", "/api/v1/rankings?service=radio", 404, "", `"service: \"radio\" is not a configured service"`, ""},
		{"no snapshot yet", "GET", "/api/v1/rankings?service=live", 503, "", `no ranking snapshot for \"live\" yet`, ""},
		{"bad asn", "GET", "/api/v1/rankings?service=vod&asn=AS1", 400, "", `"field":"asn"`, ""},
		{"regions only", "GET", "/api/v1/rankings?service=vod&level=region", 200, "rankings_regions.json", "", ""},
		{"regions without stats", "GET", "/api/v1/rankings?service=vod&level=region&stats=false", 200, "", `"leader":true`, `"stats"`},
		{"with stats", "GET", "/api/v1/rankings?service=vod&level=region", 200, "", `"stats"`, ""},
		{"bad stats", "GET", "/api/v1/rankings?service=vod&stats=no", 400, "", `"field":"stats"`, ""},
		{"bad level", "GET", "/api/v1/rankings?service=vod&level=city", 400, "", `"field":"level"`, ""},
		{"level with a location", "GET", "/api/v1/rankings?service=vod&level=region&region=eu-west", 400, "", `"field":"level"`, ""},
		{"unknown parameter", "GET", "/api/v1/rankings?service=vod&regoin=x", 400, "", `unknown query parameter \"regoin\"`, ""},
		{"wrong method", "POST", "/api/v1/rankings?service=vod", 405, "", `POST is not allowed`, ""},
		{"no such endpoint", "GET", "/api/v1/nothing", 404, "", `no such endpoint`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := e.do(t, "viewer", tc.method, tc.url, nil)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q", ct)
			}
			if hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("cache-control %q", hdr.Get("Cache-Control"))
			}
			if tc.contains != "" && !strings.Contains(string(body), tc.contains) {
				t.Errorf("body %s, want it to contain %s", body, tc.contains)
			}
			if tc.absent != "" && strings.Contains(string(body), tc.absent) {
				t.Errorf("body has %s: %.300s", tc.absent, body)
			}
			if tc.golden != "" {
				golden(t, tc.golden, body)
			}
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs (run with -update if intended)\ngot:  %s\nwant: %s", p, got, want)
	}
}

func TestRankingsAPIRetryAfter(t *testing.T) {
	e := newEnv(t)
	_, _, hdr := e.do(t, "viewer", http.MethodGet, "/api/v1/rankings?service=live", nil)
	if hdr.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After = %q", hdr.Get("Retry-After"))
	}
}

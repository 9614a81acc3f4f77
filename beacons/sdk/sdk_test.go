package sdk

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestServe(t *testing.T) {
	mux := http.NewServeMux()
	Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, tc := range []struct {
		name        string
		method      string
		ifNoneMatch string
		status      int
		body        bool
	}{
		{"get", http.MethodGet, "", http.StatusOK, true},
		{"head", http.MethodHead, "", http.StatusOK, false},
		{"revalidate", http.MethodGet, etag, http.StatusNotModified, false},
		{"revalidate weak in a list", http.MethodGet, `"other", W/` + etag, http.StatusNotModified, false},
		{"star", http.MethodGet, "*", http.StatusNotModified, false},
		{"stale tag", http.MethodGet, `"0123"`, http.StatusOK, true},
		{"post", http.MethodPost, "", http.StatusMethodNotAllowed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+Path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.ifNoneMatch != "" {
				req.Header.Set("If-None-Match", tc.ifNoneMatch)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == http.StatusMethodNotAllowed {
				return
			}
			want := map[string]string{
				"Cache-Control":               "public, max-age=300",
				"ETag":                        etag,
				"Access-Control-Allow-Origin": "*",
			}
			if tc.status == http.StatusOK {
				want["Content-Type"] = "text/javascript; charset=utf-8"
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tc.body != bytes.Equal(body, script) || (!tc.body && len(body) > 0) {
				t.Errorf("body %d bytes, want the script: %v", len(body), tc.body)
			}
		})
	}
}

// TestScript: the embedded file is the plugin, and its ETag is quoted.
func TestScript(t *testing.T) {
	s := string(Script())
	for _, want := range []string{"attachHls", "attachDash", "cmcdConfig", "/v1/beacons", "sendBeacon"} {
		if !strings.Contains(s, want) {
			t.Errorf("cdnpilot.js lacks %q", want)
		}
	}
	if len(etag) != 34 || etag[0] != '"' || etag[33] != '"' {
		t.Errorf("etag %s", etag)
	}
}

// TestAdapters runs the hls.js and dash.js adapters in node against fake
// players (testdata/adapters.cjs): the event orders the real players
// produce, checked without a browser. node is a make test dependency; a
// missing node fails the test.
func TestAdapters(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (make test installs nodejs): %v", err)
	}
	out, err := exec.Command(node, filepath.Join("testdata", "adapters.cjs")).CombinedOutput()
	if err != nil {
		t.Fatalf("adapters.cjs: %v\n%s", err, out)
	}
}

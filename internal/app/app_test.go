package app

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/internal/chserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestReadyz: ready only when both the broker and the store answer.
func TestReadyz(t *testing.T) {
	srv := chserver.ForTestServer(t)
	p := startPipeline(t, srv.Addr(), nil)
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(p.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("readyz %d: %s", code, body)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	code, body := get()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "analytics store") {
		t.Fatalf("readyz with ClickHouse down: %d %q", code, body)
	}
	if err := srv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("readyz after restart %d: %s", code, body)
	}
	// /healthz is liveness only: it does not depend on anything.
	resp, err := http.Get(p.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %s", resp.Status)
	}
}

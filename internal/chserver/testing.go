package chserver

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"testing"
)

// Environment variables read by ForTest.
const (
	// EnvAddr names a ClickHouse native address shared by the whole test run.
	EnvAddr = "CDNPILOT_TEST_CLICKHOUSE"
	// EnvRequire, set to 1, turns a missing server binary into a failure:
	// CI must never pass by skipping.
	EnvRequire = "CDNPILOT_REQUIRE_SERVERS"
)

// ForTest returns a ClickHouse native address for t: the shared server named
// by CDNPILOT_TEST_CLICKHOUSE, or a private one stopped in t.Cleanup.
// Tests sharing a server must isolate themselves (one database each).
func ForTest(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvAddr); addr != "" {
		return addr
	}
	return ForTestServer(t).Addr()
}

// ForTestServer always starts a private server under t.TempDir(), for tests
// that kill or restart it.
func ForTestServer(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(DefaultBinary); errors.Is(err, fs.ErrNotExist) {
		msg := "clickhouse-server not installed at " + DefaultBinary + " (apt-get install clickhouse-server)"
		if os.Getenv(EnvRequire) == "1" {
			t.Fatal(msg + "; " + EnvRequire + "=1 requires it")
		}
		t.Skip(msg)
	}
	s, err := Start(t.Context(), Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("start clickhouse: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop clickhouse: %v", err)
		}
	})
	return s
}

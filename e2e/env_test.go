package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// envRequire, set to 1 (as `make test` does), turns a missing browser,
// ffmpeg or node_modules into a failure: CI must never pass by skipping.
const envRequire = "CDNPILOT_REQUIRE_SERVERS"

// missing fails the test under CDNPILOT_REQUIRE_SERVERS=1, else skips it.
func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv(envRequire) == "1" {
		t.Fatal(what + "; " + envRequire + "=1 requires it (run .ci/deps)")
	}
	t.Skip(what + " (run .ci/deps)")
}

// requireTool finds a program in PATH.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, name+" not installed")
	}
	return p
}

// chromiumPath is Debian's chromium: the harness never downloads a browser.
const chromiumPath = "/usr/bin/chromium"

// requireBrowser checks for node, chromium and e2e/js/node_modules, and
// returns the node binary.
func requireBrowser(t *testing.T) string {
	t.Helper()
	node := requireTool(t, "node")
	if _, err := os.Stat(chromiumPath); err != nil {
		missing(t, chromiumPath+" not installed (apt-get install chromium)")
	}
	for _, p := range []string{"playwright-core", "hls.js", "dashjs"} {
		if _, err := os.Stat(filepath.Join("js", "node_modules", p, "package.json")); err != nil {
			missing(t, "e2e/js/node_modules/"+p+" missing (npm ci in e2e/js)")
		}
	}
	return node
}

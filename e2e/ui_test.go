package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/syncbuf"
)

// artifactsDir is where browser tests leave their screenshots
// (CDNPILOT_ARTIFACTS overrides it); CI keeps the folder.
func artifactsDir(t testing.TB, sub string) string {
	t.Helper()
	dir := os.Getenv("CDNPILOT_ARTIFACTS")
	if dir == "" {
		dir = "artifacts"
	}
	dir, err := filepath.Abs(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// demo is `cdnpilot demo` as a user runs it, on free ports.
type demo struct {
	ui, token string
	stderr    *syncbuf.Buffer
}

// startDemo builds the binary and runs `cdnpilot demo` with extra flags;
// it returns once the demo has printed its URLs.
func startDemo(t *testing.T, args ...string) demo {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cdnpilot")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../cmd/cdnpilot")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	d := demo{token: "ui-test-token-0123456789abcdef", stderr: &syncbuf.Buffer{}}
	cmd := exec.Command(bin, append([]string{"demo", "--http-addr", "127.0.0.1:0", "--dns-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "CDNPILOT_ADMIN_TOKEN="+d.token)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			_, _ = d.stderr.WriteString(sc.Text() + "\n")
		}
	}()
	t.Cleanup(func() {
		// Ctrl-C, as a user stops it: the demo must exit cleanly.
		_ = cmd.Process.Signal(syscall.SIGINT)
		exited := make(chan error, 1)
		go func() { <-errDone; exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("demo exit: %v\n%s", err, d.stderr.String())
			}
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("demo did not stop within 60 s of SIGINT")
		}
	})
	re := regexp.MustCompile(`web UI\s+(http://127\.0\.0\.1:\d+)/`)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			d.ui = m[1] + "/"
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if d.ui == "" {
		t.Fatalf("demo printed no web UI URL; stderr:\n%s", d.stderr.String())
	}
	// Ready: the override topic is read and the first rankings are in.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(d.ui + "readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo not ready within 30 s; stderr:\n%s", tail(d.stderr.String(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return d
}

// TestWebUI drives the operator UI in Debian's chromium against the demo:
// sign in, the overview fills with live data, an override is previewed
// (dry run), applied, shows in the Regions view and the audit log, a
// decision is explained, and no page logs a console error. Screenshots
// of every page land in artifacts/ui.
func TestWebUI(t *testing.T) {
	node := requireBrowser(t)
	d := startDemo(t, "--viewers", "150")
	out := artifactsDir(t, "ui")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "ui.mjs", d.ui, d.token, out)
	cmd.Dir = "js"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var steps []string
	for sc.Scan() {
		var st struct {
			Step   string  `json:"step"`
			OK     bool    `json:"ok"`
			MS     float64 `json:"ms"`
			Detail string  `json:"detail"`
		}
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			t.Logf("ui.mjs: %s", sc.Text())
			continue
		}
		line := fmt.Sprintf("%-34s %6.0f ms  %s", st.Step, st.MS, st.Detail)
		steps = append(steps, line)
		if st.OK {
			t.Log("ok   " + line)
		} else {
			t.Error("FAIL " + line)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ui.mjs: %v\n%s\nsteps:\n%s\ndemo stderr (tail):\n%s", err, stderr.String(), strings.Join(steps, "\n"), tail(d.stderr.String(), 40))
	}
	if len(steps) < 8 {
		t.Fatalf("ui.mjs ran %d steps:\n%s\n%s", len(steps), strings.Join(steps, "\n"), stderr.String())
	}
	for _, page := range []string{"overview", "regions", "cdn", "overrides", "audit", "explain", "health", "overview-dark"} {
		if fi, err := os.Stat(filepath.Join(out, page+".png")); err != nil || fi.Size() < 10_000 {
			t.Errorf("screenshot %s.png: %v", page, err)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

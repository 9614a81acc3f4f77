package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSimulateSteerPath plays a few seconds of the steady world with
// every view steered through one of the loop's actuators over loopback,
// and reports each actuator's requests, none failed.
func TestSimulateSteerPath(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "internal", "sim", "scenarios", "steady.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	scenario := filepath.Join(t.TempDir(), "short.yaml")
	short := strings.Replace(string(data), "duration: 0s", "duration: 5s", 1)
	if err := os.WriteFile(scenario, []byte(short), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err = run(t.Context(), []string{"simulate", "--scenario", scenario, "--steer-path", "mixed", "--baselines=false", "--scale", "0.5"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, p := range []string{`\| engine via mixed \|`, `Steering path mixed`, `\| dns \| [1-9]\d* \| 0 \|`, `\| http \| [1-9]\d* \| 0 \|`, `\| hls \| [1-9]\d* \| 0 \|`, `\| dash \| [1-9]\d* \| 0 \|`} {
		if !regexp.MustCompile(p).MatchString(out.String()) {
			t.Errorf("output lacks %s:\n%s", p, out.String())
		}
	}
}

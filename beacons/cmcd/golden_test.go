package cmcd

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// goldenResult is what a golden file records per report: the parsed Report,
// the Beacon it maps to, or the error.
type goldenResult struct {
	Line   int            `json:"line,omitempty"`
	Report *Report        `json:"report,omitempty"`
	Beacon map[string]any `json:"beacon,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// beaconFields renders the set fields of b, the event type by name
// (record.Type has no JSON form), so goldens show what the mapping filled.
func beaconFields(t *testing.T, b record.Beacon) map[string]any {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		if v == "" || v == float64(0) || v == false {
			delete(m, k)
		}
	}
	m["Type"] = b.Type.String()
	return m
}

// TestGolden decodes testdata/golden/<mode>_*.txt and compares with the
// .golden JSON next to it. Leading "#" lines are comments citing where the
// fixture comes from. Modes: "query" (one raw URL query), "headers" (HTTP
// header lines), "event" (an application/cmcd body).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".txt")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input := stripComments(string(raw))
			var results []goldenResult
			switch mode, _, _ := strings.Cut(name, "_"); mode {
			case "query":
				r, err := ParseQuery(strings.TrimSpace(input))
				results = []goldenResult{result(t, r, err)}
			case "headers":
				r, err := ParseHeaders(parseHeaderLines(t, input))
				results = []goldenResult{result(t, r, err)}
			case "event":
				reports, errs := ParseEventBody(strings.NewReader(input), 1<<20)
				results = eventResults(t, input, reports, errs)
			default:
				t.Fatalf("unknown mode %q in %s", mode, file)
			}
			got, err := json.MarshalIndent(results, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(file, ".txt") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the decoded output:\n%s", golden, got)
			}
		})
	}
}

func stripComments(s string) string {
	for strings.HasPrefix(s, "#") {
		_, s, _ = strings.Cut(s, "\n")
	}
	return s
}

func parseHeaderLines(t *testing.T, s string) http.Header {
	t.Helper()
	h := http.Header{}
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("bad header line %q", line)
		}
		h.Add(name, strings.TrimSpace(val))
	}
	return h
}

func result(t *testing.T, r Report, err error) goldenResult {
	t.Helper()
	if err != nil {
		return goldenResult{Error: err.Error()}
	}
	res := goldenResult{Report: &r}
	b, err := r.Beacon()
	if err != nil {
		res.Error = err.Error()
	} else {
		res.Beacon = beaconFields(t, b)
	}
	return res
}

// eventResults interleaves reports and line errors in body order. Reports
// carry no line number, so they are matched to the non-blank lines that did
// not fail.
func eventResults(t *testing.T, body string, reports []Report, errs []LineError) []goldenResult {
	t.Helper()
	failed := map[int]string{}
	for _, e := range errs {
		failed[e.Line] = e.Err.Error()
	}
	var out []goldenResult
	n := 0
	for i, line := range strings.Split(body, "\n") {
		ln := i + 1
		if msg, ok := failed[ln]; ok {
			out = append(out, goldenResult{Line: ln, Error: msg})
			continue
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if n >= len(reports) {
			t.Fatalf("line %d has neither a report nor an error", ln)
		}
		res := result(t, reports[n], nil)
		res.Line = ln
		out = append(out, res)
		n++
	}
	if n != len(reports) {
		t.Fatalf("%d reports for %d good lines", len(reports), n)
	}
	return out
}

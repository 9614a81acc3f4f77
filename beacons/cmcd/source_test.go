package cmcd

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseQuery(t *testing.T) {
	tests := []struct {
		name, query, key, reason string
		wantSID                  string
	}{
		{name: "only CMCD", query: "CMCD=sid%3D%22s%22", wantSID: "s"},
		{name: "among others", query: "a=1&CMCD=sid%3D%22s%22%2Cbr%3D%28200%29&b=%zz", wantSID: "s"},
		{name: "plus is space", query: "CMCD=br%3D1%2C+sid%3D%22s%22", wantSID: "s"},
		{name: "absent", query: "a=1&cmcd=x", key: "CMCD", reason: "no CMCD"},
		{name: "empty query", query: "", key: "CMCD", reason: "no CMCD"},
		{name: "twice", query: "CMCD=bs&CMCD=su", key: "CMCD", reason: "more than once"},
		{name: "bad escape", query: "CMCD=sid%3D%2", key: "CMCD", reason: "percent-encoding"},
		{name: "empty value", query: "CMCD=", reason: "empty dictionary"},
		{name: "bad dictionary", query: "CMCD=br%3D%22x%22", key: "br", reason: "wrong type"},
		{name: "oversized", query: "CMCD=" + strings.Repeat("%41", MaxLineBytes+1), key: "CMCD", reason: "longer than"},
		{name: "decoded too long", query: "CMCD=a%3D" + strings.Repeat("1", MaxLineBytes), reason: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseQuery(tt.query)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("ParseQuery: %v", err)
				}
				if r.SID != tt.wantSID {
					t.Errorf("SID = %q, want %q", r.SID, tt.wantSID)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Key != tt.key || !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("error = %v, want key %q reason containing %q", err, tt.key, tt.reason)
			}
		})
	}
}

func TestParseHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("CMCD-Object", "br=(200),ot=v")
	h.Set("Cmcd-Request", "bl=(5000)")
	h.Add("cmcd-request", "su") // non-canonical spelling, second field line
	h.Set("CMCD-Session", `sid="s",cid="c"`)
	h.Set("X-Other", "ignored")
	r, err := ParseHeaders(h)
	if err != nil {
		t.Fatal(err)
	}
	if r.SID != "s" || r.CID != "c" || !r.SU || r.OT != "v" || len(r.BL) != 1 || r.BR[0].Value != 200 {
		t.Errorf("merged report wrong: %+v", r)
	}

	tests := []struct {
		name    string
		headers map[string][]string
		key     string
		reason  string
	}{
		{"none", map[string][]string{"Accept": {"x"}}, "CMCD-*", "no CMCD headers"},
		{"key in two shards", map[string][]string{"Cmcd-Object": {"br=1"}, "Cmcd-Status": {"br=2"}}, "br", "more than one CMCD header"},
		{"key twice in repeated lines", map[string][]string{"Cmcd-Object": {"br=1", "br=2"}}, "br", "duplicate key"},
		{"empty shard", map[string][]string{"Cmcd-Session": {""}}, "CMCD-Session", "empty dictionary"},
		{"bad value", map[string][]string{"Cmcd-Session": {"sid=1"}}, "sid", "wrong type"},
		{"too many members overall", map[string][]string{
			"Cmcd-Object":  {manyKeys("a", 100)},
			"Cmcd-Request": {manyKeys("b", 29)},
		}, "CMCD-Request", "across CMCD headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHeaders(http.Header(tt.headers))
			var e *Error
			if !errors.As(err, &e) || e.Key != tt.key || !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("error = %v, want key %q reason containing %q", err, tt.key, tt.reason)
			}
		})
	}
}

func manyKeys(prefix string, n int) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strings.Repeat("a", i/26) + string(rune('a'+i%26))
	}
	return strings.Join(keys, ",")
}

func TestParseEventBody(t *testing.T) {
	body := strings.Join([]string{
		`e=t,sid="s",sn=1,ts=1`,
		``,
		`   `,
		`e=t,sid="s",sn=2,br="x"`,     // line 4: bad type
		"e=ps,sid=\"s\",sn=3,sta=p\r", // CRLF
		`garbage(`,                    // line 6
		`e=t,sid="s",sn=4`,            // last line without newline
	}, "\n")
	reports, errs := ParseEventBody(strings.NewReader(body), 1<<20)
	if len(reports) != 3 {
		t.Fatalf("got %d reports, want 3", len(reports))
	}
	for i, want := range []int64{1, 3, 4} {
		if *reports[i].SN != want {
			t.Errorf("report %d sn = %d, want %d", i, *reports[i].SN, want)
		}
	}
	if len(errs) != 2 || errs[0].Line != 4 || errs[1].Line != 6 {
		t.Fatalf("errs = %v, want lines 4 and 6", errs)
	}
	var e *Error
	if !errors.As(errs[0], &e) || e.Key != "br" {
		t.Errorf("line 4 error = %v, want key br", errs[0])
	}
	if got := errs[0].Error(); !strings.HasPrefix(got, `line 4: cmcd key "br"`) {
		t.Errorf("LineError.Error() = %q", got)
	}
}

func TestParseEventBodyLimits(t *testing.T) {
	good := `e=t,sid="s"` + "\n"
	t.Run("body over limit", func(t *testing.T) {
		body := strings.Repeat(good, 10)
		reports, errs := ParseEventBody(strings.NewReader(body), int64(len(good)*3+2))
		if len(reports) != 3 || len(errs) != 1 || errs[0].Line != 4 || !strings.Contains(errs[0].Error(), "body longer") {
			t.Errorf("reports %d, errs %v; want 3 and one body-limit error on line 4", len(reports), errs)
		}
	})
	t.Run("exactly at limit", func(t *testing.T) {
		body := strings.Repeat(good, 3)
		reports, errs := ParseEventBody(strings.NewReader(body), int64(len(body)))
		if len(reports) != 3 || len(errs) != 0 {
			t.Errorf("reports %d, errs %v; want 3 and none", len(reports), errs)
		}
	})
	t.Run("long line skipped", func(t *testing.T) {
		body := good + "a=" + strings.Repeat("1", 3*MaxLineBytes) + "\n" + good
		reports, errs := ParseEventBody(strings.NewReader(body), 1<<20)
		if len(reports) != 2 || len(errs) != 1 || errs[0].Line != 2 || !strings.Contains(errs[0].Error(), "line longer") {
			t.Errorf("reports %d, errs %v; want 2 and a long-line error on line 2", len(reports), errs)
		}
	})
	t.Run("many bad lines are summarised", func(t *testing.T) {
		body := strings.Repeat("BAD\n", maxLineErrors+10) + good
		reports, errs := ParseEventBody(strings.NewReader(body), 1<<20)
		if len(reports) != 1 || len(errs) != maxLineErrors+1 {
			t.Fatalf("reports %d, errs %d; want 1 and %d", len(reports), len(errs), maxLineErrors+1)
		}
		last := errs[len(errs)-1]
		if last.Line != maxLineErrors+1 || !strings.Contains(last.Error(), "9 later bad lines") {
			t.Errorf("summary = %v", last)
		}
	})
	t.Run("line cap", func(t *testing.T) {
		body := strings.Repeat(good, MaxEventLines+5)
		reports, errs := ParseEventBody(strings.NewReader(body), 1<<30)
		if len(reports) != MaxEventLines || len(errs) != 1 || errs[0].Line != MaxEventLines+1 {
			t.Errorf("reports %d, errs %v; want %d and one cap error", len(reports), errs, MaxEventLines)
		}
	})
	t.Run("read error", func(t *testing.T) {
		r := iotest.TimeoutReader(strings.NewReader(good + good))
		reports, errs := ParseEventBody(r, 1<<20)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "read body") {
			t.Errorf("reports %d, errs %v; want a read error", len(reports), errs)
		}
	})
	t.Run("no limit", func(t *testing.T) {
		reports, errs := ParseEventBody(strings.NewReader(good), math.MaxInt64)
		if len(reports) != 1 || len(errs) != 0 {
			t.Errorf("reports %d, errs %v; want 1 and none", len(reports), errs)
		}
	})
	t.Run("zero limit", func(t *testing.T) {
		reports, errs := ParseEventBody(strings.NewReader(good), 0)
		if len(reports) != 0 || len(errs) != 1 {
			t.Errorf("reports %d, errs %v; want 0 and a body-limit error", len(reports), errs)
		}
	})
}

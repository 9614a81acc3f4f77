package cmcd

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// Seeds live in testdata/fuzz/<FuzzName>/ so they run as regression cases in
// every plain `go test`, and new crashers found by -fuzz land beside them.

// wholeInput are the only reasons an *Error may carry without a key: they
// describe the input as a whole, before any key is read.
func wholeInput(reason string) bool {
	return reason == "empty dictionary" || strings.HasPrefix(reason, "input longer than")
}

// checkError fails unless err is an *Error that names its key (or is one
// of the whole-input problems).
func checkError(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not *Error", err, err)
	}
	if e.Key == "" && !wholeInput(e.Reason) {
		t.Fatalf("error %q names no key", err)
	}
	if e.Reason == "" {
		t.Fatalf("error for key %q has no reason", e.Key)
	}
}

// checkReport asserts the limits a decoded report promises downstream, and
// that mapping it never panics and fails only with a keyed error.
func checkReport(t *testing.T, r Report) {
	t.Helper()
	for _, c := range []struct {
		key string
		s   string
		max int
	}{{"sid", r.SID, maxSID}, {"cid", r.CID, maxCID}, {"cdn", r.CDN, maxCDN}, {"h", r.H, maxHost}, {"cen", r.CEN, maxCEN}} {
		if len(c.s) > c.max {
			t.Fatalf("%s is %d bytes, limit %d", c.key, len(c.s), c.max)
		}
	}
	if len(r.Custom) > maxCustom {
		t.Fatalf("%d custom keys kept, limit %d", len(r.Custom), maxCustom)
	}
	for k, v := range r.Custom {
		if len(v) > maxCustomVal {
			t.Fatalf("custom %q is %d bytes", k, len(v))
		}
	}
	if _, err := r.Beacon(); err != nil {
		checkError(t, err)
	}
}

func FuzzParseDict(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		members, derr := parseDict(s)
		r, err := Parse(s)
		if derr != nil {
			checkError(t, derr)
			if err == nil {
				t.Fatalf("Parse accepted what parseDict rejected: %v", derr)
			}
		} else if len(members) > MaxMembers {
			t.Fatalf("%d members, limit %d", len(members), MaxMembers)
		}
		if err != nil {
			checkError(t, err)
			return
		}
		checkReport(t, r)
	})
}

func FuzzParseHeaders(f *testing.F) {
	f.Fuzz(func(t *testing.T, object, request, session, status string) {
		h := http.Header{}
		for name, v := range map[string]string{
			"CMCD-Object": object, "CMCD-Request": request, "CMCD-Session": session, "CMCD-Status": status,
		} {
			if v != "" {
				h.Set(name, v)
			}
		}
		r, err := ParseHeaders(h)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Key == "" {
				// Header errors always name a key or the header shard.
				t.Fatalf("error %v does not name a key or header", err)
			}
			return
		}
		checkReport(t, r)
	})
}

func FuzzParseEventBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		reports, errs := ParseEventBody(bytes.NewReader(body), 64<<10)
		lines := bytes.Count(body, []byte("\n")) + 1
		if len(reports)+len(errs) > lines {
			t.Fatalf("%d reports and %d errors from %d lines", len(reports), len(errs), lines)
		}
		last := 0
		for _, le := range errs {
			if le.Line < 1 || le.Line > lines || le.Line <= last {
				t.Fatalf("line error %v: line out of range 1..%d or out of order", le, lines)
			}
			last = le.Line
			var e *Error
			if !errors.As(le, &e) || e.Reason == "" {
				t.Fatalf("line %d: error %v is not *Error", le.Line, le.Err)
			}
		}
		for _, r := range reports {
			checkReport(t, r)
		}
	})
}

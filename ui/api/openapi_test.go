package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/overrides"
	"github.com/cdnpilot/cdnpilot/steering"
)

// loadOpenAPI parses and validates the embedded document.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI 3: %v", err)
	}
	return doc
}

// validateResponse checks an answer against the schema openapi.json
// gives for its operation and status.
func validateResponse(t *testing.T, doc *openapi3.T, method, rawURL string, code int, hdr http.Header, body []byte) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	var op *openapi3.Operation
	for path, item := range doc.Paths.Map() {
		re := "^" + regexp.MustCompile(`\\\{\w+\\\}`).ReplaceAllString(regexp.QuoteMeta(path), `[^/]+`) + "$"
		if regexp.MustCompile(re).MatchString(u.Path) {
			op = item.GetOperation(method)
		}
	}
	if op == nil {
		t.Fatalf("openapi.json has no operation for %s %s", method, u.Path)
	}
	resp := op.Responses.Status(code)
	if resp == nil || resp.Value == nil {
		t.Fatalf("openapi.json does not document status %d of %s %s", code, method, u.Path)
	}
	mt := resp.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil {
		t.Fatalf("status %d of %s %s has no JSON schema", code, method, u.Path)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type %q", ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, body)
	}
	if err := mt.Schema.Value.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		t.Errorf("answer of %s %s (%d) does not match openapi.json: %v\n%s", method, u.Path, code, err, body)
	}
}

// goldenBeacons are a few minutes of views on two CDNs.
func goldenBeacons(now time.Time) []record.Beacon {
	var out []record.Beacon
	for m := range 5 {
		for i := range 4 {
			at := now.Add(-time.Duration(m+1) * time.Minute).Truncate(time.Minute).Add(time.Duration(i) * time.Second)
			cdn := []string{"cdn-a", "cdn-b"}[i%2]
			out = append(out, record.Beacon{
				EventID: fmt.Sprintf("e-%d-%d", m, i), ReceivedAt: at.UnixMilli(), ClientIP: "100.64.1.2", Country: "GB", Region: "eu-west", ASN: 64496,
				Source: record.SourceBeacon, Type: record.TypeViewStart, ViewID: fmt.Sprintf("v-%d-%d", m, i), TS: at.UnixMilli(),
				Service: "vod", CDN: cdn, StartupMS: uint32(900 + 100*i), BitrateKbps: 3000,
			})
		}
	}
	return out
}

// FuzzOverrideRequest: any body either fails with a field named, or
// yields an override the steering engine accepts.
func FuzzOverrideRequest(f *testing.F) {
	for _, s := range []string{
		`{"action":"pin","cdn":"cdn-b","scope":{"service":"vod","region":"eu-west","asn":64496},"reason":"r","expires_at":"2026-11-25T13:00:00Z"}`,
		`{"action":"weight","weights":{"cdn-a":70,"cdn-b":30},"scope":{"service":"vod"},"reason":"r","expires_at":"2026-11-25T13:00:00Z"}`,
		`{"action":"weight","weights":{"cdn-b":12.5},"scope":{"service":"vod"},"reason":"r","expires_at":"2026-11-25T13:00:00Z"}`,
		`{"action":"ban","cdn":"cdn-b","scope":{"service":"live"},"reason":"r","expires_at":"2026-11-25T12:30:00+01:00","dry_run":true}`,
		`{"action":"weight","weights":{"cdn-a":-0,"cdn-b":1e308},"scope":{"service":"vod"}}`,
		`{"action":"pin","cdn":"cdn-b","scope":{"service":"vod","asn":4294967295},"reason":"\u0000","expires_at":"2026-11-25T12:00:01Z"}`,
		`{"scope":{"service":"vod","asn":-1}}`, `[]`, `null`, `{"weights":{"":50}}`,
	} {
		f.Add([]byte(s))
	}
	now := at
	f.Fuzz(func(t *testing.T, b []byte) {
		var req OverrideRequest
		if err := json.Unmarshal(b, &req); err != nil {
			if fe := jsonError(err); fe.field == "" || fe.status != 400 && fe.status != 413 {
				t.Fatalf("decode error without a field: %+v", fe)
			}
			return
		}
		o, ferr := ParseOverride(req, testCatalog, now, 24*time.Hour)
		if ferr != nil {
			if ferr.field == "" || ferr.status != http.StatusUnprocessableEntity || !strings.Contains(ferr.msg, ":") {
				t.Fatalf("error without a field: %+v", ferr)
			}
			return
		}
		if err := o.Validate(testCatalog); err != nil {
			t.Fatalf("accepted %s, but steering refuses it: %v", b, err)
		}
		if !o.Expires.After(now) || o.Expires.Sub(now) > 24*time.Hour || o.Reason == "" {
			t.Fatalf("accepted %s with expiry %v, reason %q", b, o.Expires, o.Reason)
		}
		switch o.Kind {
		case steering.OverridePin, steering.OverrideBan, steering.OverrideDrain, steering.OverrideWeight, steering.OverrideSplit:
		default:
			t.Fatalf("accepted kind %q", o.Kind)
		}
		// What is accepted survives the round trip to the public shape.
		j := overrideJSON(overridesRecord(o), now)
		if j.Scope.Service != req.Scope.Service || j.Reason != o.Reason {
			t.Fatalf("round trip %+v -> %+v", req, j)
		}
	})
}

func overridesRecord(o steering.Override) overrides.Record {
	return overrides.Record{Override: o, Revision: 1, UpdatedAt: o.Created, UpdatedBy: o.Author}
}

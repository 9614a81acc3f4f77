package replay_test

import (
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/replay"
)

func TestValidate(t *testing.T) {
	now := t0.Add(24 * time.Hour)
	valid := func() replay.Request {
		return replay.Request{Service: "vod", Region: "eu-west", From: t0, To: t0.Add(time.Hour), Step: "5m"}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*replay.Request)
		field string // "": valid
		msg   string // the whole message, when given
	}{
		{"valid", func(*replay.Request) {}, "", ""},
		{"default step", func(r *replay.Request) { r.Step = "" }, "", ""},
		{"no region", func(r *replay.Request) { r.Region = "" }, "", ""},
		{"a week at the default step", func(r *replay.Request) { r.From, r.To, r.Step = now.Add(-7*24*time.Hour), now, "" }, "", ""},
		{"from within a minute", func(r *replay.Request) { r.From = t0.Add(30 * time.Second) }, "", ""},
		{"to a little past now (clock skew)", func(r *replay.Request) { r.To = now.Add(30 * time.Second) }, "", ""},
		{"every policy field", func(r *replay.Request) {
			r.Policy = replay.Candidate{Weights: replay.Weights{
				StartupP50: f(0), StartupP90: f(1), Rebuffer: f(0.5), Failure: f(2), EBVS: f(0), Bitrate: f(0), TTFB: f(0), Throughput: f(0),
			}, MinSamples: f(1), HysteresisMargin: f(100), Exploration: f(0.2)}
		}, "", ""},

		{"service missing", func(r *replay.Request) { r.Service = "" }, "service", "service: required"},
		{"service too long", func(r *replay.Request) { r.Service = strings.Repeat("v", 257) }, "service", ""},
		{"region not UTF-8", func(r *replay.Request) { r.Region = "eu-\xff" }, "region", ""},
		{"from missing", func(r *replay.Request) { r.From = time.Time{} }, "from", "from: required"},
		{"to missing", func(r *replay.Request) { r.To = time.Time{} }, "to", "to: required"},
		{"to before from", func(r *replay.Request) { r.To = t0.Add(-time.Minute) }, "to", ""},
		{"to equal to from", func(r *replay.Request) { r.To = t0 }, "to", ""},
		{"over 7 days", func(r *replay.Request) { r.To = t0.Add(7*24*time.Hour + time.Minute) }, "to", ""},
		{"to in the future", func(r *replay.Request) { r.To = now.Add(2 * time.Minute) }, "to", "to: 2026-03-03T10:02:00Z is in the future"},
		{"step not a duration", func(r *replay.Request) { r.Step = "five minutes" }, "step", ""},
		{"step not whole minutes", func(r *replay.Request) { r.Step = "90s" }, "step", "step: 90s is not a whole number of minutes"},
		{"step zero", func(r *replay.Request) { r.Step = "0m" }, "step", "step: 0m is not in 1m..1h"},
		{"step negative", func(r *replay.Request) { r.Step = "-5m" }, "step", ""},
		{"step over an hour", func(r *replay.Request) { r.Step = "2h" }, "step", ""},
		{"too many buckets", func(r *replay.Request) { r.To, r.Step = t0.Add(7*24*time.Hour), "1m" }, "step", "step: 1m makes 10080 buckets over 168h0m0s; at most 2016"},
		{"weight startup_p50", func(r *replay.Request) { r.Policy.Weights.StartupP50 = f(-1) }, "policy.weights.startup_p50", ""},
		{"weight startup_p90", func(r *replay.Request) { r.Policy.Weights.StartupP90 = f(-1) }, "policy.weights.startup_p90", ""},
		{"weight rebuffer", func(r *replay.Request) { r.Policy.Weights.Rebuffer = f(-0.1) }, "policy.weights.rebuffer", ""},
		{"weight failure", func(r *replay.Request) { r.Policy.Weights.Failure = f(math.Inf(1)) }, "policy.weights.failure", ""},
		{"weight ebvs", func(r *replay.Request) { r.Policy.Weights.EBVS = f(math.NaN()) }, "policy.weights.ebvs", ""},
		{"weight bitrate", func(r *replay.Request) { r.Policy.Weights.Bitrate = f(-1) }, "policy.weights.bitrate", ""},
		{"weight ttfb", func(r *replay.Request) { r.Policy.Weights.TTFB = f(-1) }, "policy.weights.ttfb", ""},
		{"weight throughput", func(r *replay.Request) { r.Policy.Weights.Throughput = f(-1) }, "policy.weights.throughput", ""},
		{"min_samples zero", func(r *replay.Request) { r.Policy.MinSamples = f(0) }, "policy.min_samples", ""},
		{"min_samples infinite", func(r *replay.Request) { r.Policy.MinSamples = f(math.Inf(1)) }, "policy.min_samples", ""},
		{"hysteresis_margin negative", func(r *replay.Request) { r.Policy.HysteresisMargin = f(-1) }, "policy.hysteresis_margin", ""},
		{"hysteresis_margin over 100", func(r *replay.Request) { r.Policy.HysteresisMargin = f(101) }, "policy.hysteresis_margin", ""},
		{"exploration over 0.2", func(r *replay.Request) { r.Policy.Exploration = f(0.5) }, "policy.exploration", "policy.exploration: 0.5 is not in 0..0.2"},
		{"exploration negative", func(r *replay.Request) { r.Policy.Exploration = f(-0.01) }, "policy.exploration", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := valid()
			tc.edit(&r)
			err := r.Validate(now)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *replay.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate = %v, want an error naming %q", err, tc.field)
			}
			if !strings.HasPrefix(err.Error(), tc.field+": ") || tc.msg != "" && err.Error() != tc.msg {
				t.Fatalf("message %q, want %q", err, cmpOr(tc.msg, tc.field+": ..."))
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		field      string // "": decodes
		check      func(*testing.T, replay.Request)
	}{
		{name: "full", body: `{"service":"vod","region":"eu-west","from":"2026-03-02T10:00:00Z","to":"2026-03-02T11:00:00+01:00",
			"step":"10m","policy":{"weights":{"rebuffer":0,"startup_p90":0.2},"min_samples":20,"hysteresis_margin":2.5,"exploration":0.05}}`,
			check: func(t *testing.T, r replay.Request) {
				if r.Service != "vod" || r.Region != "eu-west" || !r.From.Equal(t0) || !r.To.Equal(t0) || r.Step != "10m" {
					t.Errorf("request %+v", r)
				}
				p := r.Policy
				if *p.Weights.Rebuffer != 0 || *p.Weights.StartupP90 != 0.2 || p.Weights.Failure != nil ||
					*p.MinSamples != 20 || *p.HysteresisMargin != 2.5 || *p.Exploration != 0.05 {
					t.Errorf("policy %+v", p)
				}
			}},
		{name: "minimal", body: `{"service":"vod","from":"2026-03-02T10:00:00Z","to":"2026-03-02T11:00:00Z"}`,
			check: func(t *testing.T, r replay.Request) {
				if r.Step != "" || r.Policy.Weights.Rebuffer != nil || r.Policy.Exploration != nil {
					t.Errorf("request %+v: want everything else absent", r)
				}
			}},
		{name: "null times are missing, for Validate to say", body: `{"service":"vod","from":null}`,
			check: func(t *testing.T, r replay.Request) {
				if !r.From.IsZero() || !r.To.IsZero() {
					t.Errorf("from %v to %v", r.From, r.To)
				}
			}},

		{name: "unknown field", body: `{"service":"vod","colour":"red"}`, field: "colour"},
		{name: "unknown policy field", body: `{"service":"vod","policy":{"dwell":"20s"}}`, field: "dwell"},
		{name: "misspelt weight", body: `{"policy":{"weights":{"rebufer":0}}}`, field: "rebufer"},
		{name: "weight of the wrong type", body: `{"policy":{"weights":{"rebuffer":"none"}}}`, field: "policy.weights.rebuffer"},
		{name: "exploration of the wrong type", body: `{"policy":{"exploration":true}}`, field: "policy.exploration"},
		{name: "service of the wrong type", body: `{"service":7}`, field: "service"},
		{name: "step as a number", body: `{"step":300}`, field: "step"},
		{name: "from not RFC 3339", body: `{"from":"2026-03-02 10:00"}`, field: "from"},
		{name: "to as a number", body: `{"to":1772445600}`, field: "to"},
		{name: "not an object", body: `[1,2]`, field: "body"},
		{name: "empty", body: ``, field: "body"},
		{name: "truncated", body: `{"service":"vod"`, field: "body"},
		{name: "malformed", body: `{"service":}`, field: "body"},
		{name: "two values", body: `{"service":"vod"} {"service":"live"}`, field: "body"},
		{name: "trailing garbage", body: `{"service":"vod"} x`, field: "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := replay.Decode(strings.NewReader(tc.body))
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				tc.check(t, r)
				return
			}
			var fe *replay.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Decode = %v, want an error naming %q", err, tc.field)
			}
		})
	}
}

// TestDecodeBodyLimit: the API's body limit stays visible through the
// error, so it can answer 413.
func TestDecodeBodyLimit(t *testing.T) {
	body := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(`{"service":"`+strings.Repeat("v", 100)+`"}`)), 16)
	_, err := replay.Decode(body)
	var tooBig *http.MaxBytesError
	if !errors.As(err, &tooBig) {
		t.Fatalf("Decode = %v, want an *http.MaxBytesError inside", err)
	}
}

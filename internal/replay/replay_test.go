package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/replay"
	"github.com/cdnpilot/cdnpilot/steering"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// approx compares shares and scores after the replay's rounding.
func approx(got, want float64) bool { return math.Abs(got-want) < 1e-3 }

// TestRunCurrentPolicyMovesShare: the current weights without hysteresis
// steer eu-west to cdn-a (cdn-b stalls), and the yardstick says that is
// better; us-east goes to cdn-c, the CDN that does not stall.
func TestRunCurrentPolicyMovesShare(t *testing.T) {
	res := run(t, vod(t), request(replay.Candidate{MinSamples: f(10), HysteresisMargin: f(0)}))
	if res.Buckets != 6 || res.Step != "5m" {
		t.Fatalf("buckets %d step %q, want 6 and 5m", res.Buckets, res.Step)
	}
	for _, tc := range []struct {
		scope, leader string
	}{
		{"vod/eu-west", "cdn-a"},
		{"vod/us-east", "cdn-c"},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			s := scopeOf(t, res, tc.scope)
			c := cdnOf(t, s, tc.leader)
			if !approx(c.ReplayShare, 0.98) || c.ActualShare > 0.5 {
				t.Errorf("%s: actual %.4f replay %.4f, want at most 0.5 and 0.98", tc.leader, c.ActualShare, c.ReplayShare)
			}
			if s.Delta == nil || *s.Delta <= 0 {
				t.Errorf("delta %v, want positive", s.Delta)
			}
			if *s.ExpectedQoEReplay-*s.ExpectedQoEActual-*s.Delta > 0.002 {
				t.Errorf("delta %v is not replay %v - actual %v", *s.Delta, *s.ExpectedQoEReplay, *s.ExpectedQoEActual)
			}
			if s.LeaderChanges != 0 || s.JudgedBuckets != 6 || s.SteeredBuckets != 6 || s.UnjudgedShare != 0 {
				t.Errorf("changes %d judged %d steered %d unjudged %v, want 0 6 6 0", s.LeaderChanges, s.JudgedBuckets, s.SteeredBuckets, s.UnjudgedShare)
			}
		})
	}
	eu := scopeOf(t, res, "vod/eu-west")
	a, b := cdnOf(t, eu, "cdn-a"), cdnOf(t, eu, "cdn-b")
	if !approx(a.ActualShare, 0.4) || !approx(b.ActualShare, 0.6) || eu.Views != 300 {
		t.Errorf("eu-west actual a %.4f b %.4f views %d, want 0.4 0.6 300", a.ActualShare, b.ActualShare, eu.Views)
	}
	if *a.Score <= *b.Score || *a.CandidateScore != *a.Score {
		t.Errorf("eu-west scores a %v/%v b %v: a must score higher, the same by both weights", *a.Score, *a.CandidateScore, *b.Score)
	}
	global := scopeOf(t, res, "vod")
	if res.Scopes[0].Scope != "vod" || global.Delta == nil || *global.Delta <= 0 || len(global.CDNs) != 3 {
		t.Errorf("service-wide scope %+v: want first, three CDNs, a positive delta", global)
	}
	if global.Views != 300+240+30 {
		t.Errorf("service-wide views %d, want 570 (BR's views count here only)", global.Views)
	}
	if !hasWarning(res, "had no region") {
		t.Errorf("warnings %q: want one about the views without a region", res.Warnings)
	}
}

// TestRunUnalignedRange: buckets start on whole minutes; the last one
// runs to the end of the range, and the store includes the minute `to`
// falls in.
func TestRunUnalignedRange(t *testing.T) {
	req := request(replay.Candidate{MinSamples: f(10)})
	req.From, req.To = t0.Add(30*time.Second), t0.Add(10*time.Minute+30*time.Second)
	res := run(t, vod(t), req)
	if res.Buckets != 2 || !res.From.Equal(t0) || !res.To.Equal(req.To) {
		t.Errorf("buckets %d from %v to %v, want 2 from %v", res.Buckets, res.From, res.To, t0)
	}
	if s := scopeOf(t, res, "vod/eu-west"); s.Views != 110 || s.DataBuckets != 2 {
		t.Errorf("eu-west views %d in %d buckets, want minutes 0..10: 110 in 2", s.Views, s.DataBuckets)
	}
}

// TestRunCandidateWeights: the leader follows the candidate's weights,
// and the yardstick judges the move.
func TestRunCandidateWeights(t *testing.T) {
	src := vod(t)
	for _, tc := range []struct {
		name     string
		weights  replay.Weights
		leader   string
		positive bool // delta
	}{
		{name: "current weights prefer the CDN that does not stall", leader: "cdn-c", positive: true},
		// cdn-c wins on rebuffering alone: a candidate that ignores it
		// steers to cdn-a, which the yardstick calls worse.
		{name: "rebuffering ignored", weights: replay.Weights{Rebuffer: f(0)}, leader: "cdn-a", positive: false},
		{name: "only startup", weights: replay.Weights{
			StartupP50: f(1), StartupP90: f(0), Rebuffer: f(0), Failure: f(0), EBVS: f(0), Bitrate: f(0), TTFB: f(0), Throughput: f(0),
		}, leader: "cdn-a", positive: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request(replay.Candidate{Weights: tc.weights, MinSamples: f(10), HysteresisMargin: f(0)})
			req.Region = "us-east"
			res := run(t, src, req)
			if len(res.Scopes) != 1 {
				t.Fatalf("scopes %+v, want us-east alone", res.Scopes)
			}
			s := res.Scopes[0]
			if s.Scope != "vod/us-east" {
				t.Fatalf("scope %q", s.Scope)
			}
			for _, c := range s.CDNs {
				want := 0.02
				if c.CDN == tc.leader {
					want = 0.98
				}
				if !approx(c.ReplayShare, want) {
					t.Errorf("%s replay share %.4f, want %.2f", c.CDN, c.ReplayShare, want)
				}
			}
			if s.Delta == nil || (*s.Delta > 0) != tc.positive {
				t.Errorf("delta %v, want positive %v", s.Delta, tc.positive)
			}
		})
	}
}

// TestRunHysteresis: cdn-a leads the first ten minutes and cdn-b the
// last ten, each by about two points of rebuffering.
func TestRunHysteresis(t *testing.T) {
	better := profile{startupMS: 900, playedMS: 10_000, stallMS: 50, bitrate: 4000, tput: 12_000, ttfb: 80}
	worse := better
	worse.stallMS = 125
	src := fill(t, 20,
		traffic{service: "live", cdn: "cdn-a", region: "eu-west", country: "GB", asn: 2856, perMinute: 4, hi: 10, p: better},
		traffic{service: "live", cdn: "cdn-b", region: "eu-west", country: "GB", asn: 2856, perMinute: 4, hi: 10, p: worse},
		traffic{service: "live", cdn: "cdn-a", region: "eu-west", country: "GB", asn: 2856, perMinute: 4, lo: 10, p: worse},
		traffic{service: "live", cdn: "cdn-b", region: "eu-west", country: "GB", asn: 2856, perMinute: 4, lo: 10, p: better},
	)
	for _, tc := range []struct {
		name    string
		margin  float64
		changes int
		shareA  float64
	}{
		{"no margin: the challenger takes over", 0, 1, 0.5},
		{"beaten by more than the margin", 1.5, 1, 0.5},
		{"within the margin: the incumbent keeps the lead", 3, 0, 0.98},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := run(t, src, replay.Request{
				Service: "live", Region: "eu-west", From: t0, To: t0.Add(20 * time.Minute),
				Policy: replay.Candidate{MinSamples: f(5), HysteresisMargin: f(tc.margin)},
			})
			s := scopeOf(t, res, "live/eu-west")
			if s.LeaderChanges != tc.changes {
				t.Errorf("leader changes %d, want %d", s.LeaderChanges, tc.changes)
			}
			if a := cdnOf(t, s, "cdn-a"); !approx(a.ReplayShare, tc.shareA) {
				t.Errorf("cdn-a replay share %.4f, want %.2f", a.ReplayShare, tc.shareA)
			}
		})
	}
}

// TestRunExploration: the leader keeps 1 - exploration, the others split
// the rest evenly.
func TestRunExploration(t *testing.T) {
	src := vod(t)
	for _, tc := range []struct {
		name        string
		exploration float64
		scope       string
		want        map[string]float64
	}{
		{"three CDNs, the most exploration", 0.2, "vod", map[string]float64{"cdn-a": 0.1, "cdn-b": 0.1, "cdn-c": 0.8}},
		{"two CDNs", 0.2, "vod/eu-west", map[string]float64{"cdn-a": 0.8, "cdn-b": 0.2}},
		{"none", 0, "vod", map[string]float64{"cdn-a": 0, "cdn-b": 0, "cdn-c": 1}},
		{"default: the current policy's", -1, "vod/eu-west", map[string]float64{"cdn-a": 0.98, "cdn-b": 0.02}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := replay.Candidate{MinSamples: f(10), HysteresisMargin: f(0)}
			if tc.exploration >= 0 {
				c.Exploration = f(tc.exploration)
			}
			s := scopeOf(t, run(t, src, request(c)), tc.scope)
			if len(s.CDNs) != len(tc.want) {
				t.Fatalf("cdns %+v, want %v", s.CDNs, tc.want)
			}
			var sum float64
			for _, c := range s.CDNs {
				sum += c.ReplayShare
				if !approx(c.ReplayShare, tc.want[c.CDN]) {
					t.Errorf("%s replay share %.4f, want %.2f", c.CDN, c.ReplayShare, tc.want[c.CDN])
				}
			}
			if !approx(sum, 1) {
				t.Errorf("replay shares sum to %v", sum)
			}
		})
	}
}

// TestRunMinSamples: with more views required than any CDN has in a
// bucket, the actual shares stand and the delta is zero.
func TestRunMinSamples(t *testing.T) {
	res := run(t, vod(t), request(replay.Candidate{MinSamples: f(1000)}))
	for _, s := range res.Scopes {
		for _, c := range s.CDNs {
			if c.ReplayShare != c.ActualShare {
				t.Errorf("%s %s: replay %.4f, want the actual %.4f", s.Scope, c.CDN, c.ReplayShare, c.ActualShare)
			}
		}
		if s.Delta == nil || *s.Delta != 0 || s.SteeredBuckets != 0 {
			t.Errorf("%s: delta %v steered %d, want 0 and 0", s.Scope, s.Delta, s.SteeredBuckets)
		}
	}
	if !hasWarning(res, "vod/eu-west: in 6 of 6 buckets with views no CDN had policy.min_samples (1000) views") {
		t.Errorf("warnings %q", res.Warnings)
	}
}

// TestRunUnjudgedShare: a yardstick that only weighs bitrate cannot judge
// a CDN that reports none; its share is counted, not guessed.
func TestRunUnjudgedShare(t *testing.T) {
	noBitrate := good
	noBitrate.bitrate = 0
	noBitrate.startupMS = 500
	src := fill(t, 10,
		traffic{service: "vod", cdn: "cdn-a", region: "eu-west", country: "GB", asn: 2856, perMinute: 2, p: good},
		traffic{service: "vod", cdn: "cdn-x", region: "eu-west", country: "GB", asn: 2856, perMinute: 2, p: noBitrate},
	)
	current := steering.DefaultPolicy()
	current.Weights = steering.Weights{Bitrate: 1}
	req := replay.Request{Service: "vod", Region: "eu-west", From: t0, To: t0.Add(10 * time.Minute), Policy: replay.Candidate{
		Weights: replay.Weights{Bitrate: f(0), StartupP50: f(1)}, MinSamples: f(1), HysteresisMargin: f(0), Exploration: f(0.1),
	}}
	res, err := replay.Run(t.Context(), src, current, req)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Scopes[0]
	x := cdnOf(t, s, "cdn-x")
	if x.Score != nil || x.CandidateScore == nil || !approx(x.ReplayShare, 0.9) {
		t.Errorf("cdn-x %+v: want no yardstick score, a candidate score, 0.9 replayed", x)
	}
	// Actual: half on cdn-x; replayed: 0.9. Both judge by cdn-a alone.
	if !approx(s.UnjudgedShare, 0.9) || s.Delta == nil || *s.Delta != 0 {
		t.Errorf("unjudged %v delta %v, want 0.9 and 0", s.UnjudgedShare, s.Delta)
	}
}

func TestRunEmptyRange(t *testing.T) {
	src := vod(t)
	for _, tc := range []struct {
		name           string
		req            replay.Request
		scopes, warned int
		warning        string
	}{
		{"before the data", replay.Request{Service: "vod", From: t0.Add(-3 * time.Hour), To: t0.Add(-2 * time.Hour)}, 0, 1, `no data for service "vod" between`},
		{"unknown service", replay.Request{Service: "news", From: t0, To: t0.Add(time.Hour)}, 0, 1, `no data for service "news"`},
		{"unknown region", replay.Request{Service: "vod", Region: "mars", From: t0, To: t0.Add(time.Hour)}, 0, 1, `in region "mars"`},
		{"partly after the data", replay.Request{Service: "vod", Region: "eu-west", From: t0, To: t0.Add(40 * time.Minute), Policy: replay.Candidate{MinSamples: f(10)}}, 1, 1, "2 of 8 buckets had no data (the first at 2026-03-02T10:30:00Z)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := run(t, src, tc.req)
			if len(res.Scopes) != tc.scopes || len(res.Warnings) != tc.warned || !hasWarning(res, tc.warning) {
				t.Errorf("scopes %d warnings %q, want %d scopes and %d warning with %q", len(res.Scopes), res.Warnings, tc.scopes, tc.warned, tc.warning)
			}
			if res.Scopes == nil || len(res.Assumptions) == 0 {
				t.Errorf("scopes must be a list and the assumptions stated: %+v", res)
			}
		})
	}
}

// cancelling cancels its context on the n-th Window call.
type cancelling struct {
	src    replay.Source
	n      int
	cancel context.CancelFunc
}

func (c *cancelling) Window(ctx context.Context, q analytics.WindowQuery) ([]analytics.Aggregate, error) {
	c.n--
	if c.n == 0 {
		c.cancel()
	}
	return c.src.Window(ctx, q)
}

func TestRunCancelled(t *testing.T) {
	src := vod(t)
	for _, tc := range []struct {
		name  string
		calls int // the call that cancels; 0: cancelled before Run
	}{
		{"before", 0},
		{"in the first bucket", 1},
		{"in a later bucket", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var s replay.Source = src
			if tc.calls == 0 {
				cancel()
			} else {
				s = &cancelling{src: src, n: tc.calls, cancel: cancel}
			}
			_, err := replay.Run(ctx, s, steering.DefaultPolicy(), request(replay.Candidate{}))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})
	}
}

func TestRunRejects(t *testing.T) {
	src := vod(t)
	zero := steering.DefaultPolicy()
	zero.Weights = steering.Weights{}
	for _, tc := range []struct {
		name    string
		current steering.Policy
		req     replay.Request
		field   string
	}{
		{"invalid request", steering.DefaultPolicy(), replay.Request{Service: "vod", From: t0, To: t0.Add(-time.Minute)}, "to"},
		{"candidate weights all zero", zero, request(replay.Candidate{Weights: replay.Weights{Rebuffer: f(0)}}), "policy.weights"},
		{"nothing to judge by", zero, request(replay.Candidate{Weights: replay.Weights{Rebuffer: f(1)}}), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := replay.Run(t.Context(), src, tc.current, tc.req)
			var fe *replay.FieldError
			switch {
			case err == nil:
				t.Fatal("no error")
			case tc.field == "" && errors.As(err, &fe):
				t.Fatalf("err %v names field %q, want none", err, fe.Field)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("err %v, want one naming %q", err, tc.field)
			}
		})
	}
}

// TestRunGolden pins the answer's JSON shape and numbers for the main
// scenario under the current policy.
func TestRunGolden(t *testing.T) {
	res := run(t, vod(t), request(replay.Candidate{MinSamples: f(10)}))
	got, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "vod.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("answer differs from %s (run with -update if intended):\n%s", path, got)
	}
}

func hasWarning(res replay.Result, sub string) bool {
	for _, w := range res.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

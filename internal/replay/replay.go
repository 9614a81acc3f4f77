// Package replay runs a candidate steering policy over the recorded QoE of a time range (POST /api/v1/replay).
package replay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Source is the analytics store the replay reads.
type Source interface {
	Window(ctx context.Context, q analytics.WindowQuery) ([]analytics.Aggregate, error)
}

var (
	_ Source = (*analytics.Memory)(nil)
	_ Source = (*analytics.ClickHouse)(nil)
)

// Result is the answer of POST /api/v1/replay.
type Result struct {
	Service string    `json:"service"`
	Region  string    `json:"region,omitempty"`
	From    time.Time `json:"from"` // the start of the first bucket: the request's from truncated to the minute
	To      time.Time `json:"to"`
	Step    string    `json:"step"`
	Buckets int       `json:"buckets"`
	// Policy is the candidate as replayed: the request's fields, and the
	// current policy's where the request left them out. Yardstick are the
	// current weights, which judge both allocations.
	Policy      Candidate     `json:"policy"`
	Yardstick   Weights       `json:"yardstick"`
	Scopes      []ScopeResult `json:"scopes"`
	Assumptions []string      `json:"assumptions"`
	Warnings    []string      `json:"warnings"`
}

// ScopeResult is one scope: the service as a whole ("vod") or one of its
// regions ("vod/eu-west").
type ScopeResult struct {
	Scope  string      `json:"scope"`
	Region string      `json:"region,omitempty"` // empty for the service as a whole
	Views  uint64      `json:"views"`            // summed over buckets: a view counts in each bucket it starts or ends in
	CDNs   []CDNResult `json:"cdns"`
	// ExpectedQoEActual and ExpectedQoEReplay are the views-weighted means
	// over the judged buckets of Σ share × yardstick score, for the
	// recorded and the replayed allocation; Delta is replay − actual
	// (positive: the candidate would have done better). Null when no
	// bucket could be judged.
	ExpectedQoEActual *float64 `json:"expected_qoe_actual"`
	ExpectedQoEReplay *float64 `json:"expected_qoe_replay"`
	Delta             *float64 `json:"delta"`
	// UnjudgedShare is the views-weighted share of traffic on CDNs without
	// a yardstick score, in whichever allocation had more of it; the
	// expected QoE is renormalized over the rest.
	UnjudgedShare float64 `json:"unjudged_share"`
	// LeaderChanges counts the candidate's changes of leader from one
	// bucket to a later one (the first leader is not a change).
	LeaderChanges int `json:"leader_changes"`
	// DataBuckets had data for the scope; SteeredBuckets of them had a CDN
	// the candidate could steer by (min_samples views and a score);
	// JudgedBuckets are the ones behind the expected QoE.
	DataBuckets    int `json:"data_buckets"`
	SteeredBuckets int `json:"steered_buckets"`
	JudgedBuckets  int `json:"judged_buckets"`
}

// CDNResult is one CDN in a scope over the whole range.
type CDNResult struct {
	CDN         string  `json:"cdn"`
	Views       uint64  `json:"views"`
	ActualShare float64 `json:"actual_share"` // its views / the scope's views
	ReplayShare float64 `json:"replay_share"` // the candidate's share, views-weighted over buckets
	// Score is the yardstick (current weights) score and CandidateScore
	// the candidate weights' score, each views-weighted over the buckets
	// where the CDN had views and a score; null when it never had one.
	Score          *float64 `json:"score"`
	CandidateScore *float64 `json:"candidate_score"`
}

// assumptions are stated in every answer: what the numbers rest on.
var assumptions = []string{
	"replays the analytics store's per-minute aggregates, not raw beacons; a view counts in each bucket it starts or ends in",
	"a CDN's QoE in a scope does not depend on the traffic moved to it: views moved to a CDN would have seen what its own views saw in that bucket",
	"only CDNs that carried traffic in a scope and bucket can be judged there; share on CDNs without a score by the current weights is left out and the rest renormalized (unjudged_share)",
	"the service-wide scope judges a CDN by its service-wide figures, as if a CDN that served only some regions would play as well in the others; the regional scopes are the ones to steer by",
	"a CDN's figures in a scope merge its country and ASN groups as means weighted by each figure's sample count; the startup, TTFB and throughput quantiles are merged approximately that way (a mean of medians is not the median)",
	"bitrate is the store's mean bitrate where the engine scores the median",
	"the candidate's leader gets 1 - exploration; the exploration share is split evenly among the other CDNs with data in the bucket (all of it stays with a leader that is alone)",
	"min_samples counts views per CDN, scope and bucket (the engine's counts decayed beacons)",
	"hysteresis is a margin between consecutive buckets; no dwell, warm-up, shift cap, passive health, probation, flap damping or overrides are modelled",
	"no capacity, commit or cost effects",
	"both allocations are judged by the current weights (the yardstick)",
}

// Run replays req's candidate over [req.From, req.To) in buckets of
// req.Step, against current, the policy in force. It validates req except
// for the clock (Validate's job). A range without data is a result with a
// warning, not an error.
func Run(ctx context.Context, src Source, current steering.Policy, req Request) (Result, error) {
	if err := req.validate(); err != nil {
		return Result{}, err
	}
	cand, err := req.Policy.merge(current)
	if err != nil {
		return Result{}, err
	}
	if weightSum(current.Weights) <= 0 {
		return Result{}, errors.New("current policy: all weights zero: nothing to judge by")
	}
	step, _ := req.step() // validated
	from, to := req.from(), req.To.UTC()
	n := bucketCount(req.From, req.To, step)
	res := Result{
		Service: req.Service, Region: req.Region, From: from, To: to, Step: minutes(step), Buckets: n,
		Policy: cand.candidate(), Yardstick: weightsOf(current.Weights),
		Scopes: []ScopeResult{}, Assumptions: slices.Clone(assumptions), Warnings: []string{},
	}
	scopes := map[string]*scope{}
	var empty int
	var firstEmpty time.Time
	var noRegion float64
	for i := range n {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		t := from.Add(time.Duration(i) * step)
		end := t.Add(step)
		if i == n-1 {
			end = to
		}
		aggs, err := src.Window(ctx, analytics.WindowQuery{
			Filter: analytics.Filter{Service: req.Service, Region: req.Region}, From: t, To: end,
		})
		if err != nil {
			return Result{}, fmt.Errorf("replay bucket %s: %w", t.Format(time.RFC3339), err)
		}
		groups, nr := group(aggs, req)
		noRegion += nr
		if len(groups) == 0 {
			if empty == 0 {
				firstEmpty = t
			}
			empty++
			continue
		}
		for _, g := range groups {
			s := scopes[g.name]
			if s == nil {
				s = &scope{name: g.name, region: g.region, cdns: map[string]*cdnTotals{}}
				scopes[g.name] = s
			}
			s.bucket(g.cdns, current.Weights, cand)
		}
	}

	switch {
	case empty == n:
		where := ""
		if req.Region != "" {
			where = fmt.Sprintf(" in region %q", req.Region)
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf("no data for service %q%s between %s and %s: nothing to replay (past the store's retention, or no traffic)",
			req.Service, where, from.Format(time.RFC3339), to.Format(time.RFC3339)))
	case empty > 0:
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d of %d buckets had no data (the first at %s); they count for nothing",
			empty, n, firstEmpty.Format(time.RFC3339)))
	}
	if noRegion > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%.0f views had no region (a country without a region mapping): they count in the service-wide scope only", noRegion))
	}
	// The service as a whole first, then its regions by name.
	for _, s := range slices.SortedFunc(maps.Values(scopes), func(a, b *scope) int { return cmp.Compare(a.region, b.region) }) {
		res.Scopes = append(res.Scopes, s.result())
		res.Warnings = append(res.Warnings, s.warnings(cand)...)
	}
	return res, nil
}

// figureMetrics are the store's metrics behind steering.Figures, in the
// order of figures(), with the factor from the store's unit to the
// engine's (percentages to ratios).
var figureMetrics = [...]struct {
	m     analytics.Metric
	scale float64
}{
	{analytics.MetricStartupP50, 1}, {analytics.MetricStartupP90, 1}, {analytics.MetricRebufferPct, 0.01},
	{analytics.MetricFailurePct, 0.01}, {analytics.MetricEBVSPct, 0.01}, {analytics.MetricThroughputP50, 1},
	{analytics.MetricBitrateAvg, 1}, {analytics.MetricTTFBP50, 1},
}

// cdnAcc merges one CDN's aggregates in a scope and bucket.
type cdnAcc struct {
	views, beacons float64
	sum, n         [len(figureMetrics)]float64
}

func (c *cdnAcc) add(a *analytics.Aggregate) {
	c.views += a.Values[analytics.MetricViews].V
	c.beacons += a.Values[analytics.MetricBeacons].V
	for i, f := range figureMetrics {
		if v := a.Values[f.m]; v.N > 0 {
			c.sum[i] += v.V * f.scale * float64(v.N)
			c.n[i] += float64(v.N)
		}
	}
}

// stats are the merged figures; -1 for a figure without data, as in
// steering.
func (c *cdnAcc) stats() steering.Stats {
	s := steering.Stats{Views: c.views, Beacons: c.beacons}
	f := &s.Figures
	for i, p := range [len(figureMetrics)]*float64{
		&f.StartupP50MS, &f.StartupP90MS, &f.RebufferRatio, &f.FailureRate, &f.EBVSRate,
		&f.ThroughputP50Kbps, &f.BitrateP50Kbps, &f.TTFBP50MS,
	} {
		*p = -1
		if c.n[i] > 0 {
			*p = c.sum[i] / c.n[i]
		}
	}
	return s
}

// bucketScope is one scope's CDNs in one bucket.
type bucketScope struct {
	name, region string
	cdns         map[string]*cdnAcc
}

// group sorts a bucket's aggregates into scopes: the service as a whole
// and each region (only the requested region when there is one). It also
// returns the views without a region, which only the service-wide scope
// holds.
func group(aggs []analytics.Aggregate, req Request) (map[string]*bucketScope, float64) {
	out := map[string]*bucketScope{}
	var noRegion float64
	add := func(name, region string, a *analytics.Aggregate) {
		s := out[name]
		if s == nil {
			s = &bucketScope{name: name, region: region, cdns: map[string]*cdnAcc{}}
			out[name] = s
		}
		c := s.cdns[a.CDN]
		if c == nil {
			c = &cdnAcc{}
			s.cdns[a.CDN] = c
		}
		c.add(a)
	}
	for i := range aggs {
		a := &aggs[i]
		if a.Service != req.Service || req.Region != "" && a.Region != req.Region {
			continue // the store filtered already; a Source that did not is not trusted
		}
		if req.Region == "" {
			add(req.Service, "", a)
		}
		if a.Region != "" {
			add(req.Service+"/"+a.Region, a.Region, a)
		} else {
			noRegion += a.Values[analytics.MetricViews].V
		}
	}
	return out, noRegion
}

// scope carries one scope across buckets.
type scope struct {
	name, region string
	incumbent    string // the candidate's leader in the last steered bucket
	cdns         map[string]*cdnTotals

	views                          float64
	qActual, qReplay, qViews       float64 // Σ V·q over judged buckets, and Σ V
	unjudged                       float64 // Σ V·max(unjudged actual, unjudged replay)
	changes                        int
	data, steered, judged, viewful int
}

type cdnTotals struct {
	views, replay float64 // Σ views; Σ V·replay share
	ySum, yViews  float64 // yardstick score, views-weighted
	cSum, cViews  float64 // candidate score, views-weighted
}

// row is one CDN in one bucket of a scope.
type row struct {
	cdn      string
	views    float64
	y, c     float64 // yardstick and candidate scores
	yok, cok bool
}

func (s *scope) bucket(cdns map[string]*cdnAcc, yardstick steering.Weights, cand effective) {
	s.data++
	rows := make([]row, 0, len(cdns))
	var v float64
	for name, acc := range cdns {
		st := acc.stats()
		r := row{cdn: name, views: acc.views}
		r.y, r.yok = steering.Score(st, yardstick)
		r.c, r.cok = steering.Score(st, cand.weights)
		rows = append(rows, r)
		v += acc.views

		t := s.cdns[name]
		if t == nil {
			t = &cdnTotals{}
			s.cdns[name] = t
		}
		t.views += acc.views
		if r.yok && acc.views > 0 {
			t.ySum += acc.views * r.y
			t.yViews += acc.views
		}
		if r.cok && acc.views > 0 {
			t.cSum += acc.views * r.c
			t.cViews += acc.views
		}
	}
	// Ties go to the first CDN by name, the same in every run.
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(a.cdn, b.cdn) })
	if v == 0 {
		return // heartbeats of views that started earlier: no shares to compare
	}
	s.viewful++
	s.views += v
	actual := make([]float64, len(rows))
	for i := range rows {
		actual[i] = rows[i].views / v
	}
	replay := s.allocate(rows, actual, cand)
	for i := range rows {
		s.cdns[rows[i].cdn].replay += v * replay[i]
	}
	qa, ua, oka := judge(rows, actual)
	qr, ur, okr := judge(rows, replay)
	s.unjudged += v * max(ua, ur)
	if oka && okr {
		s.judged++
		s.qActual += v * qa
		s.qReplay += v * qr
		s.qViews += v
	}
}

// allocate is the candidate's shares in one bucket: the leader gets
// 1 - exploration and the others with data split the rest evenly. The
// incumbent (the leader of the last bucket the candidate steered) keeps
// the lead unless a challenger beats it by more than the margin, or it
// cannot be steered by in this bucket. Without a CDN to steer by, the
// actual shares stand and the incumbent stays.
func (s *scope) allocate(rows []row, actual []float64, cand effective) []float64 {
	scorable := func(r *row) bool { return r.cok && r.views >= cand.minSamples }
	best, inc := -1, -1
	for i := range rows {
		r := &rows[i]
		if !scorable(r) {
			continue
		}
		if best < 0 || r.c > rows[best].c {
			best = i
		}
		if r.cdn == s.incumbent {
			inc = i
		}
	}
	if best < 0 {
		return actual
	}
	s.steered++
	leader := best
	if inc >= 0 && rows[best].c-rows[inc].c <= cand.margin {
		leader = inc
	}
	if s.incumbent != "" && rows[leader].cdn != s.incumbent {
		s.changes++
	}
	s.incumbent = rows[leader].cdn
	shares := make([]float64, len(rows))
	if len(rows) == 1 {
		shares[leader] = 1
		return shares
	}
	for i := range shares {
		shares[i] = cand.exploration / float64(len(rows)-1)
	}
	shares[leader] = 1 - cand.exploration
	return shares
}

// judge is the expected yardstick score of an allocation, renormalized
// over the CDNs that have one, and the share left unjudged. ok is false
// when no share can be judged.
func judge(rows []row, shares []float64) (q, unjudged float64, ok bool) {
	var sum, judged float64
	for i := range rows {
		if rows[i].yok {
			sum += shares[i] * rows[i].y
			judged += shares[i]
		} else {
			unjudged += shares[i]
		}
	}
	if judged <= 0 {
		return 0, unjudged, false
	}
	return sum / judged, unjudged, true
}

func (s *scope) result() ScopeResult {
	out := ScopeResult{
		Scope: s.name, Region: s.region, Views: uint64(math.Round(s.views)), CDNs: []CDNResult{},
		LeaderChanges: s.changes, DataBuckets: s.data, SteeredBuckets: s.steered, JudgedBuckets: s.judged,
	}
	if s.views > 0 {
		out.UnjudgedShare = round(s.unjudged/s.views, 4)
	}
	if s.qViews > 0 {
		a, r := s.qActual/s.qViews, s.qReplay/s.qViews
		out.ExpectedQoEActual, out.ExpectedQoEReplay = ptr(round(a, 3)), ptr(round(r, 3))
		out.Delta = ptr(round(r-a, 3))
	}
	for name, t := range s.cdns {
		c := CDNResult{CDN: name, Views: uint64(math.Round(t.views))}
		if s.views > 0 {
			c.ActualShare = round(t.views/s.views, 4)
			c.ReplayShare = round(t.replay/s.views, 4)
		}
		if t.yViews > 0 {
			c.Score = ptr(round(t.ySum/t.yViews, 3))
		}
		if t.cViews > 0 {
			c.CandidateScore = ptr(round(t.cSum/t.cViews, 3))
		}
		out.CDNs = append(out.CDNs, c)
	}
	slices.SortFunc(out.CDNs, func(a, b CDNResult) int { return cmp.Compare(a.CDN, b.CDN) })
	return out
}

func (s *scope) warnings(cand effective) []string {
	var out []string
	if n := s.viewful - s.steered; n > 0 {
		out = append(out, fmt.Sprintf("%s: in %d of %d buckets with views no CDN had policy.min_samples (%g) views and a score; the actual shares stand there",
			s.name, n, s.viewful, cand.minSamples))
	}
	if s.viewful > 0 && s.judged == 0 {
		out = append(out, fmt.Sprintf("%s: no bucket could be judged (no CDN with a score by the current weights): no expected QoE", s.name))
	}
	return out
}

func round(x float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}

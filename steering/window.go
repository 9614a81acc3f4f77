package steering

import (
	"math"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// Stats are a window's QoE figures with its decayed sample counts.
type Stats struct {
	Views   float64 `json:"views"`   // decayed play attempts
	Beacons float64 `json:"beacons"` // decayed beacons of any kind: the sample size
	Figures
}

// Figures are the QoE figures of a window. A figure without data is -1
// (JSON has no NaN). They change only when samples arrive, so rankings
// share one immutable copy per window refresh.
type Figures struct {
	StartupP50MS      float64 `json:"startup_p50_ms"`
	StartupP90MS      float64 `json:"startup_p90_ms"`
	RebufferRatio     float64 `json:"rebuffer_ratio"` // stall / (play + stall)
	FailureRate       float64 `json:"failure_rate"`   // fatal errors / play attempts
	EBVSRate          float64 `json:"ebvs_rate"`      // exits before video start / play attempts
	ThroughputP50Kbps float64 `json:"throughput_p50_kbps"`
	BitrateP50Kbps    float64 `json:"bitrate_p50_kbps"`
	TTFBP50MS         float64 `json:"ttfb_p50_ms"`
}

func noStats() Stats { return Stats{Figures: noFigures} }

var noFigures = Figures{StartupP50MS: -1, StartupP90MS: -1, RebufferRatio: -1, FailureRate: -1, EBVSRate: -1,
	ThroughputP50Kbps: -1, BitrateP50Kbps: -1, TTFBP50MS: -1}

// decay is forward decay (Cormode et al., "Forward decay: a practical time
// decay model for streaming systems"): a sample at t is added with weight
// g(t) = exp((t-L)/tau) for a landmark L, and every figure is a ratio or is
// divided by g(now). Nothing needs touching as time passes, so a window
// that gets no samples costs nothing, and quantiles over weighted sketch
// counts are the decayed quantiles. The landmark moves forward (rebase)
// before the weights grow out of float64's range.
type decay struct {
	landmark time.Time
	tau      float64 // seconds; half-life / ln 2
}

func newDecay(landmark time.Time, halfLife time.Duration) decay {
	return decay{landmark: landmark, tau: halfLife.Seconds() / math.Ln2}
}

func (d decay) g(t time.Time) float64 { return math.Exp(t.Sub(d.landmark).Seconds() / d.tau) }

// rebaseAfter is how far past the landmark weights may grow: e^230 is far
// from float64's limit even summed over millions of samples.
func (d decay) rebaseDue(now time.Time) bool { return now.Sub(d.landmark).Seconds()/d.tau > 200 }

// sketchAccuracy is the DDSketch relative accuracy of window quantiles.
const sketchAccuracy = 0.02

func newSketch() *ddsketch.DDSketch {
	m, err := mapping.NewLogarithmicMapping(sketchAccuracy)
	if err != nil {
		panic(err) // a constant accuracy in range; cannot fail
	}
	// Paginated stores keep sparse windows (most ASN windows) small.
	return ddsketch.NewDDSketch(m, store.NewBufferedPaginatedStore(), store.NewBufferedPaginatedStore())
}

// window accumulates one (service, cdn, scope) with forward-decayed
// weights: the slow part scores, the fast part judges passive health.
type window struct {
	// slow, weights g(t) with Policy.HalfLife
	beacons                  float64
	attempts, failures, ebvs float64
	played, stalled          float64
	startup, tput, bitrate   *ddsketch.DDSketch
	ttfb                     *ddsketch.DDSketch

	// fast, weights with Policy.FastHalfLife
	fBeacons                   float64
	fAttempts, fFailures       float64
	fPlayed, fStalled          float64
	fStartupSum, fStartupN     float64
	fTTFBSum, fTTFBN           float64
	fBitrateSum, fBitrateN     float64
	fThroughputSum, fThroughpN float64

	last  time.Time // newest sample
	dirty bool      // samples since the cached figures were computed
	// Cached figures. Under forward decay ratios, means and quantiles
	// change only with new samples; only the counts decay, and those are
	// read fresh.
	stats, fstats Stats
	score, fscore float64
	fig           *Figures // rounded copy of stats for rankings; replaced, never modified
}

// refresh recomputes the cached figures after new samples.
func (win *window) refresh(w Weights) {
	if !win.dirty {
		return
	}
	win.stats = win.computeStats()
	win.score, _ = Score(win.stats, w)
	f := roundFigures(win.stats.Figures)
	win.fig = &f
	win.fstats = win.computeFast()
	win.fscore, _ = Score(win.fstats, w)
	win.dirty = false
}

// slowStats are the window's figures with counts decayed to g.
func (win *window) slowStats(g float64) Stats {
	s := win.stats
	s.Views, s.Beacons = win.attempts/g, win.beacons/g
	return s
}

// fastStats are the passive health figures with counts decayed to gf.
func (win *window) fastStats(gf float64) Stats {
	s := win.fstats
	s.Views, s.Beacons = win.fAttempts/gf, win.fBeacons/gf
	return s
}

// add folds one observation in with slow weight w and fast weight f (both
// already multiplied by the client's poisoning weight).
func (win *window) add(o *Observation, w, f float64) {
	if o.At.After(win.last) {
		win.last = o.At
	}
	win.dirty = true
	win.beacons += w
	win.fBeacons += f
	switch o.Kind {
	case KindViewStart:
		win.attempts += w
		win.fAttempts += f
		if o.StartupMS > 0 {
			s := float64(min(o.StartupMS, maxStartupMS))
			win.sketch(&win.startup, s, w)
			win.fStartupSum += s * f
			win.fStartupN += f
		}
	case KindError:
		if o.Fatal {
			win.failures += w
			win.fFailures += f
			// A view that fails before its first frame sends no
			// view_start: its failure is its play attempt.
			if o.StartupMS == 0 {
				win.attempts += w
				win.fAttempts += f
			}
		}
	case KindViewEnd:
		if o.StartupMS == 0 && !o.CMCD {
			win.ebvs += w
			win.attempts += w
			win.fAttempts += f
		}
	}
	if !o.CMCD && (o.Kind == KindHeartbeat || o.Kind == KindViewEnd) {
		p, r := float64(min(o.PlayedMS, maxDeltaMS)), float64(min(o.RebufferMS, maxDeltaMS))
		win.played += p * w
		win.stalled += r * w
		win.fPlayed += p * f
		win.fStalled += r * f
	}
	if o.ThroughputKbps > 0 {
		v := float64(min(o.ThroughputKbps, maxKbps))
		win.sketch(&win.tput, v, w)
		win.fThroughputSum += v * f
		win.fThroughpN += f
	}
	if o.BitrateKbps > 0 {
		v := float64(min(o.BitrateKbps, maxKbps))
		win.sketch(&win.bitrate, v, w)
		win.fBitrateSum += v * f
		win.fBitrateN += f
	}
	if o.TTFBMS > 0 {
		v := float64(min(o.TTFBMS, maxTTFBMS))
		win.sketch(&win.ttfb, v, w)
		win.fTTFBSum += v * f
		win.fTTFBN += f
	}
}

// Outlier clamps: a value past these is an attack or a broken player, and
// must not move a mean or a ratio more than a plausible bad value would.
const (
	maxStartupMS = 60_000
	maxDeltaMS   = 60_000
	maxKbps      = 1_000_000
	maxTTFBMS    = 10_000
)

func (win *window) sketch(s **ddsketch.DDSketch, v, w float64) {
	if *s == nil {
		*s = newSketch()
	}
	// Values are positive and weights finite, so this cannot fail.
	_ = (*s).AddWithCount(v, w)
}

func (win *window) computeStats() Stats {
	s := noStats()
	s.StartupP50MS, s.StartupP90MS = quantile2(win.startup, 0.5, 0.9)
	s.ThroughputP50Kbps, _ = quantile2(win.tput, 0.5, -1)
	s.BitrateP50Kbps, _ = quantile2(win.bitrate, 0.5, -1)
	s.TTFBP50MS, _ = quantile2(win.ttfb, 0.5, -1)
	if win.played+win.stalled > 0 {
		s.RebufferRatio = win.stalled / (win.played + win.stalled)
	}
	if win.attempts > 0 {
		s.FailureRate = min(1, win.failures/win.attempts)
		s.EBVSRate = min(1, win.ebvs/win.attempts)
	}
	return s
}

func quantile2(s *ddsketch.DDSketch, q1, q2 float64) (float64, float64) {
	if s == nil || s.IsEmpty() {
		return -1, -1
	}
	v1, err := s.GetValueAtQuantile(q1)
	if err != nil {
		return -1, -1
	}
	if q2 < 0 {
		return v1, -1
	}
	v2, err := s.GetValueAtQuantile(q2)
	if err != nil {
		return v1, -1
	}
	return v1, v2
}

// computeFast: the passive health figures are means rather than
// quantiles, cheap enough to keep beside the quantiles.
func (win *window) computeFast() Stats {
	s := noStats()
	if win.fStartupN > 0 {
		s.StartupP50MS = win.fStartupSum / win.fStartupN
		s.StartupP90MS = s.StartupP50MS
	}
	if win.fPlayed+win.fStalled > 0 {
		s.RebufferRatio = win.fStalled / (win.fPlayed + win.fStalled)
	}
	if win.fAttempts > 0 {
		s.FailureRate = min(1, win.fFailures/win.fAttempts)
	}
	if win.fThroughpN > 0 {
		s.ThroughputP50Kbps = win.fThroughputSum / win.fThroughpN
	}
	if win.fBitrateN > 0 {
		s.BitrateP50Kbps = win.fBitrateSum / win.fBitrateN
	}
	if win.fTTFBN > 0 {
		s.TTFBP50MS = win.fTTFBSum / win.fTTFBN
	}
	return s
}

// scale multiplies every weight by k (a rebase moving the landmark forward
// multiplies by g(old)/g(new) < 1). Sketches are rebuilt bin by bin.
func (win *window) scale(k, kf float64) {
	win.dirty = true
	win.beacons *= k
	win.attempts *= k
	win.failures *= k
	win.ebvs *= k
	win.played *= k
	win.stalled *= k
	for _, s := range []**ddsketch.DDSketch{&win.startup, &win.tput, &win.bitrate, &win.ttfb} {
		if *s == nil {
			continue
		}
		n := newSketch()
		(*s).ForEach(func(v, c float64) bool {
			if c*k > 1e-300 {
				_ = n.AddWithCount(v, c*k)
			}
			return false
		})
		*s = n
	}
	win.fBeacons *= kf
	win.fAttempts *= kf
	win.fFailures *= kf
	win.fPlayed *= kf
	win.fStalled *= kf
	win.fStartupSum *= kf
	win.fStartupN *= kf
	win.fTTFBSum *= kf
	win.fTTFBN *= kf
	win.fBitrateSum *= kf
	win.fBitrateN *= kf
	win.fThroughputSum *= kf
	win.fThroughpN *= kf
}

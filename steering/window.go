package steering

import (
	"math"
	"time"
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

// means accumulates weighted counts, sums and means: the passive health
// windows (decayed) and the probation evidence (not decayed, since the
// CDN went on probation).
type means struct {
	beacons            float64
	attempts, failures float64
	exits              float64 // views that ended: view_end of a started view, or a fatal error
	played, stalled    float64
	startupSum, startN float64 // sums of logs: see figures
	ttfbSum, ttfbN     float64
	bitrateSum, brN    float64
	tputSum, tputN     float64
}

func (m *means) add(o *Observation, w float64) {
	m.beacons += w
	if o.attempt() {
		m.attempts += w
	}
	if o.exit() {
		m.exits += w
	}
	if o.Kind == KindError && o.Fatal {
		m.failures += w
	}
	if o.Kind == KindViewStart && o.StartupMS > 0 {
		m.startupSum += math.Log(float64(min(o.StartupMS, maxStartupMS))) * w
		m.startN += w
	}
	if !o.CMCD && (o.Kind == KindHeartbeat || o.Kind == KindViewEnd) {
		m.played += float64(min(o.PlayedMS, maxDeltaMS)) * w
		m.stalled += float64(min(o.RebufferMS, maxDeltaMS)) * w
	}
	if o.ThroughputKbps > 0 {
		m.tputSum += math.Log(float64(min(o.ThroughputKbps, maxKbps))) * w
		m.tputN += w
	}
	if o.BitrateKbps > 0 {
		m.bitrateSum += math.Log(float64(min(o.BitrateKbps, maxKbps))) * w
		m.brN += w
	}
	if o.TTFBMS > 0 {
		m.ttfbSum += math.Log(float64(min(o.TTFBMS, maxTTFBMS))) * w
		m.ttfbN += w
	}
}

// figures are geometric means rather than quantiles: cheap, enough to
// judge health, and, unlike arithmetic means, not dragged far by one
// absurd value (a 60 s startup among twenty 1 s ones moves the geometric
// mean by a fifth, the arithmetic one fourfold).
func (m *means) figures() Figures {
	f := noFigures
	if m.startN > 0 {
		f.StartupP50MS = math.Exp(m.startupSum / m.startN)
		f.StartupP90MS = f.StartupP50MS
	}
	if m.played+m.stalled > 0 {
		f.RebufferRatio = m.stalled / (m.played + m.stalled)
	}
	if t := trials(m.attempts, m.exits); t > 0 {
		f.FailureRate = min(1, m.failures/t)
	}
	if m.tputN > 0 {
		f.ThroughputP50Kbps = math.Exp(m.tputSum / m.tputN)
	}
	if m.brN > 0 {
		f.BitrateP50Kbps = math.Exp(m.bitrateSum / m.brN)
	}
	if m.ttfbN > 0 {
		f.TTFBP50MS = math.Exp(m.ttfbSum / m.ttfbN)
	}
	return f
}

func (m *means) scale(k float64) {
	*m = means{beacons: m.beacons * k, attempts: m.attempts * k, failures: m.failures * k, exits: m.exits * k, played: m.played * k, stalled: m.stalled * k,
		startupSum: m.startupSum * k, startN: m.startN * k, ttfbSum: m.ttfbSum * k, ttfbN: m.ttfbN * k,
		bitrateSum: m.bitrateSum * k, brN: m.brN * k, tputSum: m.tputSum * k, tputN: m.tputN * k}
}

// window accumulates one (service, cdn, scope) with forward-decayed
// weights: the slow part scores, the fast part judges passive health, and
// the probation part collects evidence while the CDN is on probation.
type window struct {
	hot *winHot // in the scope's array; written by refresh

	beacons  float64 // slow, weights g(t) with Policy.HalfLife
	attempts float64
	fast     means // weights with Policy.FastHalfLife

	failures, ebvs         float64
	exits                  float64 // views that ended: view_end of a started view, or a fatal error
	played, stalled        float64
	startup, tput, bitrate sketch
	ttfb                   sketch

	probation means // plain client weights since the scope put the CDN on probation

	last  time.Time // newest sample
	dirty bool      // samples since the cached figures were computed
	// fstats are the fast figures as of the last refresh. Under forward
	// decay ratios, means and quantiles change only with new samples;
	// only the counts decay, and those are read fresh.
	fstats Stats
}

// winHot is what rank reads of a window every tick, copied out by refresh
// into one array per scope (one entry per CDN of the service). Ranking a
// scope then reads its CDNs one after another from one block of memory,
// not from twenty objects scattered over a heap of a gigabyte: at 300,000
// windows those cache misses were a third of a tick.
type winHot struct {
	win                    *window  // nil: no window yet
	beacons, attempts      float64  // slow counts, at the landmark (divide by g)
	score, xscore, fscore  float64  // xscore: the slow figures scored like the fast ones, to compare them
	xageless, fageless     float64  // xscore and fscore as if nothing had stalled: see younger
	ageless                float64  // score as if nothing had stalled
	fastFail               float64  // fstats.FailureRate
	fastViews, fastBeacons float64  // fast counts, at the landmark
	fastStarts             float64  // fast play attempts, at the landmark: how young its views are
	fig                    *Figures // rounded copy of stats for rankings; replaced, never modified
}

// add folds one observation in with slow weight w, fast weight f and
// plain (undecayed) weight p, all already multiplied by the client's
// poisoning weight.
func (win *window) add(o *Observation, w, f, p float64) {
	if o.At.After(win.last) {
		win.last = o.At
	}
	win.dirty = true
	win.beacons += w
	if o.exit() {
		win.exits += w
	}
	win.fast.add(o, f)
	win.probation.add(o, p)
	switch o.Kind {
	case KindViewStart:
		win.attempts += w
		if o.StartupMS > 0 {
			win.startup.add(float64(min(o.StartupMS, maxStartupMS)), w)
		}
	case KindError:
		if o.Fatal {
			win.failures += w
			// A view that fails before its first frame sends no
			// view_start: its failure is its play attempt.
			if o.StartupMS == 0 {
				win.attempts += w
			}
		}
	case KindViewEnd:
		if o.StartupMS == 0 && !o.CMCD {
			win.ebvs += w
			win.attempts += w
		}
	}
	if !o.CMCD && (o.Kind == KindHeartbeat || o.Kind == KindViewEnd) {
		win.played += float64(min(o.PlayedMS, maxDeltaMS)) * w
		win.stalled += float64(min(o.RebufferMS, maxDeltaMS)) * w
	}
	if o.ThroughputKbps > 0 {
		win.tput.add(float64(min(o.ThroughputKbps, maxKbps)), w)
	}
	if o.BitrateKbps > 0 {
		win.bitrate.add(float64(min(o.BitrateKbps, maxKbps)), w)
	}
	if o.TTFBMS > 0 {
		win.ttfb.add(float64(min(o.TTFBMS, maxTTFBMS)), w)
	}
}

// trials is what a failure rate divides by: views starting or views
// ending, whichever is more. In a steady state they are equal and the rate
// is Mux's failures per view. When a CDN fails, views end in a burst and
// the rate goes to 1 at once; when it gets no new views (evacuated), the
// views still playing on it are what is left to fail.
func trials(attempts, exits float64) float64 { return max(attempts, exits) }

// refresh recomputes the cached figures after new samples.
func (win *window) refresh(w Weights) {
	if !win.dirty {
		return
	}
	stats := win.computeStats()
	h := win.hot
	h.score, h.xscore, h.xageless, h.ageless = scores(stats, w)
	f := roundFigures(stats.Figures)
	h.fig = &f
	win.fstats = Stats{Figures: win.fast.figures()}
	h.fastFail = win.fstats.FailureRate
	_, h.fscore, h.fageless, _ = scores(win.fstats, w)
	h.beacons, h.attempts = win.beacons, win.attempts
	h.fastViews, h.fastBeacons, h.fastStarts = trials(win.fast.attempts, win.fast.exits), win.fast.beacons, win.fast.attempts
	win.dirty = false
}

// failed is the decayed count of failed play attempts behind the failure
// rate (none without data).
func (s Stats) failed() float64 { return s.Views * max(s.FailureRate, 0) }

// fastStats are the passive health figures with counts decayed to gf.
func (win *window) fastStats(gf float64) Stats {
	s := win.fstats
	s.Views, s.Beacons = trials(win.fast.attempts, win.fast.exits)/gf, win.fast.beacons/gf
	return s
}

// experience leaves failures out of the fast score: a failure rate over a
// few seconds of a few viewers swings with one failed view (or one
// flooding client), and failures have their own rule (Passive.FailureRate
// over Passive.MinAttempts trials). The fast score judges how the views
// that play are doing.
func experience(w Weights) Weights {
	w.Failure, w.EBVS = 0, 0
	return w
}

// Outlier clamps: a value past these is an attack or a broken player, and
// must not move a mean or a ratio more than a plausible bad value would.
const (
	maxStartupMS = 60_000
	maxDeltaMS   = 60_000
	maxKbps      = 1_000_000
	maxTTFBMS    = 10_000
)

func (win *window) computeStats() Stats {
	s := noStats()
	s.StartupP50MS, s.StartupP90MS = win.startup.quantiles(0.5, 0.9)
	s.ThroughputP50Kbps, _ = win.tput.quantiles(0.5, -1)
	s.BitrateP50Kbps, _ = win.bitrate.quantiles(0.5, -1)
	s.TTFBP50MS, _ = win.ttfb.quantiles(0.5, -1)
	if win.played+win.stalled > 0 {
		s.RebufferRatio = win.stalled / (win.played + win.stalled)
	}
	if t := trials(win.attempts, win.exits); t > 0 {
		s.FailureRate = min(1, win.failures/t)
	}
	if win.attempts > 0 {
		s.EBVSRate = min(1, win.ebvs/win.attempts)
	}
	return s
}

// scale multiplies every weight by k (a rebase moving the landmark forward
// multiplies by g(old)/g(new) < 1).
func (win *window) scale(k, kf float64) {
	win.dirty = true
	win.beacons *= k
	win.exits *= k
	win.attempts *= k
	win.failures *= k
	win.ebvs *= k
	win.played *= k
	win.stalled *= k
	for _, s := range []*sketch{&win.startup, &win.tput, &win.bitrate, &win.ttfb} {
		s.scale(k)
	}
	win.fast.scale(kf)
}

package steering

import (
	"fmt"
	"math"
	"time"
)

// Policy is every tunable of the engine. DefaultPolicy documents the
// defaults; steering/SCORING.md explains each rule.
type Policy struct {
	Weights Weights

	// HalfLife is the decay of the scoring windows: a sample this old
	// counts half as much as a fresh one.
	HalfLife time.Duration
	// FastHalfLife is the decay of the passive health windows, short so a
	// CDN that starts failing is seen within seconds.
	FastHalfLife time.Duration
	// MinSamples is the decayed number of beacons a window needs to decide
	// for its scope; below it the parent scope decides. Beacons rather than
	// play attempts, so the few views a CDN gets from exploration (each
	// sending a heartbeat every few seconds) keep its windows deciding.
	MinSamples float64

	Hysteresis Hysteresis
	// MaxShiftPerMinute caps how many percentage points of a scope's
	// traffic a CDN gains or loses per minute, except when a CDN is down
	// or evacuated (no thundering herd onto one CDN).
	MaxShiftPerMinute float64
	// Exploration is the share every eligible CDN keeps so it stays
	// measured and a recovered CDN can win back its traffic.
	Exploration float64
	Cost        Cost
	Stale       Stale
	Passive     Passive
	Probe       Probe
	Flap        Flap
	Poison      Poison
}

// Weights of the QoE score components (steering/SCORING.md). They need
// not sum to 1: the score divides by the sum of the weights of the
// components a window has data for.
type Weights struct {
	StartupP50 float64
	StartupP90 float64
	Rebuffer   float64
	Failure    float64
	EBVS       float64
	Bitrate    float64
	TTFB       float64
	Throughput float64
}

// Hysteresis keeps the incumbent leader of a scope until a challenger has
// beaten it by Margin score points for Dwell without interruption; by
// WarmupMargin (if larger) during the Warmup after the scope was first
// ranked on measurements, while its windows fill with views that have
// only just started.
type Hysteresis struct {
	Margin       float64
	Dwell        time.Duration
	Warmup       time.Duration
	WarmupMargin float64
}

// Cost tilts the choice to the cheaper CDN when QoE scores are within
// Margin points: the cheapest eligible CDN gets Margin bonus points, the
// dearest none, the others in proportion to their effective price (zero
// while a CDN is under its monthly commit, which is already paid).
type Cost struct {
	Margin float64
}

// Stale: with no fresh beacons for a scope for Freeze, its weights stay as
// they are; after Static, the scope uses the static order. Steering nodes
// apply the same limits to the age of the snapshot they hold.
type Stale struct {
	Freeze time.Duration
	Static time.Duration
}

// Passive health from the fast window of the scope itself: a CDN is down
// in a scope when its fatal failure rate over at least MinAttempts recent
// play attempts exceeds FailureRate, and evacuated (traffic leaves without
// the shift cap) when its fast QoE score over at least MinBeacons recent
// beacons is EvacuateMargin points below the best other healthy CDN. A
// down or evacuated CDN gets no views, so no new evidence: after Retry
// without fresh data it goes on probation with ProbationShare of the
// traffic, and what those views report decides (a load balancer's slow
// start: enough views to judge in seconds, few enough to hurt little).
// Each failed probation doubles the wait, up to 8 Retry.
type Passive struct {
	FailureRate    float64
	MinAttempts    float64
	MinBeacons     float64
	EvacuateMargin float64
	Retry          time.Duration
	ProbationShare float64
}

// Probe thresholds for active HTTP health probes: down after Fall
// consecutive failures, up again after Rise consecutive successes.
type Probe struct {
	Interval time.Duration
	Timeout  time.Duration
	Fall     int
	Rise     int
}

// Flap damping (route flap damping, RFC 2439 style): each time a CDN goes
// from healthy to down or evacuated in a scope it collects a Penalty of 1;
// the penalty halves every HalfLife; while it is at or above Suppress the
// CDN is not trusted to lead that scope (it keeps its exploration share),
// until it decays under half of Suppress. The penalty is capped so that a
// CDN is released at most MaxSuppress after its last fall (RFC 2439's
// maximum suppress time): one long incident must not read as many flaps.
type Flap struct {
	HalfLife    time.Duration
	Suppress    float64
	MaxSuppress time.Duration
	// Steady is how long a suppressed CDN's recent QoE must go without a
	// dip under the best other CDN's before its penalty may release it.
	// Measured steady for Steady, it is released from under Suppress
	// (RFC 2439 reuses on time alone; a scorer sees the CDN play).
	Steady time.Duration
}

// ceiling is the most penalty a CDN can hold: the value that decays to
// half of Suppress in MaxSuppress.
func (f Flap) ceiling() float64 {
	return f.Suppress / 2 * math.Exp2(f.MaxSuppress.Seconds()/f.HalfLife.Seconds())
}

// Poison damping: a client (an IPv4 /24 or an IPv6 /48) counts for at most
// ClientCap decayed beacons and AttemptCap decayed play attempts in the
// windows, however many it sends; metric values are clamped to plausible
// ranges.
type Poison struct {
	ClientCap  float64
	AttemptCap float64
}

// DefaultPolicy is the policy of the example configuration.
func DefaultPolicy() Policy {
	return Policy{
		Weights: Weights{
			StartupP50: 0.10, StartupP90: 0.10, Rebuffer: 0.30, Failure: 0.25,
			EBVS: 0.05, Bitrate: 0.10, TTFB: 0.05, Throughput: 0.05,
		},
		HalfLife:          60 * time.Second,
		FastHalfLife:      4 * time.Second,
		MinSamples:        50,
		Hysteresis:        Hysteresis{Margin: 3, Dwell: 20 * time.Second, Warmup: 2 * time.Minute, WarmupMargin: 10},
		MaxShiftPerMinute: 50,
		Exploration:       0.02,
		Cost:              Cost{Margin: 4},
		Stale:             Stale{Freeze: 30 * time.Second, Static: 5 * time.Minute},
		Passive:           Passive{FailureRate: 0.25, MinAttempts: 5, MinBeacons: 20, EvacuateMargin: 10, Retry: 15 * time.Second, ProbationShare: 0.05},
		Probe:             Probe{Interval: 5 * time.Second, Timeout: 2 * time.Second, Fall: 3, Rise: 2},
		Flap:              Flap{HalfLife: 2 * time.Minute, Suppress: 1.5, MaxSuppress: 3 * time.Minute, Steady: 45 * time.Second},
		Poison:            Poison{ClientCap: 30, AttemptCap: 1},
	}
}

// Validate names the first setting out of range.
func (p Policy) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"min_samples", p.MinSamples}, {"hysteresis.margin", p.Hysteresis.Margin}, {"max_shift_per_minute", p.MaxShiftPerMinute},
		{"exploration", p.Exploration}, {"cost.margin", p.Cost.Margin}, {"passive.failure_rate", p.Passive.FailureRate},
		{"passive.min_attempts", p.Passive.MinAttempts}, {"passive.min_beacons", p.Passive.MinBeacons},
		{"passive.evacuate_margin", p.Passive.EvacuateMargin}, {"passive.probation_share", p.Passive.ProbationShare}, {"flap.suppress", p.Flap.Suppress},
		{"poison.client_cap", p.Poison.ClientCap}, {"poison.attempt_cap", p.Poison.AttemptCap}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%s: %v is not a finite number", f.name, f.v)
		}
	}
	w := p.Weights
	for _, c := range []struct {
		name string
		v    float64
	}{{"startup_p50", w.StartupP50}, {"startup_p90", w.StartupP90}, {"rebuffer", w.Rebuffer}, {"failure", w.Failure},
		{"ebvs", w.EBVS}, {"bitrate", w.Bitrate}, {"ttfb", w.TTFB}, {"throughput", w.Throughput}} {
		if c.v < 0 || math.IsNaN(c.v) || math.IsInf(c.v, 0) {
			return fmt.Errorf("weights.%s: %v is not a finite, non-negative number", c.name, c.v)
		}
	}
	if w.StartupP50+w.StartupP90+w.Rebuffer+w.Failure+w.EBVS+w.Bitrate+w.TTFB+w.Throughput == 0 {
		return fmt.Errorf("weights: all zero")
	}
	switch {
	case p.HalfLife <= 0:
		return fmt.Errorf("half_life: %v is not positive", p.HalfLife)
	case p.FastHalfLife <= 0:
		return fmt.Errorf("fast_half_life: %v is not positive", p.FastHalfLife)
	case p.MinSamples < 1:
		return fmt.Errorf("min_samples: %v is below 1", p.MinSamples)
	case p.Hysteresis.Margin < 0 || p.Hysteresis.Margin > 100:
		return fmt.Errorf("hysteresis.margin: %v is outside 0..100", p.Hysteresis.Margin)
	case p.Hysteresis.Dwell < 0:
		return fmt.Errorf("hysteresis.dwell: %v is negative", p.Hysteresis.Dwell)
	case p.Hysteresis.Warmup < 0:
		return fmt.Errorf("hysteresis.warmup: %v is negative", p.Hysteresis.Warmup)
	case p.Hysteresis.WarmupMargin < 0 || p.Hysteresis.WarmupMargin > 100:
		return fmt.Errorf("hysteresis.warmup_margin: %v is outside 0..100", p.Hysteresis.WarmupMargin)
	case p.MaxShiftPerMinute <= 0 || p.MaxShiftPerMinute > 100:
		return fmt.Errorf("max_shift_per_minute: %v is outside (0, 100]", p.MaxShiftPerMinute)
	case p.Exploration < 0 || p.Exploration > 0.2:
		return fmt.Errorf("exploration: %v is outside 0..0.2", p.Exploration)
	case p.Cost.Margin < 0 || p.Cost.Margin > 100:
		return fmt.Errorf("cost.margin: %v is outside 0..100", p.Cost.Margin)
	case p.Stale.Freeze <= 0:
		return fmt.Errorf("stale.freeze: %v is not positive", p.Stale.Freeze)
	case p.Stale.Static <= p.Stale.Freeze:
		return fmt.Errorf("stale.static: %v must be longer than stale.freeze (%v)", p.Stale.Static, p.Stale.Freeze)
	case p.Passive.FailureRate <= 0 || p.Passive.FailureRate > 1:
		return fmt.Errorf("passive.failure_rate: %v is outside (0, 1]", p.Passive.FailureRate)
	case p.Passive.MinAttempts < 1:
		return fmt.Errorf("passive.min_attempts: %v is below 1", p.Passive.MinAttempts)
	case p.Passive.MinBeacons < 1:
		return fmt.Errorf("passive.min_beacons: %v is below 1", p.Passive.MinBeacons)
	case p.Passive.Retry <= 0:
		return fmt.Errorf("passive.retry: %v is not positive", p.Passive.Retry)
	case p.Passive.ProbationShare < 0 || p.Passive.ProbationShare > 0.5:
		return fmt.Errorf("passive.probation_share: %v is outside 0..0.5", p.Passive.ProbationShare)
	case p.Passive.EvacuateMargin <= 0:
		return fmt.Errorf("passive.evacuate_margin: %v is not positive", p.Passive.EvacuateMargin)
	case p.Probe.Interval <= 0:
		return fmt.Errorf("probe.interval: %v is not positive", p.Probe.Interval)
	case p.Probe.Timeout <= 0 || p.Probe.Timeout > p.Probe.Interval:
		return fmt.Errorf("probe.timeout: %v must be positive and at most probe.interval (%v)", p.Probe.Timeout, p.Probe.Interval)
	case p.Probe.Fall < 1:
		return fmt.Errorf("probe.fall: %d is below 1", p.Probe.Fall)
	case p.Probe.Rise < 1:
		return fmt.Errorf("probe.rise: %d is below 1", p.Probe.Rise)
	case p.Flap.HalfLife <= 0:
		return fmt.Errorf("flap.half_life: %v is not positive", p.Flap.HalfLife)
	case p.Flap.Steady <= 0:
		return fmt.Errorf("flap.steady: %v is not positive", p.Flap.Steady)
	case p.Flap.Suppress < 1:
		return fmt.Errorf("flap.suppress: %v is below 1", p.Flap.Suppress)
	case p.Flap.ceiling() < p.Flap.Suppress:
		return fmt.Errorf("flap.max_suppress: %v is shorter than flap.half_life (%v): no penalty could reach flap.suppress", p.Flap.MaxSuppress, p.Flap.HalfLife)
	case p.Poison.ClientCap < 1:
		return fmt.Errorf("poison.client_cap: %v is below 1", p.Poison.ClientCap)
	case p.Poison.AttemptCap < 1:
		return fmt.Errorf("poison.attempt_cap: %v is below 1", p.Poison.AttemptCap)
	}
	return nil
}

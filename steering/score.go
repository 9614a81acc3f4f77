package steering

import "math"

// Score is the QoE score 0-100 of a window: the weighted mean of component
// scores 0..1, each a curve of one figure (steering/SCORING.md). Figures
// without data leave their component out, and the weights of the others
// are renormalized. ok is false when no component has data.
func Score(s Stats, w Weights) (score float64, ok bool) {
	full, _, _, _ := scores(s, w)
	return full, full >= 0
}

// scores is Score four times over one set of curves: with the weights w,
// with experience(w) (failures and exits left out), the experience as if
// nothing had stalled, and the whole score as if nothing had stalled (see
// younger). Refreshing a window needs all four, and the curves are most
// of the cost.
func scores(s Stats, w Weights) (full, exp, ageless, fullAgeless float64) {
	const (
		inExp = 1 << iota
		inAgeless
	)
	var sum, wsum, esum, ewsum, asum, awsum, fasum float64
	add := func(weight, figure float64, curve func(float64) float64, in int) {
		if weight > 0 && figure >= 0 {
			v := weight * curve(figure)
			sum += v
			wsum += weight
			if in&inExp != 0 && in&inAgeless == 0 {
				fasum += weight * curve(0) // the stalls, as none
			} else {
				fasum += v
			}
			if in&inExp != 0 {
				esum += v
				ewsum += weight
			}
			switch {
			case in&inAgeless != 0:
				asum += v
				awsum += weight
			case in&inExp != 0:
				// Stalls count as none, not as left out: with their
				// weight gone, the other components' differences would
				// count for more than the margins they are measured by.
				asum += weight * curve(0)
				awsum += weight
			}
		}
	}
	add(w.StartupP50, s.StartupP50MS, startupCurve, inExp|inAgeless)
	add(w.StartupP90, s.StartupP90MS, startupCurve, inExp|inAgeless)
	add(w.Rebuffer, s.RebufferRatio, rebufferCurve, inExp)
	add(w.Failure, s.FailureRate, failureCurve, 0)
	add(w.EBVS, s.EBVSRate, ebvsCurve, 0)
	add(w.Bitrate, s.BitrateP50Kbps, bitrateCurve, inExp|inAgeless)
	add(w.TTFB, s.TTFBP50MS, ttfbCurve, inExp|inAgeless)
	add(w.Throughput, s.ThroughputP50Kbps, throughputCurve, inExp|inAgeless)
	full, exp, ageless, fullAgeless = -1, -1, -1, -1
	if wsum > 0 {
		full, fullAgeless = 100*sum/wsum, 100*fasum/wsum // the same weights
	}
	if ewsum > 0 {
		exp = 100 * esum / ewsum
	}
	if awsum > 0 {
		ageless = 100 * asum / awsum
	}
	return full, exp, ageless, fullAgeless
}

// startupCurve is Mux's startup score: 8/(8+s) for s seconds, 1 at
// instant start, 0.5 at 8 s.
func startupCurve(ms float64) float64 { return 8 / (8 + ms/1000) }

// rebufferCurve is Mux's smoothness: e^(-10 r); 1% stalling costs ~10%.
func rebufferCurve(r float64) float64 { return math.Exp(-10 * r) }

// failureCurve: e^(-15 f). Failures are the worst experience there is; 5%
// failing views cost 53% of this component.
func failureCurve(f float64) float64 { return math.Exp(-15 * f) }

// ebvsCurve: e^(-10 e).
func ebvsCurve(e float64) float64 { return math.Exp(-10 * e) }

// bitrateCurve: 1 - e^(-b/3000) for b kbit/s; 3 Mbit/s is 0.63, 6 Mbit/s 0.86.
func bitrateCurve(kbps float64) float64 { return 1 - math.Exp(-kbps/3000) }

// throughputCurve: 1 - e^(-t/8000); headroom above the top rendition.
func throughputCurve(kbps float64) float64 { return 1 - math.Exp(-kbps/8000) }

// ttfbCurve: 150/(150+t) for t ms; 150 ms is 0.5.
func ttfbCurve(ms float64) float64 { return 150 / (150 + ms) }

// Confidence from a decayed sample count: n/(n+min). Half at the minimum
// sample, 0.9 at nine times it.
func Confidence(n, minSamples float64) float64 {
	if n <= 0 {
		return 0
	}
	return n / (n + minSamples)
}

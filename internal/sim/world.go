package sim

import (
	"math"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

// load counts the views of each CDN that are starting or playing.
type load struct {
	total  []int   // [cdn]
	region [][]int // [cdn][region]
	asn    [][]int // [cdn][asn]
}

func newLoad(m *model) *load {
	l := &load{total: make([]int, len(m.cdns)), region: make([][]int, len(m.cdns)), asn: make([][]int, len(m.cdns))}
	for c := range m.cdns {
		l.region[c] = make([]int, len(m.regions))
		l.asn[c] = make([]int, len(m.asns))
	}
	return l
}

func (l *load) add(m *model, cdn, asn, d int) {
	l.total[cdn] += d
	l.region[cdn][m.asns[asn].region] += d
	l.asn[cdn][asn] += d
}

func (l *load) count(m *model, sc capScope, cdn, asn int) int {
	switch sc {
	case capRegion:
		return l.region[cdn][m.asns[asn].region]
	case capASN:
		return l.asn[cdn][asn]
	}
	return l.total[cdn]
}

// perfAt is the performance of a CDN to an ASN at offset t: the baseline,
// then every matching event in file order, the drift noise, and the load
// against capacity (with extra hypothetical views added, for the oracle).
func (m *model) perfAt(cdn, asn int, t time.Duration, ld *load, extra int) perf {
	p := m.base[cdn][asn]
	a := &m.asns[asn]
	for i := range m.events {
		e := &m.events[i]
		if e.cdn != cdn || (e.region >= 0 && e.region != a.region) || (e.asn != 0 && e.asn != a.asn) {
			continue
		}
		if x := e.intensity(t); x > 0 {
			p.event(e, x)
		}
	}
	p.tput *= m.noise(cdn, a.region, t)
	if p.capacity > 0 && ld != nil {
		if n := ld.count(m, p.capScope, cdn, asn) + extra; n > p.capacity {
			over := float64(n) / float64(p.capacity)
			p.tput /= over
			p.fail = min(1, p.fail+m.overloadFail*(over-1))
		}
	}
	return p
}

// intensity is how much of an event applies at t, 0..1: ramping in,
// held, ramping out, and toggled by a flap.
func (e *eventModel) intensity(t time.Duration) float64 {
	if t < e.at {
		return 0
	}
	x := t - e.at
	a := 1.0
	if e.ramp > 0 && x < e.ramp {
		a = float64(x) / float64(e.ramp)
	}
	if e.dur > 0 && x >= e.dur {
		y := x - e.dur
		if e.rampOut <= 0 || y >= e.rampOut {
			return 0
		}
		a = min(a, 1-float64(y)/float64(e.rampOut))
	}
	if e.flap > 0 && (x/e.flap)%2 == 1 {
		return 0
	}
	return a
}

// event applies an event at intensity x: set values are interpolated
// linearly (throughput geometrically), factors geometrically.
func (p *perf) event(e *eventModel, x float64) {
	lerp := func(a, b float64) float64 { return a + (b-a)*x }
	s := e.set
	if s.ThroughputKbps != nil {
		p.tput = math.Exp(lerp(math.Log(p.tput), math.Log(*s.ThroughputKbps)))
	}
	if s.ThroughputSigma != nil {
		p.sigma = lerp(p.sigma, *s.ThroughputSigma)
	}
	if s.TTFB != nil {
		p.ttfb = lerp(p.ttfb, ms(s.TTFB.D()))
	}
	if s.Failure != nil {
		p.fail = lerp(p.fail, *s.Failure)
	}
	if s.StartupOverhead != nil {
		p.overhead = lerp(p.overhead, ms(s.StartupOverhead.D()))
	}
	if s.Capacity != nil && x >= 0.5 {
		p.capacity = *s.Capacity
	}
	f := e.mul
	if f.Throughput != nil {
		p.tput *= math.Pow(*f.Throughput, x)
	}
	if f.TTFB != nil {
		p.ttfb *= math.Pow(*f.TTFB, x)
	}
	if f.Failure != nil {
		p.fail = min(1, p.fail*math.Pow(*f.Failure, x))
	}
	if f.StartupOverhead != nil {
		p.overhead *= math.Pow(*f.StartupOverhead, x)
	}
	if f.Capacity != nil && p.capacity > 0 {
		p.capacity = max(1, int(math.Round(float64(p.capacity)*math.Pow(*f.Capacity, x))))
	}
}

// noise is the drift factor of a CDN's throughput in a region: smoothly
// interpolated normal values at knots Period apart, the same for every
// policy because it depends only on the seed and the time.
func (m *model) noise(cdn, region int, t time.Duration) float64 {
	c := &m.cdns[cdn]
	if c.noiseSigma == 0 {
		return 1
	}
	x := t.Seconds() / c.noisePeriod
	k := math.Floor(x)
	f := x - k
	f = f * f * (3 - 2*f)
	z0 := hashNormal(m.seed, cdn, region, uint64(k))
	z1 := hashNormal(m.seed, cdn, region, uint64(k)+1)
	return math.Exp(c.noiseSigma * (z0 + (z1-z0)*f))
}

func hashNormal(seed uint64, a, b int, k uint64) float64 {
	h := splitmix(seed ^ splitmix(uint64(a)<<48^uint64(b)<<32^k))
	u1 := (float64(h>>11) + 0.5) / (1 << 53)
	u2 := float64(splitmix(h)>>11) / (1 << 53)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

func splitmix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// abr is the player's rendition choice: the highest rendition below 0.8
// of the throughput estimate, or the lowest.
func abr(ladder []float64, estKbps float64) float64 {
	br := ladder[0]
	for _, r := range ladder[1:] {
		if r < 0.8*estKbps {
			br = r
		}
	}
	return br
}

// qoeWeights score every view: the engine's default weights, so "QoE
// delivered" is in the unit the engine optimizes.
var qoeWeights = steering.DefaultPolicy().Weights

// fate is how a view's play attempt turned out.
type fate uint8

const (
	fateStarted     fate = iota + 1 // first frame shown (it may still fail later)
	fateFailedStart                 // fatal error before the first frame
	fateEBVS                        // viewer left before the first frame
)

// outcome is what one view experienced, the input of its true QoE.
type outcome struct {
	fate      fate
	startupMS float64 // started: startup time; EBVS: how long the viewer waited
	played    float64 // seconds
	rebuf     float64 // seconds, excluding seek stalls
	fatal     bool    // started and then failed
	bitrate   float64 // kbps, time-weighted over play
	tput      float64 // kbps, mean of samples
	ttfb      float64 // ms
}

// stats are a view's figures as a window of one view. A view's fate is
// exactly one of started, failed before start, or exited before start;
// the figures of the other fates are left out (-1) rather than scored as
// perfect, so a failed start scores 0 and an exit before start is scored
// on its wait alone.
func (o outcome) stats() steering.Stats {
	// Field by field: the figures may be promoted from an embedded struct.
	var s steering.Stats
	s.Views = 1
	s.StartupP50MS, s.StartupP90MS, s.RebufferRatio, s.FailureRate = -1, -1, -1, -1
	s.EBVSRate, s.ThroughputP50Kbps, s.BitrateP50Kbps, s.TTFBP50MS = -1, -1, -1, -1
	switch o.fate {
	case fateFailedStart:
		s.FailureRate = 1
	case fateEBVS:
		s.StartupP50MS, s.StartupP90MS = o.startupMS, o.startupMS
		s.EBVSRate = 1
		s.TTFBP50MS = o.ttfb
	case fateStarted:
		s.StartupP50MS, s.StartupP90MS = o.startupMS, o.startupMS
		if o.played+o.rebuf > 0 {
			s.RebufferRatio = o.rebuf / (o.played + o.rebuf)
		}
		s.FailureRate = 0
		if o.fatal {
			s.FailureRate = 1
		}
		s.EBVSRate = 0
		if o.played > 0 && o.bitrate > 0 {
			s.BitrateP50Kbps = o.bitrate
		}
		if o.tput > 0 {
			s.ThroughputP50Kbps = o.tput
		}
		s.TTFBP50MS = o.ttfb
	}
	return s
}

// score is the view's true QoE, 0..100.
func (o outcome) score() float64 {
	s, ok := steering.Score(o.stats(), qoeWeights)
	if !ok {
		return 0
	}
	return s
}

// Gauss-Hermite nodes and weights for a standard normal (probabilists').
var (
	ghNodes   = [...]float64{-2.8569700138728056, -1.3556261799742657, 0, 1.3556261799742657, 2.8569700138728056}
	ghWeights = [...]float64{0.011257411327720691, 0.2220759220056126, 0.5333333333333333, 0.2220759220056126, 0.011257411327720691}
)

// expectedQoE is the mean true QoE a new view of a service would get from
// a CDN with performance p: over the view's throughput level (quadrature),
// whether it fails at start, gives up waiting, or fails mid-view.
func (m *model) expectedQoE(p perf, svc *svcModel) float64 {
	meanDur := math.Exp(svc.durMu + svc.durSg*svc.durSg/2)
	pm := 1 - math.Pow(1-p.fail*p.fail*p.fail, meanDur/svc.seg)
	var started float64
	for i, z := range ghNodes {
		t := p.tput * math.Exp(p.sigma*z)
		br := abr(svc.ladder, t)
		startup := p.ttfb + 1000*svc.seg*br/t + p.overhead
		pe := m.patienceBelow(startup / 1000)
		rebuf := 0.0
		if t < br {
			rebuf = 1 - t/br
		}
		ok := outcome{fate: fateStarted, startupMS: startup, played: 1 - rebuf, rebuf: rebuf, bitrate: br, tput: t, ttfb: p.ttfb}
		bad := ok
		bad.fatal = true
		gone := outcome{fate: fateEBVS, startupMS: startup, ttfb: p.ttfb}
		started += ghWeights[i] * ((1-pe)*((1-pm)*ok.score()+pm*bad.score()) + pe*gone.score())
	}
	failed := outcome{fate: fateFailedStart}.score()
	return (1-p.fail)*started + p.fail*failed
}

// patienceBelow is the probability that a viewer's patience is shorter
// than sec seconds.
func (m *model) patienceBelow(sec float64) float64 {
	if m.patSigma == 0 {
		if sec > math.Exp(m.patMu) {
			return 1
		}
		return 0
	}
	return 0.5 * math.Erfc(-(math.Log(sec)-m.patMu)/(m.patSigma*math.Sqrt2))
}

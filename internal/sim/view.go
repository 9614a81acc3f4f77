package sim

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Player model constants.
const (
	// rho is how much of a view's per-step throughput is its own level
	// (access line, device) rather than second-to-second noise; the
	// marginal stays lognormal(median, sigma).
	rho = 0.7
	// noiseTau is the correlation time of the second-to-second part: an
	// AR(1) process, so dips last seconds, long enough to drain a buffer.
	noiseTau = 10.0
	// The ABR's throughput estimate is the lower of a fast and a slow
	// EWMA of the samples (hls.js uses 3 s and 9 s half-lives).
	ewmaFast, ewmaSlow = 3.0, 9.0
	// failDelay is how long a player retries before a fatal error at start.
	failDelay = 2 * time.Second
	// badShare of views sit behind a poor last mile (busy Wi-Fi, weak
	// mobile signal) that scales whatever the CDN delivers by badMin to
	// badMax: the views that stall first when a CDN slows down.
	badShare, badMin, badMax = 0.05, 0.02, 0.2
	// ttfbSigma spreads each view's TTFB around the CDN's.
	ttfbSigma = 0.25
	fps       = 30
)

var players = [...]struct{ player, version, device, os string }{
	{"hls.js", "1.7.0", "desktop", "Windows"},
	{"dash.js", "5.0.0", "desktop", "macOS"},
	{"shaka-player", "4.12.0", "smart-tv", "Tizen"},
	{"AVPlayer", "18.0", "phone", "iOS"},
	{"ExoPlayer", "1.5.0", "phone", "Android"},
}

// arrival is one new view as the arrival process draws it, before any
// policy sees it: the same for every policy with the same seed.
type arrival struct {
	idx      int
	at       time.Duration // offset of the play intent
	svc, asn int
	loc      steering.Location
	client   netip.Addr
	length   time.Duration // how long the viewer stays (from the play intent)
	patience time.Duration
	seekAt   float64 // seconds of play before the one seek; <0: none
	warm     bool    // already playing when the run starts
}

// view is one playback.
type view struct {
	arrival
	id, session, content string
	svcm                 *svcModel
	cdn                  int
	lead                 int // the CDN the view's decision gave the most weight
	cdnName, host        string
	inScope              bool
	rng                  *rand.Rand

	zView, ttfbF, dropRate float64
	noise                  float64 // AR(1) state, stationary N(0,1)
	lastMile               float64 // factor, 1 for most views
	estFast, estSlow       float64 // kbps
	ttfb0                  float64 // ms, at the play intent

	fate      fate
	done      bool
	startAt   time.Duration // first frame
	endAt     time.Duration // fatal error at start, exit, or the viewer leaving
	sentStart bool
	startupMS float64

	buf, br, lastT   float64
	stalled, seeking bool

	played, rebuf, seekRebuf float64 // seconds, whole view
	rebufCount               int
	brPlayed                 float64 // sum of bitrate x play seconds
	tputSum, ttfbSum         float64
	samples                  int
	fatal                    bool

	// since the last heartbeat
	dPlayed, dRebuf, dSeek, dDropped float64
	dCount                           int
	nextHB                           time.Duration
	seq                              int64
	out                              []beacons.Input
}

// begin draws the view's own random numbers (always the same count, so a
// view's draws do not depend on the CDN it got) and decides its start.
func (v *view) begin(m *model, p perf) {
	zView, z0, uStart, zTTFB, uDrop, uPhase, uBad := v.rng.NormFloat64(), v.rng.NormFloat64(), v.rng.Float64(),
		v.rng.NormFloat64(), v.rng.Float64(), v.rng.Float64(), v.rng.Float64()
	v.zView, v.noise, v.lastMile = zView, z0, 1
	if uBad < badShare {
		v.lastMile = badMin + (badMax-badMin)*uBad/badShare
	}
	v.ttfbF = math.Exp(ttfbSigma * zTTFB)
	v.dropRate = 0.0005 + 0.004*uDrop*uDrop
	t0 := v.throughput(p)
	br := abr(v.svcm.ladder, t0)
	ttfb := p.ttfb * v.ttfbF
	v.ttfb0 = ttfb
	v.startupMS = ttfb + 1000*v.svcm.seg*br/t0 + p.overhead
	v.br, v.lastT, v.estFast, v.estSlow = br, t0, t0, t0
	hb := m.hb
	switch {
	case v.warm:
		v.fate, v.sentStart = fateStarted, true
		v.startAt, v.endAt = v.at, v.at+v.length
		v.buf = v.svcm.maxBuf
		v.nextHB = v.at + time.Duration(uPhase*float64(hb))
		v.seq = 1 + int64(uPhase*100)
	case uStart < p.fail:
		v.fate = fateFailedStart
		v.endAt = v.at + failDelay + time.Duration(ttfb*float64(time.Millisecond))
	case v.startupMS > float64(v.patience)/float64(time.Millisecond):
		v.fate = fateEBVS
		v.endAt = v.at + v.patience
	default:
		v.fate = fateStarted
		v.startAt = v.at + time.Duration(v.startupMS*float64(time.Millisecond))
		v.endAt = max(v.at+v.length, v.startAt+time.Second)
		v.buf = v.svcm.seg
		v.nextHB = v.startAt + hb
	}
}

// throughput is the view's current throughput sample from a CDN with p.
func (v *view) throughput(p perf) float64 {
	return v.lastMile * p.tput * math.Exp(p.sigma*(rho*v.zView+math.Sqrt(1-rho*rho)*v.noise))
}

// step advances the view over [t0, t1) with the CDN's performance p,
// appending its beacons to v.out.
func (v *view) step(m *model, p perf, t0, t1 time.Duration, start time.Time) {
	// Two draws every step whatever the state: common random numbers.
	zs, us := v.rng.NormFloat64(), v.rng.Float64()
	if v.done {
		return
	}
	switch v.fate {
	case fateFailedStart:
		if v.endAt < t1 {
			b := v.beacon("error", v.endAt, start)
			b.ErrorCode, b.Fatal = "manifestLoadError", true
			v.out = append(v.out, b)
			v.done = true
		}
		return
	case fateEBVS:
		if v.endAt < t1 {
			v.out = append(v.out, v.beacon("view_end", v.endAt, start))
			v.done = true
		}
		return
	}
	if v.startAt >= t1 {
		return // still starting
	}
	from := t0
	if !v.sentStart {
		b := v.beacon("view_start", v.startAt, start)
		b.StartupMS = int64(math.Round(v.startupMS))
		b.BitrateKbps, b.ThroughputKbps = int64(v.br), int64(math.Round(v.lastT))
		b.TTFBMS = int64(math.Round(p.ttfb * v.ttfbF))
		v.out = append(v.out, b)
		v.sentStart = true
		from = v.startAt
	}
	to := min(t1, v.endAt)
	var fatalAt time.Duration = -1
	if to > from {
		d := (to - from).Seconds()
		phi := math.Exp(-d / noiseTau)
		v.noise = phi*v.noise + math.Sqrt(1-phi*phi)*zs
		t := v.throughput(p)
		// A segment fails fatally when three attempts in a row fail.
		if f3 := p.fail * p.fail * p.fail; f3 > 0 {
			if pf := 1 - math.Pow(1-f3, d/v.svcm.seg); us < pf {
				d *= us / pf
				fatalAt = from + time.Duration(d*float64(time.Second))
			}
		}
		v.br = abr(v.svcm.ladder, min(v.estFast, v.estSlow))
		// Each segment costs a TTFB before its bytes flow: on a slow
		// first byte, the same throughput fills the buffer more slowly.
		v.play(d, 1/(p.ttfb*v.ttfbF/1000/v.svcm.seg+v.br/t))
		v.lastT = t
		v.estFast += (t - v.estFast) * (1 - math.Exp2(-d/ewmaFast))
		v.estSlow += (t - v.estSlow) * (1 - math.Exp2(-d/ewmaSlow))
		v.tputSum += t
		v.ttfbSum += p.ttfb * v.ttfbF
		v.samples++
	}
	if fatalAt >= 0 {
		b := v.beacon("error", fatalAt, start)
		b.ErrorCode, b.Fatal = "fragLoadError", true
		// The repeated startup tells the engine this view had started, so
		// the failure is not counted as a second play attempt.
		b.StartupMS = int64(math.Round(v.startupMS))
		b.BitrateKbps = int64(v.br)
		v.out = append(v.out, b)
		v.fatal, v.done = true, true
		return
	}
	for v.nextHB < t1 && v.nextHB < v.endAt {
		v.out = append(v.out, v.report("heartbeat", v.nextHB, start, p))
		v.nextHB += m.hb
	}
	if v.endAt < t1 {
		b := v.report("view_end", v.endAt, start, p)
		b.StartupMS = int64(math.Round(v.startupMS))
		v.out = append(v.out, b)
		v.done = true
	}
}

// play advances playback by d seconds while the buffer fills at fill
// seconds of media per second (throughput / bitrate) and drains at one.
func (v *view) play(d, fill float64) {
	maxBuf, resume := v.svcm.maxBuf, v.svcm.seg
	for d > 1e-9 {
		if v.stalled {
			need := resume - v.buf
			if fill <= 0 || need/fill >= d {
				v.buf += fill * d
				v.stall(d)
				return
			}
			v.stall(need / fill)
			d -= need / fill
			v.buf, v.stalled, v.seeking = resume, false, false
			continue
		}
		net := fill - 1
		if v.buf >= maxBuf && net > 0 {
			net = 0
		}
		span, empty, seek := d, false, false
		if net < 0 {
			if te := v.buf / -net; te < span {
				span, empty = te, true
			}
		}
		if v.seekAt >= 0 && v.seekAt-v.played < span {
			span, empty, seek = max(0, v.seekAt-v.played), false, true
		}
		v.played += span
		v.dPlayed += span
		v.brPlayed += v.br * span
		v.dDropped += span * fps * v.dropRate
		v.buf = min(maxBuf, max(0, v.buf+net*span))
		d -= span
		switch {
		case seek:
			v.seekAt = -1
			v.buf, v.stalled, v.seeking = 0, true, true
		case empty:
			v.buf, v.stalled = 0, true
			v.rebufCount++
			v.dCount++
		}
	}
}

func (v *view) stall(d float64) {
	if v.seeking {
		v.seekRebuf += d
		v.dSeek += d
		return
	}
	v.rebuf += d
	v.dRebuf += d
}

// report is a heartbeat or view_end carrying the deltas since the last
// one; the deltas are reset, keeping what rounding left over.
func (v *view) report(typ string, at time.Duration, start time.Time, p perf) beacons.Input {
	b := v.beacon(typ, at, start)
	b.PlayedMS = takeMS(&v.dPlayed)
	b.RebufferMS = takeMS(&v.dRebuf)
	b.SeekRebufferMS = takeMS(&v.dSeek)
	b.RebufferCount = int64(v.dCount)
	v.dCount = 0
	b.DroppedFrames = int64(v.dDropped)
	v.dDropped -= float64(b.DroppedFrames)
	b.BitrateKbps = int64(v.br)
	b.ThroughputKbps = int64(math.Round(v.lastT))
	b.TTFBMS = int64(math.Round(p.ttfb * v.ttfbF))
	return b
}

func takeMS(sec *float64) int64 {
	ms := int64(*sec * 1000)
	*sec -= float64(ms) / 1000
	return ms
}

func (v *view) beacon(typ string, at time.Duration, start time.Time) beacons.Input {
	pl := players[v.idx%len(players)]
	b := beacons.Input{Type: typ, ViewID: v.id, SessionID: v.session, TS: start.Add(at).UnixMilli(), Seq: v.seq,
		Service: v.svcm.name, CDN: v.cdnName, Host: v.host, ContentID: v.content,
		Player: pl.player, PlayerVersion: pl.version, Device: pl.device, OS: pl.os}
	v.seq++
	return b
}

// outcome is what the view experienced so far.
func (v *view) outcome() outcome {
	o := outcome{fate: v.fate, fatal: v.fatal, played: v.played, rebuf: v.rebuf}
	switch v.fate {
	case fateEBVS:
		o.startupMS = float64(v.patience) / float64(time.Millisecond)
		o.ttfb = v.ttfb0
	case fateStarted:
		o.startupMS = v.startupMS
		if v.played > 0 {
			o.bitrate = v.brPlayed / v.played
		}
		o.ttfb = v.ttfb0
		if v.samples > 0 {
			o.tput = v.tputSum / float64(v.samples)
			o.ttfb = v.ttfbSum / float64(v.samples)
		}
	}
	return o
}

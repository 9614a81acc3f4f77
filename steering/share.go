package steering

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/DataDog/sketches-go/ddsketch/store"
)

// Sharing splits one service's scoring over several engines, one per
// scorer of a group, each fed the beacon partitions it owns. Beacons are
// keyed by region, so the region and ASN scopes of a region live whole in
// one engine. The global and country scopes (shared scopes) take beacons
// from every partition: a sharing engine does not add its beacons to them
// directly but collects what they would add into a Delta, which the
// scorer publishes; every engine of the group, the one that made it
// included, adds every delta (ApplyDelta). So the shared windows of every
// member hold the same sums, one publish behind.
//
// Windows are sums of forward-decayed weights, so the contributions of
// several engines add up exactly once they are brought to one landmark:
// a delta says which landmark its weights are relative to.

// Share makes the engine share its global and country scopes through
// deltas. Call it before the first observation.
func (e *Engine) Share() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sharing = true
	e.outgoing = map[winKey]*window{}
	e.outUsage = map[string]*usage{}
}

// shared reports whether a scope's windows are fed by deltas.
func shared(sc Scope) bool { return sc.Level == LevelGlobal || sc.Level == LevelCountry }

// Replay folds in a beacon that an earlier owner of its partition has
// already shared: its region and ASN windows only (and the client's
// poisoning budget), nothing toward the next delta. A new owner re-reads
// the recent past of a partition this way so that its windows are whole
// without counting the shared scopes twice.
func (e *Engine) Replay(o *Observation) error { return e.observe(o, true) }

// Delta is what one engine adds to the shared scopes between two
// TakeDelta calls.
type Delta struct {
	// Landmark is the decay landmark the weights are relative to.
	Landmark time.Time       `json:"landmark"`
	Services []*ServiceDelta `json:"services"`
}

// ServiceDelta is one service's part of a Delta.
type ServiceDelta struct {
	Service string `json:"service"`
	// Newest is the newest observation in it: the service's inputs are
	// fresh on every member while any member gets beacons.
	Newest  time.Time     `json:"newest"`
	Windows []DeltaWindow `json:"windows"`
	// Usage is the estimated volume delivered per CDN, for commit tracking.
	Usage []UsageDelta `json:"usage,omitempty"`
}

// UsageDelta is delivered volume added in one month (year*12+month-1).
type UsageDelta struct {
	CDN   string  `json:"cdn"`
	Month int     `json:"month"`
	GB    float64 `json:"gb"`
}

// DeltaWindow is the increment of one shared window.
type DeltaWindow struct {
	Scope Scope  `json:"scope"`
	CDN   string `json:"cdn"`
	// Last is the newest sample.
	Last     time.Time `json:"last"`
	Beacons  float64   `json:"beacons"`
	Attempts float64   `json:"attempts"`
	Failures float64   `json:"failures"`
	EBVS     float64   `json:"ebvs"`
	Exits    float64   `json:"exits"`
	Played   float64   `json:"played"`
	Stalled  float64   `json:"stalled"`
	Startup  Bins      `json:"startup"`
	Tput     Bins      `json:"tput"`
	Bitrate  Bins      `json:"bitrate"`
	TTFB     Bins      `json:"ttfb"`
	// Fast are the passive health sums (Policy.FastHalfLife), Probation
	// the plain ones.
	Fast      Means `json:"fast"`
	Probation Means `json:"probation"`
}

// Bins are a sketch's non-empty bins: DDSketch indexes of the shared
// logarithmic mapping and their weights.
type Bins struct {
	Index  []int32   `json:"i"`
	Weight []float64 `json:"w"`
}

// Means are a means accumulator's sums.
type Means struct {
	Beacons    float64 `json:"beacons"`
	Attempts   float64 `json:"attempts"`
	Failures   float64 `json:"failures"`
	Exits      float64 `json:"exits"`
	Played     float64 `json:"played"`
	Stalled    float64 `json:"stalled"`
	StartupSum float64 `json:"startup_sum"`
	StartN     float64 `json:"startup_n"`
	TTFBSum    float64 `json:"ttfb_sum"`
	TTFBN      float64 `json:"ttfb_n"`
	BitrateSum float64 `json:"bitrate_sum"`
	BitrateN   float64 `json:"bitrate_n"`
	TputSum    float64 `json:"tput_sum"`
	TputN      float64 `json:"tput_n"`
}

// TakeDelta returns what the engine's observations added to the shared
// scopes since the last call, and starts a new delta. Nil when there is
// nothing (or the engine does not share).
func (e *Engine) TakeDelta() *Delta {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.sharing || (len(e.outgoing) == 0 && len(e.outUsage) == 0) {
		return nil
	}
	d := &Delta{Landmark: e.slow.landmark}
	by := map[string]*ServiceDelta{}
	svc := func(name string) *ServiceDelta {
		sd := by[name]
		if sd == nil {
			sd = &ServiceDelta{Service: name}
			by[name] = sd
			d.Services = append(d.Services, sd)
		}
		return sd
	}
	for k, w := range e.outgoing {
		sd := svc(k.scope.Service)
		if w.last.After(sd.Newest) {
			sd.Newest = w.last
		}
		sd.Windows = append(sd.Windows, w.export(k))
	}
	for key, u := range e.outUsage {
		// Usage is engine-wide per CDN; it rides with the first service
		// that lists the CDN.
		for _, s := range e.cat.Services {
			if _, ok := e.svcs[s.Name].idx[key]; ok {
				sd := svc(s.Name)
				sd.Usage = append(sd.Usage, UsageDelta{CDN: key, Month: u.month, GB: u.gb})
				break
			}
		}
	}
	sort.Slice(d.Services, func(i, j int) bool { return d.Services[i].Service < d.Services[j].Service })
	for _, sd := range d.Services {
		sort.Slice(sd.Windows, func(i, j int) bool {
			a, b := sd.Windows[i], sd.Windows[j]
			if a.Scope != b.Scope {
				return scopeLess(a.Scope, b.Scope)
			}
			return a.CDN < b.CDN
		})
		sort.Slice(sd.Usage, func(i, j int) bool { return sd.Usage[i].CDN < sd.Usage[j].CDN })
	}
	clear(e.outgoing)
	clear(e.outUsage)
	return d
}

// ErrDelta marks a delta that cannot be applied: it names a scope level
// that is not shared or a figure that is not a finite non-negative number.
var ErrDelta = errors.New("invalid delta")

// ApplyDelta adds a delta, this engine's own or another member's, to the
// shared windows. A delta for a service or CDN the catalog does not have
// is refused whole, before anything is added.
func (e *Engine) ApplyDelta(d *Delta) error {
	if err := e.checkDelta(d); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// Bring the sender's weights to this engine's landmark.
	shift := d.Landmark.Sub(e.slow.landmark).Seconds()
	ks, kf := math.Exp(shift/e.slow.tau), math.Exp(shift/e.fast.tau)
	for _, sd := range d.Services {
		st := e.svcs[sd.Service]
		if sd.Newest.After(st.fresh) {
			st.fresh = sd.Newest
		}
		for i := range sd.Windows {
			dw := &sd.Windows[i]
			e.window(st, winKey{scope: dw.Scope, cdn: dw.CDN}, Location{Country: dw.Scope.Country}).merge(dw, ks, kf)
		}
		for _, ud := range sd.Usage {
			u := e.usage[ud.CDN]
			if u == nil {
				u = &usage{}
				e.usage[ud.CDN] = u
			}
			switch {
			case ud.Month > u.month:
				u.month, u.gb = ud.Month, ud.GB
			case ud.Month == u.month:
				u.gb += ud.GB
			}
		}
	}
	return nil
}

func (e *Engine) checkDelta(d *Delta) error {
	if d == nil {
		return fmt.Errorf("%w: nil", ErrDelta)
	}
	if d.Landmark.IsZero() {
		return fmt.Errorf("%w: landmark is missing", ErrDelta)
	}
	// A landmark further than this from ours would scale weights past
	// float64: no live member is that far apart.
	if shift := math.Abs(d.Landmark.Sub(e.slow.landmark).Seconds()); shift/e.fast.tau > 600 {
		return fmt.Errorf("%w: landmark %s is %s from this engine's", ErrDelta, d.Landmark.UTC().Format(time.RFC3339), d.Landmark.Sub(e.slow.landmark))
	}
	for i, sd := range d.Services {
		if sd == nil {
			return fmt.Errorf("%w: services[%d] is null", ErrDelta, i)
		}
		st, ok := e.svcs[sd.Service]
		if !ok {
			return fmt.Errorf("services[%d] %q: %w", i, sd.Service, ErrUnknownService)
		}
		for j := range sd.Windows {
			dw := &sd.Windows[j]
			where := fmt.Sprintf("services[%d].windows[%d]", i, j)
			if dw.Scope.Service != sd.Service {
				return fmt.Errorf("%w: %s.scope.service is %q, not %q", ErrDelta, where, dw.Scope.Service, sd.Service)
			}
			switch {
			case dw.Scope.Level == LevelGlobal && (dw.Scope.Country != "" || dw.Scope.Region != "" || dw.Scope.ASN != 0):
				return fmt.Errorf("%w: %s: a global scope names a place", ErrDelta, where)
			case dw.Scope.Level == LevelCountry && (dw.Scope.Country == "" || dw.Scope.Region != "" || dw.Scope.ASN != 0):
				return fmt.Errorf("%w: %s: a country scope needs a country and only that", ErrDelta, where)
			case !shared(dw.Scope):
				return fmt.Errorf("%w: %s: level %s is not shared", ErrDelta, where, dw.Scope.Level)
			}
			if _, ok := st.idx[dw.CDN]; !ok {
				return fmt.Errorf("%s cdn %q for service %q: %w", where, dw.CDN, sd.Service, ErrUnknownCDN)
			}
			if err := dw.check(); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrDelta, where, err)
			}
		}
		for j, u := range sd.Usage {
			if !e.catalogHas(u.CDN) {
				return fmt.Errorf("services[%d].usage[%d] cdn %q: %w", i, j, u.CDN, ErrUnknownCDN)
			}
			if !finite(u.GB) || u.Month <= 0 {
				return fmt.Errorf("%w: services[%d].usage[%d]: gb %v or month %d out of range", ErrDelta, i, j, u.GB, u.Month)
			}
		}
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 }

func (dw *DeltaWindow) check() error {
	for name, v := range map[string]float64{"beacons": dw.Beacons, "attempts": dw.Attempts, "failures": dw.Failures,
		"ebvs": dw.EBVS, "exits": dw.Exits, "played": dw.Played, "stalled": dw.Stalled} {
		if !finite(v) {
			return fmt.Errorf("%s %v is not a finite non-negative number", name, v)
		}
	}
	for name, m := range map[string]*Means{"fast": &dw.Fast, "probation": &dw.Probation} {
		if err := m.check(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	for name, b := range map[string]*Bins{"startup": &dw.Startup, "tput": &dw.Tput, "bitrate": &dw.Bitrate, "ttfb": &dw.TTFB} {
		if len(b.Index) != len(b.Weight) {
			return fmt.Errorf("%s: %d indexes for %d weights", name, len(b.Index), len(b.Weight))
		}
		for i, w := range b.Weight {
			if !finite(w) {
				return fmt.Errorf("%s: weight %v is not a finite non-negative number", name, w)
			}
			// The mapping's indexes for the clamped values windows keep
			// (0.001 to a million) are far inside this.
			if b.Index[i] < -2000 || b.Index[i] > 2000 {
				return fmt.Errorf("%s: index %d is outside -2000..2000", name, b.Index[i])
			}
		}
	}
	return nil
}

func (m *Means) check() error {
	// Sums of logs may be negative (a value under 1); counts may not.
	for name, v := range map[string]float64{"beacons": m.Beacons, "attempts": m.Attempts, "failures": m.Failures,
		"exits": m.Exits, "played": m.Played, "stalled": m.Stalled, "startup_n": m.StartN, "ttfb_n": m.TTFBN,
		"bitrate_n": m.BitrateN, "tput_n": m.TputN} {
		if !finite(v) {
			return fmt.Errorf("%s %v is not a finite non-negative number", name, v)
		}
	}
	for name, v := range map[string]float64{"startup_sum": m.StartupSum, "ttfb_sum": m.TTFBSum, "bitrate_sum": m.BitrateSum, "tput_sum": m.TputSum} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s %v is not finite", name, v)
		}
	}
	return nil
}

func (m *means) export() Means {
	return Means{Beacons: m.beacons, Attempts: m.attempts, Failures: m.failures, Exits: m.exits, Played: m.played, Stalled: m.stalled,
		StartupSum: m.startupSum, StartN: m.startN, TTFBSum: m.ttfbSum, TTFBN: m.ttfbN,
		BitrateSum: m.bitrateSum, BitrateN: m.brN, TputSum: m.tputSum, TputN: m.tputN}
}

func (m *means) merge(d *Means, k float64) {
	m.beacons += d.Beacons * k
	m.attempts += d.Attempts * k
	m.failures += d.Failures * k
	m.exits += d.Exits * k
	m.played += d.Played * k
	m.stalled += d.Stalled * k
	m.startupSum += d.StartupSum * k
	m.startN += d.StartN * k
	m.ttfbSum += d.TTFBSum * k
	m.ttfbN += d.TTFBN * k
	m.bitrateSum += d.BitrateSum * k
	m.brN += d.BitrateN * k
	m.tputSum += d.TputSum * k
	m.tputN += d.TputN * k
}

func (s *sketch) export() Bins {
	var b Bins
	if s.bins == nil {
		return b
	}
	s.bins.ForEach(func(index int, count float64) bool {
		if count > 0 {
			b.Index = append(b.Index, int32(index))
			b.Weight = append(b.Weight, count)
		}
		return false
	})
	return b
}

func (s *sketch) merge(b *Bins, k float64) {
	for i, idx := range b.Index {
		w := b.Weight[i] * k
		if w <= 0 {
			continue
		}
		if s.bins == nil {
			s.bins = store.NewBufferedPaginatedStore()
		}
		s.bins.AddWithCount(int(idx), w)
		s.total += w
	}
}

func (win *window) export(k winKey) DeltaWindow {
	return DeltaWindow{Scope: k.scope, CDN: k.cdn, Last: win.last,
		Beacons: win.beacons, Attempts: win.attempts, Failures: win.failures, EBVS: win.ebvs, Exits: win.exits,
		Played: win.played, Stalled: win.stalled,
		Startup: win.startup.export(), Tput: win.tput.export(), Bitrate: win.bitrate.export(), TTFB: win.ttfb.export(),
		Fast: win.fast.export(), Probation: win.probation.export()}
}

// merge adds a delta window with its slow weights scaled by ks and its
// fast ones by kf; the probation sums are plain.
func (win *window) merge(d *DeltaWindow, ks, kf float64) {
	if d.Last.After(win.last) {
		win.last = d.Last
	}
	win.dirty = true
	win.beacons += d.Beacons * ks
	win.attempts += d.Attempts * ks
	win.failures += d.Failures * ks
	win.ebvs += d.EBVS * ks
	win.exits += d.Exits * ks
	win.played += d.Played * ks
	win.stalled += d.Stalled * ks
	win.startup.merge(&d.Startup, ks)
	win.tput.merge(&d.Tput, ks)
	win.bitrate.merge(&d.Bitrate, ks)
	win.ttfb.merge(&d.TTFB, ks)
	win.fast.merge(&d.Fast, kf)
	win.probation.merge(&d.Probation, 1)
}

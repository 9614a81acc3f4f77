package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/steering"
)

// model is a validated scenario compiled for the runner: names resolved
// to indices, client prefixes resolved against the coverage file, and
// every (CDN, ASN) baseline precomputed.
type model struct {
	sc        *Scenario // with defaults
	name      string
	dur, step time.Duration
	hb        time.Duration
	seed      uint64
	warm      bool

	patMu, patSigma float64 // log seconds
	seekShare       float64
	overloadFail    float64

	services []svcModel
	svcCum   []float64
	regions  []regionModel
	asns     []asnModel
	cdns     []cdnModel
	base     [][]perf // [cdn][asn]: baseline with region and ASN overrides
	events   []eventModel
	incident *Incident
	scope    scopeModel

	cdnIndex map[string]int
	svcIndex map[string]int
	locIndex map[string]map[uint32]int // region -> ASN -> asn index
	catalog  steering.Catalog
}

type svcModel struct {
	name         string
	live         bool
	cdns         []int
	share        float64
	durMu, durSg float64 // log seconds
	seg, maxBuf  float64 // seconds
	ladder       []float64
}

type regionModel struct {
	name string
	rate float64
	asns []int
	cum  []float64 // cumulative ASN weights
}

type asnModel struct {
	region   int
	asn      uint32
	prefixes []geo.Location
	cum      []float64 // cumulative prefix weights: client networks held
}

// networks is how many client networks a prefix holds: IPv4 /24s or IPv6
// /48s, what the engine counts as one client when it caps a flood. Viewers
// spread over networks, not over prefixes: a /16 has 256 times the
// viewers of a /24, and a /48 is one site. (Drawn per prefix, the half of
// the fleet in the demo coverage's 16 IPv6 /48s per region sat behind 16
// client keys, and the engine rightly discounted them as floods.)
func networks(p netip.Prefix) float64 {
	bits := 24
	if p.Addr().Is6() && !p.Addr().Is4In6() {
		bits = 48
	}
	return math.Exp2(float64(max(0, bits-p.Bits())))
}

type cdnModel struct {
	name, host  string
	price       float64 // per GB
	noiseSigma  float64
	noisePeriod float64 // seconds
}

// capScope is which views a capacity counts.
type capScope uint8

const (
	capGlobal capScope = iota // every view on the CDN
	capRegion                 // the CDN's views in the region
	capASN                    // the CDN's views in the ASN
)

// perf is the delivery performance of one CDN to one ASN at one instant.
type perf struct {
	tput     float64 // median kbps
	sigma    float64
	ttfb     float64 // ms
	fail     float64
	overhead float64 // ms
	capacity int
	capScope capScope
}

func (p *perf) apply(q Perf, sc capScope) {
	if q.ThroughputKbps != nil {
		p.tput = *q.ThroughputKbps
	}
	if q.ThroughputSigma != nil {
		p.sigma = *q.ThroughputSigma
	}
	if q.TTFB != nil {
		p.ttfb = ms(q.TTFB.D())
	}
	if q.Failure != nil {
		p.fail = *q.Failure
	}
	if q.StartupOverhead != nil {
		p.overhead = ms(q.StartupOverhead.D())
	}
	if q.Capacity != nil {
		p.capacity, p.capScope = *q.Capacity, sc
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type eventModel struct {
	name                   string
	at, dur, ramp, rampOut time.Duration // dur 0: until the end
	flap                   time.Duration
	cdn, region            int // region -1: every region
	asn                    uint32
	set                    Perf
	mul                    Factors
}

type scopeModel struct {
	region int // -1: every region
	asn    uint32
}

func (s scopeModel) has(m *model, asn int) bool {
	a := &m.asns[asn]
	return (s.region < 0 || s.region == a.region) && (s.asn == 0 || s.asn == a.asn)
}

func (s scopeModel) String(m *model) string {
	switch {
	case s.region < 0:
		return "all viewers"
	case s.asn != 0:
		return fmt.Sprintf("%s/AS%d", m.regions[s.region].name, s.asn)
	}
	return m.regions[s.region].name
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9.:\[\]-]{1,253}$`)

// compile validates a scenario and builds its model. Errors name the field.
func compile(s *Scenario) (*model, error) {
	c := s.withDefaults()
	m := &model{sc: c, name: c.Name, dur: c.Duration.D(), step: c.Step.D(), hb: c.Heartbeat.D(),
		seed: c.Seed, warm: *c.Warm, seekShare: *c.SeekShare, overloadFail: *c.OverloadFailure,
		cdnIndex: map[string]int{}, svcIndex: map[string]int{}, locIndex: map[string]map[uint32]int{}}
	if !scenarioName.MatchString(c.Name) {
		return nil, fmt.Errorf("name: %q is not 1-32 characters of a-z 0-9 - starting with a letter or digit", c.Name)
	}
	if err := durRange("duration", c.Duration, 0, 24*time.Hour); err != nil {
		return nil, err
	}
	if err := durRange("step", c.Step, 10*time.Millisecond, time.Minute); err != nil {
		return nil, err
	}
	if m.dur > 0 && m.dur < m.step {
		return nil, fmt.Errorf("duration: %v is shorter than step %v", c.Duration, c.Step)
	}
	if err := durRange("heartbeat", c.Heartbeat, m.step, time.Hour); err != nil {
		return nil, err
	}
	if err := checkDist("patience", c.Patience, 100*time.Millisecond, time.Hour); err != nil {
		return nil, err
	}
	m.patMu, m.patSigma = math.Log(c.Patience.Median.D().Seconds()), c.Patience.Sigma
	if err := inRange("seek_share", m.seekShare, 0, 1); err != nil {
		return nil, err
	}
	if err := inRange("overload_failure", m.overloadFail, 0, 1); err != nil {
		return nil, err
	}
	if err := m.compileCDNs(c); err != nil {
		return nil, err
	}
	if err := m.compileServices(c); err != nil {
		return nil, err
	}
	cov, err := geo.LoadDemo()
	if err != nil {
		return nil, err
	}
	if err := m.compileRegions(c, cov); err != nil {
		return nil, err
	}
	if err := m.compileOverrides(c); err != nil {
		return nil, err
	}
	if err := m.compileEvents(c); err != nil {
		return nil, err
	}
	m.scope = scopeModel{region: -1}
	if m.incident != nil {
		m.scope = m.incident.scope
	}
	if c.Scope != nil {
		if m.incident != nil {
			return nil, fmt.Errorf("scope: the incident's scope is the metrics scope; remove scope or the incident")
		}
		sc, err := m.scopeOf("scope.", c.Scope.Region, c.Scope.ASN)
		if err != nil {
			return nil, err
		}
		m.scope = sc
	}
	m.catalog = c.Catalog()
	if err := m.catalog.Validate(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return m, nil
}

func (m *model) compileCDNs(c *Scenario) error {
	if len(c.CDNs) == 0 {
		return fmt.Errorf("cdns: required")
	}
	for i, d := range c.CDNs {
		f := fmt.Sprintf("cdns[%d].", i)
		switch {
		case !beaconName.MatchString(d.Name):
			return fmt.Errorf("%sname: %q is not 1-32 characters of A-Z a-z 0-9 . _ -", f, d.Name)
		case !hostName.MatchString(d.Host):
			return fmt.Errorf("%shost: %q is not a host name", f, d.Host)
		case d.ThroughputKbps == nil:
			return fmt.Errorf("%sthroughput_kbps: required", f)
		}
		if _, dup := m.cdnIndex[d.Name]; dup {
			return fmt.Errorf("%sname: %q is repeated", f, d.Name)
		}
		if err := inRange(f+"price_per_gb", d.PricePerGB, 0, 1e6); err != nil {
			return err
		}
		if err := inRange(f+"commit_gb_per_month", d.CommitGBPerMonth, 0, 1e12); err != nil {
			return err
		}
		if err := inRange(f+"max_share", d.MaxShare, 0, 1); err != nil {
			return err
		}
		if err := checkPerf(f, d.Perf); err != nil {
			return err
		}
		if err := inRange(f+"noise.sigma", d.Noise.Sigma, 0, 2); err != nil {
			return err
		}
		if err := durRange(f+"noise.period", d.Noise.Period, time.Second, 24*time.Hour); err != nil {
			return err
		}
		m.cdnIndex[d.Name] = i
		m.cdns = append(m.cdns, cdnModel{name: d.Name, host: d.Host, price: d.PricePerGB, noiseSigma: d.Noise.Sigma,
			noisePeriod: d.Noise.Period.D().Seconds()})
	}
	return nil
}

func (m *model) compileServices(c *Scenario) error {
	if len(c.Services) == 0 {
		return fmt.Errorf("services: required")
	}
	var total float64
	for i, v := range c.Services {
		f := fmt.Sprintf("services[%d].", i)
		if !beaconName.MatchString(v.Name) {
			return fmt.Errorf("%sname: %q is not 1-32 characters of A-Z a-z 0-9 . _ -", f, v.Name)
		}
		if _, dup := m.svcIndex[v.Name]; dup {
			return fmt.Errorf("%sname: %q is repeated", f, v.Name)
		}
		if v.Kind != "vod" && v.Kind != "live" {
			return fmt.Errorf("%skind: %q is not vod or live", f, v.Kind)
		}
		if len(v.CDNs) == 0 {
			return fmt.Errorf("%scdns: required", f)
		}
		if len(v.CDNs) > steering.MaxCDNs {
			return fmt.Errorf("%scdns: %d CDNs, at most %d", f, len(v.CDNs), steering.MaxCDNs)
		}
		sm := svcModel{name: v.Name, live: v.Kind == "live", share: v.Share}
		for j, n := range v.CDNs {
			k, ok := m.cdnIndex[n]
			if !ok {
				return fmt.Errorf("%scdns[%d]: %q is not in cdns", f, j, n)
			}
			if slices.Contains(sm.cdns, k) {
				return fmt.Errorf("%scdns[%d]: %q is listed twice", f, j, n)
			}
			sm.cdns = append(sm.cdns, k)
		}
		if err := inRange(f+"share", v.Share, 0, 1e6); err != nil {
			return err
		}
		if err := checkDist(f+"duration", v.Duration, time.Second, 24*time.Hour); err != nil {
			return err
		}
		sm.durMu, sm.durSg = math.Log(v.Duration.Median.D().Seconds()), v.Duration.Sigma
		if err := durRange(f+"segment", v.Segment, 100*time.Millisecond, 30*time.Second); err != nil {
			return err
		}
		if err := durRange(f+"max_buffer", v.MaxBuffer, v.Segment.D(), 10*time.Minute); err != nil {
			return err
		}
		sm.seg, sm.maxBuf = v.Segment.D().Seconds(), v.MaxBuffer.D().Seconds()
		if len(v.Ladder) > 20 {
			return fmt.Errorf("%sladder: %d renditions, at most 20", f, len(v.Ladder))
		}
		for j, r := range v.Ladder {
			if err := positive(fmt.Sprintf("%sladder[%d]", f, j), r, 1e6); err != nil {
				return err
			}
			if j > 0 && r <= v.Ladder[j-1] {
				return fmt.Errorf("%sladder[%d]: %v is not above %v (ascending kbps)", f, j, r, v.Ladder[j-1])
			}
		}
		sm.ladder = slices.Clone(v.Ladder)
		m.svcIndex[v.Name] = i
		m.services = append(m.services, sm)
		total += v.Share
	}
	for i := range m.services {
		w := m.services[i].share
		if total == 0 {
			w = 1
		}
		prev := 0.0
		if i > 0 {
			prev = m.svcCum[i-1]
		}
		m.svcCum = append(m.svcCum, prev+w)
	}
	return nil
}

func (m *model) compileRegions(c *Scenario, cov *geo.Coverage) error {
	if len(c.Regions) == 0 {
		return fmt.Errorf("regions: required")
	}
	byLoc := map[string]map[uint32][]geo.Location{}
	var asnOrder = map[string][]uint32{}
	for _, e := range cov.Entries() {
		if byLoc[e.Region] == nil {
			byLoc[e.Region] = map[uint32][]geo.Location{}
		}
		if _, ok := byLoc[e.Region][e.ASN]; !ok {
			asnOrder[e.Region] = append(asnOrder[e.Region], e.ASN)
		}
		byLoc[e.Region][e.ASN] = append(byLoc[e.Region][e.ASN], e)
	}
	var total float64
	for i, r := range c.Regions {
		f := fmt.Sprintf("regions[%d].", i)
		if byLoc[r.Name] == nil {
			return fmt.Errorf("%sname: %q is not a region of the demo coverage file", f, r.Name)
		}
		if _, dup := m.locIndex[r.Name]; dup {
			return fmt.Errorf("%sname: %q is repeated", f, r.Name)
		}
		if err := inRange(f+"rate", r.Rate, 0, 1000); err != nil {
			return err
		}
		total += r.Rate
		keep := func(e geo.Location) bool { return r.Country == "" || e.Country == r.Country }
		specs := r.ASNs
		if len(specs) == 0 {
			for _, a := range asnOrder[r.Name] {
				if slices.ContainsFunc(byLoc[r.Name][a], keep) {
					specs = append(specs, ASNSpec{ASN: a})
				}
			}
			if len(specs) == 0 {
				return fmt.Errorf("%scountry: no prefix of region %q is in %q", f, r.Name, r.Country)
			}
		}
		rm := regionModel{name: r.Name, rate: r.Rate}
		m.locIndex[r.Name] = map[uint32]int{}
		var cum float64
		for j, a := range specs {
			fa := fmt.Sprintf("%sasns[%d].", f, j)
			if _, dup := m.locIndex[r.Name][a.ASN]; dup {
				return fmt.Errorf("%sasn: %d is repeated", fa, a.ASN)
			}
			w := a.Weight
			if w == 0 {
				w = 1
			}
			if err := positive(fa+"weight", w, 1e6); err != nil {
				return err
			}
			am := asnModel{region: i, asn: a.ASN}
			if len(a.Prefixes) == 0 {
				for _, e := range byLoc[r.Name][a.ASN] {
					if keep(e) {
						am.prefixes = append(am.prefixes, e)
					}
				}
				if len(am.prefixes) == 0 {
					return fmt.Errorf("%sasn: AS%d has no prefix in region %q of the demo coverage file", fa, a.ASN, r.Name)
				}
			}
			for k, p := range a.Prefixes {
				loc, err := coveredPrefix(cov, p, r.Name, a.ASN)
				if err != nil {
					return fmt.Errorf("%sprefixes[%d]: %w", fa, k, err)
				}
				am.prefixes = append(am.prefixes, loc)
			}
			var pc float64
			for _, e := range am.prefixes {
				pc += networks(e.Prefix)
				am.cum = append(am.cum, pc)
			}
			cum += w
			m.locIndex[r.Name][a.ASN] = len(m.asns)
			rm.asns = append(rm.asns, len(m.asns))
			rm.cum = append(rm.cum, cum)
			m.asns = append(m.asns, am)
		}
		m.regions = append(m.regions, rm)
	}
	if total == 0 {
		return fmt.Errorf("regions: every rate is 0; no viewer would arrive")
	}
	return nil
}

// coveredPrefix checks that a whole prefix maps to region and ASN in the
// coverage file, so a client drawn from it is located where we say.
func coveredPrefix(cov *geo.Coverage, s, region string, asn uint32) (geo.Location, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return geo.Location{}, fmt.Errorf("%q is not a prefix", s)
	}
	p = p.Masked()
	last := geo.Location{Prefix: p}.RandomAddr(rand.New(allOnes{}))
	var first geo.Location
	for i, a := range []netip.Addr{p.Addr(), last} {
		loc, ok := cov.Lookup(a)
		if !ok || loc.Region != region || loc.ASN != asn {
			return geo.Location{}, fmt.Errorf("%s is not all in region %q AS%d of the demo coverage file", p, region, asn)
		}
		if i == 0 {
			first = loc
		}
	}
	return geo.Location{Country: first.Country, Region: region, ASN: asn, Prefix: p}, nil
}

func (m *model) scopeOf(f, region string, asn uint32) (scopeModel, error) {
	sc := scopeModel{region: -1, asn: asn}
	if region == "" {
		if asn != 0 {
			return sc, fmt.Errorf("%sasn: an ASN needs a region", f)
		}
		return sc, nil
	}
	asns, ok := m.locIndex[region]
	if !ok {
		return sc, fmt.Errorf("%sregion: %q is not in regions", f, region)
	}
	if _, ok := asns[asn]; asn != 0 && !ok {
		return sc, fmt.Errorf("%sasn: AS%d is not an ASN of region %q", f, asn, region)
	}
	sc.region = slices.IndexFunc(m.regions, func(r regionModel) bool { return r.name == region })
	return sc, nil
}

func (m *model) compileOverrides(c *Scenario) error {
	m.base = make([][]perf, len(m.cdns))
	for i, d := range c.CDNs {
		var b perf
		b.apply(d.Perf, capGlobal)
		m.base[i] = make([]perf, len(m.asns))
		for a := range m.asns {
			m.base[i][a] = b
		}
		seen := map[string]bool{}
		for j, r := range d.Regions {
			f := fmt.Sprintf("cdns[%d].regions[%d].", i, j)
			sc, err := m.scopeOf(f[:len(f)-1]+".", r.Name, 0)
			if err != nil || r.Name == "" {
				return fmt.Errorf("%sname: %q is not in regions", f, r.Name)
			}
			if seen[r.Name] {
				return fmt.Errorf("%sname: %q is repeated", f, r.Name)
			}
			seen[r.Name] = true
			if err := checkPerf(f, r.Perf); err != nil {
				return err
			}
			for _, a := range m.regions[sc.region].asns {
				m.base[i][a].apply(r.Perf, capRegion)
			}
			seenASN := map[uint32]bool{}
			for k, ao := range r.ASNs {
				fa := fmt.Sprintf("%sasns[%d].", f, k)
				a, ok := m.locIndex[r.Name][ao.ASN]
				if !ok {
					return fmt.Errorf("%sasn: AS%d is not an ASN of region %q", fa, ao.ASN, r.Name)
				}
				if seenASN[ao.ASN] {
					return fmt.Errorf("%sasn: AS%d is repeated", fa, ao.ASN)
				}
				seenASN[ao.ASN] = true
				if err := checkPerf(fa, ao.Perf); err != nil {
					return err
				}
				m.base[i][a].apply(ao.Perf, capASN)
			}
		}
	}
	return nil
}

func (m *model) compileEvents(c *Scenario) error {
	incident := -1
	for i, e := range c.Events {
		f := fmt.Sprintf("events[%d].", i)
		cdn, ok := m.cdnIndex[e.CDN]
		if !ok {
			return fmt.Errorf("%scdn: %q is not in cdns", f, e.CDN)
		}
		sc, err := m.scopeOf(f, e.Region, e.ASN)
		if err != nil {
			return err
		}
		for _, d := range []struct {
			name string
			v    Duration
		}{{"at", e.At}, {"duration", e.Duration}, {"ramp", e.Ramp}, {"ramp_out", e.RampOut}} {
			if err := durRange(f+d.name, d.v, 0, 24*time.Hour); err != nil {
				return err
			}
		}
		if e.Duration > 0 && e.Ramp > e.Duration {
			return fmt.Errorf("%sramp: %v is longer than duration %v", f, e.Ramp, e.Duration)
		}
		if e.RampOut > 0 && e.Duration == 0 {
			return fmt.Errorf("%sramp_out: needs a duration to ramp out after", f)
		}
		if err := checkPerf(f+"set.", e.Set); err != nil {
			return err
		}
		if err := checkFactors(f+"multiply.", e.Multiply); err != nil {
			return err
		}
		em := eventModel{name: e.Name, at: e.At.D(), dur: e.Duration.D(), ramp: e.Ramp.D(), rampOut: e.RampOut.D(),
			cdn: cdn, region: sc.region, asn: e.ASN, set: e.Set, mul: e.Multiply}
		if e.Flap != nil {
			if err := durRange(f+"flap.period", e.Flap.Period, m.step, time.Hour); err != nil {
				return err
			}
			em.flap = e.Flap.Period.D()
		}
		if em.name == "" {
			em.name = fmt.Sprintf("events[%d]", i)
		}
		if e.Incident {
			if incident >= 0 {
				return fmt.Errorf("%sincident: only one event may be the incident (events[%d] is)", f, incident)
			}
			incident = i
			end := em.at + em.dur
			if em.dur == 0 {
				end = m.dur
			}
			if m.dur > 0 && em.at >= m.dur {
				return fmt.Errorf("%sat: the incident starts at %v, after the end of the run (%v)", f, e.At, c.Duration)
			}
			if m.dur > 0 {
				end = min(end, m.dur)
			}
			full, over := min(em.at+em.ramp, end), end
			if em.dur > 0 {
				over = end + em.rampOut
			}
			m.incident = &Incident{Name: em.name, CDN: e.CDN, Region: e.Region, ASN: e.ASN, Start: em.at, End: end, Full: full, Over: over, scope: sc}
		}
		m.events = append(m.events, em)
	}
	return nil
}

// allOnes is a rand source of all one bits: RandomAddr with it returns the
// last address of a prefix.
type allOnes struct{}

func (allOnes) Uint64() uint64 { return math.MaxUint64 }

// cdnOf is the index of a CDN a steering path answered for a service.
func (m *model) cdnOf(svc *svcModel, name string) (int, error) {
	if k, ok := m.cdnIndex[name]; ok && slices.Contains(svc.cdns, k) {
		return k, nil
	}
	return -1, fmt.Errorf("%q, not a CDN of service %s", name, svc.name)
}

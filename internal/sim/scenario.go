package sim

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cdnpilot/cdnpilot/steering"
)

// Scenario is one simulated world: who watches what from where, and how
// well each CDN delivers to them over time. Fields left zero (or nil) take
// the defaults documented on each field, both in YAML and when a Scenario
// is built in Go; Validate and Run apply them to a copy, never in place.
type Scenario struct {
	Name        string `yaml:"name"` // [a-z0-9-], 1-32 bytes; Load defaults it to the file name
	Description string `yaml:"description"`
	// Duration of the run in virtual time. 0 runs until the context is
	// done, which only RealTime runs accept (the demo).
	Duration Duration `yaml:"duration"`
	Step     Duration `yaml:"step"` // default 1s
	Seed     uint64   `yaml:"seed"`
	// Heartbeat is the beacon interval of a playing view (default 5s).
	Heartbeat Duration `yaml:"heartbeat"`
	// Warm starts the run with the steady-state population already playing
	// (default true), so load and beacon volume do not ramp up from zero.
	Warm *bool `yaml:"warm"`
	// Patience is how long a viewer waits for the first frame before
	// leaving (an exit before video start); default median 15s, sigma 1.
	Patience DurationDist `yaml:"patience"`
	// SeekShare is the share of views that seek once (default 0.05).
	SeekShare *float64 `yaml:"seek_share"`
	// OverloadFailure is the failure probability added per 100% of load
	// above a CDN's capacity (default 0.1).
	OverloadFailure *float64 `yaml:"overload_failure"`

	Services []ServiceSpec `yaml:"services"`
	Regions  []RegionSpec  `yaml:"regions"`
	CDNs     []CDNSpec     `yaml:"cdns"`
	Events   []EventSpec   `yaml:"events"`
	// Scope is where the steering metrics (shares, flips) are measured when
	// no event is the incident; default: every viewer.
	Scope *ScopeSpec `yaml:"scope"`
}

// ServiceSpec is one steered service and how its viewers watch.
type ServiceSpec struct {
	Name string `yaml:"name"`
	// Kind is vod or live; default live for a service named "live", else vod.
	Kind string   `yaml:"kind"`
	CDNs []string `yaml:"cdns"` // static order; the first is what Static picks
	// Share is this service's relative share of new views; all zero: equal.
	Share float64 `yaml:"share"`
	// Duration is how long a view lasts; default lognormal median 8m
	// (vod) or 20m (live), sigma 0.7.
	Duration  DurationDist `yaml:"duration"`
	Segment   Duration     `yaml:"segment"`    // default 2s
	MaxBuffer Duration     `yaml:"max_buffer"` // default 30s (vod), 10s (live)
	Ladder    []float64    `yaml:"ladder"`     // kbps, ascending; default 400 800 1600 3000 4500 6000
}

// RegionSpec is one steering region of the demo coverage file and the
// rate at which its viewers start views.
type RegionSpec struct {
	Name string  `yaml:"name"`
	Rate float64 `yaml:"rate"` // new views per second
	// Country keeps only the coverage prefixes of one country (optional).
	Country string `yaml:"country"`
	// ASNs the viewers come from; default every ASN of the region in the
	// coverage file, equally weighted.
	ASNs []ASNSpec `yaml:"asns"`
}

// ASNSpec is one network of a region.
type ASNSpec struct {
	ASN    uint32  `yaml:"asn"`
	Weight float64 `yaml:"weight"` // relative share of the region's views; 0: 1
	// Prefixes client addresses are drawn from; default every prefix of
	// this region and ASN in the coverage file. Each must map back to the
	// region and ASN in the coverage file, so the real geo lookup agrees.
	// A prefix gets viewers in proportion to the client networks it holds
	// (IPv4 /24s, IPv6 /48s): a /16 has 256 times a /24's viewers.
	Prefixes []string `yaml:"prefixes"`
}

// Perf is a CDN's delivery performance. In a CDN's baseline, nil fields
// take the defaults; in overrides and events, nil fields are left alone.
type Perf struct {
	// ThroughputKbps is the median of the lognormal throughput a view
	// gets (required in the baseline); ThroughputSigma its spread
	// (default 0.4).
	ThroughputKbps  *float64  `yaml:"throughput_kbps"`
	ThroughputSigma *float64  `yaml:"throughput_sigma"`
	TTFB            *Duration `yaml:"ttfb"`    // default 50ms
	Failure         *float64  `yaml:"failure"` // probability a view fails fatally at start; default 0.002
	// StartupOverhead is added to every startup (player setup, DRM,
	// manifest); default 300ms.
	StartupOverhead *Duration `yaml:"startup_overhead"`
	// Capacity in concurrent views; above it throughput falls in proportion
	// and failures rise (OverloadFailure). 0: unlimited. Set on the CDN it
	// counts the CDN's views everywhere; set in a region or ASN override,
	// the views of that region only.
	Capacity *int `yaml:"capacity"`
}

// CDNSpec is one CDN: its catalog entry and its performance model.
type CDNSpec struct {
	Name string `yaml:"name"`
	// Host players are sent to; default <name>.demo.cdnpilot.test.
	Host             string  `yaml:"host"`
	PricePerGB       float64 `yaml:"price_per_gb"`
	CommitGBPerMonth float64 `yaml:"commit_gb_per_month"`
	MaxShare         float64 `yaml:"max_share"`

	Perf    `yaml:",inline"`
	Noise   Noise        `yaml:"noise"`
	Regions []RegionPerf `yaml:"regions"`
}

// RegionPerf overrides a CDN's performance in one region.
type RegionPerf struct {
	Name string `yaml:"name"`
	Perf `yaml:",inline"`
	ASNs []ASNPerf `yaml:"asns"`
}

// ASNPerf overrides a CDN's performance for one ASN of a region.
type ASNPerf struct {
	ASN  uint32 `yaml:"asn"`
	Perf `yaml:",inline"`
}

// Noise is a slow random drift of a CDN's median throughput, independent
// per region: log-throughput moves by about Sigma, changing over Period.
type Noise struct {
	Sigma  float64  `yaml:"sigma"`
	Period Duration `yaml:"period"` // default 2m
}

// EventSpec changes a CDN's performance at a time, for a scope.
type EventSpec struct {
	Name string   `yaml:"name"`
	At   Duration `yaml:"at"`
	// Duration until the change is undone; 0: until the end of the run.
	Duration Duration `yaml:"duration"`
	Ramp     Duration `yaml:"ramp"`     // the change phases in linearly over Ramp
	RampOut  Duration `yaml:"ramp_out"` // and out over RampOut after Duration
	CDN      string   `yaml:"cdn"`
	Region   string   `yaml:"region"` // empty: every region
	ASN      uint32   `yaml:"asn"`    // 0: every ASN; needs Region
	Set      Perf     `yaml:"set"`
	Multiply Factors  `yaml:"multiply"`
	Flap     *Flap    `yaml:"flap"`
	// Incident marks the event the metrics are about (at most one): its
	// CDN is the bad CDN, its scope the affected scope, At its start and
	// At+Duration its end.
	Incident bool `yaml:"incident"`
}

// Factors multiply performance parameters; nil leaves one alone. Ramps
// interpolate factors geometrically.
type Factors struct {
	Throughput      *float64 `yaml:"throughput"`
	TTFB            *float64 `yaml:"ttfb"`
	Failure         *float64 `yaml:"failure"`
	StartupOverhead *float64 `yaml:"startup_overhead"`
	Capacity        *float64 `yaml:"capacity"`
}

// Flap toggles an event on and off every Period while it is active: bad
// for Period, good for Period, and so on.
type Flap struct {
	Period Duration `yaml:"period"`
}

// ScopeSpec is a set of viewers: a region, or one ASN of a region.
type ScopeSpec struct {
	Region string `yaml:"region"`
	ASN    uint32 `yaml:"asn"`
}

// DurationDist is a lognormal duration: Median and Sigma of its log.
type DurationDist struct {
	Median Duration `yaml:"median"`
	Sigma  float64  `yaml:"sigma"`
}

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration time.Duration

// D is the standard type.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
		return fmt.Errorf("line %d: want a duration like 5s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 5s or 250ms", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the string form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func ptr[T any](v T) *T { return &v }

// Defaults of the scenario format, applied by withDefaults.
const (
	defaultStep            = time.Second
	defaultHeartbeat       = 5 * time.Second
	defaultPatience        = 15 * time.Second
	defaultPatienceSigma   = 1.0
	defaultSeekShare       = 0.05
	defaultOverloadFailure = 0.1
	defaultSegment         = 2 * time.Second
	defaultSigma           = 0.4
	defaultTTFB            = 50 * time.Millisecond
	defaultFailure         = 0.002
	defaultOverhead        = 300 * time.Millisecond
	defaultNoisePeriod     = 2 * time.Minute
)

var defaultLadder = []float64{400, 800, 1600, 3000, 4500, 6000}

// withDefaults returns a copy with every default filled in. Slices that it
// changes are copied, so the receiver is never modified.
func (s *Scenario) withDefaults() *Scenario {
	c := *s
	if c.Name == "" {
		c.Name = "scenario"
	}
	if c.Step == 0 {
		c.Step = Duration(defaultStep)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = Duration(defaultHeartbeat)
	}
	if c.Warm == nil {
		c.Warm = ptr(true)
	}
	if c.Patience.Median == 0 {
		c.Patience = DurationDist{Median: Duration(defaultPatience), Sigma: defaultPatienceSigma}
	}
	if c.SeekShare == nil {
		c.SeekShare = ptr(defaultSeekShare)
	}
	if c.OverloadFailure == nil {
		c.OverloadFailure = ptr(defaultOverloadFailure)
	}
	c.Services = slices.Clone(c.Services)
	for i := range c.Services {
		v := &c.Services[i]
		if v.Kind == "" {
			v.Kind = "vod"
			if v.Name == "live" {
				v.Kind = "live"
			}
		}
		if v.Duration.Median == 0 {
			v.Duration = DurationDist{Median: Duration(8 * time.Minute), Sigma: 0.7}
			if v.Kind == "live" {
				v.Duration.Median = Duration(20 * time.Minute)
			}
		}
		if v.Segment == 0 {
			v.Segment = Duration(defaultSegment)
		}
		if v.MaxBuffer == 0 {
			v.MaxBuffer = Duration(30 * time.Second)
			if v.Kind == "live" {
				v.MaxBuffer = Duration(10 * time.Second)
			}
		}
		if len(v.Ladder) == 0 {
			v.Ladder = defaultLadder
		}
	}
	c.CDNs = slices.Clone(c.CDNs)
	for i := range c.CDNs {
		d := &c.CDNs[i]
		if d.Host == "" {
			d.Host = d.Name + ".demo.cdnpilot.test"
		}
		if d.ThroughputSigma == nil {
			d.ThroughputSigma = ptr(defaultSigma)
		}
		if d.TTFB == nil {
			d.TTFB = ptr(Duration(defaultTTFB))
		}
		if d.Failure == nil {
			d.Failure = ptr(defaultFailure)
		}
		if d.StartupOverhead == nil {
			d.StartupOverhead = ptr(Duration(defaultOverhead))
		}
		if d.Capacity == nil {
			d.Capacity = ptr(0)
		}
		if d.Noise.Period == 0 {
			d.Noise.Period = Duration(defaultNoisePeriod)
		}
	}
	return &c
}

//go:embed scenarios/*.yaml
var scenarioFiles embed.FS

// Names lists the embedded scenarios, sorted.
func Names() []string {
	ents, err := fs.ReadDir(scenarioFiles, "scenarios")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return out
}

// Load parses an embedded scenario by name (see Names). Its name defaults
// to the file name.
func Load(name string) (*Scenario, error) {
	data, err := scenarioFiles.ReadFile(path.Join("scenarios", name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("scenario %q: not one of %s", name, strings.Join(Names(), ", "))
	}
	sc, err := parse(data, name)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", name, err)
	}
	return sc, nil
}

// Parse decodes and validates a scenario file. Decoding is strict: an
// unknown key is an error that names the key and its line.
func Parse(data []byte) (*Scenario, error) { return parse(data, "") }

func parse(data []byte, name string) (*Scenario, error) {
	sc := &Scenario{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(sc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("parse scenario: empty document")
		}
		return nil, fmt.Errorf("parse scenario: %w", cleanYAMLError(err))
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse scenario: more than one YAML document")
	}
	if sc.Name == "" {
		sc.Name = name
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return sc, nil
}

// cleanYAMLError turns yaml.v3's "field x not found in type sim.CDNSpec"
// into wording that does not need our Go types.
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		if i := strings.Index(m, " not found in type "); i >= 0 {
			m = strings.Replace(m[:i], "field ", "unknown key ", 1)
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Validate names the first field that is wrong, as a path into the file
// ("cdns[1].regions[0].name: ..."). Client prefixes are checked against
// the demo coverage file.
func (s *Scenario) Validate() error {
	_, err := compile(s)
	return err
}

// Catalog is the steering catalog of the scenario: its CDNs (hosts and
// prices) and services, for a harness that runs the real engine.
func (s *Scenario) Catalog() steering.Catalog {
	c := s.withDefaults()
	var cat steering.Catalog
	for _, d := range c.CDNs {
		cat.CDNs = append(cat.CDNs, steering.CDN{Name: d.Name, Host: d.Host, PricePerGB: d.PricePerGB,
			CommitGBPerMonth: d.CommitGBPerMonth, MaxShare: d.MaxShare})
	}
	for _, v := range c.Services {
		cat.Services = append(cat.Services, steering.Service{Name: v.Name, CDNs: slices.Clone(v.CDNs)})
	}
	return cat
}

// Health is what a CDN's health URL answers at an offset into the run, for
// a harness that runs the real health prober against the simulated world:
// false (the URL fails) while the CDN fails at least half of its views in
// at least half of the scenario's ASNs. A probe sees the CDN from one
// place: an outage of some regions or ASNs, or a degradation, it does not
// see; an outage of the CDN everywhere, it does. Safe for concurrent use.
func (s *Scenario) Health() (func(cdn string, at time.Duration) bool, error) {
	m, err := compile(s)
	if err != nil {
		return nil, err
	}
	return func(cdn string, at time.Duration) bool {
		c, ok := m.cdnIndex[cdn]
		if !ok {
			return false
		}
		failing := 0
		for a := range m.asns {
			if m.perfAt(c, a, at, nil, 0).fail >= 0.5 {
				failing++
			}
		}
		return 2*failing < len(m.asns)
	}, nil
}

// Scaled returns a copy of the scenario with k times the viewers: every
// region's arrival rate and every capacity (baseline, overrides, events)
// multiplied by k, so the same world has more samples per second.
func (s *Scenario) Scaled(k float64) *Scenario {
	c := *s
	scaleCap := func(p *Perf) {
		if p.Capacity != nil && *p.Capacity > 0 {
			p.Capacity = ptr(max(1, int(math.Round(float64(*p.Capacity)*k))))
		}
	}
	c.Regions = slices.Clone(s.Regions)
	for i := range c.Regions {
		c.Regions[i].Rate *= k
	}
	c.CDNs = slices.Clone(s.CDNs)
	for i := range c.CDNs {
		d := &c.CDNs[i]
		scaleCap(&d.Perf)
		d.Regions = slices.Clone(d.Regions)
		for j := range d.Regions {
			r := &d.Regions[j]
			scaleCap(&r.Perf)
			r.ASNs = slices.Clone(r.ASNs)
			for k := range r.ASNs {
				scaleCap(&r.ASNs[k].Perf)
			}
		}
	}
	c.Events = slices.Clone(s.Events)
	for i := range c.Events {
		scaleCap(&c.Events[i].Set)
	}
	return &c
}

var (
	scenarioName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	// beaconName is the character set of service and cdn in beacons.
	beaconName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)
)

// check helpers: each returns an error naming the field, or nil.

func finite(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s: %v is not a finite number", field, v)
	}
	return nil
}

func inRange(field string, v, lo, hi float64) error {
	if err := finite(field, v); err != nil {
		return err
	}
	if v < lo || v > hi {
		return fmt.Errorf("%s: %v is not in %v..%v", field, v, lo, hi)
	}
	return nil
}

func positive(field string, v, hi float64) error {
	if err := finite(field, v); err != nil {
		return err
	}
	if v <= 0 || v > hi {
		return fmt.Errorf("%s: %v is not in (0, %v]", field, v, hi)
	}
	return nil
}

func durRange(field string, d Duration, lo, hi time.Duration) error {
	if d.D() < lo || d.D() > hi {
		return fmt.Errorf("%s: %v is not in %v..%v", field, d, lo, hi)
	}
	return nil
}

func checkDist(field string, d DurationDist, lo, hi time.Duration) error {
	if err := durRange(field+".median", d.Median, lo, hi); err != nil {
		return err
	}
	return inRange(field+".sigma", d.Sigma, 0, 3)
}

// checkPerf checks the fields a Perf sets.
func checkPerf(field string, p Perf) error {
	if p.ThroughputKbps != nil {
		if err := positive(field+"throughput_kbps", *p.ThroughputKbps, 1e7); err != nil {
			return err
		}
	}
	if p.ThroughputSigma != nil {
		if err := inRange(field+"throughput_sigma", *p.ThroughputSigma, 0, 3); err != nil {
			return err
		}
	}
	if p.TTFB != nil {
		if err := durRange(field+"ttfb", *p.TTFB, 0, time.Minute); err != nil {
			return err
		}
	}
	if p.Failure != nil {
		if err := inRange(field+"failure", *p.Failure, 0, 1); err != nil {
			return err
		}
	}
	if p.StartupOverhead != nil {
		if err := durRange(field+"startup_overhead", *p.StartupOverhead, 0, time.Minute); err != nil {
			return err
		}
	}
	if p.Capacity != nil && (*p.Capacity < 0 || *p.Capacity > 1e8) {
		return fmt.Errorf("%scapacity: %d is not in 0..100000000", field, *p.Capacity)
	}
	return nil
}

func checkFactors(field string, f Factors) error {
	for _, c := range []struct {
		name string
		v    *float64
	}{{"throughput", f.Throughput}, {"ttfb", f.TTFB}, {"failure", f.Failure},
		{"startup_overhead", f.StartupOverhead}, {"capacity", f.Capacity}} {
		if c.v == nil {
			continue
		}
		if err := inRange(field+c.name, *c.v, 0, 1000); err != nil {
			return err
		}
		if c.name == "throughput" && *c.v == 0 {
			return fmt.Errorf("%sthroughput: 0 is not positive (use failure: 1 for an outage)", field)
		}
	}
	return nil
}

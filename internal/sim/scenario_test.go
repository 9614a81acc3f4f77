package sim

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/internal/geo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEmbeddedScenarios(t *testing.T) {
	names := Names()
	want := []string{"asn-outage", "capacity", "cost", "degrade-region", "flapping", "hard-outage",
		"slow-recovery", "steady", "within-noise"}
	if !slices.Equal(names, want) {
		t.Fatalf("Names() = %v, want %v", names, want)
	}
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			sc, err := Load(n)
			if err != nil {
				t.Fatal(err)
			}
			if sc.Name != n || sc.Description == "" {
				t.Errorf("name %q, description %q", sc.Name, sc.Description)
			}
			d := sc.Duration.D()
			if n == "steady" {
				if d != 0 {
					t.Errorf("steady runs until stopped, duration %v", d)
				}
			} else if d < 10*time.Minute || d > 20*time.Minute {
				t.Errorf("duration %v, want 10-20 min", d)
			}
			cat := sc.Catalog()
			if err := cat.Validate(); err != nil {
				t.Fatal(err)
			}
			var svcs, cdns []string
			for _, s := range cat.Services {
				svcs = append(svcs, s.Name)
				if !slices.Equal(s.CDNs, []string{"cdn-a", "cdn-b", "cdn-c"}) {
					t.Errorf("service %s CDNs %v", s.Name, s.CDNs)
				}
			}
			for _, c := range cat.CDNs {
				cdns = append(cdns, c.Name)
				if c.Host != c.Name+".demo.cdnpilot.test" || c.PricePerGB <= 0 {
					t.Errorf("catalog CDN %+v: want the demo host and a price", c)
				}
			}
			if !slices.Equal(svcs, []string{"vod", "live"}) || !slices.Equal(cdns, []string{"cdn-a", "cdn-b", "cdn-c"}) {
				t.Errorf("services %v, cdns %v", svcs, cdns)
			}
			m, err := compile(sc)
			if err != nil {
				t.Fatal(err)
			}
			incident := strings.Contains("degrade-region hard-outage asn-outage slow-recovery flapping", n)
			if (m.incident != nil) != incident {
				t.Errorf("incident %+v, want one: %v", m.incident, incident)
			}
			if m.incident != nil && m.incident.CDN != "cdn-a" {
				t.Errorf("bad CDN %s, want cdn-a", m.incident.CDN)
			}
			if n == "slow-recovery" {
				// 3m + 30s ramp in; undone from 7m30s over 5m.
				if inc := m.incident; inc.Start != 3*time.Minute || inc.Full != 3*time.Minute+30*time.Second ||
					inc.End != 7*time.Minute+30*time.Second || inc.Over != 12*time.Minute+30*time.Second {
					t.Errorf("slow-recovery incident %v-%v, full %v, over %v", inc.Start, inc.End, inc.Full, inc.Over)
				}
			} else if inc := m.incident; inc != nil && (inc.Full != inc.Start || inc.Over != inc.End) {
				t.Errorf("abrupt incident %v-%v has full %v, over %v", inc.Start, inc.End, inc.Full, inc.Over)
			}
		})
	}
	if _, err := Load("nope"); err == nil || !strings.Contains(err.Error(), "not one of") {
		t.Errorf("Load(nope) = %v", err)
	}
}

func TestGoodFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(data); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFullFixture(t *testing.T) {
	data, err := os.ReadFile("testdata/good/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := compile(sc)
	if err != nil {
		t.Fatal(err)
	}
	if m.step != 500*time.Millisecond || m.hb != 15*time.Second || m.warm || m.seekShare != 0.1 || m.overloadFail != 0.2 {
		t.Errorf("top level: %+v", m)
	}
	if !m.services[1].live || m.services[1].maxBuf != 10 || m.services[0].seg != 4 {
		t.Errorf("services: %+v", m.services)
	}
	// eu-west keeps only GB prefixes: 64496 (GB) and the listed ones of 64497.
	eu := m.regions[0]
	if len(eu.asns) != 2 || eu.cum[0] != 2 || eu.cum[1] != 3 {
		t.Fatalf("eu-west ASNs %+v", eu)
	}
	if ps := m.asns[eu.asns[1]].prefixes; len(ps) != 2 || ps[0].Prefix.String() != "100.68.0.0/17" || ps[0].Country != "GB" {
		t.Errorf("explicit prefixes %+v", ps)
	}
	a := m.cdnIndex["cdn-a"]
	south := m.locIndex["ap-south"][64504]
	if p := m.base[a][south]; p.tput != 4000 || p.fail != 0.01 || p.ttfb != 120 || p.capacity != 50 || p.capScope != capRegion {
		t.Errorf("ap-south AS64504 on cdn-a: %+v", p)
	}
	if p := m.base[a][eu.asns[0]]; p.capacity != 500 || p.capScope != capGlobal || p.overhead != 250 {
		t.Errorf("eu-west on cdn-a: %+v", p)
	}
	if m.scope.String(m) != "eu-west/AS64497" {
		t.Errorf("scope %s", m.scope.String(m))
	}
	cat := sc.Catalog()
	if c := cat.CDNs[0]; c.Host != "a.example.net" || c.PricePerGB != 0.02 || c.CommitGBPerMonth != 1000 || c.MaxShare != 0.8 {
		t.Errorf("catalog %+v", c)
	}
	if cat.CDNs[1].Host != "cdn-b.demo.cdnpilot.test" {
		t.Errorf("default host %q", cat.CDNs[1].Host)
	}
}

func TestBadFixtures(t *testing.T) {
	want := map[string]string{
		"unknown_key.yaml":               "line 11: unknown key througput_kbps",
		"nested_unknown_key.yaml":        "line 15: unknown key thruput",
		"bad_duration.yaml":              `line 3: "fast" is not a duration`,
		"two_docs.yaml":                  "more than one YAML document",
		"syntax.yaml":                    "line",
		"empty.yaml":                     "empty document",
		"wrong_type.yaml":                "line 8: cannot unmarshal",
		"duplicate_key.yaml":             `"duration" already defined`,
		"unknown_region.yaml":            `regions[0].name: "mars" is not a region of the demo coverage file`,
		"unknown_asn.yaml":               `regions[0].asns[0].asn: AS64999 has no prefix in region "eu-west"`,
		"prefix_outside.yaml":            `regions[0].asns[0].prefixes[0]: 10.0.0.0/8 is not all in region "eu-west" AS64496`,
		"service_unknown_cdn.yaml":       `services[0].cdns[1]: "cdn-x" is not in cdns`,
		"service_cdn_twice.yaml":         `services[0].cdns[1]: "cdn-a" is listed twice`,
		"missing_throughput.yaml":        "cdns[0].throughput_kbps: required",
		"failure_range.yaml":             "cdns[0].failure: 1.5 is not in 0..1",
		"nan.yaml":                       "cdns[0].throughput_kbps: NaN is not a finite number",
		"two_incidents.yaml":             "events[1].incident: only one event may be the incident (events[0] is)",
		"event_asn_without_region.yaml":  "events[0].asn: an ASN needs a region",
		"ladder_order.yaml":              "services[0].ladder[2]: 800 is not above 1600",
		"heartbeat_short.yaml":           "heartbeat: 500ms is not in 1s..1h0m0s",
		"zero_throughput_factor.yaml":    "events[0].multiply.throughput: 0 is not positive",
		"bad_name.yaml":                  `name: "Bad Name" is not`,
		"no_rate.yaml":                   "regions: every rate is 0",
		"override_region.yaml":           `cdns[0].regions[0].name: "us-east" is not in regions`,
		"flap_period.yaml":               "events[0].flap.period: 0s is not in 1s..1h0m0s",
		"scope_and_incident.yaml":        "scope: the incident's scope is the metrics scope",
		"incident_after_end.yaml":        "events[0].at: the incident starts at 2m0s, after the end of the run (1m0s)",
		"negative_duration.yaml":         "duration: -1m0s is not in 0s..24h0m0s",
		"ramp_out_without_duration.yaml": "events[0].ramp_out: needs a duration",
	}
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) != len(want) {
		t.Fatalf("%d bad fixtures, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(data)
			if err == nil {
				t.Fatal("accepted")
			}
			if w, ok := want[filepath.Base(f)]; !ok || !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q does not contain %q", err, w)
			}
		})
	}
}

// A scenario built in Go takes the same defaults as one from YAML, and
// Validate does not modify it.
func TestDefaults(t *testing.T) {
	sc := &Scenario{
		Duration: Duration(time.Minute),
		Services: []ServiceSpec{{Name: "live", CDNs: []string{"x"}}},
		Regions:  []RegionSpec{{Name: "sa-east", Rate: 1}},
		CDNs:     []CDNSpec{{Name: "x", Perf: Perf{ThroughputKbps: ptr(5000.0)}}},
	}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	if sc.Step != 0 || sc.CDNs[0].TTFB != nil || sc.Services[0].Kind != "" {
		t.Fatalf("Validate modified the scenario: %+v", sc)
	}
	m, err := compile(sc)
	if err != nil {
		t.Fatal(err)
	}
	s := m.services[0]
	if m.name != "scenario" || m.step != time.Second || m.hb != 5*time.Second || !m.warm || !s.live || s.seg != 2 ||
		s.maxBuf != 10 || !slices.Equal(s.ladder, defaultLadder) {
		t.Errorf("defaults: %+v %+v", m, s)
	}
	if p := m.base[0][0]; p.sigma != 0.4 || p.ttfb != 50 || p.fail != 0.002 || p.overhead != 300 || p.capacity != 0 {
		t.Errorf("perf defaults: %+v", p)
	}
	// sa-east has two ASNs in the demo coverage, both taken.
	if len(m.regions[0].asns) != 2 {
		t.Errorf("sa-east ASNs: %d", len(m.regions[0].asns))
	}
}

// Every client address the arrival process draws maps back, through the
// real coverage lookup, to the location its query carries.
func TestClientsMapBack(t *testing.T) {
	sc, err := Load("asn-outage")
	if err != nil {
		t.Fatal(err)
	}
	m, err := compile(sc)
	if err != nil {
		t.Fatal(err)
	}
	cov := geo.Demo()
	g := &arrivals{m: m, rng: rand.New(rand.NewPCG(1, 2))}
	as := g.warm()
	for i := range 60 {
		as = append(as, g.step(time.Duration(i)*time.Second, time.Second)...)
	}
	v4, v6 := 0, 0
	for _, a := range as {
		loc, ok := cov.Lookup(a.client)
		if !ok || loc.Region != a.loc.Region || loc.ASN != a.loc.ASN || loc.Country != a.loc.Country {
			t.Fatalf("%s is at %+v, the query says %+v", a.client, loc, a.loc)
		}
		if a.client.Is4() {
			v4++
		} else {
			v6++
		}
	}
	if v4 == 0 || v6 == 0 {
		t.Errorf("%d IPv4 and %d IPv6 clients; want both", v4, v6)
	}
}

func TestScaled(t *testing.T) {
	sc, err := Load("capacity")
	if err != nil {
		t.Fatal(err)
	}
	big := sc.Scaled(2)
	if big.Regions[0].Rate != 2*sc.Regions[0].Rate || *big.CDNs[0].Capacity != 2**sc.CDNs[0].Capacity {
		t.Errorf("scaled: rate %v capacity %d", big.Regions[0].Rate, *big.CDNs[0].Capacity)
	}
	if sc.Regions[0].Rate != 0.3 || *sc.CDNs[0].Capacity != 280 {
		t.Errorf("Scaled modified the original")
	}
	if err := big.Validate(); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range Names() {
		data, err := scenarioFiles.ReadFile("scenarios/" + n + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses compiles the same way again, and builds a
		// valid catalog.
		m, err := compile(sc)
		if err != nil {
			t.Fatalf("parsed but does not compile: %v", err)
		}
		if err := m.catalog.Validate(); err != nil {
			t.Fatalf("catalog: %v", err)
		}
		if len(m.asns) == 0 || len(m.services) == 0 || len(m.cdns) == 0 {
			t.Fatalf("empty model: %+v", m)
		}
	})
}

// TestHealth: a scenario's health URLs fail for an outage of the CDN
// everywhere, while it lasts, and not for one ASN's or a degradation.
func TestHealth(t *testing.T) {
	for _, c := range []struct {
		scenario string
		at       time.Duration
		cdn      string
		want     bool
	}{
		{"hard-outage", 3 * time.Minute, "cdn-a", true},
		{"hard-outage", 5 * time.Minute, "cdn-a", false},
		{"hard-outage", 5 * time.Minute, "cdn-b", true},
		{"hard-outage", 8 * time.Minute, "cdn-a", true},
		{"asn-outage", 5 * time.Minute, "cdn-a", true},
		{"degrade-region", 5 * time.Minute, "cdn-a", true},
		{"hard-outage", 5 * time.Minute, "no-such-cdn", false},
	} {
		sc, err := Load(c.scenario)
		if err != nil {
			t.Fatal(err)
		}
		h, err := sc.Health()
		if err != nil {
			t.Fatal(err)
		}
		if got := h(c.cdn, c.at); got != c.want {
			t.Errorf("%s: health of %s at %v = %v, want %v", c.scenario, c.cdn, c.at, got, c.want)
		}
	}
}

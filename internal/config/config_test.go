package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cdnpilot/cdnpilot/steering"
)

func TestExampleIsValidAndMatchesDefaults(t *testing.T) {
	cfg, err := Parse(Example)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// The example documents the defaults; drift means one of them lies.
	// Compared as YAML so an empty list in the file equals a nil default.
	got, want := marshal(t, cfg), marshal(t, Default())
	if got != want {
		t.Fatalf("example and Default() disagree:\nexample:\n%s\nDefault():\n%s", got, want)
	}
}

func marshal(t *testing.T, c Config) string {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDefaultPolicyIsSteeringDefault(t *testing.T) {
	want := steering.DefaultPolicy()
	if got := Default().Policy(); got != want {
		t.Errorf("Default().Policy() = %+v\nsteering.DefaultPolicy() = %+v", got, want)
	}
	example, err := Parse(Example)
	if err != nil {
		t.Fatal(err)
	}
	if got := example.Policy(); got != want {
		t.Errorf("the example's policy = %+v\nsteering.DefaultPolicy() = %+v", got, want)
	}
}

func TestCatalog(t *testing.T) {
	cfg := Default()
	cat := cfg.Catalog()
	if err := cat.Validate(); err != nil {
		t.Fatal(err)
	}
	want := steering.Catalog{
		CDNs: []steering.CDN{
			{Name: "cdn-a", Host: "cdn-a.demo.cdnpilot.test", BaseURL: "https://cdn-a.demo.cdnpilot.test", PricePerGB: 0.004, CommitGBPerMonth: 50000},
			{Name: "cdn-b", Host: "cdn-b.demo.cdnpilot.test", BaseURL: "https://cdn-b.demo.cdnpilot.test", PricePerGB: 0.006},
			{Name: "cdn-c", Host: "cdn-c.demo.cdnpilot.test", BaseURL: "https://cdn-c.demo.cdnpilot.test", PricePerGB: 0.003},
		},
		Services: []steering.Service{
			{Name: "vod", CDNs: []string{"cdn-a", "cdn-b", "cdn-c"}},
			{Name: "live", CDNs: []string{"cdn-b", "cdn-a", "cdn-c"}},
		},
	}
	if !reflect.DeepEqual(cat, want) {
		t.Fatalf("Catalog() = %+v, want %+v", cat, want)
	}
	// The engine may keep the catalog; it must not share arrays with cfg.
	cat.Services[0].CDNs[0] = "changed"
	if cfg.Services[0].CDNs[0] != "cdn-a" {
		t.Fatal("Catalog() shares the services' CDN lists with the config")
	}
	// Two Configs do not share the demo lists either.
	other := Default()
	other.CDNs[0].Name = "changed"
	if Default().CDNs[0].Name != "cdn-a" {
		t.Fatal("Default() hands out shared CDN lists")
	}
}

func TestPolicyMapsEveryField(t *testing.T) {
	// Steering with a value in every field must map to a Policy with no
	// zero field (a field Policy() forgets would stay zero) and back.
	s := Steering{
		Weights:           Weights{1, 2, 3, 4, 5, 6, 7, 8},
		HalfLife:          1,
		FastHalfLife:      2,
		MinSamples:        3,
		Hysteresis:        Hysteresis{Margin: 4, Dwell: 5, Warmup: 32, WarmupMargin: 4.5},
		MaxShiftPerMinute: 6,
		Exploration:       7,
		Cost:              Cost{Margin: 8},
		Stale:             Stale{Freeze: 9, Static: 10},
		Passive:           Passive{FailureRate: 11, MinAttempts: 12, MinBeacons: 13, EvacuateMargin: 14, Retry: 15, ProbationShare: 15.5},
		Probe:             Probe{Interval: 16, Timeout: 17, Fall: 18, Rise: 19},
		Flap:              Flap{HalfLife: 20, Suppress: 21, MaxSuppress: 31, Steady: 32},
		Poison:            Poison{ClientCap: 22, AttemptCap: 23},
	}
	assertNoZero(t, "Steering", reflect.ValueOf(s)) // the test itself is complete
	p := Config{Steering: s}.Policy()
	assertNoZero(t, "Policy", reflect.ValueOf(p))
	if back := steeringOf(p); back != s {
		t.Errorf("steeringOf(Policy()) = %+v, want %+v", back, s)
	}
}

func assertNoZero(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	if v.Kind() == reflect.Struct {
		for i := range v.NumField() {
			assertNoZero(t, path+"."+v.Type().Field(i).Name, v.Field(i))
		}
		return
	}
	if v.IsZero() {
		t.Errorf("%s is zero", path)
	}
}

func TestGoodFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			// Signing keys come from the environment.
			env := map[string]string{"CDN_A_TOKEN_KEY": "000102030405060708090a0b0c0d0e0f"}
			cfg, err := Load(f, func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBadFixtures(t *testing.T) {
	want := map[string]string{
		"unknown_key.yaml":          "line 3: unknown key brokerz",
		"bad_duration.yaml":         `line 2: "fast" is not a duration`,
		"bad_compression.yaml":      `kafka.compression: "brotli"`,
		"bad_proxy.yaml":            "ingest.trusted_proxies[0]",
		"bad_addr.yaml":             `http_addr: "8080" is not host:port`,
		"wrong_type.yaml":           "line 1",
		"two_docs.yaml":             "more than one YAML document",
		"syntax.yaml":               "line",
		"steering_unknown_key.yaml": "line 4: unknown key dwel",
		"negative_weight.yaml":      "steering.weights.rebuffer: -0.3 is not a finite, non-negative number",
		"nan_weight.yaml":           "steering.weights.ttfb: NaN is not a finite number",
		"unknown_service_cdn.yaml":  `services[1].cdns[1]: "cloudfront" is not in cdns`,
		"service_cdn_twice.yaml":    `services[0].cdns[2]: "akamai" is listed twice`,
		"duplicate_cdn.yaml":        `cdns[1].name: "akamai" is repeated`,
		"stale_static.yaml":         "steering.stale.static: 30s must be longer than stale.freeze",
		"flap_max_suppress.yaml":    "steering.flap.max_suppress: 5m0s is shorter than flap.half_life (10m0s)",
		"flap_steady.yaml":          "steering.flap.steady: 0s is not positive",
		"warmup_margin.yaml":        "steering.hysteresis.warmup_margin: 150 is outside 0..100",
		"health_url.yaml":           `cdns[0].health_url: "example.akamaized.net/health" is not an absolute http(s) URL`,
		"bad_host.yaml":             `cdns[0].host: "https://example.akamaized.net/"`,
		"bad_cdn_name.yaml":         `cdns[0].name: "Akamai_1" is not a name`,
		"services_missing.yaml":     "services: required",
		"max_share.yaml":            "cdns[0].max_share: 1.5 is not in 0..1",
		"probe_timeout.yaml":        "steering.probe.timeout: 5s must be positive and at most probe.interval",
		"score_group.yaml":          "score.group_id: must differ from consume.group_id",
		"score_deltas_topic.yaml":   `kafka.score_deltas_topic: "cdnpilot.rankings.v1" is another topic's too`,
		"score_replay.yaml":         "score.replay: 3s is under ten score.interval ticks",
		"score_interval.yaml":       "score.interval: 1m0s is not shorter than steering.stale.freeze",
		"rankings_topic.yaml":       "kafka.rankings_topic: must differ",
		"dns_zone.yaml":             `dns.zones[1]: "bad zone." is not a domain name`,
		"dns_incident_ttl.yaml":     "dns.incident_ttl: 1m0s is longer than dns.ttl (20s)",
		"dns_unknown_key.yaml":      "line 4: unknown key serail",
		"dns_ns_addrs.yaml":         `dns.ns[0].addrs: required: "ns2.demo.cdnpilot.test." is inside a served zone`,
		"cdn_addrs.yaml":            `cdns[0].addrs[1]: "192.0.2.300" is not an IPv4 or IPv6 address`,
		"dns_sample.yaml":           "dns.decision_log_sample: 2 is not in 0..1",
		"base_url.yaml":             `cdns[0].base_url: "https://a.example.net/media?x=1" has a query`,
		"clone_path.yaml":           `service "vod": clone "cdn-c" of "cdn-a": clone url "https://c.example.net" has path "", its base "https://a.example.net/media/" has "/media/"`,
		"signing_scheme.yaml":       `cdns[0].signing.scheme: "cloudfront" is not akamai2`,
		"signing_key_unset.yaml":    "cdns[0].signing.key_env: the environment variable CDN_A_TOKEN_KEY is not set",
		"signing_orphan.yaml":       "cdns[0].signing.scheme: required when any other signing key is set",
		"http_incident_ttl.yaml":    "http_steering.incident_ttl: 30s is longer than http_steering.ttl (20s)",
		"http_unknown_key.yaml":     "unknown key shed_rps",
		"http_view_cookie.yaml":     `http_steering.view_cookie: "my view" is not a cookie name`,
		"admin_token_hash.yaml":     "admin.tokens[0].sha256: is not 64 lowercase hex digits",
		"admin_role.yaml":           `admin.tokens[0].role: "root" is not one of viewer, operator, admin`,
		"admin_cors.yaml":           `admin.cors_origins[0]: "*" is not an exact http(s) origin`,
		"admin_oidc.yaml":           "admin.oidc.audience: required with an issuer",
		"admin_ttl.yaml":            "admin.max_override_ttl: 30s is not in 1m..2160h",
		"overrides_topic.yaml":      "kafka.overrides_topic: must differ",
	}
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) != len(want) {
		t.Fatalf("%d bad fixtures, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f, func(string) string { return "" })
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), want[filepath.Base(f)]) {
				t.Fatalf("error %q does not contain %q", err, want[filepath.Base(f)])
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"CDNPILOT_KAFKA_BROKERS":       " k1:9092, ,k2:9092",
		"CDNPILOT_CLICKHOUSE_ADDR":     "ch:9000",
		"CDNPILOT_CLICKHOUSE_PASSWORD": "s3cret",
		"CDNPILOT_HTTP_ADDR":           "0.0.0.0:9999",
	}
	cfg, err := Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Kafka.Brokers, "|") != "k1:9092|k2:9092" || cfg.ClickHouse.Addr != "ch:9000" ||
		cfg.ClickHouse.Password != "s3cret" || cfg.HTTPAddr != "0.0.0.0:9999" || cfg.Kafka.Embedded() {
		t.Fatalf("env not applied: %+v", cfg)
	}
}

func TestPasswordNeverFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("clickhouse:\n  password: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "unknown key password") {
		t.Fatalf("password in file: err = %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := Default()
	cfg.Kafka.Partitions = 0
	cfg.Consume.BatchRows = 0
	cfg.Ingest.CORSOrigins = []string{"example.com"}
	cfg.Kafka.BatchTimeout = Duration(2 * time.Second)
	cfg.CDNs[1].Host = "bad host"
	cfg.Services[1].CDNs = nil
	cfg.Steering.Exploration = 0.5
	err := cfg.Validate()
	for _, key := range []string{
		"kafka.partitions", "consume.batch_rows", "ingest.cors_origins[0]", "kafka.batch_timeout",
		"cdns[1].host", "services[1].cdns", "steering.exploration",
	} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("missing %s in %v", key, err)
		}
	}
}

func TestCheckHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"cdn-a.demo.cdnpilot.test", true},
		{"example.akamaized.net:8443", true},
		{"Example.COM", true},
		{"localhost", true},
		{"192.0.2.1", true},
		{"192.0.2.1:80", true},
		{"[2001:db8::1]:443", true},
		{"2001:db8::1", false}, // ambiguous in a URL: [2001:db8::1]:443
		{"", false},
		{"bad host", false},
		{"https://example.com", false},
		{"example.com/path", false},
		{"-example.com", false},
		{"example-.com", false},
		{"example..com", false},
		{"example.com.", false},
		{"example.com:0", false},
		{"example.com:http", false},
		{"example.com:99999", false},
		{strings.Repeat("a", 64) + ".com", false},
		{strings.Repeat("abcdefgh.", 30) + "com", false},
		{"ex_ample.com", false},
	} {
		if err := checkHost(tc.host); (err == nil) != tc.ok {
			t.Errorf("checkHost(%q) = %v, want ok=%v", tc.host, err, tc.ok)
		}
	}
}

func TestCheckHealthURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://cdn.example.com/health", true},
		{"http://192.0.2.1:8080/healthz?x=1", true},
		{"http://[2001:db8::1]/health", true},
		{"ftp://cdn.example.com/health", false},
		{"/health", false},
		{"cdn.example.com/health", false},
		{"https:///health", false},
		{"https://bad_host/health", false},
		{"http://cdn.example.com:port/", false},
	} {
		if err := checkHealthURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("checkHealthURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func TestCatalogIsOneUnit(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"cdns only", "cdns: [{name: x, host: x.example.com}]\n", "services: required"},
		{"services only", "services: [{name: vod, cdns: [x]}]\n", "cdns: required"},
		{"empty cdns", "cdns: []\n", "cdns: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Example)
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(dir + "/*.yaml")
		for _, p := range files {
			b, _ := os.ReadFile(p)
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		_ = cfg.Validate()
	})
}

// TestDNSSection: the good fixture's dns section and CDN addresses reach
// the catalog and the name servers parsed.
func TestDNSSection(t *testing.T) {
	cfg, err := Load("testdata/good/dns.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cat := cfg.Catalog()
	if got := fmt.Sprint(cat.CDNs[1].Addrs); got != "[192.0.2.10 192.0.2.11 2001:db8::10]" {
		t.Errorf("anycast addrs = %s", got)
	}
	if cat.CDNs[0].Addrs != nil {
		t.Errorf("akamai addrs = %v, want none", cat.CDNs[0].Addrs)
	}
	if got := fmt.Sprint(cfg.DNS.NS[1].NSAddrs()); got != "[198.51.100.53 2001:db8::53]" {
		t.Errorf("ns[1] addrs = %s", got)
	}
	if cfg.DNS.TTL.D() != time.Minute || cfg.DNS.SOA.Minimum.D() != time.Minute || cfg.DNS.RateLimit.ResponsesPerSecond != 200 {
		t.Errorf("dns = %+v", cfg.DNS)
	}
	// Without dns_addr the server does not run and needs no zone.
	cfg = Default()
	cfg.DNSAddr, cfg.DNS.Zones, cfg.DNS.NS = "", nil, nil
	if err := cfg.Validate(); err != nil {
		t.Errorf("no DNS server: %v", err)
	}
	cfg.DNSAddr = "127.0.0.1:53"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "dns.zones: required") || !strings.Contains(err.Error(), "dns.ns: required") {
		t.Errorf("a DNS server without zones: %v", err)
	}
}

// TestReadmeDefaults: the README's table of keys gives each default the
// example file (the defaults) holds. Three had drifted when it was written
// (evacuate_margin, attempt_cap, max_shift_per_minute; a fourth, the
// retry backoff's cap, is prose this test does not read).
func TestReadmeDefaults(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(Example), &doc); err != nil {
		t.Fatal(err)
	}
	lookup := func(path string) (string, bool) {
		n := doc.Content[0]
		for _, k := range strings.Split(path, ".") {
			if n.Kind != yaml.MappingNode {
				return "", false
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					next = n.Content[i+1]
				}
			}
			if next == nil {
				return "", false
			}
			n = next
		}
		return n.Value, n.Kind == yaml.ScalarNode
	}
	checked := 0
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		key := strings.Trim(strings.TrimSpace(cells[1]), "`")
		def := strings.Trim(strings.TrimSpace(cells[2]), "`")
		if def == `""` {
			def = "<empty>"
		}
		if strings.ContainsAny(key, "*[ ") || strings.ContainsAny(def, " ,(") || def == "" || def == "—" {
			continue // a pattern, or a default that is not one plain value
		}
		got, ok := lookup(key)
		if !ok {
			continue // not in the example file (set by a flag or left empty)
		}
		if got == "" {
			got = "<empty>"
		}
		checked++
		if got != def {
			t.Errorf("README.md: %s defaults to %q; cdnpilot.example.yaml has %q", key, def, got)
		}
	}
	if checked < 40 {
		t.Errorf("checked only %d README rows against the example", checked)
	}
}

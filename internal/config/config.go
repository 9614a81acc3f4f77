// Package config loads cdnpilot's one YAML file: defaults first, then the
// file (decoded strictly: an unknown key is an error naming key and line),
// then environment overrides for addresses and secrets, then flags.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Example is the shipped example configuration; the demo runs on it.
//
//go:embed cdnpilot.example.yaml
var Example []byte

// Config is the whole file. Overrides are state, not config: they live in
// the admin API's store, never here.
type Config struct {
	HTTPAddr   string     `yaml:"http_addr"`
	DNSAddr    string     `yaml:"dns_addr"`
	LogLevel   string     `yaml:"log_level"`
	Kafka      Kafka      `yaml:"kafka"`
	ClickHouse ClickHouse `yaml:"clickhouse"`
	Ingest     Ingest     `yaml:"ingest"`
	Consume    Consume    `yaml:"consume"`
	Geo        Geo        `yaml:"geo"`
	Demo       Demo       `yaml:"demo"`
}

// Kafka selects the brokers. No brokers means the embedded in-process broker.
type Kafka struct {
	Brokers         []string `yaml:"brokers"`
	ClientID        string   `yaml:"client_id"`
	BeaconsTopic    string   `yaml:"beacons_topic"`
	DeadLetterTopic string   `yaml:"dead_letter_topic"`
	// Partitions is used when cdnpilot creates the topics (always for the
	// embedded broker; on real brokers only when they are missing).
	Partitions     int      `yaml:"partitions"`
	Compression    string   `yaml:"compression"`
	BatchTimeout   Duration `yaml:"batch_timeout"`
	ProduceTimeout Duration `yaml:"produce_timeout"`
	// ProduceRetries is how often a message the broker did not acknowledge
	// is sent again before ingest gives up on it and says so to the client.
	ProduceRetries int `yaml:"produce_retries"`
}

// Embedded reports whether the in-process broker is used.
func (k Kafka) Embedded() bool { return len(k.Brokers) == 0 }

// ClickHouse selects the analytics store. No address means the in-memory store.
type ClickHouse struct {
	Addr         string   `yaml:"addr"`
	Database     string   `yaml:"database"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"-"` // from CDNPILOT_CLICKHOUSE_PASSWORD only
	DialTimeout  Duration `yaml:"dial_timeout"`
	QueryTimeout Duration `yaml:"query_timeout"`
	// ExactRange: queries over at most this range read the raw table with
	// FINAL (exact); longer ones read the per-minute rollups.
	ExactRange Duration `yaml:"exact_range"`
	// MemoryRetention bounds the in-memory store of the embedded default.
	MemoryRetention Duration `yaml:"memory_retention"`
}

// Ingest configures the beacon and CMCD endpoints.
type Ingest struct {
	MaxBodyBytes      int64     `yaml:"max_body_bytes"`
	MaxBeaconsPerBody int       `yaml:"max_beacons_per_body"`
	RateLimit         RateLimit `yaml:"rate_limit"`
	CORSOrigins       []string  `yaml:"cors_origins"`
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed. Empty
	// means none: the socket address is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// MaxClockSkew rejects beacons whose client timestamp is further than
	// this from the server clock (replays, broken clocks).
	MaxClockSkew Duration `yaml:"max_clock_skew"`
}

// RateLimit is a token bucket per client address. Zero rate disables it.
type RateLimit struct {
	PerClientRPS float64 `yaml:"per_client_rps"`
	Burst        int     `yaml:"burst"`
}

// Consume configures the Kafka -> analytics store consumer.
type Consume struct {
	GroupID       string   `yaml:"group_id"`
	BatchRows     int      `yaml:"batch_rows"`
	BatchInterval Duration `yaml:"batch_interval"`
	InsertTimeout Duration `yaml:"insert_timeout"`
}

// Geo locates clients. No coverage file means the shipped demo coverage.
type Geo struct {
	Coverage string            `yaml:"coverage"`
	MMDB     string            `yaml:"mmdb"`
	ASNMMDB  string            `yaml:"asn_mmdb"`
	Regions  map[string]string `yaml:"regions"` // country -> region, for mmdb lookups
}

// Demo configures the synthetic player fleet of `cdnpilot demo`.
type Demo struct {
	Viewers int   `yaml:"viewers"`
	Seed    int64 `yaml:"seed"`
}

// Default returns the built-in defaults, the same values the example file
// spells out.
func Default() Config {
	return Config{
		HTTPAddr: "127.0.0.1:8080",
		DNSAddr:  "127.0.0.1:8053",
		LogLevel: "info",
		Kafka: Kafka{
			ClientID:        "cdnpilot",
			BeaconsTopic:    "cdnpilot.beacons.v1",
			DeadLetterTopic: "cdnpilot.beacons.dlq",
			Partitions:      6,
			Compression:     "lz4",
			BatchTimeout:    Duration(10 * time.Millisecond),
			ProduceTimeout:  Duration(5 * time.Second),
			ProduceRetries:  3,
		},
		ClickHouse: ClickHouse{
			Database:        "cdnpilot",
			Username:        "default",
			DialTimeout:     Duration(3 * time.Second),
			QueryTimeout:    Duration(10 * time.Second),
			ExactRange:      Duration(6 * time.Hour),
			MemoryRetention: Duration(6 * time.Hour),
		},
		Ingest: Ingest{
			MaxBodyBytes:      64 << 10,
			MaxBeaconsPerBody: 500,
			RateLimit:         RateLimit{PerClientRPS: 50, Burst: 100},
			CORSOrigins:       []string{"*"},
			MaxClockSkew:      Duration(24 * time.Hour),
		},
		Consume: Consume{
			GroupID:       "cdnpilot-analytics",
			BatchRows:     20000,
			BatchInterval: Duration(time.Second),
			InsertTimeout: Duration(30 * time.Second),
		},
		Demo: Demo{Viewers: 300, Seed: 1},
	}
}

// Parse decodes a YAML document over the defaults. Unknown keys are errors
// that name the key and its line.
func Parse(data []byte) (Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse config: %w", cleanYAMLError(err))
	}
	// A second document in one file is almost always a paste error.
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("parse config: more than one YAML document")
	}
	return cfg, nil
}

// Load reads path (or the embedded example when path is empty), then applies
// the environment.
func Load(path string, env func(string) string) (Config, error) {
	data := Example
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
	}
	cfg, err := Parse(data)
	if err != nil {
		if path != "" {
			return Config{}, fmt.Errorf("%s: %w", path, err)
		}
		return Config{}, err
	}
	if err := cfg.ApplyEnv(env); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ApplyEnv applies the documented CDNPILOT_* variables: addresses, and the
// secrets that never belong in a file.
func (c *Config) ApplyEnv(env func(string) string) error {
	if env == nil {
		env = os.Getenv
	}
	set := func(name string, dst *string) {
		if v := env(name); v != "" {
			*dst = v
		}
	}
	set("CDNPILOT_HTTP_ADDR", &c.HTTPAddr)
	set("CDNPILOT_DNS_ADDR", &c.DNSAddr)
	set("CDNPILOT_CLICKHOUSE_ADDR", &c.ClickHouse.Addr)
	set("CDNPILOT_CLICKHOUSE_USER", &c.ClickHouse.Username)
	set("CDNPILOT_CLICKHOUSE_PASSWORD", &c.ClickHouse.Password)
	set("CDNPILOT_LOG_LEVEL", &c.LogLevel)
	if v := env("CDNPILOT_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = SplitList(v)
	}
	return nil
}

// SplitList splits a comma-separated flag or env value, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate checks every section and reports all problems at once, each
// naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	checkAddr := func(key, v string, required bool) {
		if v == "" {
			if required {
				bad(key, "required")
			}
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "%q is not host:port", v)
		}
	}
	checkAddr("http_addr", c.HTTPAddr, true)
	checkAddr("dns_addr", c.DNSAddr, false)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}

	for i, b := range c.Kafka.Brokers {
		checkAddr(fmt.Sprintf("kafka.brokers[%d]", i), b, true)
	}
	if c.Kafka.BeaconsTopic == "" {
		bad("kafka.beacons_topic", "required")
	}
	if c.Kafka.DeadLetterTopic == "" {
		bad("kafka.dead_letter_topic", "required")
	}
	if c.Kafka.DeadLetterTopic == c.Kafka.BeaconsTopic && c.Kafka.BeaconsTopic != "" {
		bad("kafka.dead_letter_topic", "must differ from kafka.beacons_topic")
	}
	if c.Kafka.Partitions < 1 || c.Kafka.Partitions > 1024 {
		bad("kafka.partitions", "%d is not in 1..1024", c.Kafka.Partitions)
	}
	switch c.Kafka.Compression {
	case "none", "gzip", "snappy", "lz4", "zstd":
	default:
		bad("kafka.compression", "%q is not one of none, gzip, snappy, lz4, zstd", c.Kafka.Compression)
	}
	if c.Kafka.BatchTimeout <= 0 || c.Kafka.BatchTimeout.D() > time.Second {
		bad("kafka.batch_timeout", "%s is not in (0, 1s]: a synchronous producer waits this long per part-full batch", c.Kafka.BatchTimeout)
	}
	if c.Kafka.ProduceTimeout <= 0 {
		bad("kafka.produce_timeout", "must be positive")
	}
	if c.Kafka.ProduceRetries < 0 || c.Kafka.ProduceRetries > 20 {
		bad("kafka.produce_retries", "%d is not in 0..20", c.Kafka.ProduceRetries)
	}

	checkAddr("clickhouse.addr", c.ClickHouse.Addr, false)
	if !identRE.MatchString(c.ClickHouse.Database) {
		bad("clickhouse.database", "%q is not an identifier (letters, digits and _, not starting with a digit, at most 64)", c.ClickHouse.Database)
	}
	if c.ClickHouse.DialTimeout <= 0 {
		bad("clickhouse.dial_timeout", "must be positive")
	}
	if c.ClickHouse.QueryTimeout <= 0 {
		bad("clickhouse.query_timeout", "must be positive")
	}
	if c.ClickHouse.ExactRange < 0 {
		bad("clickhouse.exact_range", "must not be negative")
	}
	if c.ClickHouse.MemoryRetention < Duration(time.Minute) {
		bad("clickhouse.memory_retention", "%s is under 1m", c.ClickHouse.MemoryRetention)
	}

	if c.Ingest.MaxBodyBytes < 1024 || c.Ingest.MaxBodyBytes > 16<<20 {
		bad("ingest.max_body_bytes", "%d is not in 1024..16777216", c.Ingest.MaxBodyBytes)
	}
	if c.Ingest.MaxBeaconsPerBody < 1 {
		bad("ingest.max_beacons_per_body", "must be at least 1")
	}
	if c.Ingest.RateLimit.PerClientRPS < 0 {
		bad("ingest.rate_limit.per_client_rps", "must not be negative")
	}
	if c.Ingest.RateLimit.PerClientRPS > 0 && c.Ingest.RateLimit.Burst < 1 {
		bad("ingest.rate_limit.burst", "must be at least 1 when a rate is set")
	}
	for i, o := range c.Ingest.CORSOrigins {
		if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			bad(fmt.Sprintf("ingest.cors_origins[%d]", i), "%q is not * or an http(s) origin", o)
		}
	}
	if _, err := c.Ingest.TrustedPrefixes(); err != nil {
		errs = append(errs, err)
	}
	if c.Ingest.MaxClockSkew <= 0 {
		bad("ingest.max_clock_skew", "must be positive")
	}

	if c.Consume.GroupID == "" {
		bad("consume.group_id", "required")
	}
	if c.Consume.BatchRows < 1 || c.Consume.BatchRows > 1_000_000 {
		bad("consume.batch_rows", "%d is not in 1..1000000", c.Consume.BatchRows)
	}
	if c.Consume.BatchInterval <= 0 {
		bad("consume.batch_interval", "must be positive")
	}
	if c.Consume.InsertTimeout <= 0 {
		bad("consume.insert_timeout", "must be positive")
	}
	for country, region := range c.Geo.Regions {
		if len(country) != 2 || strings.ToUpper(country) != country {
			bad("geo.regions", "key %q is not an ISO 3166-1 alpha-2 code", country)
		}
		if region == "" {
			bad("geo.regions."+country, "empty region")
		}
	}
	if c.Demo.Viewers < 0 || c.Demo.Viewers > 100000 {
		bad("demo.viewers", "%d is not in 0..100000", c.Demo.Viewers)
	}
	return errors.Join(errs...)
}

// identRE is the identifier rule of the analytics schema, which splices
// the database name into SQL text.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// TrustedPrefixes parses ingest.trusted_proxies (plain addresses allowed).
func (i Ingest) TrustedPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(i.TrustedProxies))
	for n, s := range i.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("ingest.trusted_proxies[%d]: %q is not a CIDR or address", n, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Duration is a time.Duration written as "5s", "250ms" in YAML.
type Duration time.Duration

// D returns the standard type.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
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

// cleanYAMLError turns yaml.v3's "field x not found in type config.Kafka"
// into wording an operator can act on without knowing our Go types.
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

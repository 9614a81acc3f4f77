// Package config loads cdnpilot's one YAML file: defaults first, then the
// file (decoded strictly: an unknown key is an error naming key and line),
// then environment overrides for addresses and secrets, then flags.
package config

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cdnpilot/cdnpilot/steering"
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
	Score      Score      `yaml:"score"`
	// CDNs and Services are the catalog. They are one unit: a file that
	// sets either replaces both defaults (the demo world), so a service
	// never silently refers to a demo CDN.
	CDNs     []CDN     `yaml:"cdns"`
	Services []Service `yaml:"services"`
	Steering Steering  `yaml:"steering"`
	DNS      DNS       `yaml:"dns"`
	// HTTPSteering is the redirector and content steering server.
	HTTPSteering HTTPSteering `yaml:"http_steering"`
	// Admin is the admin API (/api/v1): who may call it, how often, and
	// the limits of the overrides it takes.
	Admin Admin `yaml:"admin"`
	Geo   Geo   `yaml:"geo"`
	Demo  Demo  `yaml:"demo"`
}

// Kafka selects the brokers. No brokers means the embedded in-process broker.
type Kafka struct {
	Brokers         []string `yaml:"brokers"`
	ClientID        string   `yaml:"client_id"`
	BeaconsTopic    string   `yaml:"beacons_topic"`
	DeadLetterTopic string   `yaml:"dead_letter_topic"`
	// RankingsTopic is compacted: the scorer writes one ranking snapshot
	// per key, steering nodes read the latest.
	RankingsTopic string `yaml:"rankings_topic"`
	// OverridesTopic is compacted too: one record per override id, its
	// latest state. Every steering node and scorer reads it from the
	// start and follows it.
	OverridesTopic string `yaml:"overrides_topic"`
	// ScoreDeltasTopic and ScorePartsTopic are the scorer group's own:
	// each member's additions to the shared (global and country) windows,
	// and each member's region rankings for the leader. One partition
	// each; time retention (an hour, a quarter of an hour).
	ScoreDeltasTopic string `yaml:"score_deltas_topic"`
	ScorePartsTopic  string `yaml:"score_parts_topic"`
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

// Score configures the scorer: it reads beacons, runs the steering engine
// and publishes ranking snapshots to kafka.rankings_topic.
type Score struct {
	// GroupID is the consumer group of the scorers: its members split the
	// beacon partitions (see docs/ARCHITECTURE.md, "Scorer group").
	GroupID  string   `yaml:"group_id"`
	Interval Duration `yaml:"interval"` // how often a snapshot is published
	// Replay is how far back a member re-reads its partitions and the
	// deltas when the partitions move (a member joins, leaves or dies).
	Replay Duration `yaml:"replay"`
}

// CDN is one delivery network (steering.CDN plus its health probe).
type CDN struct {
	Name string `yaml:"name"`
	Host string `yaml:"host"`
	// HealthURL is probed actively; empty means passive health (from
	// beacons) only.
	HealthURL        string  `yaml:"health_url"`
	PricePerGB       float64 `yaml:"price_per_gb"`
	CommitGBPerMonth float64 `yaml:"commit_gb_per_month"`
	MaxShare         float64 `yaml:"max_share"`
	// Addrs, when set, are the IPv4/IPv6 addresses the DNS server answers
	// A/AAAA queries with instead of a CNAME to Host.
	Addrs []string `yaml:"addrs"`
	// BaseURL is where the HTTP redirector and the content steering
	// pathways send players: scheme, host and an optional path prefix.
	// Empty: https://<host>.
	BaseURL string  `yaml:"base_url"`
	Signing Signing `yaml:"signing"`
}

// Signing makes the redirector's URLs carry a CDN's access token: a
// redirect to an unsigned URL is useless on a protected CDN.
type Signing struct {
	// Scheme is "" (no token) or "akamai2" (Akamai Auth Token 2.0, an
	// HMAC-SHA256 query token with expiry and ACL).
	Scheme string `yaml:"scheme"`
	// KeyEnv names the environment variable that holds the key (hex):
	// secrets never live in the file.
	KeyEnv string `yaml:"key_env"`
	// Key is read from KeyEnv by ApplyEnv.
	Key    string   `yaml:"-"`
	Param  string   `yaml:"param"`  // query parameter of the token (default __token__)
	Expiry Duration `yaml:"expiry"` // how long a token is valid (default 1h)
	// ACL is the path pattern the token grants (default "dir": the
	// redirect's directory and everything under it, so the segments next to
	// a manifest are covered; else a literal pattern like /vod/*).
	ACL string `yaml:"acl"`
}

// HTTPSteering configures the HTTP redirector (/r/...) and the content
// steering server (/steer/...) that the steer role and the demo serve.
type HTTPSteering struct {
	TTL         Duration `yaml:"ttl"`          // content steering TTL
	IncidentTTL Duration `yaml:"incident_ttl"` // ...while the ranking shows trouble or the view was demoted
	TTLJitter   float64  `yaml:"ttl_jitter"`   // share taken off each TTL at random, 0..0.5
	// MaxTTL and ShedAboveRPS shed load the only way players accept: above
	// this many steering requests per second on this node, TTLs grow in
	// proportion, up to MaxTTL (never a 429, which stops hls.js steering).
	MaxTTL       Duration `yaml:"max_ttl"`
	ShedAboveRPS float64  `yaml:"shed_above_rps"`
	// A pathway the player reports below DemoteFactor times the ladder's
	// lowest bitrate is moved last for that view for DemoteFor.
	DemoteFactor      float64  `yaml:"demote_factor"`
	DemoteFor         Duration `yaml:"demote_for"`
	ViewCookie        string   `yaml:"view_cookie"`         // the redirector's sticky view cookie
	DecisionLogSample float64  `yaml:"decision_log_sample"` // share of answers written to the decision log, 0..1
}

// Admin configures the admin API.
type Admin struct {
	// Tokens are the static bearer tokens, stored as SHA-256 hashes.
	// CDNPILOT_ADMIN_TOKEN adds one admin token (the demo generates one
	// when it is unset).
	Tokens []AdminToken `yaml:"tokens"`
	// Token is the plain admin token from CDNPILOT_ADMIN_TOKEN; never in
	// the file.
	Token string `yaml:"-"`
	OIDC  OIDC   `yaml:"oidc"`
	// MaxOverrideTTL caps how far in the future an override may expire.
	MaxOverrideTTL Duration `yaml:"max_override_ttl"`
	// RateLimit applies per token and per client address.
	RateLimit AdminRateLimit `yaml:"rate_limit"`
	// CORSOrigins are the exact origins a browser may call the API from;
	// empty: same origin only. Never "*": the API takes credentials.
	CORSOrigins []string `yaml:"cors_origins"`
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed for
	// the audit log's source address and the per-client rate limit.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// AdminToken is one static bearer token.
type AdminToken struct {
	Name string `yaml:"name"` // the actor in the audit log
	// SHA256 is the hex SHA-256 of the token: `cdnpilot ctl hash-token`.
	SHA256 string `yaml:"sha256"`
	Role   string `yaml:"role"` // viewer, operator or admin
	// Services limits an operator to these services; empty: all.
	Services []string `yaml:"services"`
}

// OIDC accepts JWTs from one issuer. Empty issuer: off.
type OIDC struct {
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Algorithm is the one signing algorithm accepted (RS256, ES256, ...):
	// pinned, so a token cannot choose its own verification.
	Algorithm string `yaml:"algorithm"`
	// JWKSURL is where the issuer's keys are; empty: from the issuer's
	// /.well-known/openid-configuration.
	JWKSURL string `yaml:"jwks_url"`
	// RoleClaim names the claim with the role; ServicesClaim the claim
	// with the services an operator is limited to.
	RoleClaim     string `yaml:"role_claim"`
	ServicesClaim string `yaml:"services_claim"`
}

// AdminRateLimit is a token bucket per bearer token and one per client
// address; a request must pass both.
type AdminRateLimit struct {
	PerTokenRPS  float64 `yaml:"per_token_rps"`
	PerClientRPS float64 `yaml:"per_client_rps"`
	Burst        int     `yaml:"burst"`
}

// AdminRoles are the roles of the admin API, weakest first.
var AdminRoles = []string{"viewer", "operator", "admin"}

// Service is one steered stream family with its CDNs in static fallback
// order.
type Service struct {
	Name string   `yaml:"name"`
	CDNs []string `yaml:"cdns"`
	// Clones: CDNs of the service that its manifests do not name as
	// content steering pathways, each with the pathway to clone (clone:
	// base). Players get them as PATHWAY-CLONES: the base's URIs on the
	// clone's host. The clone's base_url must be its base's with only the
	// host name changed.
	Clones map[string]string `yaml:"clones"`
}

// DNS configures the authoritative steering DNS server that the steer
// role (and the demo) serves on dns_addr.
type DNS struct {
	// Zones the server is authoritative for; <service>.<zone> is steered.
	Zones []string `yaml:"zones"`
	// TTL of a steered answer; IncidentTTL replaces it while the ranking
	// that answered shows trouble (a CDN down or evacuated, failover,
	// fail-open, stale inputs, static fallback), so the next change
	// reaches clients sooner.
	TTL         Duration `yaml:"ttl"`
	IncidentTTL Duration `yaml:"incident_ttl"`
	// TTLJitter takes up to this share off every steered TTL, at random,
	// so resolvers that cached one answer together do not all come back
	// in the same second.
	TTLJitter float64 `yaml:"ttl_jitter"`
	// ApexTTL is the TTL of the SOA, NS and name server address records.
	ApexTTL   Duration     `yaml:"apex_ttl"`
	SOA       SOA          `yaml:"soa"`
	NS        []NameServer `yaml:"ns"`
	RateLimit DNSRateLimit `yaml:"rate_limit"`
	// DecisionLogSample is the share of steered answers written to the
	// decision log, 0..1.
	DecisionLogSample float64 `yaml:"decision_log_sample"`
}

// SOA is the start-of-authority record of every zone.
type SOA struct {
	MName   string   `yaml:"mname"`
	RName   string   `yaml:"rname"`
	Serial  uint32   `yaml:"serial"`
	Refresh Duration `yaml:"refresh"`
	Retry   Duration `yaml:"retry"`
	Expire  Duration `yaml:"expire"`
	// Minimum is the negative-caching TTL (RFC 2308) of NXDOMAIN and
	// NODATA answers.
	Minimum Duration `yaml:"minimum"`
}

// NameServer is one NS record of every zone. A name inside a served zone
// needs its addresses, which the server then answers itself (and adds as
// glue to NS answers).
type NameServer struct {
	Name  string   `yaml:"name"`
	Addrs []string `yaml:"addrs"`
}

// DNSRateLimit is response-rate limiting per client /24 (IPv6 /56) over
// UDP. Over the limit, every Slip-th reply is an empty truncated one (a
// real client retries over TCP) and the rest are dropped.
type DNSRateLimit struct {
	ResponsesPerSecond int `yaml:"responses_per_second"` // 0 disables
	Slip               int `yaml:"slip"`                 // 0: drop every limited reply
}

// Steering is steering.Policy as YAML; Policy converts it.
type Steering struct {
	Weights           Weights    `yaml:"weights"`
	HalfLife          Duration   `yaml:"half_life"`
	FastHalfLife      Duration   `yaml:"fast_half_life"`
	MinSamples        float64    `yaml:"min_samples"`
	Hysteresis        Hysteresis `yaml:"hysteresis"`
	MaxShiftPerMinute float64    `yaml:"max_shift_per_minute"`
	Exploration       float64    `yaml:"exploration"`
	Cost              Cost       `yaml:"cost"`
	Stale             Stale      `yaml:"stale"`
	Passive           Passive    `yaml:"passive"`
	Probe             Probe      `yaml:"probe"`
	Flap              Flap       `yaml:"flap"`
	Poison            Poison     `yaml:"poison"`
}

// Weights is steering.Weights.
type Weights struct {
	StartupP50 float64 `yaml:"startup_p50"`
	StartupP90 float64 `yaml:"startup_p90"`
	Rebuffer   float64 `yaml:"rebuffer"`
	Failure    float64 `yaml:"failure"`
	EBVS       float64 `yaml:"ebvs"`
	Bitrate    float64 `yaml:"bitrate"`
	TTFB       float64 `yaml:"ttfb"`
	Throughput float64 `yaml:"throughput"`
}

// Hysteresis is steering.Hysteresis.
type Hysteresis struct {
	Margin       float64  `yaml:"margin"`
	Dwell        Duration `yaml:"dwell"`
	Warmup       Duration `yaml:"warmup"`
	WarmupMargin float64  `yaml:"warmup_margin"`
}

// Cost is steering.Cost.
type Cost struct {
	Margin float64 `yaml:"margin"`
}

// Stale is steering.Stale.
type Stale struct {
	Freeze Duration `yaml:"freeze"`
	Static Duration `yaml:"static"`
}

// Passive is steering.Passive.
type Passive struct {
	FailureRate    float64  `yaml:"failure_rate"`
	MinAttempts    float64  `yaml:"min_attempts"`
	MinBeacons     float64  `yaml:"min_beacons"`
	EvacuateMargin float64  `yaml:"evacuate_margin"`
	Retry          Duration `yaml:"retry"`
	ProbationShare float64  `yaml:"probation_share"`
}

// Probe is steering.Probe: how often and how patiently the health URLs
// are probed, and the fall/rise thresholds the engine applies.
type Probe struct {
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Fall     int      `yaml:"fall"`
	Rise     int      `yaml:"rise"`
}

// Flap is steering.Flap.
type Flap struct {
	HalfLife    Duration `yaml:"half_life"`
	Suppress    float64  `yaml:"suppress"`
	MaxSuppress Duration `yaml:"max_suppress"`
	Steady      Duration `yaml:"steady"`
}

// Poison is steering.Poison.
type Poison struct {
	ClientCap  float64 `yaml:"client_cap"`
	AttemptCap float64 `yaml:"attempt_cap"`
}

// steeringOf is the inverse of Config.Policy.
func steeringOf(p steering.Policy) Steering {
	w := p.Weights
	return Steering{
		Weights: Weights{
			StartupP50: w.StartupP50, StartupP90: w.StartupP90, Rebuffer: w.Rebuffer, Failure: w.Failure,
			EBVS: w.EBVS, Bitrate: w.Bitrate, TTFB: w.TTFB, Throughput: w.Throughput,
		},
		HalfLife:          Duration(p.HalfLife),
		FastHalfLife:      Duration(p.FastHalfLife),
		MinSamples:        p.MinSamples,
		Hysteresis:        Hysteresis{Margin: p.Hysteresis.Margin, Dwell: Duration(p.Hysteresis.Dwell), Warmup: Duration(p.Hysteresis.Warmup), WarmupMargin: p.Hysteresis.WarmupMargin},
		MaxShiftPerMinute: p.MaxShiftPerMinute,
		Exploration:       p.Exploration,
		Cost:              Cost{Margin: p.Cost.Margin},
		Stale:             Stale{Freeze: Duration(p.Stale.Freeze), Static: Duration(p.Stale.Static)},
		Passive: Passive{
			FailureRate: p.Passive.FailureRate, MinAttempts: p.Passive.MinAttempts, MinBeacons: p.Passive.MinBeacons,
			EvacuateMargin: p.Passive.EvacuateMargin, Retry: Duration(p.Passive.Retry), ProbationShare: p.Passive.ProbationShare,
		},
		Probe: Probe{
			Interval: Duration(p.Probe.Interval), Timeout: Duration(p.Probe.Timeout), Fall: p.Probe.Fall, Rise: p.Probe.Rise,
		},
		Flap:   Flap{HalfLife: Duration(p.Flap.HalfLife), Suppress: p.Flap.Suppress, MaxSuppress: Duration(p.Flap.MaxSuppress), Steady: Duration(p.Flap.Steady)},
		Poison: Poison{ClientCap: p.Poison.ClientCap, AttemptCap: p.Poison.AttemptCap},
	}
}

// Catalog is the static world the engine steers in.
func (c Config) Catalog() steering.Catalog {
	cat := steering.Catalog{
		CDNs:     make([]steering.CDN, 0, len(c.CDNs)),
		Services: make([]steering.Service, 0, len(c.Services)),
	}
	for _, d := range c.CDNs {
		cat.CDNs = append(cat.CDNs, steering.CDN{
			Name: d.Name, Host: d.Host, BaseURL: d.BaseURLOrDefault(),
			PricePerGB: d.PricePerGB, CommitGBPerMonth: d.CommitGBPerMonth, MaxShare: d.MaxShare,
			Addrs: parseAddrs(d.Addrs),
		})
	}
	for _, s := range c.Services {
		cat.Services = append(cat.Services, steering.Service{Name: s.Name, CDNs: slices.Clone(s.CDNs), Clones: maps.Clone(s.Clones)})
	}
	return cat
}

// BaseURLOrDefault is base_url, or https://<host> when it is empty.
func (d CDN) BaseURLOrDefault() string {
	if d.BaseURL != "" {
		return d.BaseURL
	}
	return "https://" + d.Host
}

// parseAddrs parses validated addresses; nil when there are none.
func parseAddrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// NSAddrs parses a name server's validated addresses.
func (n NameServer) NSAddrs() []netip.Addr { return parseAddrs(n.Addrs) }

// Policy is the steering section as the engine's type.
func (c Config) Policy() steering.Policy {
	s := c.Steering
	w := s.Weights
	return steering.Policy{
		Weights: steering.Weights{
			StartupP50: w.StartupP50, StartupP90: w.StartupP90, Rebuffer: w.Rebuffer, Failure: w.Failure,
			EBVS: w.EBVS, Bitrate: w.Bitrate, TTFB: w.TTFB, Throughput: w.Throughput,
		},
		HalfLife:          s.HalfLife.D(),
		FastHalfLife:      s.FastHalfLife.D(),
		MinSamples:        s.MinSamples,
		Hysteresis:        steering.Hysteresis{Margin: s.Hysteresis.Margin, Dwell: s.Hysteresis.Dwell.D(), Warmup: s.Hysteresis.Warmup.D(), WarmupMargin: s.Hysteresis.WarmupMargin},
		MaxShiftPerMinute: s.MaxShiftPerMinute,
		Exploration:       s.Exploration,
		Cost:              steering.Cost{Margin: s.Cost.Margin},
		Stale:             steering.Stale{Freeze: s.Stale.Freeze.D(), Static: s.Stale.Static.D()},
		Passive: steering.Passive{
			FailureRate: s.Passive.FailureRate, MinAttempts: s.Passive.MinAttempts, MinBeacons: s.Passive.MinBeacons,
			EvacuateMargin: s.Passive.EvacuateMargin, Retry: s.Passive.Retry.D(), ProbationShare: s.Passive.ProbationShare,
		},
		Probe: steering.Probe{
			Interval: s.Probe.Interval.D(), Timeout: s.Probe.Timeout.D(), Fall: s.Probe.Fall, Rise: s.Probe.Rise,
		},
		Flap:   steering.Flap{HalfLife: s.Flap.HalfLife.D(), Suppress: s.Flap.Suppress, MaxSuppress: s.Flap.MaxSuppress.D(), Steady: s.Flap.Steady.D()},
		Poison: steering.Poison{ClientCap: s.Poison.ClientCap, AttemptCap: s.Poison.AttemptCap},
	}
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
			ClientID:         "cdnpilot",
			BeaconsTopic:     "cdnpilot.beacons.v1",
			DeadLetterTopic:  "cdnpilot.beacons.dlq",
			RankingsTopic:    "cdnpilot.rankings.v1",
			OverridesTopic:   "cdnpilot.overrides.v1",
			ScoreDeltasTopic: "cdnpilot.score-deltas.v1",
			ScorePartsTopic:  "cdnpilot.score-parts.v1",
			Partitions:       6,
			Compression:      "lz4",
			BatchTimeout:     Duration(10 * time.Millisecond),
			ProduceTimeout:   Duration(5 * time.Second),
			ProduceRetries:   3,
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
		Score:    Score{GroupID: "cdnpilot-scorer", Interval: Duration(time.Second), Replay: Duration(5 * time.Minute)},
		CDNs:     demoCDNs(),
		Services: demoServices(),
		// The engine's defaults, so config and engine cannot disagree;
		// the example file spells them out, and a test holds them equal.
		Steering: steeringOf(steering.DefaultPolicy()),
		DNS:      defaultDNS(),
		HTTPSteering: HTTPSteering{
			TTL: Duration(20 * time.Second), IncidentTTL: Duration(10 * time.Second), TTLJitter: 0.1,
			MaxTTL: Duration(300 * time.Second), ShedAboveRPS: 0,
			DemoteFactor: 1.2, DemoteFor: Duration(2 * time.Minute),
			ViewCookie: "cdnpilot_view", DecisionLogSample: 1,
		},
		Admin: Admin{
			OIDC:           OIDC{Algorithm: "RS256", RoleClaim: "cdnpilot_role", ServicesClaim: "cdnpilot_services"},
			MaxOverrideTTL: Duration(24 * time.Hour),
			RateLimit:      AdminRateLimit{PerTokenRPS: 20, PerClientRPS: 20, Burst: 40},
		},
		Demo: Demo{Viewers: 300, Seed: 1},
	}
}

// defaultDNS is the demo zone, served by the demo process itself.
func defaultDNS() DNS {
	return DNS{
		Zones:       []string{"demo.cdnpilot.test."},
		TTL:         Duration(30 * time.Second),
		IncidentTTL: Duration(10 * time.Second),
		TTLJitter:   0.1,
		ApexTTL:     Duration(time.Hour),
		SOA: SOA{
			MName: "ns1.demo.cdnpilot.test.", RName: "hostmaster.demo.cdnpilot.test.", Serial: 1,
			Refresh: Duration(time.Hour), Retry: Duration(10 * time.Minute),
			Expire: Duration(7 * 24 * time.Hour), Minimum: Duration(60 * time.Second),
		},
		NS:                []NameServer{{Name: "ns1.demo.cdnpilot.test.", Addrs: []string{"127.0.0.1"}}},
		RateLimit:         DNSRateLimit{ResponsesPerSecond: 0, Slip: 2},
		DecisionLogSample: 1,
	}
}

// demoCDNs and demoServices are the demo world: three CDNs that differ in
// price, two services that prefer different ones. Fresh slices each call,
// so no two Configs share them.
func demoCDNs() []CDN {
	return []CDN{
		{Name: "cdn-a", Host: "cdn-a.demo.cdnpilot.test", PricePerGB: 0.004, CommitGBPerMonth: 50000},
		{Name: "cdn-b", Host: "cdn-b.demo.cdnpilot.test", PricePerGB: 0.006},
		{Name: "cdn-c", Host: "cdn-c.demo.cdnpilot.test", PricePerGB: 0.003},
	}
}

func demoServices() []Service {
	return []Service{
		{Name: "vod", CDNs: []string{"cdn-a", "cdn-b", "cdn-c"}},
		{Name: "live", CDNs: []string{"cdn-b", "cdn-a", "cdn-c"}},
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
	// The catalog is one unit: a file that sets cdns or services replaces
	// both defaults, and Validate says which one is then missing.
	var set struct {
		CDNs     yaml.Node `yaml:"cdns"`
		Services yaml.Node `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &set); err != nil {
		return Config{}, fmt.Errorf("parse config: %w", cleanYAMLError(err))
	}
	switch {
	case set.CDNs.Kind != 0 && set.Services.Kind == 0:
		cfg.Services = nil
	case set.CDNs.Kind == 0 && set.Services.Kind != 0:
		cfg.CDNs = nil
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
	set("CDNPILOT_ADMIN_TOKEN", &c.Admin.Token)
	if v := env("CDNPILOT_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = SplitList(v)
	}
	for i := range c.CDNs {
		if s := &c.CDNs[i].Signing; s.KeyEnv != "" {
			s.Key = env(s.KeyEnv)
		}
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
	if c.Kafka.RankingsTopic == "" {
		bad("kafka.rankings_topic", "required")
	} else if c.Kafka.RankingsTopic == c.Kafka.BeaconsTopic || c.Kafka.RankingsTopic == c.Kafka.DeadLetterTopic {
		bad("kafka.rankings_topic", "must differ from kafka.beacons_topic and kafka.dead_letter_topic")
	}

	if c.Score.GroupID == "" {
		bad("score.group_id", "required")
	} else if c.Score.GroupID == c.Consume.GroupID {
		bad("score.group_id", "must differ from consume.group_id: one group would split the beacons between the roles")
	}
	if c.Score.Interval <= 0 {
		bad("score.interval", "must be positive")
	} else if c.Score.Interval >= c.Steering.Stale.Freeze && c.Steering.Stale.Freeze > 0 {
		bad("score.interval", "%s is not shorter than steering.stale.freeze (%s): every snapshot would be stale before the next", c.Score.Interval, c.Steering.Stale.Freeze)
	}

	errs = append(errs, c.validateCatalog()...)
	errs = append(errs, c.validateSteering()...)
	errs = append(errs, c.validateDNS()...)
	errs = append(errs, c.validateHTTPSteering()...)
	errs = append(errs, c.validateAdmin()...)
	if t := c.Kafka.OverridesTopic; t == "" {
		bad("kafka.overrides_topic", "required")
	} else if t == c.Kafka.BeaconsTopic || t == c.Kafka.DeadLetterTopic || t == c.Kafka.RankingsTopic {
		bad("kafka.overrides_topic", "must differ from the beacons, dead letter and rankings topics")
	}
	for _, f := range []struct{ name, topic string }{{"kafka.score_deltas_topic", c.Kafka.ScoreDeltasTopic}, {"kafka.score_parts_topic", c.Kafka.ScorePartsTopic}} {
		if f.topic == "" {
			bad(f.name, "required")
			continue
		}
		n := 0
		for _, t := range []string{c.Kafka.BeaconsTopic, c.Kafka.DeadLetterTopic, c.Kafka.RankingsTopic, c.Kafka.OverridesTopic, c.Kafka.ScoreDeltasTopic, c.Kafka.ScorePartsTopic} {
			if t == f.topic {
				n++
			}
		}
		if n > 1 {
			bad(f.name, "%q is another topic's too; every topic has one job", f.topic)
		}
	}
	if c.Score.Replay < c.Score.Interval*10 {
		bad("score.replay", "%s is under ten score.interval ticks (%s): a member that takes partitions over would start from almost nothing", c.Score.Replay, c.Score.Interval*10)
	} else if c.Score.Replay > Duration(time.Hour) {
		bad("score.replay", "%s is over 1h, the deltas topic's retention", c.Score.Replay)
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

// validateCatalog checks cdns and services key by key, then hands the
// catalog to steering.Catalog.Validate, the engine's own rule.
func (c Config) validateCatalog() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(c.CDNs) == 0 {
		bad("cdns", "required: at least one CDN")
	}
	cdns := make(map[string]bool, len(c.CDNs))
	for i, d := range c.CDNs {
		key := fmt.Sprintf("cdns[%d]", i)
		switch {
		case !nameRE.MatchString(d.Name):
			bad(key+".name", "%q is not a name (a-z, 0-9 and -, starting with a letter or digit, at most 63)", d.Name)
		case cdns[d.Name]:
			bad(key+".name", "%q is repeated", d.Name)
		}
		cdns[d.Name] = true
		if err := checkHost(d.Host); err != nil {
			bad(key+".host", "%v", err)
		}
		if d.HealthURL != "" {
			if err := checkHealthURL(d.HealthURL); err != nil {
				bad(key+".health_url", "%v", err)
			}
		}
		if !finite(d.PricePerGB) || d.PricePerGB < 0 {
			bad(key+".price_per_gb", "%v is not a number ≥ 0", d.PricePerGB)
		}
		if !finite(d.CommitGBPerMonth) || d.CommitGBPerMonth < 0 {
			bad(key+".commit_gb_per_month", "%v is not a number ≥ 0", d.CommitGBPerMonth)
		}
		if !finite(d.MaxShare) || d.MaxShare < 0 || d.MaxShare > 1 {
			bad(key+".max_share", "%v is not in 0..1 (0: no cap)", d.MaxShare)
		}
		errs = append(errs, checkAddrs(key+".addrs", d.Addrs)...)
		if d.BaseURL != "" {
			if err := checkBaseURL(d.BaseURL); err != nil {
				bad(key+".base_url", "%v", err)
			}
		}
		errs = append(errs, d.Signing.validate(key+".signing")...)
	}

	if len(c.Services) == 0 {
		bad("services", "required: at least one service")
	}
	svcs := make(map[string]bool, len(c.Services))
	for i, s := range c.Services {
		key := fmt.Sprintf("services[%d]", i)
		switch {
		case !nameRE.MatchString(s.Name):
			bad(key+".name", "%q is not a name (a-z, 0-9 and -, starting with a letter or digit, at most 63)", s.Name)
		case svcs[s.Name]:
			bad(key+".name", "%q is repeated", s.Name)
		}
		svcs[s.Name] = true
		switch {
		case len(s.CDNs) == 0:
			bad(key+".cdns", "required: at least one CDN")
		case len(s.CDNs) > steering.MaxCDNs:
			bad(key+".cdns", "%d CDNs, at most %d", len(s.CDNs), steering.MaxCDNs)
		}
		seen := make(map[string]bool, len(s.CDNs))
		for j, n := range s.CDNs {
			switch {
			case !cdns[n] && len(c.CDNs) > 0: // no cdns at all is reported once, above
				bad(fmt.Sprintf("%s.cdns[%d]", key, j), "%q is not in cdns", n)
			case seen[n]:
				bad(fmt.Sprintf("%s.cdns[%d]", key, j), "%q is listed twice", n)
			}
			seen[n] = true
		}
	}
	if len(errs) > 0 {
		return errs
	}
	// The checks above cover the engine's rule today; should it grow, its
	// error still stops a bad catalog, under the keys it concerns.
	if err := c.Catalog().Validate(); err != nil {
		return []error{fmt.Errorf("cdns, services: %w", err)}
	}
	return nil
}

// validateSteering checks that every number is finite (steering's range
// checks let NaN through), then applies steering.Policy.Validate, whose
// errors name the key under steering. It reports the first problem only.
func (c Config) validateSteering() []error {
	s := c.Steering
	w := s.Weights
	for _, f := range []struct {
		key string
		v   float64
	}{
		{"weights.startup_p50", w.StartupP50}, {"weights.startup_p90", w.StartupP90},
		{"weights.rebuffer", w.Rebuffer}, {"weights.failure", w.Failure}, {"weights.ebvs", w.EBVS},
		{"weights.bitrate", w.Bitrate}, {"weights.ttfb", w.TTFB}, {"weights.throughput", w.Throughput},
		{"min_samples", s.MinSamples}, {"hysteresis.margin", s.Hysteresis.Margin},
		{"max_shift_per_minute", s.MaxShiftPerMinute}, {"exploration", s.Exploration},
		{"cost.margin", s.Cost.Margin}, {"passive.failure_rate", s.Passive.FailureRate},
		{"passive.min_attempts", s.Passive.MinAttempts}, {"passive.min_beacons", s.Passive.MinBeacons}, {"passive.probation_share", s.Passive.ProbationShare},
		{"passive.evacuate_margin", s.Passive.EvacuateMargin},
		{"flap.suppress", s.Flap.Suppress}, {"poison.client_cap", s.Poison.ClientCap},
		{"poison.attempt_cap", s.Poison.AttemptCap},
	} {
		if !finite(f.v) {
			return []error{fmt.Errorf("steering.%s: %v is not a finite number", f.key, f.v)}
		}
	}
	if err := c.Policy().Validate(); err != nil {
		return []error{fmt.Errorf("steering.%w", err)}
	}
	return nil
}

// maxAddrs bounds the addresses of one CDN or name server: an answer
// should fit in 512 bytes where possible (some resolvers never retry over
// TCP), which 8 addresses of a family do; past this it cannot.
const maxAddrs = 64

// checkAddrs wants IP addresses without zones, each once.
func checkAddrs(key string, addrs []string) []error {
	var errs []error
	if len(addrs) > maxAddrs {
		errs = append(errs, fmt.Errorf("%s: %d addresses, at most %d", key, len(addrs), maxAddrs))
	}
	seen := make(map[netip.Addr]bool, len(addrs))
	for i, s := range addrs {
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil || a.Zone() != "":
			errs = append(errs, fmt.Errorf("%s[%d]: %q is not an IPv4 or IPv6 address", key, i, s))
		case seen[a.Unmap()]:
			errs = append(errs, fmt.Errorf("%s[%d]: %q is repeated", key, i, s))
		}
		seen[a.Unmap()] = true
	}
	return errs
}

// validateDNS checks the dns section. Zones are required only when the
// server runs (dns_addr set).
func (c Config) validateDNS() []error {
	d := c.DNS
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("dns.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(d.Zones) == 0 && c.DNSAddr != "" {
		bad("zones", "required: at least one zone while dns_addr is set")
	}
	zones := make(map[string]bool, len(d.Zones))
	for i, z := range d.Zones {
		n := strings.ToLower(strings.TrimSuffix(z, "."))
		switch {
		case !validHostname(n):
			bad(fmt.Sprintf("zones[%d]", i), "%q is not a domain name", z)
		case zones[n]:
			bad(fmt.Sprintf("zones[%d]", i), "%q is repeated", z)
		}
		zones[n] = true
	}
	checkTTL := func(key string, v Duration, lo, hi time.Duration) {
		if v.D() < lo || v.D() > hi || v.D()%time.Second != 0 {
			bad(key, "%s is not whole seconds in %s..%s", v, lo, hi)
		}
	}
	checkTTL("ttl", d.TTL, time.Second, 24*time.Hour)
	checkTTL("incident_ttl", d.IncidentTTL, time.Second, 24*time.Hour)
	if d.IncidentTTL > d.TTL {
		bad("incident_ttl", "%s is longer than dns.ttl (%s)", d.IncidentTTL, d.TTL)
	}
	if !finite(d.TTLJitter) || d.TTLJitter < 0 || d.TTLJitter > 0.5 {
		bad("ttl_jitter", "%v is not in 0..0.5", d.TTLJitter)
	}
	checkTTL("apex_ttl", d.ApexTTL, time.Second, 7*24*time.Hour)
	if !validHostname(strings.TrimSuffix(d.SOA.MName, ".")) {
		bad("soa.mname", "%q is not a domain name", d.SOA.MName)
	}
	if !validHostname(strings.TrimSuffix(d.SOA.RName, ".")) {
		bad("soa.rname", "%q is not a mailbox as a domain name (hostmaster.example.com.)", d.SOA.RName)
	}
	for _, f := range []struct {
		key string
		v   Duration
	}{{"soa.refresh", d.SOA.Refresh}, {"soa.retry", d.SOA.Retry}, {"soa.expire", d.SOA.Expire}, {"soa.minimum", d.SOA.Minimum}} {
		checkTTL(f.key, f.v, time.Second, 365*24*time.Hour)
	}
	if len(d.NS) == 0 && c.DNSAddr != "" {
		bad("ns", "required: at least one name server while dns_addr is set")
	}
	for i, ns := range d.NS {
		key := fmt.Sprintf("ns[%d]", i)
		name := strings.ToLower(strings.TrimSuffix(ns.Name, "."))
		if !validHostname(name) {
			bad(key+".name", "%q is not a domain name", ns.Name)
			continue
		}
		errs = append(errs, checkAddrs("dns."+key+".addrs", ns.Addrs)...)
		inZone := false
		for z := range zones {
			inZone = inZone || name == z || strings.HasSuffix(name, "."+z)
		}
		if inZone && len(ns.Addrs) == 0 {
			bad(key+".addrs", "required: %q is inside a served zone, so the server answers its addresses", ns.Name)
		}
	}
	if d.RateLimit.ResponsesPerSecond < 0 {
		bad("rate_limit.responses_per_second", "must not be negative (0 disables)")
	}
	if d.RateLimit.Slip < 0 || d.RateLimit.Slip > 10 {
		bad("rate_limit.slip", "%d is not in 0..10", d.RateLimit.Slip)
	}
	if !finite(d.DecisionLogSample) || d.DecisionLogSample < 0 || d.DecisionLogSample > 1 {
		bad("decision_log_sample", "%v is not in 0..1", d.DecisionLogSample)
	}
	return errs
}

// validateHTTPSteering checks the http_steering section.
func (c Config) validateHTTPSteering() []error {
	h := c.HTTPSteering
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("http_steering.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	checkTTL := func(key string, v Duration) {
		if v.D() < time.Second || v.D() > time.Hour || v.D()%time.Second != 0 {
			bad(key, "%s is not whole seconds in 1s..1h", v)
		}
	}
	checkTTL("ttl", h.TTL)
	checkTTL("incident_ttl", h.IncidentTTL)
	checkTTL("max_ttl", h.MaxTTL)
	if h.IncidentTTL > h.TTL {
		bad("incident_ttl", "%s is longer than http_steering.ttl (%s)", h.IncidentTTL, h.TTL)
	}
	if h.MaxTTL < h.TTL {
		bad("max_ttl", "%s is shorter than http_steering.ttl (%s)", h.MaxTTL, h.TTL)
	}
	if !finite(h.TTLJitter) || h.TTLJitter < 0 || h.TTLJitter > 0.5 {
		bad("ttl_jitter", "%v is not in 0..0.5", h.TTLJitter)
	}
	if !finite(h.ShedAboveRPS) || h.ShedAboveRPS < 0 {
		bad("shed_above_rps", "%v is not a number ≥ 0 (0: never shed)", h.ShedAboveRPS)
	}
	if !finite(h.DemoteFactor) || h.DemoteFactor < 0 || h.DemoteFactor > 10 {
		bad("demote_factor", "%v is not in 0..10 (0: never demote)", h.DemoteFactor)
	}
	if h.DemoteFor.D() < time.Second || h.DemoteFor.D() > time.Hour {
		bad("demote_for", "%s is not in 1s..1h", h.DemoteFor)
	}
	if !cookieNameRE.MatchString(h.ViewCookie) {
		bad("view_cookie", "%q is not a cookie name (letters, digits, - and _, at most 64)", h.ViewCookie)
	}
	if !finite(h.DecisionLogSample) || h.DecisionLogSample < 0 || h.DecisionLogSample > 1 {
		bad("decision_log_sample", "%v is not in 0..1", h.DecisionLogSample)
	}
	return errs
}

// validateAdmin checks the admin section.
func (c Config) validateAdmin() []error {
	a := c.Admin
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("admin.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	names := map[string]bool{}
	for i, t := range a.Tokens {
		key := fmt.Sprintf("tokens[%d]", i)
		switch {
		case !tokenNameRE.MatchString(t.Name):
			bad(key+".name", "%q is not a name (letters, digits, . _ @ -, at most 64)", t.Name)
		case names[t.Name]:
			bad(key+".name", "%q is used twice", t.Name)
		}
		names[t.Name] = true
		if !sha256HexRE.MatchString(t.SHA256) {
			bad(key+".sha256", "is not 64 lowercase hex digits (the SHA-256 of the token, never the token itself)")
		}
		if !slices.Contains(AdminRoles, t.Role) {
			bad(key+".role", "%q is not one of viewer, operator, admin", t.Role)
		}
		for j, s := range t.Services {
			if !slices.ContainsFunc(c.Services, func(x Service) bool { return x.Name == s }) {
				bad(fmt.Sprintf("%s.services[%d]", key, j), "%q is not a configured service", s)
			}
		}
	}
	if a.Token != "" && len(a.Token) < 16 {
		errs = append(errs, fmt.Errorf("CDNPILOT_ADMIN_TOKEN: %d characters; use at least 16", len(a.Token)))
	}
	if o := a.OIDC; o.Issuer != "" {
		if u, err := url.Parse(o.Issuer); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
			bad("oidc.issuer", "%q is not an http(s) URL", o.Issuer)
		}
		if o.Audience == "" {
			bad("oidc.audience", "required with an issuer: a token for another service must not pass")
		}
		if !slices.Contains(jwtAlgorithms, o.Algorithm) {
			bad("oidc.algorithm", "%q is not one of %s", o.Algorithm, strings.Join(jwtAlgorithms, ", "))
		}
		if o.JWKSURL != "" {
			if u, err := url.Parse(o.JWKSURL); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
				bad("oidc.jwks_url", "%q is not an http(s) URL", o.JWKSURL)
			}
		}
		if o.RoleClaim == "" {
			bad("oidc.role_claim", "required with an issuer")
		}
	}
	if a.MaxOverrideTTL.D() < time.Minute || a.MaxOverrideTTL.D() > 90*24*time.Hour {
		bad("max_override_ttl", "%s is not in 1m..2160h", a.MaxOverrideTTL)
	}
	r := a.RateLimit
	if !finite(r.PerTokenRPS) || r.PerTokenRPS < 0 {
		bad("rate_limit.per_token_rps", "%v is not a number ≥ 0 (0: off)", r.PerTokenRPS)
	}
	if !finite(r.PerClientRPS) || r.PerClientRPS < 0 {
		bad("rate_limit.per_client_rps", "%v is not a number ≥ 0 (0: off)", r.PerClientRPS)
	}
	if (r.PerTokenRPS > 0 || r.PerClientRPS > 0) && r.Burst < 1 {
		bad("rate_limit.burst", "must be at least 1 when a rate is set")
	}
	for i, o := range a.CORSOrigins {
		u, err := url.Parse(o)
		if o == "*" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			bad(fmt.Sprintf("cors_origins[%d]", i), "%q is not an exact http(s) origin (scheme://host[:port], never *)", o)
		}
	}
	if _, err := prefixes("admin.trusted_proxies", a.TrustedProxies); err != nil {
		errs = append(errs, err)
	}
	return errs
}

var (
	tokenNameRE   = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)
	sha256HexRE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	jwtAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

var cookieNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validate checks a CDN's signing section; key is its config path.
func (s Signing) validate(key string) []error {
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", key, k, fmt.Sprintf(format, args...)))
	}
	switch s.Scheme {
	case "":
		if s.KeyEnv != "" || s.Param != "" || s.Expiry != 0 || s.ACL != "" {
			bad("scheme", "required when any other signing key is set (akamai2)")
		}
		return errs
	case "akamai2":
	default:
		bad("scheme", "%q is not akamai2 (or empty for no signing)", s.Scheme)
		return errs
	}
	switch {
	case !envNameRE.MatchString(s.KeyEnv):
		bad("key_env", "%q is not an environment variable name (A-Z, 0-9 and _)", s.KeyEnv)
	case s.Key == "":
		bad("key_env", "the environment variable %s is not set: it holds the signing key", s.KeyEnv)
	default:
		if b, err := hex.DecodeString(s.Key); err != nil || len(b) < 16 || len(b) > 64 {
			bad("key_env", "the key in %s is not 16 to 64 bytes of hex", s.KeyEnv)
		}
	}
	if s.Param != "" && !cookieNameRE.MatchString(s.Param) {
		bad("param", "%q is not a query parameter name (letters, digits, - and _)", s.Param)
	}
	if s.Expiry != 0 && (s.Expiry.D() < time.Second || s.Expiry.D() > 7*24*time.Hour) {
		bad("expiry", "%s is not in 1s..168h", s.Expiry)
	}
	if s.ACL != "" && s.ACL != "dir" && !strings.HasPrefix(s.ACL, "/") {
		bad("acl", "%q is neither dir nor a path pattern starting with /", s.ACL)
	}
	return errs
}

var envNameRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,127}$`)

// checkBaseURL wants an absolute http(s) URL with a host and no query or
// fragment: the redirector appends the request's path and query to it.
func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("%q has a query, fragment or user info: only scheme, host and path prefix are allowed", s)
	}
	if err := checkHost(u.Host); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// nameRE is the rule for CDN and service names: they appear in DNS
// labels, metric labels, URLs and content steering pathway ids.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// checkHost accepts a hostname or IP address, optionally with a port: the
// place a steered client is sent.
func checkHost(h string) error {
	if h == "" {
		return errors.New("required")
	}
	host := h
	if strings.Contains(h, ":") {
		hp, port, err := net.SplitHostPort(h)
		if err != nil {
			return fmt.Errorf("%q is not a hostname or host:port", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not in 1..65535", h, port)
		}
		host = hp
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%q is not a hostname or host:port", h)
	}
	return nil
}

// validHostname: dot-separated labels of letters, digits and hyphens, no
// label longer than 63 or starting or ending with a hyphen, at most 253.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// checkHealthURL wants what an HTTP probe can fetch: an absolute http(s)
// URL with a host.
func checkHealthURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if _, err := netip.ParseAddr(u.Hostname()); err != nil && !validHostname(u.Hostname()) {
		return fmt.Errorf("%q has no valid host", s)
	}
	return nil
}

// identRE is the identifier rule of the analytics schema, which splices
// the database name into SQL text.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// TrustedPrefixes parses ingest.trusted_proxies (plain addresses allowed).
func (i Ingest) TrustedPrefixes() ([]netip.Prefix, error) {
	return prefixes("ingest.trusted_proxies", i.TrustedProxies)
}

// TrustedPrefixes parses admin.trusted_proxies.
func (a Admin) TrustedPrefixes() ([]netip.Prefix, error) {
	return prefixes("admin.trusted_proxies", a.TrustedProxies)
}

// prefixes parses CIDRs or bare addresses; key names the list in errors.
func prefixes(key string, ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for n, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%s[%d]: %q is not a CIDR or address", key, n, s)
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

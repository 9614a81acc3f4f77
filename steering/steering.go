// Package steering is cdnpilot's domain: CDNs and services, QoE windows and
// scores, health, operator overrides, and the engine that turns them into
// immutable ranking snapshots which the DNS server, the HTTP redirector and
// the content steering server ask for decisions. It does no I/O: time,
// beacons, probe results and overrides are handed in.
package steering

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// CDN is one delivery network a service can be steered to.
type CDN struct {
	Name string // the pathway / service-location id players report as `cdn`
	// Host is where a steered client is sent by DNS (the CNAME target).
	Host string
	// BaseURL is where the HTTP redirector and content steering send a
	// player: scheme, host and path prefix (https://<Host> by default).
	BaseURL string
	// PricePerGB and CommitGBPerMonth tilt the choice between CDNs whose QoE
	// is within Policy.Cost.Margin: traffic under its commit is already paid.
	PricePerGB       float64
	CommitGBPerMonth float64
	// MaxShare caps the share of any scope this CDN is given (0: no cap),
	// for a CDN whose contracted capacity is known to be small.
	MaxShare float64
	// Addrs, when set, are what the DNS server answers A/AAAA queries
	// with instead of a CNAME to Host (a CDN reached by anycast addresses).
	Addrs []netip.Addr
}

// Service is one steered stream family (`vod`, `live`).
type Service struct {
	Name string
	// CDNs in static fallback order: the order used when there is no data,
	// when inputs are stale, and when every CDN is down (fail-open).
	CDNs []string
	// Clones are the service's CDNs that its manifests do not name as
	// content steering pathways, each with the pathway it is cloned from:
	// the steering manifest hands them to players as PATHWAY-CLONES (the
	// base pathway's URIs with the clone's host), so a CDN can be added
	// without repackaging a manifest. A clone's base URL differs from its
	// base's only in the host name (see CloneHost).
	Clones map[string]string
}

// Catalog is the static part of the world: which services exist and which
// CDNs each may use.
type Catalog struct {
	CDNs     []CDN
	Services []Service
}

// Validate names the first inconsistency.
func (c Catalog) Validate() error {
	if len(c.Services) == 0 {
		return fmt.Errorf("no services")
	}
	cdns := map[string]bool{}
	for i, d := range c.CDNs {
		switch {
		case d.Name == "":
			return fmt.Errorf("cdns[%d]: name is empty", i)
		case cdns[d.Name]:
			return fmt.Errorf("cdns[%d]: name %q is repeated", i, d.Name)
		case d.PricePerGB < 0 || math.IsNaN(d.PricePerGB) || math.IsInf(d.PricePerGB, 0):
			return fmt.Errorf("cdn %q: price_per_gb %v is not a finite, non-negative number", d.Name, d.PricePerGB)
		case d.CommitGBPerMonth < 0 || math.IsNaN(d.CommitGBPerMonth) || math.IsInf(d.CommitGBPerMonth, 0):
			return fmt.Errorf("cdn %q: commit_gb_per_month %v is not a finite, non-negative number", d.Name, d.CommitGBPerMonth)
		case !(d.MaxShare >= 0 && d.MaxShare <= 1):
			return fmt.Errorf("cdn %q: max_share %v is outside 0..1", d.Name, d.MaxShare)
		}
		for j, a := range d.Addrs {
			if !a.IsValid() || a.Zone() != "" {
				return fmt.Errorf("cdn %q: addrs[%d] %q is not an IP address without a zone", d.Name, j, a)
			}
		}
		cdns[d.Name] = true
	}
	svcs := map[string]bool{}
	for i, s := range c.Services {
		switch {
		case s.Name == "":
			return fmt.Errorf("services[%d]: name is empty", i)
		case svcs[s.Name]:
			return fmt.Errorf("services[%d]: name %q is repeated", i, s.Name)
		case len(s.CDNs) == 0:
			return fmt.Errorf("service %q: no cdns", s.Name)
		case len(s.CDNs) > MaxCDNs:
			return fmt.Errorf("service %q: %d cdns, at most %d", s.Name, len(s.CDNs), MaxCDNs)
		}
		svcs[s.Name] = true
		seen := map[string]bool{}
		for _, n := range s.CDNs {
			if !cdns[n] {
				return fmt.Errorf("service %q: cdn %q is not in cdns", s.Name, n)
			}
			if seen[n] {
				return fmt.Errorf("service %q: cdn %q is listed twice", s.Name, n)
			}
			seen[n] = true
		}
		for _, clone := range slices.Sorted(maps.Keys(s.Clones)) {
			base := s.Clones[clone]
			switch {
			case !seen[clone]:
				return fmt.Errorf("service %q: clone %q is not one of its cdns", s.Name, clone)
			case !seen[base]:
				return fmt.Errorf("service %q: clone %q: base pathway %q is not one of its cdns", s.Name, clone, base)
			case s.Clones[base] != "":
				return fmt.Errorf("service %q: clone %q: base pathway %q is a clone itself; clone a pathway of the manifests", s.Name, clone, base)
			}
			if _, err := CloneHost(c.cdn(base).BaseURLOrDefault(), c.cdn(clone).BaseURLOrDefault()); err != nil {
				return fmt.Errorf("service %q: clone %q of %q: %w", s.Name, clone, base, err)
			}
		}
	}
	return nil
}

// BaseURLOrDefault is BaseURL, or https://<Host> when it is empty.
func (d CDN) BaseURLOrDefault() string {
	if d.BaseURL != "" {
		return d.BaseURL
	}
	return "https://" + d.Host
}

// CloneHost is where a content steering pathway clone moves the base
// pathway's URIs, under base URL base, for a CDN whose base URL is clone:
// the clone's host, with its port when the URL has one (the steering
// server writes HOST from it in the form each player reads).
//
// The two players replace the host differently: hls.js sets the URL's
// host name and keeps the base URI's port and path; dash.js builds
// scheme://HOST plus the base URL's path. Both land on the clone's base
// URL only if it has the base's scheme, port and path, so anything else
// is an error rather than a pathway that one player would get wrong.
func CloneHost(base, clone string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("base url %q: %w", base, err)
	}
	c, err := url.Parse(clone)
	if err != nil {
		return "", fmt.Errorf("clone url %q: %w", clone, err)
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if u.Scheme == "http" {
			return "80"
		}
		return "443"
	}
	path := func(u *url.URL) string { return strings.TrimSuffix(u.EscapedPath(), "/") }
	switch {
	case c.Hostname() == "":
		return "", fmt.Errorf("clone url %q has no host", clone)
	case b.Scheme != c.Scheme:
		return "", fmt.Errorf("clone url %q has scheme %q, its base %q has %q: a clone changes only the host", clone, c.Scheme, base, b.Scheme)
	case port(b) != port(c):
		return "", fmt.Errorf("clone url %q has port %s, its base %q has %s: a clone changes only the host", clone, port(c), base, port(b))
	case path(b) != path(c):
		return "", fmt.Errorf("clone url %q has path %q, its base %q has %q: a clone changes only the host", clone, c.EscapedPath(), base, b.EscapedPath())
	case c.RawQuery != "" || b.RawQuery != "":
		return "", fmt.Errorf("clone url %q or its base %q has a query: a clone changes only the host", clone, base)
	}
	return c.Host, nil
}

// MaxCDNs bounds the CDNs of one service so a decision fits fixed arrays.
const MaxCDNs = 32

// Level is how specific a scope is. Scores fall back from a level to its
// parent when a window has too few samples: ASN -> region -> global, or
// country -> global for a client whose location has no region.
type Level uint8

const (
	LevelGlobal Level = iota
	LevelCountry
	LevelRegion
	LevelASN
)

var levelNames = [...]string{"global", "country", "region", "asn"}

func (l Level) String() string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// MarshalText makes levels read as words in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (l *Level) UnmarshalText(b []byte) error {
	for i, n := range levelNames {
		if n == string(b) {
			*l = Level(i)
			return nil
		}
	}
	return fmt.Errorf("unknown scope level %q", b)
}

// Location is where a client is, from its address (or EDNS Client Subnet).
type Location struct {
	Region  string `json:"region,omitempty"`
	Country string `json:"country,omitempty"`
	ASN     uint32 `json:"asn,omitempty"`
}

// Scope names a set of clients of one service.
type Scope struct {
	Service string `json:"service"`
	Level   Level  `json:"level"`
	Region  string `json:"region,omitempty"`  // LevelRegion, LevelASN
	Country string `json:"country,omitempty"` // LevelCountry
	ASN     uint32 `json:"asn,omitempty"`     // LevelASN
}

func (s Scope) String() string {
	switch s.Level {
	case LevelASN:
		return s.Service + "/" + s.Region + "/AS" + strconv.FormatUint(uint64(s.ASN), 10)
	case LevelRegion:
		return s.Service + "/" + s.Region
	case LevelCountry:
		return s.Service + "/" + s.Country
	}
	return s.Service
}

// parent is the next less specific scope a location falls back to; ok is
// false at the global level. A steering region may span countries (the
// demo's eu-west holds GB, IE and FR), so a region falls back to global,
// not to whichever country its first client came from; the country level
// serves clients whose lookup gives no region (a MaxMind country without a
// region mapping).
func (s Scope) parent(Location) (Scope, bool) {
	switch s.Level {
	case LevelASN:
		return Scope{Service: s.Service, Level: LevelRegion, Region: s.Region}, true
	case LevelRegion, LevelCountry:
		return Scope{Service: s.Service}, true
	}
	return Scope{}, false
}

// mostSpecific is the most specific scope a location belongs to.
func mostSpecific(service string, loc Location) Scope {
	switch {
	case loc.Region != "" && loc.ASN != 0:
		return Scope{Service: service, Level: LevelASN, Region: loc.Region, ASN: loc.ASN}
	case loc.Region != "":
		return Scope{Service: service, Level: LevelRegion, Region: loc.Region}
	case loc.Country != "":
		return Scope{Service: service, Level: LevelCountry, Country: loc.Country}
	}
	return Scope{Service: service}
}

// Query asks for a CDN for one view.
type Query struct {
	Service  string
	Location Location
	// ViewID (or session id) makes the pick deterministic: the same view
	// gets the same CDN while the weights allow it. Empty: the first CDN
	// of the ranking.
	ViewID string
}

// Package redirect is the HTTP side of steering: a 302 redirector
// (GET /r/{service}/{path...}) and an HLS/DASH Content Steering server
// (GET /steer/{service}). Both are plain net/http handlers that ask the
// same decision interface as the DNS server, keep no per-view state on
// the server (the view's state rides in the steering manifest's
// RELOAD-URI), and never answer a player with 410 or 429.
package redirect

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/internal/clientip"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Decider picks a CDN for a view; *steering.Table is the one in use.
type Decider interface {
	Decide(q steering.Query) (steering.Decision, error)
}

var _ Decider = (*steering.Table)(nil)

// Locator places a client address.
type Locator interface {
	Lookup(addr netip.Addr) (geo.Location, bool)
}

// DecisionLogger keeps sampled decisions; it must not block
// (*analytics.DecisionLog drops when its buffer is full).
type DecisionLogger interface {
	LogDecision(steering.DecisionRecord)
}

// Options configure New. Zero durations and factors take the defaults of
// the http_steering config section.
type Options struct {
	Catalog steering.Catalog
	Decider Decider
	Geo     Locator
	// Signers sign the redirector's Location for the CDNs that need a
	// token, by CDN name.
	Signers map[string]Signer

	TTL, IncidentTTL, MaxTTL time.Duration
	TTLJitter                float64
	// ShedAboveRPS: above this many steering requests per second on this
	// node, TTLs grow in proportion up to MaxTTL. 0 never sheds.
	ShedAboveRPS float64
	// DemoteFactor: a pathway reported below this times the ladder's
	// lowest bitrate is demoted for the view for DemoteFor. 0 never.
	DemoteFactor float64
	DemoteFor    time.Duration

	ViewCookie     string         // sticky view cookie of the redirector
	TrustedProxies []netip.Prefix // whose X-Forwarded-For is believed

	DecisionLog DecisionLogger
	LogSample   float64 // share of answers logged, 0..1

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Server answers both endpoints.
type Server struct {
	o        Options
	log      *slog.Logger
	m        *metrics
	services map[string]*service
	bases    map[string]string // CDN name -> base URL without a trailing slash
	signers  map[string]Signer
	shed     shedMeter
	now      func() time.Time
	newView  func() string // a fresh view id; tests make it predictable
}

// service is one steered service as the handlers need it.
type service struct {
	name     string
	pathways map[string]bool // its CDNs: the pathway ids of its manifests, and its clones
	static   []string        // CDNs in static order
	// hlsClones and dashClones: `,"PATHWAY-CLONES":[...]` of every
	// steering manifest (see cloneLists); empty without clones.
	hlsClones, dashClones []byte
}

// New checks the options and builds the server.
func New(o Options) (*Server, error) {
	if err := o.Catalog.Validate(); err != nil {
		return nil, fmt.Errorf("http steering: catalog: %w", err)
	}
	if o.Decider == nil || o.Geo == nil {
		return nil, errors.New("http steering: a decider and a geo lookup are required")
	}
	if o.TTL == 0 {
		o.TTL = 20 * time.Second
	}
	if o.IncidentTTL == 0 {
		o.IncidentTTL = min(10*time.Second, o.TTL)
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = max(300*time.Second, o.TTL)
	}
	if o.DemoteFor == 0 {
		o.DemoteFor = 2 * time.Minute
	}
	if o.ViewCookie == "" {
		o.ViewCookie = "cdnpilot_view"
	}
	switch {
	case o.TTL < time.Second || o.IncidentTTL < time.Second || o.IncidentTTL > o.TTL || o.MaxTTL < o.TTL:
		return nil, fmt.Errorf("http steering: TTLs %s, incident %s, max %s: want 1s <= incident <= ttl <= max", o.TTL, o.IncidentTTL, o.MaxTTL)
	case o.TTLJitter < 0 || o.TTLJitter > 0.5:
		return nil, fmt.Errorf("http steering: ttl jitter %v is not in 0..0.5", o.TTLJitter)
	case o.ShedAboveRPS < 0, o.DemoteFactor < 0, o.LogSample < 0 || o.LogSample > 1:
		return nil, errors.New("http steering: shed rate, demote factor and log sample must not be negative (sample at most 1)")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		o: o, log: o.Logger.With("component", "http-steering"), m: m, now: o.Now,
		services: map[string]*service{}, bases: map[string]string{}, signers: o.Signers,
		newView: newViewID,
	}
	for _, c := range o.Catalog.CDNs {
		base := c.BaseURLOrDefault()
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return nil, fmt.Errorf("http steering: cdn %q: base URL %q is not an absolute http(s) URL without a query", c.Name, base)
		}
		s.bases[c.Name] = strings.TrimSuffix(base, "/")
	}
	for name := range o.Signers {
		if _, ok := s.bases[name]; !ok {
			return nil, fmt.Errorf("http steering: signer for %q, which is not in the catalog", name)
		}
	}
	for _, sv := range o.Catalog.Services {
		p := map[string]bool{}
		for _, c := range sv.CDNs {
			p[c] = true
		}
		svc := &service{name: sv.Name, pathways: p, static: sv.CDNs}
		if svc.hlsClones, svc.dashClones, err = s.cloneLists(sv); err != nil {
			return nil, err
		}
		s.services[sv.Name] = svc
	}
	return s, nil
}

// cloneLists are the PATHWAY-CLONES member of a service's steering
// manifests for HLS and for DASH players, written once: every clone,
// whether or not the view's ranking puts it first, because a player that
// meets a pathway id in PATHWAY-PRIORITY before its clone was defined
// ignores it. hls.js skips a clone whose id its manifest already has;
// dash.js does not look, and would add a second location of that name.
//
// The two differ only when the base URLs carry a port. HOST is a host
// name to hls.js, which sets the URL's hostname to it (a value with a
// port is refused, and the URI is left on the base pathway) and keeps
// the base URI's port; dash.js builds scheme://HOST plus the base path,
// so without the port it would drop it. A poll without _HLS_ parameters
// gets the dash.js form: hls.js always sends them, while dash.js's first
// poll (queryBeforeStart) comes before it has fetched anything, so
// before it can report locations. An HLS client that sent none and met a
// port would stay on the base pathway, not go to a wrong host.
func (s *Server) cloneLists(sv steering.Service) (hls, dash []byte, err error) {
	if len(sv.Clones) == 0 {
		return nil, nil, nil
	}
	var hc, dc []Clone
	for _, id := range slices.Sorted(maps.Keys(sv.Clones)) {
		base := sv.Clones[id]
		host, err := steering.CloneHost(s.bases[base], s.bases[id])
		if err != nil {
			return nil, nil, fmt.Errorf("http steering: service %q: clone %q of %q: %w", sv.Name, id, base, err)
		}
		name := host
		if h, _, err := net.SplitHostPort(host); err == nil {
			name = h
			if strings.Contains(h, ":") {
				name = "[" + h + "]" // an IPv6 literal, as a URL's hostname has it
			}
		}
		hc = append(hc, Clone{BaseID: base, ID: id, URIReplacement: URIReplacement{Host: name}})
		dc = append(dc, Clone{BaseID: base, ID: id, URIReplacement: URIReplacement{Host: host}})
	}
	if hls, err = json.Marshal(hc); err == nil {
		dash, err = json.Marshal(dc)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("http steering: service %q: clones: %w", sv.Name, err)
	}
	member := []byte(`,"PATHWAY-CLONES":`)
	return append(slices.Clip(member), hls...), append(slices.Clip(member), dash...), nil
}

// Register mounts the endpoints on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /r/{service}/{path...}", s.serveRedirect)
	mux.HandleFunc("OPTIONS /r/{service}/{path...}", preflight)
	mux.HandleFunc("GET /steer/{service}", s.serveSteering)
	mux.HandleFunc("OPTIONS /steer/{service}", preflight)
}

// corsHeaders let players on any origin read the answers (a browser
// follows a cross-origin 302 only with it too). No credentials are
// involved, so "*" is allowed and honest. CMCD in header mode sends four
// custom headers, which need a preflight's blessing.
func corsHeaders(h http.Header) {
	h["Access-Control-Allow-Origin"] = star
}

var (
	star         = []string{"*"}
	allowHeaders = []string{"CMCD-Request, CMCD-Object, CMCD-Session, CMCD-Status, Content-Type"}
	allowMethods = []string{"GET, HEAD, OPTIONS"}
	noStore      = []string{"no-store"}
	maxAge       = []string{"86400"}
)

func preflight(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	corsHeaders(h)
	h["Access-Control-Allow-Methods"] = allowMethods
	h["Access-Control-Allow-Headers"] = allowHeaders
	h["Access-Control-Max-Age"] = maxAge
	w.WriteHeader(http.StatusNoContent)
}

// service sets the headers every answer carries (CORS, no-store: each
// answer is per view) and returns the request's service, or nil after a
// 404 naming it: a path error, not a query value, so not one players must
// be spared.
func (s *Server) service(w http.ResponseWriter, r *http.Request, protocol string) *service {
	h := w.Header()
	corsHeaders(h)
	h["Cache-Control"] = noStore
	if svc := s.services[r.PathValue("service")]; svc != nil {
		return svc
	}
	s.m.response(protocol, "", "", http.StatusNotFound).Inc()
	http.Error(w, "unknown service "+strconv.Quote(r.PathValue("service")), http.StatusNotFound)
	return nil
}

// place is the client's address and steering location.
func (s *Server) place(r *http.Request) (netip.Addr, geo.Location) {
	addr := clientip.From(r, s.o.TrustedProxies)
	loc, _ := s.o.Geo.Lookup(addr)
	return addr, loc
}

// logDecision samples one answer into the decision log.
func (s *Server) logDecision(protocol, svc string, client netip.Addr, loc geo.Location, d *steering.Decision, cdn string, result string, start time.Time) {
	if s.o.DecisionLog == nil || s.o.LogSample == 0 || (s.o.LogSample < 1 && rand.Float64() >= s.o.LogSample) {
		return
	}
	rec := steering.DecisionRecord{
		At: start, Protocol: protocol, Service: svc, Client: client,
		Location: steering.Location{Region: loc.Region, Country: loc.Country, ASN: loc.ASN},
		CDN:      cdn, Rule: d.Rule, Stale: d.Stale, Version: d.Version, Result: result,
		Latency: s.now().Sub(start),
	}
	if d.Ranking != nil {
		rec.Scope = d.Ranking.Scope
	}
	s.o.DecisionLog.LogDecision(rec)
}

// shedMeter counts steering requests per second, so a node under more
// load than it is sized for can stretch TTLs (the only load shedding
// players accept: hls.js stops steering for the view after one 429).
type shedMeter struct {
	sec  atomic.Int64 // unix second being counted
	cur  atomic.Int64 // requests in it
	last atomic.Int64 // requests in the second before
}

// rate counts one request and returns the last whole second's rate.
func (m *shedMeter) rate(now time.Time) float64 {
	sec := now.Unix()
	if old := m.sec.Load(); old != sec && m.sec.CompareAndSwap(old, sec) {
		n := m.cur.Swap(0)
		if sec-old > 1 {
			n = 0 // an idle second in between
		}
		m.last.Store(n)
	}
	m.cur.Add(1)
	return float64(m.last.Load())
}

// viewIDOK is the beacon schema's view id rule, so the id a redirect or
// steering answer hands out is one the player can report.
func viewIDOK(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:=+/", c) >= 0) {
			return false
		}
	}
	return true
}

// newViewID is 128 random bits in hex.
func newViewID() string {
	var b [32]byte
	const hexd = "0123456789abcdef"
	x, y := rand.Uint64(), rand.Uint64()
	for i := range 16 {
		b[i] = hexd[x>>(60-4*i)&0xf]
		b[16+i] = hexd[y>>(60-4*i)&0xf]
	}
	return string(b[:])
}

// cmcdSID is the CMCD session id of a request: the `sid` key of the
// CMCD-Session header or of the CMCD query argument (dict, unescaped).
// Only the quoted string form is taken; anything else is not an id we
// can trust to be one.
func cmcdSID(r *http.Request, dict string) string {
	if v := r.Header.Get("CMCD-Session"); v != "" {
		if sid := sidOf(v); sid != "" {
			return sid
		}
	}
	return sidOf(dict)
}

// queryParam is the unescaped value of key in a raw query, "" if absent
// or badly escaped.
func queryParam(raw, key string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if k, v, _ := strings.Cut(kv, "="); k == key {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return ""
			}
			return u
		}
	}
	return ""
}

func sidOf(dict string) string {
	for len(dict) > 0 {
		var item string
		item, dict, _ = strings.Cut(dict, ",")
		item = strings.TrimSpace(item)
		if v, ok := strings.CutPrefix(item, "sid="); ok && len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			if id := v[1 : len(v)-1]; viewIDOK(id) {
				return id
			}
		}
	}
	return ""
}

// poolBuf is a reusable response buffer.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

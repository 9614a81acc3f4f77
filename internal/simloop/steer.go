package simloop

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/steering"
)

// Path is how a simulated view asks for its CDN.
type Path string

// The steering paths. Every one but the engine's goes over the network
// to the actuators users run, so the loop closes through their code.
const (
	PathEngine Path = "engine" // the steering Table, in process (Table.Decide)
	PathDNS    Path = "dns"    // a query with EDNS Client Subnet to the steering DNS
	PathHTTP   Path = "http"   // GET /r/{service}/... on the redirector, the 302 not followed
	PathHLS    Path = "hls"    // GET /steer/{service} as an HLS player polls it
	PathDASH   Path = "dash"   // GET /steer/{service} as a DASH player polls it
	PathMixed  Path = "mixed"  // each view one of dns, http, hls and dash, by its view id
)

// Paths are every path, in the order they are listed to users.
var Paths = []Path{PathEngine, PathDNS, PathHTTP, PathHLS, PathDASH, PathMixed}

// actuators are the network paths: what PathMixed spreads views over.
var actuators = []Path{PathDNS, PathHTTP, PathHLS, PathDASH}

// ParsePath reads a path's name.
func ParsePath(s string) (Path, error) {
	if p := Path(s); slices.Contains(Paths, p) {
		return p, nil
	}
	names := make([]string, len(Paths))
	for i, p := range Paths {
		names[i] = string(p)
	}
	return "", fmt.Errorf("%q is not one of %s", s, strings.Join(names, ", "))
}

// PathStats count one path's steering requests, and those that failed
// (the view then took the engine's answer instead).
type PathStats struct {
	Requests, Failures int64
}

// steerOptions configure a steerer; LiveOptions and Options fill them.
type steerOptions struct {
	Path     Path
	Mix      []Path
	HTTPBase string
	DNSAddr  string
	Zone     string
	Catalog  steering.Catalog
	// Registerer takes the request and fallback counters; nil: kept but
	// not exported.
	Registerer prometheus.Registerer
}

// steerer asks a view's path for its CDN. A failed request (a dead
// server, an answer no catalog CDN matches) is counted, logged at most
// once per logEvery, and answered by the Table instead, so the fleet
// goes on as players fall back to their default.
type steerer struct {
	path  Path
	mix   []Path
	dns   *dnsAsker  // nil unless a path asks the DNS
	http  *httpAsker // nil unless a path asks over HTTP
	stats map[Path]*pathCounters

	lastLog atomic.Int64 // unix ns of the last failure logged
	quiet   atomic.Int64 // failures not logged since
}

type pathCounters struct {
	requests, failures            atomic.Int64
	requestsMetric, failureMetric prometheus.Counter
}

// logEvery spaces failure logs: a dead server fails every view.
const logEvery = 5 * time.Second

func newSteerer(o steerOptions) (*steerer, error) {
	if o.Path == "" {
		o.Path = PathEngine
	}
	if _, err := ParsePath(string(o.Path)); err != nil {
		return nil, fmt.Errorf("steering path: %w", err)
	}
	s := &steerer{path: o.Path, stats: map[Path]*pathCounters{}}
	used := []Path{o.Path}
	switch {
	case o.Path == PathMixed:
		s.mix = actuators
		if o.Mix != nil {
			s.mix = o.Mix
		}
		if len(s.mix) == 0 {
			return nil, errors.New("steering path mixed: no paths to mix")
		}
		for _, p := range s.mix {
			if !slices.Contains(actuators, p) {
				return nil, fmt.Errorf("steering path mixed: %q is not one of dns, http, hls, dash", p)
			}
		}
		used = s.mix
	case o.Mix != nil:
		return nil, fmt.Errorf("steering path %s: a mix is only for the mixed path", o.Path)
	}
	var err error
	if slices.Contains(used, PathDNS) {
		if s.dns, err = newDNSAsker(o.DNSAddr, o.Zone, o.Catalog); err != nil {
			return nil, fmt.Errorf("steering path dns: %w", err)
		}
	}
	if slices.Contains(used, PathHTTP) || slices.Contains(used, PathHLS) || slices.Contains(used, PathDASH) {
		if s.http, err = newHTTPAsker(o.HTTPBase, o.Catalog); err != nil {
			return nil, fmt.Errorf("steering path http: %w", err)
		}
	}

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdnpilot_sim_steer_requests_total",
		Help: "Steering requests of the simulated players, by path (engine: the table in process; dns, http, hls, dash: the actuators over the network).",
	}, []string{"path"})
	fallbacks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdnpilot_sim_steer_fallbacks_total",
		Help: "Steering requests of the simulated players that failed, by path; the view took the engine's answer instead.",
	}, []string{"path"})
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{requests, fallbacks} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("simulated players' metrics: %w", err)
			}
		}
	}
	for _, p := range Paths {
		s.stats[p] = &pathCounters{requestsMetric: requests.WithLabelValues(string(p)), failureMetric: fallbacks.WithLabelValues(string(p))}
	}
	return s, nil
}

// pick is the path of a view: for mixed, a hash of its view id, so a
// view always takes the same one and a seed the same spread.
func (s *steerer) pick(viewID string) Path {
	if s.path != PathMixed {
		return s.path
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(viewID))
	return s.mix[h.Sum32()%uint32(len(s.mix))]
}

// steer answers one view through its path, falling back to the table.
func (s *steerer) steer(ctx context.Context, table *steering.Table, log *slog.Logger, q steering.Query, client netip.Addr) (string, error) {
	p := s.pick(q.ViewID)
	c := s.stats[p]
	c.requests.Add(1)
	c.requestsMetric.Inc()
	var (
		cdn string
		err error
	)
	switch p {
	case PathDNS:
		cdn, err = s.dns.ask(ctx, q.Service, client)
	case PathHTTP:
		cdn, err = s.http.redirect(ctx, q, client)
	case PathHLS, PathDASH:
		cdn, err = s.http.steer(ctx, p, q, client)
	default:
		d, err := table.Decide(q)
		if err != nil {
			return "", err
		}
		return d.CDN, nil
	}
	if err == nil {
		return cdn, nil
	}
	if ctx.Err() != nil {
		return "", ctx.Err() // the run is over, nothing failed
	}
	c.failures.Add(1)
	c.failureMetric.Inc()
	s.logFailure(log, p, q, err)
	d, err := table.Decide(q)
	if err != nil {
		return "", err
	}
	return d.CDN, nil
}

// logFailure logs a failure unless one was logged less than logEvery
// ago; the next log line says how many were not.
func (s *steerer) logFailure(log *slog.Logger, p Path, q steering.Query, err error) {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(logEvery) || !s.lastLog.CompareAndSwap(last, now) {
		s.quiet.Add(1)
		return
	}
	log.Warn("simulated players: steering request failed; the view takes the engine's answer",
		"path", p, "service", q.Service, "view_id", q.ViewID, "err", err, "failures_not_logged", s.quiet.Swap(0))
}

// snapshot copies the counts of the paths that were asked.
func (s *steerer) snapshot() map[Path]PathStats {
	out := map[Path]PathStats{}
	for p, c := range s.stats {
		if n := c.requests.Load(); n > 0 {
			out[p] = PathStats{Requests: n, Failures: c.failures.Load()}
		}
	}
	return out
}

// close drops the idle connections.
func (s *steerer) close() {
	if s.http != nil {
		s.http.client.CloseIdleConnections()
	}
}

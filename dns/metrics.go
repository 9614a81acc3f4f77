package dns

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/steering"
)

// metrics are the server's Prometheus series. Labels are bounded by the
// catalog (cdn), the coverage and region map (region) and the rcodes the
// server sends; nothing is per client.
type metrics struct {
	responses   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	rateLimited *prometheus.CounterVec
	logDropped  prometheus.Counter
	fallbacks   prometheus.Counter
	panics      prometheus.Counter
	malformed   prometheus.Counter

	// The hot path finds its counter here rather than through
	// WithLabelValues, which hashes and validates the three labels every
	// time: a small map of regions (copied on write, so a read takes no
	// lock), then a slot by CDN and rcode.
	cdnIndex map[string]int // "" (not steered) 0, catalog CDNs 1..n; read-only
	mu       sync.Mutex
	regions  atomic.Pointer[map[string]*regionCounters]
	other    sync.Map // responseKey -> Counter: a CDN not in the catalog, an rcode past rcodeSlots
	udp, tcp prometheus.Observer
}

// regionCounters are one client region's responses counters, a slot per
// (CDN, rcode), each filled on first use.
type regionCounters struct {
	slots []atomic.Pointer[counterRef]
}

type counterRef struct{ prometheus.Counter }

// rcodeSlots covers every rcode the server sends (BADVERS is 16).
const rcodeSlots = 24

type responseKey struct {
	cdn, region string
	rcode       int
}

// response is the responses counter of one label set.
func (m *metrics) response(cdn, region string, rcode int) prometheus.Counter {
	ci, ok := m.cdnIndex[cdn]
	if !ok || rcode < 0 || rcode >= rcodeSlots {
		k := responseKey{cdn, region, rcode}
		if c, ok := m.other.Load(k); ok {
			return c.(prometheus.Counter)
		}
		c, _ := m.other.LoadOrStore(k, m.responses.WithLabelValues(cdn, region, rcodeName(rcode)))
		return c.(prometheus.Counter)
	}
	rcs := (*m.regions.Load())[region]
	if rcs == nil {
		rcs = m.region(region)
	}
	slot := &rcs.slots[ci*rcodeSlots+rcode]
	if p := slot.Load(); p != nil {
		return p.Counter
	}
	// Racing first uses store the same child: WithLabelValues returns
	// one counter per label set.
	c := m.responses.WithLabelValues(cdn, region, rcodeName(rcode))
	slot.Store(&counterRef{c})
	return c
}

// region adds a region's counters. Regions come from the coverage file
// and the mmdb region map, so there are few and the copies are rare.
func (m *metrics) region(region string) *regionCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.regions.Load()
	if rcs := old[region]; rcs != nil {
		return rcs
	}
	rcs := &regionCounters{slots: make([]atomic.Pointer[counterRef], (len(m.cdnIndex))*rcodeSlots)}
	next := make(map[string]*regionCounters, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[region] = rcs
	m.regions.Store(&next)
	return rcs
}

func newMetrics(reg prometheus.Registerer, cat steering.Catalog) (*metrics, error) {
	m := &metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdnpilot_dns_responses_total",
			Help: "DNS responses by steered CDN (empty for names that are not steered), client region and rcode.",
		}, []string{"cdn", "region", "rcode"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cdnpilot_dns_request_duration_seconds",
			Help:    "Time from a parsed query to its reply written, by transport.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025},
		}, []string{"proto"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdnpilot_dns_rate_limited_total",
			Help: "UDP queries over the per-client rate limit: dropped, or answered empty and truncated (slip).",
		}, []string{"action"}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdnpilot_dns_decision_log_dropped_total",
			Help: "Sampled decisions dropped because the decision log's buffer was full.",
		}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdnpilot_dns_static_fallback_total",
			Help: "Steered answers the static fallback gave because the steering table could not decide.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdnpilot_dns_panics_total",
			Help: "Panics recovered while answering a query.",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdnpilot_dns_malformed_total",
			Help: "Packets that did not parse as DNS messages (answered FORMERR when the header did).",
		}),
	}
	m.udp, m.tcp = m.latency.WithLabelValues("udp"), m.latency.WithLabelValues("tcp")
	m.cdnIndex = map[string]int{"": 0}
	for i, c := range cat.CDNs {
		m.cdnIndex[c.Name] = i + 1
	}
	m.regions.Store(&map[string]*regionCounters{})
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.responses, m.latency, m.rateLimited, m.logDropped, m.fallbacks, m.panics, m.malformed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register dns metrics: %w", err)
		}
	}
	return m, nil
}

// metricsStep counts every reply by CDN, region and rcode, and times it.
type metricsStep struct {
	next Handler
	m    *metrics
}

func (h *metricsStep) Name() string { return "metrics" }

func (h *metricsStep) ServeDNS(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) (int, error) {
	rc, err := h.next.ServeDNS(ctx, w, r)
	q := RequestFrom(ctx)
	h.m.response(q.Decision.CDN, q.Loc.Region, q.result(rc)).Inc()
	lat := h.m.udp
	if q.TCP {
		lat = h.m.tcp
	}
	lat.Observe(time.Since(q.Start).Seconds())
	return rc, err
}

// result is the rcode the client gets: the one written, or the error
// rcode the server is about to write.
func (q *Request) result(rc int) int {
	if q.written {
		return q.rcode
	}
	return rc
}

// recoverStep turns a panic into an answer: the static fallback's for a
// steered name (never SERVFAIL there), SERVFAIL for anything else.
type recoverStep struct {
	next     Handler
	fallback Handler
	log      *slog.Logger
	m        *metrics
}

func (h *recoverStep) Name() string { return "recover" }

func (h *recoverStep) ServeDNS(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) (rc int, err error) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		h.m.panics.Inc()
		h.log.Error("panic answering a query", "panic", p, "stack", string(debug.Stack()))
		rc, err = mdns.RcodeServerFailure, fmt.Errorf("panic: %v", p)
		q := RequestFrom(ctx)
		if q.written {
			rc, err = q.rcode, nil
			return
		}
		if q.Service != "" && h.fallback != nil {
			rc, err = h.fallbackAnswer(ctx, w, r)
		}
	}()
	return h.next.ServeDNS(ctx, w, r)
}

func (h *recoverStep) fallbackAnswer(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) (rc int, err error) {
	defer func() {
		if p := recover(); p != nil {
			rc, err = mdns.RcodeServerFailure, fmt.Errorf("panic in the static fallback: %v", p)
		}
	}()
	return h.fallback.ServeDNS(ctx, w, r)
}

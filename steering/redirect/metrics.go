package redirect

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the HTTP steering series. Labels are bounded by the
// protocols, the catalog (cdn), the coverage's regions and the few status
// codes the handlers send; nothing is per client.
type metrics struct {
	responses *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	demotions *prometheus.CounterVec
	ttl       prometheus.Histogram

	// The hot path finds its counter here rather than through
	// WithLabelValues, which hashes and validates the labels each time.
	counters  sync.Map // responseKey -> prometheus.Counter
	durations sync.Map // protocol -> prometheus.Observer
}

type responseKey struct {
	protocol, cdn, region string
	code                  int
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdnpilot_http_steering_responses_total",
			Help: "HTTP steering answers by protocol (http: the 302 redirector; hls, dash: content steering), CDN given first, client region and status code.",
		}, []string{"protocol", "cdn", "region", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cdnpilot_http_steering_request_duration_seconds",
			Help:    "Time from a request's handler start to its answer written, by protocol.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025},
		}, []string{"protocol"}),
		demotions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdnpilot_http_steering_demotions_total",
			Help: "Pathways demoted for one view by content steering, by service and reason (slow: the player's throughput under the ladder; left: the player left the pathway it was given).",
		}, []string{"service", "reason"}),
		ttl: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cdnpilot_http_steering_ttl_seconds",
			Help:    "Content steering TTLs handed out (short during incidents and demotions, long when shedding load).",
			Buckets: []float64{1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600},
		}),
	}
	for _, c := range []prometheus.Collector{m.responses, m.latency, m.demotions, m.ttl} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("http steering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) response(protocol, cdn, region string, code int) prometheus.Counter {
	k := responseKey{protocol, cdn, region, code}
	if c, ok := m.counters.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c, _ := m.counters.LoadOrStore(k, m.responses.WithLabelValues(protocol, cdn, region, strconv.Itoa(code)))
	return c.(prometheus.Counter)
}

func (m *metrics) duration(protocol string) prometheus.Observer {
	if o, ok := m.durations.Load(protocol); ok {
		return o.(prometheus.Observer)
	}
	o, _ := m.durations.LoadOrStore(protocol, m.latency.WithLabelValues(protocol))
	return o.(prometheus.Observer)
}

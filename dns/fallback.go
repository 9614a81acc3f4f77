package dns

import (
	"context"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/steering"
)

// RuleStaticFallback is the rule of an answer the DNS server's static
// fallback gave because the Decider could not (an error, a panic, a CDN
// this node cannot answer).
const RuleStaticFallback steering.Rule = "dns_static_fallback"

// staticFallback is the last step: a steered name the Decider could not
// answer gets the first CDN of the service's static order, with the
// incident TTL. The table already answers in that order when every CDN
// is down or its snapshot is stale; this covers the Decider itself
// failing, so a steered name never gets SERVFAIL.
type staticFallback struct {
	steer *steer
	order map[string][]string // service -> CDNs in static fallback order
	used  prometheus.Counter
}

func newStaticFallback(s *steer, cat steering.Catalog, used prometheus.Counter) *staticFallback {
	h := &staticFallback{steer: s, order: map[string][]string{}, used: used}
	for _, svc := range cat.Services {
		h.order[svc.Name] = svc.CDNs
	}
	return h
}

func (h *staticFallback) Name() string { return "fallback" }

func (h *staticFallback) ServeDNS(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) (int, error) {
	q := RequestFrom(ctx)
	if q.Service == "" || q.zone == nil {
		return mdns.RcodeServerFailure, nil // only steered names come here
	}
	for _, cdn := range h.order[q.Service] {
		t := h.steer.targets[cdn]
		if t == nil {
			continue
		}
		h.used.Inc()
		q.Decision = steering.Decision{CDN: cdn, Rule: RuleStaticFallback, Stale: true}
		q.Decided = true
		return h.steer.answer(q, w, r, t, h.steer.jittered(h.steer.incidentTTL))
	}
	return mdns.RcodeServerFailure, nil
}

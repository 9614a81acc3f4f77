package dns

import (
	"context"
	"math/rand/v2"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/steering"
)

// decisionBuffer is how many sampled records wait for the logger; past it
// they are dropped and counted, never waited for.
const decisionBuffer = 4096

// logStep samples steered answers into the decision log. It only queues:
// the server's Run hands the records to the DecisionLogger from a
// goroutine of its own.
type logStep struct {
	next    Handler
	sample  float64
	queue   chan steering.DecisionRecord
	dropped prometheus.Counter
	now     func() time.Time
}

func (h *logStep) Name() string { return "log" }

func (h *logStep) ServeDNS(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) (int, error) {
	rc, err := h.next.ServeDNS(ctx, w, r)
	if q := RequestFrom(ctx); q.Decided && (h.sample >= 1 || rand.Float64() < h.sample) {
		h.log(q, rc)
	}
	return rc, err
}

// log queues the record of one answer. It is a function of its own so
// the record is on the stack only after the answer, not under the whole
// chain (see Server.ServeDNS on stack growth).
//
//go:noinline
func (h *logStep) log(q *Request, rc int) {
	rec := steering.DecisionRecord{
		At: h.now(), Protocol: "dns", Service: q.Service, Client: q.Client, ECS: q.ECS,
		Location: steering.Location{Region: q.Loc.Region, Country: q.Loc.Country, ASN: q.Loc.ASN},
		Scope:    steering.Scope{Service: q.Service},
		CDN:      q.Decision.CDN, Rule: q.Decision.Rule, Stale: q.Decision.Stale, Version: q.Decision.Version,
		Result:  rcodeName(q.result(rc)),
		Latency: time.Since(q.Start),
	}
	if q.Decision.Ranking != nil {
		rec.Scope = q.Decision.Ranking.Scope
	}
	select {
	case h.queue <- rec:
	default:
		h.dropped.Inc()
	}
}

// drainEvery is how often queued records are handed to the logger. The
// drain polls rather than waiting on the queue: a goroutine woken for
// every record costs the answering side a wake-up (often a futex call)
// per query. At this period the queue holds 200,000 records a second.
const drainEvery = 20 * time.Millisecond

// drain hands queued records to the logger every drainEvery until ctx
// is done, then what is still queued, so a clean shutdown loses none.
func (h *logStep) drain(ctx context.Context, to DecisionLogger) {
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.flush(to)
			return
		case <-t.C:
			h.flush(to)
		}
	}
}

func (h *logStep) flush(to DecisionLogger) {
	for {
		select {
		case rec := <-h.queue:
			to.LogDecision(rec)
		default:
			return
		}
	}
}

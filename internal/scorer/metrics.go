package scorer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/steering"
)

// metrics are the score role's, whichever way it runs.
type metrics struct {
	obsTotal   *prometheus.CounterVec
	tickSecs   prometheus.Histogram
	pubErrors  prometheus.Counter
	snapBytes  prometheus.Gauge
	overErrors prometheus.Counter

	// A scorer group's only.
	partitions prometheus.Gauge
	leader     prometheus.Gauge
	rebuild    prometheus.Histogram
	exchange   *prometheus.CounterVec
}

// newMetrics registers the role's metrics; a scorer group's (group set)
// also the group's own, labelled with it.
func newMetrics(reg prometheus.Registerer, group string) *metrics {
	m := &metrics{
		obsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdnpilot_scorer_observations_total",
			Help: "Beacons read by the scorer, by result (ok, undecodable, unknown_service, unknown_cdn)."}, []string{"result"}),
		tickSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cdnpilot_scorer_tick_seconds",
			Help: "Time to recompute every ranking.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		pubErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdnpilot_scorer_publish_errors_total",
			Help: "Ticks whose snapshots (or a group member's delta or parts) could not be published."}),
		snapBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdnpilot_scorer_snapshot_bytes",
			Help: "Encoded size of the last tick's snapshots, all services."}),
		overErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdnpilot_scorer_override_errors_total",
			Help: "Ticks that kept the previous overrides because reading or applying them failed."}),
	}
	for _, r := range []string{"ok", "undecodable", "unknown_service", "unknown_cdn"} {
		m.obsTotal.WithLabelValues(r)
	}
	reg.MustRegister(m.obsTotal, m.tickSecs, m.pubErrors, m.snapBytes, m.overErrors)
	if group != "" {
		gl := prometheus.Labels{"group": group}
		m.partitions = prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdnpilot_scorer_partitions", ConstLabels: gl,
			Help: "Beacon partitions this member of the scorer group owns."})
		m.leader = prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdnpilot_scorer_leader", ConstLabels: gl,
			Help: "1 on the member of the scorer group that publishes the snapshots (it owns partition 0)."})
		m.rebuild = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cdnpilot_scorer_generation_start_seconds",
			Help:    "Time from a new group generation to scoring again (engine rebuilt from the deltas topic).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)})
		m.exchange = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdnpilot_scorer_exchange_total",
			Help: "Records of the scorer group's topics read, by kind (delta, part) and result (ok, invalid, duplicate, other_group)."}, []string{"kind", "result"})
		for _, k := range []string{"delta", "part"} {
			for _, r := range []string{"ok", "invalid", "duplicate", "other_group"} {
				if k == "delta" || r != "duplicate" {
					m.exchange.WithLabelValues(k, r)
				}
			}
		}
		reg.MustRegister(m.partitions, m.leader, m.rebuild, m.exchange)
	}
	return m
}

// observe counts one beacon: undecodable, or the engine's verdict.
func (m *metrics) observe(err error, undecodable bool) {
	switch {
	case undecodable:
		m.obsTotal.WithLabelValues("undecodable").Inc()
	case err == nil:
		m.obsTotal.WithLabelValues("ok").Inc()
	case errors.Is(err, steering.ErrUnknownService):
		m.obsTotal.WithLabelValues("unknown_service").Inc()
	case errors.Is(err, steering.ErrUnknownCDN):
		m.obsTotal.WithLabelValues("unknown_cdn").Inc()
	default:
		m.obsTotal.WithLabelValues("undecodable").Inc()
	}
}

// publishSnapshots writes one record per service to the rankings topic.
func publishSnapshots(ctx context.Context, timeout time.Duration, wr MessageWriter, snaps []*steering.Snapshot, m *metrics, log *slog.Logger) {
	msgs := make([]kafka.Message, 0, len(snaps))
	size := 0
	for _, snap := range snaps {
		b, err := steering.MarshalSnapshot(snap)
		if err != nil {
			log.Error("encode snapshot", "service", snap.Service, "err", err)
			continue
		}
		size += len(b)
		msgs = append(msgs, kafka.Message{Key: []byte(snap.Service), Value: b})
	}
	m.snapBytes.Set(float64(size))
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := wr.WriteMessages(pctx, msgs...); err != nil && ctx.Err() == nil {
		m.pubErrors.Inc()
		log.Warn("publish snapshots; nodes keep the last good one", "err", err)
	}
}

// rank applies the overrides active at now (keeping the previous ones if
// they cannot be read) and ticks the engine.
func rank(ctx context.Context, eng *steering.Engine, ovs steering.OverrideStore, now time.Time, m *metrics, log *slog.Logger) []*steering.Snapshot {
	if ovs != nil {
		active, err := ovs.Active(ctx, now)
		if err == nil {
			err = eng.SetOverrides(active)
		}
		if err != nil {
			m.overErrors.Inc()
			log.Warn("overrides: some not applied", "err", err)
		}
	}
	start := time.Now()
	snaps := eng.Tick(now)
	m.tickSecs.Observe(time.Since(start).Seconds())
	return snaps
}

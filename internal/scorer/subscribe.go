package scorer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/steering"
)

// Subscriber keeps a steering node's Table current from the rankings
// topic: it starts a few messages before the end (the scorer publishes
// every service each tick, so the last snapshot of each is there) and
// follows the topic. A snapshot that does not decode is counted and
// skipped; the node keeps the last good one.
type Subscriber struct {
	brokers  []string
	topic    string
	clientID string
	table    *steering.Table
	services []string
	log      *slog.Logger

	received *prometheus.CounterVec
}

// SubscriberOptions configure a Subscriber.
type SubscriberOptions struct {
	Brokers    []string
	Topic      string
	ClientID   string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// NewSubscriber feeds table from the rankings topic. It registers
// cdnpilot_snapshot_age_seconds{service} (the age of the snapshot each
// service is decided from) and cdnpilot_snapshots_received_total{result}.
func NewSubscriber(table *steering.Table, services []string, o SubscriberOptions) *Subscriber {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Subscriber{brokers: o.Brokers, topic: o.Topic, clientID: o.ClientID, table: table, services: services,
		log: o.Logger.With("component", "rankings-subscriber"),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdnpilot_snapshots_received_total",
			Help: "Ranking snapshots read from the rankings topic, by result (ok, invalid)."}, []string{"result"}),
	}
	s.received.WithLabelValues("ok")
	s.received.WithLabelValues("invalid")
	if o.Registerer != nil {
		o.Registerer.MustRegister(s.received)
		RegisterAge(o.Registerer, table, services)
	}
	return s
}

// RegisterAge exports the age of each service's snapshot in a Table; -1
// before the first.
func RegisterAge(reg prometheus.Registerer, table *steering.Table, services []string) {
	for _, svc := range services {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "cdnpilot_snapshot_age_seconds",
			Help:        "Age of the ranking snapshot this node decides from (-1: none yet). Past steering.stale.static the node answers in the static order.",
			ConstLabels: prometheus.Labels{"service": svc},
		}, func() float64 {
			age, ok := table.Age(svc)
			if !ok {
				return -1
			}
			return age.Seconds()
		}))
	}
}

// Run follows the topic until ctx is done.
func (s *Subscriber) Run(ctx context.Context) error {
	start, err := s.startOffset(ctx)
	if err != nil {
		return err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: s.brokers, Topic: s.topic, Partition: 0,
		Dialer:   &kafka.Dialer{ClientID: s.clientID, Timeout: 5 * time.Second, DualStack: true},
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 2 * time.Second,
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return fmt.Errorf("rankings: seek to %d: %w", start, err)
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("rankings: read: %w", err)
		}
		snap, err := steering.UnmarshalSnapshot(m.Value)
		if err == nil {
			err = s.table.Store(snap)
		}
		if err != nil {
			s.received.WithLabelValues("invalid").Inc()
			s.log.Warn("ranking snapshot skipped; the last good one stays", "offset", m.Offset, "err", err)
			continue
		}
		s.received.WithLabelValues("ok").Inc()
	}
}

// startOffset is a few ticks before the end of the topic: enough for the
// newest snapshot of every service, without replaying the topic's history.
func (s *Subscriber) startOffset(ctx context.Context) (int64, error) {
	if len(s.brokers) == 0 {
		return 0, fmt.Errorf("rankings: no brokers")
	}
	first, last, err := partitionOffsets(ctx, s.brokers, s.clientID, s.topic)
	if err != nil {
		return 0, fmt.Errorf("rankings: %w", err)
	}
	return max(first, last-int64(4*len(s.services))), nil
}

// leaderConn dials the leader of partition p of topic through the first
// broker that answers.
func leaderConn(ctx context.Context, brokers []string, clientID, topic string, p int) (*kafka.Conn, error) {
	lastErr := errors.New("no brokers")
	for _, b := range brokers {
		conn, err := (&kafka.Dialer{ClientID: clientID, Timeout: 5 * time.Second}).DialLeader(ctx, "tcp", b, topic, p)
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("dial leader of %s[%d]: %w", topic, p, lastErr)
}

// partitionOffsets are the first and the next offset of partition 0 of a
// one-partition topic.
func partitionOffsets(ctx context.Context, brokers []string, clientID, topic string) (first, last int64, err error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := leaderConn(dctx, brokers, clientID, topic, 0)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	if first, last, err = conn.ReadOffsets(); err != nil {
		return 0, 0, fmt.Errorf("read offsets of %s: %w", topic, err)
	}
	return first, last, nil
}

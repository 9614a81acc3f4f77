package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// GroupLag returns how many records of topic the group has not committed
// yet, summed over partitions: the end offsets minus the committed ones.
// Shutdown uses it to drain the embedded broker; tests use it to wait until
// everything produced is stored.
func GroupLag(ctx context.Context, brokers []string, group, topic string) (int64, error) {
	// A transport of its own, closed on return: the shared default one
	// would keep connections (and their goroutines) for the process life.
	transport := &kafka.Transport{DialTimeout: 3 * time.Second}
	defer transport.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second, Transport: transport}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("group lag: metadata: %w", err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, fmt.Errorf("group lag: topic %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	if len(parts) == 0 {
		return 0, fmt.Errorf("group lag: topic %s has no partitions", topic)
	}
	reqs := make([]kafka.OffsetRequest, len(parts))
	for i, p := range parts {
		reqs[i] = kafka.LastOffsetOf(p)
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("group lag: list offsets: %w", err)
	}
	end := map[int]int64{}
	for _, p := range lo.Topics[topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("group lag: partition %d: %w", p.Partition, p.Error)
		}
		end[p.Partition] = p.LastOffset
	}
	of, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("group lag: offset fetch: %w", err)
	}
	// A group that never committed is unknown to the broker: Kafka answers
	// -1 offsets, kfake (the embedded broker) GROUP_ID_NOT_FOUND. Both mean
	// nothing is committed, so the lag is everything produced.
	if of.Error != nil && !errors.Is(of.Error, kafka.GroupIdNotFound) {
		return 0, fmt.Errorf("group lag: offset fetch: %w", of.Error)
	}
	committed := map[int]int64{}
	for _, p := range of.Topics[topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("group lag: committed offset of partition %d: %w", p.Partition, p.Error)
		}
		committed[p.Partition] = p.CommittedOffset
	}
	var lag int64
	for p, e := range end {
		c := committed[p]
		if c < 0 { // nothing committed yet
			c = 0
		}
		if e > c {
			lag += e - c
		}
	}
	return lag, nil
}

// WaitDrained polls GroupLag until it is zero or ctx ends.
func WaitDrained(ctx context.Context, brokers []string, group, topic string) error {
	for {
		lag, err := GroupLag(ctx, brokers, group, topic)
		if err == nil && lag == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("wait drained: %w (last: %v)", ctx.Err(), err)
			}
			return fmt.Errorf("wait drained: %w (%d records left)", ctx.Err(), lag)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LagGauge exports a consumer group's lag on a topic, polled with
// GroupLag: the whole backlog over every partition, which a consumer's
// reader stats (the partition it read last) are not. It reads -1 until
// the first measurement and after a failed one.
type LagGauge struct {
	brokers      []string
	group, topic string
	every        time.Duration
	gauge        prometheus.Gauge
}

// NewLagGauge builds the gauge cdnpilot_consumer_group_lag{group,topic}
// and registers it on reg (when not nil); Run polls every interval.
func NewLagGauge(brokers []string, group, topic string, every time.Duration, reg prometheus.Registerer) *LagGauge {
	l := &LagGauge{brokers: brokers, group: group, topic: topic, every: every,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "cdnpilot_consumer_group_lag",
			Help:        "Records of the topic the consumer group has not committed, summed over partitions (end offsets minus committed ones), polled from the brokers; -1 when unknown.",
			ConstLabels: prometheus.Labels{"group": group, "topic": topic},
		})}
	l.gauge.Set(-1)
	if reg != nil {
		reg.MustRegister(l.gauge)
	}
	return l
}

// Update measures the lag once.
func (l *LagGauge) Update(ctx context.Context) error {
	lag, err := GroupLag(ctx, l.brokers, l.group, l.topic)
	if err != nil {
		l.gauge.Set(-1)
		return err
	}
	l.gauge.Set(float64(lag))
	return nil
}

// Run updates the gauge every interval until ctx ends. A failed
// measurement leaves -1 and is tried again next time: the brokers'
// own health has its metrics and alerts.
func (l *LagGauge) Run(ctx context.Context) error {
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		uctx, cancel := context.WithTimeout(ctx, l.every)
		_ = l.Update(uctx)
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

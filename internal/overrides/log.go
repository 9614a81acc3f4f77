package overrides

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
)

// DefaultTopic is kafka.overrides_topic's default.
const DefaultTopic = "cdnpilot.overrides.v1"

// putTimeout bounds one produce: kafka-go writers are known to hang after
// a leadership change (segmentio/kafka-go #465).
const putTimeout = 10 * time.Second

// LogOptions configure a Log.
type LogOptions struct {
	Brokers  []string
	Topic    string // DefaultTopic when empty
	ClientID string
	Logger   *slog.Logger
}

// Log writes override records to the topic.
type Log struct {
	topic string
	w     *kafkaio.Writer
}

// NewLog builds the writer: synchronous, acknowledged by every in-sync
// replica, keyed by override id (so one id stays on one partition).
func NewLog(o LogOptions) (*Log, error) {
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if len(o.Brokers) == 0 {
		return nil, errors.New("override log: no brokers")
	}
	w, err := kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: o.Brokers, Topic: o.Topic, ClientID: o.ClientID, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("override log %s: %w", o.Topic, err)
	}
	return &Log{topic: o.Topic, w: w}, nil
}

// Topic is the topic written to.
func (l *Log) Topic() string { return l.topic }

// Put writes r as its id's latest state. A nil error means the brokers
// have it. A record that would not decode is refused before it is sent.
func (l *Log) Put(ctx context.Context, r Record) error {
	if err := r.check(); err != nil {
		return fmt.Errorf("put override to %s: %w", l.topic, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("put override %s to %s: %w", r.ID, l.topic, err)
	}
	ctx, cancel := context.WithTimeout(ctx, putTimeout)
	defer cancel()
	if err := l.w.WriteMessages(ctx, kafka.Message{Key: []byte(r.ID), Value: b}); err != nil {
		return fmt.Errorf("put override %s revision %d to %s: %w", r.ID, r.Revision, l.topic, err)
	}
	return nil
}

// Close closes the writer and its connections.
func (l *Log) Close() error { return l.w.Close() }

// EnsureTopic creates the override topic, compacted, when it is missing,
// and refuses one that exists without cleanup.policy=compact: with the
// default delete policy the brokers would drop overrides after the
// retention time, and a restarted node would not know them.
func EnsureTopic(ctx context.Context, brokers []string, name string, partitions int) error {
	if partitions <= 0 {
		partitions = 1
	}
	if err := kafkaio.EnsureTopics(ctx, brokers, kafkaio.Topic{Name: name, Partitions: partitions, Compacted: true}); err != nil {
		return fmt.Errorf("override topic %s: %w", name, err)
	}
	policy, err := cleanupPolicy(ctx, brokers, name)
	if err != nil {
		return fmt.Errorf("override topic %s: %w", name, err)
	}
	if policy != "compact" {
		return fmt.Errorf("override topic %s: cleanup.policy is %q, want compact: the brokers would delete overrides after the retention time", name, policy)
	}
	return nil
}

// cleanupPolicy reads a topic's cleanup.policy.
func cleanupPolicy(ctx context.Context, brokers []string, topic string) (string, error) {
	transport := &kafka.Transport{DialTimeout: 5 * time.Second}
	defer transport.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: transport}
	res, err := c.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{
		Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"},
		}},
	})
	if err != nil {
		return "", fmt.Errorf("describe configs: %w", err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			return "", fmt.Errorf("describe configs: %w", r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" {
				return e.ConfigValue, nil
			}
		}
	}
	return "", errors.New("describe configs: no cleanup.policy in the answer")
}

// Package kafkaio holds the Kafka plumbing every role shares: the embedded
// in-process broker, topic creation, and kafka-go writers and readers set up
// the one safe way (acks from all replicas, synchronous commits, short waits).
package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Topic is a topic cdnpilot creates when it is missing.
type Topic struct {
	Name       string
	Partitions int
	// Compacted topics keep the last record per key (rankings, overrides).
	Compacted bool
	// Retention, when set, is the topic's retention.ms: records older
	// than it are deleted (the scorer group's exchange topics).
	Retention time.Duration
}

// configs are the topic's settings for the broker.
func (t Topic) configs() map[string]string {
	cfg := map[string]string{}
	if t.Compacted {
		cfg["cleanup.policy"] = "compact"
	}
	if t.Retention > 0 {
		cfg["retention.ms"] = strconv.FormatInt(t.Retention.Milliseconds(), 10)
	}
	return cfg
}

// Embedded is an in-process Kafka-protocol broker (kfake) on loopback. It is
// the default when no brokers are configured: the roles talk to it over real
// TCP with the same kafka-go code they use against a real cluster.
type Embedded struct {
	cluster *kfake.Cluster
}

// StartEmbedded starts the broker on a loopback port (0 picks a free one)
// with the topics created. dataDir, when set, persists the log across
// restarts.
func StartEmbedded(port int, dataDir string, topics ...Topic) (*Embedded, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port)}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka: %w", err)
	}
	for _, t := range topics {
		if c.TopicInfo(t.Name) != nil {
			continue
		}
		if err := c.CreateTopic(t.Name, int32(t.Partitions), t.configs()); err != nil {
			c.Close()
			return nil, fmt.Errorf("create topic %s: %w", t.Name, err)
		}
	}
	return &Embedded{cluster: c}, nil
}

// Addrs are the broker addresses to give kafka-go.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Cluster exposes the fake cluster to tests that inject faults.
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the broker.
func (e *Embedded) Close() { e.cluster.Close() }

// EnsureTopics creates the topics missing on a real cluster. Existing topics
// are left as they are: partition counts are an operator decision.
func EnsureTopics(ctx context.Context, brokers []string, topics ...Topic) error {
	if len(brokers) == 0 {
		return errors.New("ensure topics: no brokers")
	}
	d := &kafka.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return fmt.Errorf("ensure topics: dial %s: %w", brokers[0], err)
	}
	defer conn.Close()
	defer closeOnDone(ctx, conn)()
	ctl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("ensure topics: find controller: %w", ctxErrOr(ctx, err))
	}
	cc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ctl.Host, strconv.Itoa(ctl.Port)))
	if err != nil {
		return fmt.Errorf("ensure topics: dial controller: %w", err)
	}
	defer cc.Close()
	defer closeOnDone(ctx, cc)()
	cfgs := make([]kafka.TopicConfig, 0, len(topics))
	for _, t := range topics {
		tc := kafka.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: -1}
		for k, v := range t.configs() {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		cfgs = append(cfgs, tc)
	}
	if err := cc.CreateTopics(cfgs...); err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("ensure topics: %w", ctxErrOr(ctx, err))
	}
	return nil
}

// closeOnDone closes conn when ctx ends and returns the func that stops
// that. kafka-go's Conn methods take no context and have no deadline: a
// broker that accepts connections but never answers would block them, and
// start-up with them, forever.
func closeOnDone(ctx context.Context, conn *kafka.Conn) func() bool {
	return context.AfterFunc(ctx, func() { _ = conn.Close() })
}

// ctxErrOr names the context's end rather than the closed connection it
// caused.
func ctxErrOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// WriterOptions are the knobs of NewWriter.
type WriterOptions struct {
	Brokers      []string
	Topic        string
	ClientID     string
	Compression  string // none, gzip, snappy, lz4, zstd
	BatchTimeout time.Duration
	BatchSize    int
	Logger       *slog.Logger
}

// Writer is a kafka-go writer with its own transport, which Close shuts
// too: kafka.Writer.Close leaves a caller's transport and its connection
// goroutines running.
type Writer struct {
	*kafka.Writer
	transport *kafka.Transport
}

// Close flushes and closes the writer, then its connections.
func (w *Writer) Close() error {
	err := w.Writer.Close()
	w.transport.CloseIdleConnections()
	return err
}

// NewWriter builds a synchronous writer that waits for every in-sync replica:
// a nil error from WriteMessages means the broker has the data. kafka-go's
// defaults (no acks, 1 s batch wait) are wrong for us on both counts.
func NewWriter(o WriterOptions) (*Writer, error) {
	codec, err := Codec(o.Compression)
	if err != nil {
		return nil, err
	}
	if o.BatchSize == 0 {
		o.BatchSize = 1000
	}
	if o.BatchTimeout == 0 {
		o.BatchTimeout = 2 * time.Millisecond
	}
	transport := &kafka.Transport{ClientID: o.ClientID, DialTimeout: 3 * time.Second, IdleTimeout: 60 * time.Second}
	w := &kafka.Writer{
		Addr:         kafka.TCP(o.Brokers...),
		Topic:        o.Topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: o.BatchTimeout,
		BatchSize:    o.BatchSize,
		BatchBytes:   8 << 20,
		// Retries inside kafka-go would hide which messages failed; the
		// callers retry exactly the failed indexes themselves.
		MaxAttempts:  1,
		WriteTimeout: 10 * time.Second,
		ReadTimeout:  10 * time.Second,
		Compression:  codec,
		Transport:    transport,
	}
	if o.Logger != nil {
		l := o.Logger
		w.ErrorLogger = kafka.LoggerFunc(func(msg string, args ...any) {
			l.Warn(fmt.Sprintf(msg, args...), "topic", o.Topic)
		})
	}
	return &Writer{Writer: w, transport: transport}, nil
}

// ReaderOptions are the knobs of NewReader.
type ReaderOptions struct {
	Brokers  []string
	Topic    string
	GroupID  string
	ClientID string
	Logger   *slog.Logger
}

// sessionTimeout: a dead consumer's partitions move after this; short
// enough for a restart to resume quickly, long enough to ride out a GC pause.
const sessionTimeout = 10 * time.Second

// NewReader builds a consumer-group reader for FetchMessage + CommitMessages:
// commits are synchronous (CommitInterval 0) and happen only when the caller
// says the data is safe.
func NewReader(o ReaderOptions) *kafka.Reader {
	cfg := kafka.ReaderConfig{
		Brokers:  o.Brokers,
		GroupID:  o.GroupID,
		Topic:    o.Topic,
		Dialer:   &kafka.Dialer{ClientID: o.ClientID, Timeout: 5 * time.Second, DualStack: true},
		MinBytes: 1,
		MaxBytes: 16 << 20,
		// kafka-go asks the broker to answer a quarter of MaxWait before its
		// own read deadline; under 1-2 s that margin is too thin on a busy
		// machine and fetches fail with i/o timeouts and reconnect.
		MaxWait:           2 * time.Second,
		QueueCapacity:     20000,
		CommitInterval:    0,
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    sessionTimeout,
		HeartbeatInterval: 2 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    500 * time.Millisecond,
		MaxAttempts:       3,
	}
	if o.Logger != nil {
		l := o.Logger
		cfg.ErrorLogger = kafka.LoggerFunc(func(msg string, args ...any) {
			l.Warn(fmt.Sprintf(msg, args...), "topic", o.Topic)
		})
	}
	return kafka.NewReader(cfg)
}

// Codec maps a config name to a kafka-go compression (0 for none).
func Codec(name string) (kafka.Compression, error) {
	switch name {
	case "", "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("unknown compression %q", name)
}

// Ping checks that a broker answers a metadata request, for /readyz.
func Ping(ctx context.Context, brokers []string) error {
	lastErr := errors.New("no brokers configured")
	for _, b := range brokers {
		d := &kafka.Dialer{Timeout: 2 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			lastErr = err
			continue
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		_, err = conn.Brokers()
		conn.Close()
		if err == nil {
			return nil
		}
		lastErr = err
	}
	return fmt.Errorf("kafka: no broker answered: %w", lastErr)
}

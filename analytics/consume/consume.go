// Package consume moves beacon records from Kafka into the analytics store,
// at least once: offsets are committed only after the store confirmed the
// insert, and records that cannot be decoded go to a dead-letter topic so a
// partition never stalls on one of them.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// Sink stores a batch of beacons. It must be all-or-nothing as far as the
// consumer can tell: an error means "retry the whole batch". Duplicates on
// retry are expected and removed downstream by event_id.
type Sink interface {
	Insert(ctx context.Context, rows []record.Beacon) error
}

// Fetcher is the consumer-group reader (a *kafka.Reader).
type Fetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// DeadLetters takes records that could not be decoded (a *kafka.Writer).
type DeadLetters interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Options configure a Consumer.
type Options struct {
	BatchRows     int
	BatchInterval time.Duration
	InsertTimeout time.Duration
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
	// Lag, when set, is read after each flush for the lag gauge
	// (kafka.Reader.Stats().Lag).
	Lag func() int64
}

// Consumer is one member of the analytics consumer group.
type Consumer struct {
	in   Fetcher
	dlq  DeadLetters
	sink Sink
	o    Options
	log  *slog.Logger

	batchRows    prometheus.Histogram
	insertTime   prometheus.Histogram
	insertErrors prometheus.Counter
	deadLetters  prometheus.Counter
	consumed     prometheus.Counter
	lag          prometheus.Gauge

	intern record.Interner // Run's goroutine only

	// Crash points for tests: a non-nil error from a hook ends Run at once,
	// with no final flush and no commit, as if the process had died there.
	beforeInsert, afterInsert func() error
}

// New builds a consumer. Reader and writers belong to the caller.
func New(in Fetcher, dlq DeadLetters, sink Sink, o Options) *Consumer {
	if o.BatchRows <= 0 {
		o.BatchRows = 20000
	}
	if o.BatchInterval <= 0 {
		o.BatchInterval = time.Second
	}
	if o.InsertTimeout <= 0 {
		o.InsertTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{
		in: in, dlq: dlq, sink: sink, o: o,
		log: o.Logger.With("component", "consume"),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cdnpilot_consumer_insert_batch_rows",
			Help:    "Rows per insert into the analytics store.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		insertTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cdnpilot_consumer_insert_duration_seconds",
			Help:    "Time of one successful insert into the analytics store.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdnpilot_consumer_insert_errors_total",
			Help: "Failed inserts into the analytics store (each is retried).",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdnpilot_consumer_dead_letters_total",
			Help: "Records sent to the dead-letter topic because they could not be decoded.",
		}),
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdnpilot_consumer_records_total",
			Help: "Records committed after being stored or dead-lettered.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cdnpilot_consumer_lag",
			Help: "Records behind the end of the partition read last, from the reader's stats; updated after each flush.",
		}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(c.batchRows, c.insertTime, c.insertErrors, c.deadLetters, c.consumed, c.lag)
	}
	return c
}

type fetched struct {
	msg kafka.Message
	err error
}

// Run consumes until ctx is done. On the way out it stores and commits
// what it already fetched, within InsertTimeout, so a clean stop leaves
// nothing to re-read.
func (c *Consumer) Run(ctx context.Context) error {
	// Fetching runs apart so a slow insert does not hold up the session
	// heartbeats kafka-go sends in the background, and so the batch timer
	// can fire while a fetch waits. The channel bounds the read-ahead.
	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	msgs := make(chan fetched, 1024)
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		defer close(msgs)
		for {
			m, err := c.in.FetchMessage(fetchCtx)
			if err != nil && fetchCtx.Err() != nil {
				return
			}
			select {
			case msgs <- fetched{m, err}:
			case <-fetchCtx.Done():
				return
			}
			if err != nil {
				// kafka-go retries internally; a returned error is worth a
				// pause rather than a hot loop.
				select {
				case <-time.After(500 * time.Millisecond):
				case <-fetchCtx.Done():
					return
				}
			}
		}
	}()
	defer func() {
		stopFetch()
		<-fetchDone
	}()

	b := newBatch(c.o.BatchRows)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func(fctx context.Context) error {
		if b.empty() {
			return nil
		}
		if err := c.flush(fctx, b); err != nil {
			return err
		}
		b.reset()
		return nil
	}
	// finish stores and commits what the batch holds, on a fresh deadline
	// since ctx is already done.
	finish := func() error {
		fctx, cancel := context.WithTimeout(context.Background(), c.o.InsertTimeout)
		defer cancel()
		if err := flush(fctx); err != nil {
			return fmt.Errorf("final flush: %w", err)
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			stopFetch()
			// What was fetched already is ours to store. A record that can
			// be neither decoded nor dead-lettered in time ends the drain:
			// nothing after it may be committed.
			dctx, cancel := context.WithTimeout(context.Background(), c.o.InsertTimeout)
			for f := range msgs {
				if f.err != nil {
					continue
				}
				if err := c.add(dctx, b, f.msg); err != nil {
					c.log.Warn("stopping the drain at an undelivered dead letter", "partition", f.msg.Partition, "offset", f.msg.Offset, "err", err)
					break
				}
			}
			cancel()
			return finish()
		case f, ok := <-msgs:
			if !ok {
				continue
			}
			if f.err != nil {
				c.log.Warn("fetch failed", "err", f.err)
				continue
			}
			wasEmpty := b.empty()
			if err := c.add(ctx, b, f.msg); err != nil {
				if ctx.Err() == nil {
					return err
				}
				// Shutting down with this record neither stored nor
				// dead-lettered: commit what came before it, drain nothing.
				stopFetch()
				return finish()
			}
			if wasEmpty && !b.empty() {
				timer.Reset(c.o.BatchInterval)
			}
			if len(b.rows) >= c.o.BatchRows {
				timer.Stop()
				if err := flush(ctx); err != nil && ctx.Err() == nil {
					return err
				}
			}
		case <-timer.C:
			if err := flush(ctx); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

// add decodes one message into the batch, or dead-letters it. A
// dead-lettered record still has to be committed with the batch it arrived
// in, so its offset is tracked either way.
func (c *Consumer) add(ctx context.Context, b *batch, m kafka.Message) error {
	var rec record.Beacon
	if err := rec.Decode(m.Value, &c.intern); err != nil {
		if err := c.deadLetter(ctx, m, err); err != nil {
			return err
		}
		b.track(m)
		return nil
	}
	b.rows = append(b.rows, rec)
	b.track(m)
	return nil
}

func (c *Consumer) deadLetter(ctx context.Context, m kafka.Message, cause error) error {
	dl := kafka.Message{
		Key:   m.Key,
		Value: m.Value,
		Headers: []kafka.Header{
			{Key: "cdnpilot-source-topic", Value: []byte(m.Topic)},
			{Key: "cdnpilot-source-partition", Value: []byte(strconv.Itoa(m.Partition))},
			{Key: "cdnpilot-source-offset", Value: []byte(strconv.FormatInt(m.Offset, 10))},
			{Key: "cdnpilot-error", Value: []byte(cause.Error())},
		},
	}
	c.log.Warn("dead-lettering undecodable record", "partition", m.Partition, "offset", m.Offset, "err", cause)
	for attempt := 0; ; attempt++ {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.dlq.WriteMessages(wctx, dl)
		cancel()
		if err == nil {
			c.deadLetters.Inc()
			return nil
		}
		c.log.Error("dead-letter write failed; retrying", "err", err)
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return fmt.Errorf("dead-letter partition %d offset %d: %w", m.Partition, m.Offset, err)
		}
	}
}

// flush inserts until the store takes the batch, then commits. A failed
// insert is retried with the same rows (the sink builds a fresh batch per
// call): the offsets stay uncommitted meanwhile, so a crash here only means
// the rows are read again.
func (c *Consumer) flush(ctx context.Context, b *batch) error {
	if c.beforeInsert != nil {
		if err := c.beforeInsert(); err != nil {
			return err
		}
	}
	if len(b.rows) > 0 {
		for attempt := 0; ; attempt++ {
			ictx, cancel := context.WithTimeout(ctx, c.o.InsertTimeout)
			start := time.Now()
			err := c.sink.Insert(ictx, b.rows)
			cancel()
			if err == nil {
				c.insertTime.Observe(time.Since(start).Seconds())
				c.batchRows.Observe(float64(len(b.rows)))
				break
			}
			c.insertErrors.Inc()
			c.log.Error("insert failed; retrying", "rows", len(b.rows), "attempt", attempt+1, "err", err)
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return fmt.Errorf("insert %d rows: %w", len(b.rows), err)
			}
		}
	}
	if c.afterInsert != nil {
		if err := c.afterInsert(); err != nil {
			return err
		}
	}
	if err := c.in.CommitMessages(ctx, b.commits()...); err != nil {
		// The rows are stored; failing to commit only means a redelivery
		// (after a rebalance, typically), which dedup absorbs.
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("commit: %w", err)
		}
		c.log.Warn("commit failed; records will be redelivered", "err", err)
	}
	c.consumed.Add(float64(b.n))
	if c.o.Lag != nil {
		c.lag.Set(float64(c.o.Lag()))
	}
	return nil
}

// batch holds decoded rows and, per partition, the last message seen:
// committing it commits everything before it on that partition.
type batch struct {
	rows []record.Beacon
	last map[int]kafka.Message
	n    int
}

func newBatch(capacity int) *batch {
	return &batch{rows: make([]record.Beacon, 0, min(capacity, 65536)), last: map[int]kafka.Message{}}
}

func (b *batch) track(m kafka.Message) {
	b.n++
	if prev, ok := b.last[m.Partition]; !ok || m.Offset > prev.Offset {
		b.last[m.Partition] = m
	}
}

func (b *batch) empty() bool { return b.n == 0 }

func (b *batch) reset() {
	clear(b.rows)
	b.rows = b.rows[:0]
	clear(b.last)
	b.n = 0
}

func (b *batch) commits() []kafka.Message {
	out := make([]kafka.Message, 0, len(b.last))
	for _, m := range b.last {
		out = append(out, m)
	}
	return out
}

func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 6)
	return min(d, 5*time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

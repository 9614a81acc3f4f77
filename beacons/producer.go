package beacons

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// PublishError names the beacons of a batch that the broker did not
// acknowledge. The others were acknowledged and are safe.
type PublishError struct {
	Failed []int // indexes into the published batch
	Err    error
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("publish: %d beacons not acknowledged: %v", len(e.Failed), e.Err)
}

func (e *PublishError) Unwrap() error { return e.Err }

// MessageWriter is the part of a kafka-go writer the producer uses.
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Producer publishes beacon records to Kafka, keyed by region, and returns
// only once every replica acknowledged them (the writer is built by
// kafkaio.NewWriter with RequireAll and no async mode).
type Producer struct {
	w       MessageWriter
	retries int
	timeout time.Duration
	latency prometheus.Histogram
	bufs    sync.Pool
}

// ProducerOptions configure NewProducer.
type ProducerOptions struct {
	Retries    int           // resends of the failed messages only
	Timeout    time.Duration // whole publish, all retries included
	Registerer prometheus.Registerer
}

// NewProducer wraps a writer. The writer's lifecycle stays with the caller.
func NewProducer(w MessageWriter, o ProducerOptions) *Producer {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	p := &Producer{
		w:       w,
		retries: o.Retries,
		timeout: o.Timeout,
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cdnpilot_ingest_produce_duration_seconds",
			Help:    "Time from handing beacons to the Kafka writer until every replica acknowledged them (or the publish gave up).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(p.latency)
	}
	return p
}

// Publish sends the batch and retries only what failed, keeping each
// beacon's event_id so a resend that the broker had in fact stored is a
// duplicate that analytics removes, never a second distinct beacon.
func (p *Producer) Publish(ctx context.Context, batch []record.Beacon) error {
	if len(batch) == 0 {
		return nil
	}
	start := time.Now()
	defer func() { p.latency.Observe(time.Since(start).Seconds()) }()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	bp, _ := p.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := (*bp)[:0]
	msgs := make([]kafka.Message, len(batch))
	offs := make([]int, len(batch)+1)
	for i := range batch {
		buf, _ = batch[i].AppendBinary(buf)
		offs[i+1] = len(buf)
	}
	for i := range batch {
		msgs[i] = kafka.Message{Key: []byte(batch[i].Region), Value: buf[offs[i]:offs[i+1]:offs[i+1]]}
	}

	pending := make([]int, len(batch))
	for i := range pending {
		pending[i] = i
	}
	sub := msgs
	for attempt := 0; ; attempt++ {
		err := p.w.WriteMessages(ctx, sub...)
		if err == nil {
			// The writer is synchronous: once it returns without error it
			// holds no reference to the values, so the buffer can be reused.
			*bp = buf
			p.bufs.Put(bp)
			return nil
		}
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(pending) {
			still := pending[:0:0]
			for i, e := range werrs {
				if e != nil {
					still = append(still, pending[i])
				}
			}
			pending = still
		}
		// On any other error the whole remainder is in doubt; and after a
		// context error the writer may still hold the values, so the buffer
		// is left to the garbage collector rather than reused.
		if attempt >= p.retries || ctx.Err() != nil {
			return &PublishError{Failed: pending, Err: err}
		}
		sub = make([]kafka.Message, len(pending))
		for i, idx := range pending {
			sub[i] = msgs[idx]
		}
		backoff := time.Duration(25<<attempt) * time.Millisecond
		select {
		case <-ctx.Done():
			return &PublishError{Failed: pending, Err: fmt.Errorf("%w (last error: %v)", ctx.Err(), err)}
		case <-time.After(backoff):
		}
	}
}

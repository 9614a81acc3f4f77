package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/steering"
)

// DecisionSink stores a batch of decisions: *ClickHouse in production,
// *DecisionRing in the embedded default. An error means the whole batch may
// be retried. The sink must not keep rows after it returns: the log reuses
// the slice.
type DecisionSink interface {
	InsertDecisions(ctx context.Context, rows []steering.DecisionRecord) error
}

var (
	_ DecisionSink = (*ClickHouse)(nil)
	_ DecisionSink = (*DecisionRing)(nil)
)

// DecisionLogOptions configure NewDecisionLog. Zero values take the
// defaults.
type DecisionLogOptions struct {
	// Buffer is how many decisions wait between LogDecision and an insert
	// (default 32768, about 9 MB); past it LogDecision drops.
	Buffer int
	// BatchRows and FlushInterval: a batch is inserted when it has
	// BatchRows decisions (default 8192) or FlushInterval after its first
	// one (default 1 s).
	BatchRows     int
	FlushInterval time.Duration
	// InsertTimeout bounds one insert attempt (default 10 s), and the whole
	// final flush when Run stops.
	InsertTimeout time.Duration
	// Attempts per batch before it is dropped (default 3). The decision
	// log is sampled telemetry: an outage must not back up into memory.
	Attempts int
	// SampleRate is the fraction of decisions kept, in [0, 1]; 0 means 1
	// (every decision). Sampling happens in LogDecision, before the buffer.
	SampleRate float64
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

const (
	defaultDecisionBuffer        = 32768
	defaultDecisionBatchRows     = 8192
	defaultDecisionFlushInterval = time.Second
	defaultDecisionInsertTimeout = 10 * time.Second
	defaultDecisionAttempts      = 3
)

// DecisionLog is the non-blocking writer of the decision log. LogDecision
// hands a record to a bounded buffer and returns; Run batches the buffer
// into the sink.
type DecisionLog struct {
	sink    DecisionSink
	o       DecisionLogOptions
	log     *slog.Logger
	ch      chan steering.DecisionRecord
	running atomic.Bool

	dropped                                    *prometheus.CounterVec
	droppedFull, droppedFailed, droppedInvalid prometheus.Counter
	written, insertErrors                      prometheus.Counter
}

// NewDecisionLog builds a writer into sink. Nothing is written until Run is
// started.
func NewDecisionLog(sink DecisionSink, o DecisionLogOptions) (*DecisionLog, error) {
	if sink == nil {
		return nil, errors.New("decision log: no sink")
	}
	if math.IsNaN(o.SampleRate) || o.SampleRate < 0 || o.SampleRate > 1 {
		return nil, fmt.Errorf("decision log: sample_rate %v is outside 0..1", o.SampleRate)
	}
	for _, v := range []struct {
		name string
		val  int64
	}{{"buffer", int64(o.Buffer)}, {"batch_rows", int64(o.BatchRows)}, {"attempts", int64(o.Attempts)},
		{"flush_interval", int64(o.FlushInterval)}, {"insert_timeout", int64(o.InsertTimeout)}} {
		if v.val < 0 {
			return nil, fmt.Errorf("decision log: %s is negative", v.name)
		}
	}
	if o.Buffer == 0 {
		o.Buffer = defaultDecisionBuffer
	}
	if o.BatchRows == 0 {
		o.BatchRows = defaultDecisionBatchRows
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = defaultDecisionFlushInterval
	}
	if o.InsertTimeout == 0 {
		o.InsertTimeout = defaultDecisionInsertTimeout
	}
	if o.Attempts == 0 {
		o.Attempts = defaultDecisionAttempts
	}
	if o.SampleRate == 0 {
		o.SampleRate = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &DecisionLog{
		sink: sink,
		o:    o,
		log:  o.Logger.With("component", "analytics.decisionlog"),
		ch:   make(chan steering.DecisionRecord, o.Buffer),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdnpilot_decision_log_dropped_total",
			Help: "Decisions not stored, by reason: buffer_full (LogDecision found the buffer full), insert_failed (the batch failed every attempt), invalid (a time the table cannot hold).",
		}, []string{"reason"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdnpilot_decision_log_written_total",
			Help: "Decisions stored in the decision log.",
		}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdnpilot_decision_log_insert_errors_total",
			Help: "Failed insert attempts into the decision log (a batch is retried, then dropped).",
		}),
	}
	// Resolved once: the hot path must not hash label values.
	l.droppedFull = l.dropped.WithLabelValues("buffer_full")
	l.droppedFailed = l.dropped.WithLabelValues("insert_failed")
	l.droppedInvalid = l.dropped.WithLabelValues("invalid")
	if o.Registerer != nil {
		var done []prometheus.Collector
		for _, c := range []prometheus.Collector{l.dropped, l.written, l.insertErrors} {
			if err := o.Registerer.Register(c); err != nil {
				for _, d := range done {
					o.Registerer.Unregister(d)
				}
				return nil, fmt.Errorf("decision log: register metrics: %w", err)
			}
			done = append(done, c)
		}
	}
	return l, nil
}

// LogDecision queues r for the log and returns at once. It never blocks and
// does not allocate: with the buffer full, r is dropped and counted. Safe
// for concurrent use, also before Run starts (the buffer fills) and after
// it returned (the buffer fills, nothing is written).
func (l *DecisionLog) LogDecision(r steering.DecisionRecord) {
	if l.o.SampleRate < 1 && rand.Float64() >= l.o.SampleRate {
		return
	}
	select {
	case l.ch <- r:
	default:
		l.droppedFull.Inc()
	}
}

// errInterrupted: ctx ended between insert attempts; the rows are still the
// caller's.
var errInterrupted = errors.New("interrupted between attempts")

// Run moves buffered decisions into the sink until ctx is done, then
// writes what the buffer holds at that moment, within InsertTimeout. It
// returns nil after a stop: a failed final batch is dropped and counted,
// like any other. Call it once.
func (l *DecisionLog) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("decision log: Run called twice")
	}
	batch := make([]steering.DecisionRecord, 0, min(l.o.BatchRows, 65536))
	timer := time.NewTimer(l.o.FlushInterval)
	timer.Stop()
	defer timer.Stop()
	// An insert in flight when ctx ends still gets its InsertTimeout;
	// only the pause between attempts is cut short.
	insertCtx := context.WithoutCancel(ctx)
	flush := func() {
		err := l.insert(insertCtx, ctx, batch)
		if errors.Is(err, errInterrupted) {
			return // stopping: the final flush tries once more
		}
		if err != nil {
			l.drop(len(batch), err)
		}
		clear(batch)
		batch = batch[:0]
	}
	for {
		// Checked first: with records waiting, select would pick at random.
		if ctx.Err() != nil {
			l.finish(ctx, batch)
			return nil
		}
		select {
		case <-ctx.Done():
		case r := <-l.ch:
			if checkDecision(&r) != nil {
				l.droppedInvalid.Inc()
				continue
			}
			batch = append(batch, r)
			if len(batch) == 1 {
				timer.Reset(l.o.FlushInterval)
			}
			if len(batch) >= l.o.BatchRows {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// finish writes batch and what the buffer holds now, in BatchRows chunks,
// within one InsertTimeout. Records logged meanwhile stay in the buffer.
func (l *DecisionLog) finish(ctx context.Context, batch []steering.DecisionRecord) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.o.InsertTimeout)
	defer cancel()
	for n := len(l.ch); n > 0; n-- {
		r := <-l.ch
		if checkDecision(&r) != nil {
			l.droppedInvalid.Inc()
			continue
		}
		batch = append(batch, r)
	}
	for len(batch) > 0 {
		chunk := batch[:min(len(batch), l.o.BatchRows)]
		if err := l.insert(fctx, fctx, chunk); err != nil {
			l.drop(len(chunk), fmt.Errorf("final flush: %w", err))
		}
		batch = batch[len(chunk):]
	}
}

// insert tries rows up to Attempts times, each attempt under InsertTimeout
// from attemptCtx, pausing between attempts on pauseCtx. It returns
// errInterrupted (wrapping the last error) when pauseCtx ends in a pause.
func (l *DecisionLog) insert(attemptCtx, pauseCtx context.Context, rows []steering.DecisionRecord) error {
	for attempt := 1; ; attempt++ {
		ictx, cancel := context.WithTimeout(attemptCtx, l.o.InsertTimeout)
		err := l.sink.InsertDecisions(ictx, rows)
		cancel()
		if err == nil {
			l.written.Add(float64(len(rows)))
			return nil
		}
		l.insertErrors.Inc()
		if attempt >= l.o.Attempts {
			return fmt.Errorf("%d attempts: %w", attempt, err)
		}
		l.log.Warn("decision log insert failed; retrying", "rows", len(rows), "attempt", attempt, "err", err)
		if pause(pauseCtx, decisionBackoff(attempt)) != nil {
			return fmt.Errorf("%w: %w", errInterrupted, err)
		}
	}
}

func (l *DecisionLog) drop(n int, err error) {
	l.droppedFailed.Add(float64(n))
	l.log.Error("decision log batch dropped", "rows", n, "err", err)
}

func decisionBackoff(attempt int) time.Duration {
	return min(200*time.Millisecond<<min(attempt-1, 5), 5*time.Second)
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

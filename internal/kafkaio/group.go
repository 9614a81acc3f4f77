package kafkaio

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// groupFetcher is what GroupReader needs of a kafka-go reader.
type groupFetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
	Stats() kafka.ReaderStats
	Close() error
}

// GroupReader is a consumer-group reader that replaces its kafka-go
// reader when it stalls: no message for the stall time while the group
// has records left to read. kafka-go readers are known to stop fetching
// after some rebalances without reporting an error (segmentio/kafka-go
// #387, #1036); here it showed as a consumer restarted after a SIGKILL
// that never drained. A fresh reader joins the group anew.
type GroupReader struct {
	opts  ReaderOptions
	stall time.Duration
	open  func() groupFetcher
	lag   func(ctx context.Context) (int64, error)
	log   *slog.Logger

	mu       sync.Mutex
	r        groupFetcher
	restarts int
}

// NewGroupReader builds a GroupReader over NewReader(o); stall <= 0 means
// 3 session timeouts.
func NewGroupReader(o ReaderOptions, stall time.Duration) *GroupReader {
	if stall <= 0 {
		stall = 3 * sessionTimeout
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &GroupReader{opts: o, stall: stall, log: log}
	g.open = func() groupFetcher { return NewReader(o) }
	g.lag = func(ctx context.Context) (int64, error) { return GroupLag(ctx, o.Brokers, o.GroupID, o.Topic) }
	g.r = g.open()
	return g
}

func (g *GroupReader) current() groupFetcher {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.r
}

// FetchMessage returns the next message, replacing a stalled reader on
// the way.
func (g *GroupReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		r := g.current()
		fctx, cancel := context.WithTimeout(ctx, g.stall)
		m, err := r.FetchMessage(fctx)
		cancel()
		switch {
		case err == nil:
			return m, nil
		case ctx.Err() != nil:
			return m, ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded):
			return m, err
		}
		// Nothing for the stall time: an idle topic, or a stuck reader.
		lag, err := g.lag(ctx)
		if err != nil || lag <= 0 {
			continue
		}
		g.restart(r, lag)
	}
}

// restart replaces r unless another call already did.
func (g *GroupReader) restart(r groupFetcher, lag int64) {
	g.mu.Lock()
	if g.r != r {
		g.mu.Unlock()
		return
	}
	g.r = g.open()
	g.restarts++
	g.mu.Unlock()
	g.log.Warn("group reader stalled with records left; replaced it", "topic", g.opts.Topic, "group", g.opts.GroupID,
		"lag", lag, "stall", g.stall)
	// Close can block while the old reader leaves the group; the new one
	// does not wait for it.
	go func() { _ = r.Close() }()
}

// Restarts is how many times the reader was replaced.
func (g *GroupReader) Restarts() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.restarts
}

// CommitMessages commits through the current reader. Messages fetched by
// a replaced reader commit through the new one: offsets are the group's,
// not a member's.
func (g *GroupReader) CommitMessages(ctx context.Context, msgs ...kafka.Message) error {
	return g.current().CommitMessages(ctx, msgs...)
}

// Stats are the current reader's.
func (g *GroupReader) Stats() kafka.ReaderStats { return g.current().Stats() }

// Close closes the current reader.
func (g *GroupReader) Close() error { return g.current().Close() }

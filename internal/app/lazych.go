package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/steering"
)

// lazyClickHouse is a steering node's connection for its decision log,
// opened on first use and again after a failed open. A node must start
// and answer with ClickHouse down (a restarted or autoscaled steer pod
// during a ClickHouse outage would otherwise crash-loop): until the store
// is back, the decision log's batches fail, are retried and then dropped,
// which its metrics count.
type lazyClickHouse struct {
	opts analytics.ClickHouseOptions
	log  *slog.Logger

	mu       sync.Mutex
	ch       *analytics.ClickHouse
	lastFail time.Time
}

// retryOpen spaces the attempts to open a store that is down.
const retryOpen = 2 * time.Second

func (l *lazyClickHouse) get(ctx context.Context) (*analytics.ClickHouse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ch != nil {
		return l.ch, nil
	}
	if time.Since(l.lastFail) < retryOpen {
		return nil, fmt.Errorf("decision log store: ClickHouse at %s unavailable; retrying", l.opts.Addr)
	}
	ch, err := analytics.OpenClickHouse(ctx, l.opts, l.log)
	if err != nil {
		l.lastFail = time.Now()
		return nil, fmt.Errorf("decision log store: %w", err)
	}
	l.ch = ch
	return ch, nil
}

func (l *lazyClickHouse) InsertDecisions(ctx context.Context, rows []steering.DecisionRecord) error {
	ch, err := l.get(ctx)
	if err != nil {
		return err
	}
	return ch.InsertDecisions(ctx, rows)
}

func (l *lazyClickHouse) Decisions(ctx context.Context, q analytics.DecisionQuery) ([]steering.DecisionRecord, error) {
	ch, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return ch.Decisions(ctx, q)
}

func (l *lazyClickHouse) DecisionCounts(ctx context.Context, f analytics.DecisionFilter) ([]analytics.DecisionCount, error) {
	ch, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return ch.DecisionCounts(ctx, f)
}

func (l *lazyClickHouse) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ch == nil {
		return nil
	}
	err := l.ch.Close()
	l.ch = nil
	return err
}

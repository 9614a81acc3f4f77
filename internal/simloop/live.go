package simloop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Live is a sim.Loop against a running process in real time (the demo's
// player fleet): views ask the process's steering Table, and beacons go
// over HTTP to its ingest from behind a trusted loopback proxy. A post
// that fails is logged by the caller's run and retried by nobody: the
// demo's players, like real ones, lose a beacon now and then.
type Live struct {
	Table  *steering.Table
	Ingest string // base URL of the ingest, "http://127.0.0.1:8080"
	Client *http.Client
	Logger *slog.Logger

	wg  sync.WaitGroup
	sem chan struct{}
	mu  sync.Mutex
	err error
}

// NewLive builds a live loop posting with up to 32 requests in flight.
func NewLive(table *steering.Table, ingest string) *Live {
	return &Live{Table: table, Ingest: ingest, Client: &http.Client{Timeout: 10 * time.Second}, Logger: slog.New(slog.DiscardHandler), sem: make(chan struct{}, 32)}
}

// Steer asks the Table.
func (l *Live) Steer(_ context.Context, q steering.Query, _ netip.Addr) (string, error) {
	d, err := l.Table.Decide(q)
	return d.CDN, err
}

// Send posts in the background; Advance waits for the step's posts.
func (l *Live) Send(ctx context.Context, client netip.Addr, batch []beacons.Input) error {
	body, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("encode beacons: %w", err)
	}
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.wg.Go(func() {
		defer func() { <-l.sem }()
		if err := l.post(ctx, client, body); err != nil && ctx.Err() == nil {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
		}
	})
	return nil
}

func (l *Live) post(ctx context.Context, client netip.Addr, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.Ingest+"/v1/beacons", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", client.String())
	resp, err := l.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post beacons: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("ingest answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Advance waits for the posts of the step and logs the step's last
// failure; it never stops the fleet.
func (l *Live) Advance(context.Context, time.Time) error {
	l.wg.Wait()
	l.mu.Lock()
	err := l.err
	l.err = nil
	l.mu.Unlock()
	if err != nil {
		l.Logger.Warn("simulated players: beacons lost", "err", err)
	}
	return nil
}

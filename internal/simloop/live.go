package simloop

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Live is a sim.Loop against a running process in real time (the demo's
// player fleet): views ask the process's steering Table, and beacons go
// over HTTP to its ingest from behind a trusted loopback proxy. A post
// that fails is logged and retried by nobody: the demo's players, like
// real ones, lose a beacon now and then.
type Live struct {
	Table  *steering.Table
	Logger *slog.Logger
	p      *poster
}

// NewLive builds a live loop posting with up to 32 requests in flight.
func NewLive(table *steering.Table, ingest string) *Live {
	return &Live{Table: table, Logger: slog.New(slog.DiscardHandler),
		p: newPoster(ingest, &http.Client{Timeout: 10 * time.Second}, 32)}
}

// Steer asks the Table.
func (l *Live) Steer(_ context.Context, q steering.Query, _ netip.Addr) (string, error) {
	d, err := l.Table.Decide(q)
	return d.CDN, err
}

// Send posts in the background; Advance waits for the step's posts.
func (l *Live) Send(ctx context.Context, client netip.Addr, batch []beacons.Input) error {
	return l.p.send(ctx, client, batch)
}

// Advance waits for the posts of the step and logs the step's last
// failure; it never stops the fleet.
func (l *Live) Advance(context.Context, time.Time) error {
	if err := l.p.wait(); err != nil {
		l.Logger.Warn("simulated players: beacons lost", "err", err)
	}
	return nil
}

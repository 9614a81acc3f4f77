package simloop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Live is a sim.Loop against a running process in real time (the demo's
// player fleet): views ask the process's steering path (its Table, or
// its DNS, redirector or content steering over the network), and beacons
// go over HTTP to its ingest from behind a trusted loopback proxy. A post
// that fails is logged and retried by nobody: the demo's players, like
// real ones, lose a beacon now and then.
type Live struct {
	Table  *steering.Table
	Logger *slog.Logger
	p      *poster
	s      *steerer
}

// LiveOptions configure NewLiveWith. The network paths need the servers
// they ask and the catalog those servers were built with, which maps
// their answers back to CDN names.
type LiveOptions struct {
	// Ingest is the base URL beacons are posted to ("http://127.0.0.1:8080").
	Ingest string
	// Path is how views ask for a CDN; "" is PathEngine.
	Path Path
	// Mix are the paths PathMixed spreads views over; nil: dns, http,
	// hls and dash.
	Mix []Path
	// HTTPBase is the base URL of the redirector (/r/) and the content
	// steering server (/steer/); "": Ingest (one process serves all). Its
	// trusted proxies must include loopback, or every view is placed
	// where the loopback address is (nowhere).
	HTTPBase string
	// DNSAddr is the steering DNS server (host:port) and Zone a zone it
	// serves ("demo.cdnpilot.test.").
	DNSAddr string
	Zone    string
	Catalog steering.Catalog
	Logger  *slog.Logger
	// Registerer takes cdnpilot_sim_steer_requests_total and
	// cdnpilot_sim_steer_fallbacks_total by path; nil: not exported.
	Registerer prometheus.Registerer
}

// NewLive builds a live loop on the engine path, posting with up to 32
// requests in flight.
func NewLive(table *steering.Table, ingest string) *Live {
	s, _ := newSteerer(steerOptions{}) // the engine path: nothing to check, nothing to register
	return newLive(table, ingest, slog.New(slog.DiscardHandler), s)
}

// NewLiveWith builds a live loop on any path. Close releases its idle
// connections once the run is over.
func NewLiveWith(table *steering.Table, o LiveOptions) (*Live, error) {
	if table == nil {
		return nil, errors.New("simulated players: no steering table")
	}
	if o.HTTPBase == "" {
		o.HTTPBase = o.Ingest
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := newSteerer(steerOptions{
		Path: o.Path, Mix: o.Mix, HTTPBase: o.HTTPBase, DNSAddr: o.DNSAddr, Zone: o.Zone,
		Catalog: o.Catalog, Registerer: o.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("simulated players: %w", err)
	}
	return newLive(table, o.Ingest, o.Logger, s), nil
}

func newLive(table *steering.Table, ingest string, log *slog.Logger, s *steerer) *Live {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, MaxIdleConnsPerHost: 32,
	}}
	return &Live{Table: table, Logger: log, p: newPoster(ingest, client, 32), s: s}
}

// Steer asks the view's path; a failed request falls back to the Table.
func (l *Live) Steer(ctx context.Context, q steering.Query, client netip.Addr) (string, error) {
	return l.s.steer(ctx, l.Table, l.Logger, q, client)
}

// Stats are the steering requests per path so far, and how many failed.
func (l *Live) Stats() map[Path]PathStats { return l.s.snapshot() }

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

// Close waits for the posts in flight and drops idle connections; call
// it once the run has returned.
func (l *Live) Close() {
	_ = l.p.wait() // Advance logged the run's losses
	l.p.client.CloseIdleConnections()
	l.s.close()
}

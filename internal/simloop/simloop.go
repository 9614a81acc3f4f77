// Package simloop closes the simulator's loop through the code users run:
// simulated players post their beacons over HTTP to the real ingest
// handler, which publishes them to a Kafka-protocol broker; the scorer
// role consumes them, ticks the engine and publishes ranking snapshots to
// the rankings topic; a subscriber feeds a steering node's Table; and the
// players' next views ask that Table for a CDN. Time is virtual: ingest,
// the scorer and the Table all read the simulator's clock, and every step
// waits until the scorer has seen every beacon sent and the node holds the
// snapshot of that instant, so a 15-minute scenario runs in seconds and
// the same seed gives the same run. On a steering path other than the
// engine's, the loop also runs the real steering DNS, redirector and
// content steering server over that Table, on loopback, and the views
// ask them over the network.
package simloop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/dns"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/internal/probe"
	"github.com/cdnpilot/cdnpilot/internal/scorer"
	"github.com/cdnpilot/cdnpilot/steering"
	"github.com/cdnpilot/cdnpilot/steering/redirect"
)

// Options configure a Loop.
type Options struct {
	Catalog steering.Catalog
	Policy  steering.Policy
	// Start is the virtual clock's first instant (the scenario's Start).
	Start  time.Time
	Logger *slog.Logger
	// Concurrency bounds the beacon posts in flight.
	Concurrency int
	// SteerPath is how views ask for a CDN; "" is PathEngine, the Table
	// in process (what make bench-steering measures).
	SteerPath Path
	// Health, when set, is what each CDN's health URL answers at a
	// virtual instant (sim.Scenario.Health): the loop serves it at
	// /health/{cdn} and runs the real prober against it every
	// Policy.Probe.Interval of virtual time, the scorer taking the
	// results as the score role does.
	Health func(cdn string, at time.Time) bool
}

// simZone is the zone the loop's steering DNS serves, the demo's.
const simZone = "demo.cdnpilot.test."

// Loop is a sim.Loop through ingest, Kafka, the scorer and a Table.
type Loop struct {
	clock atomic.Int64 // virtual now, ns since the epoch
	log   *slog.Logger

	broker  *kafkaio.Embedded
	writer  *kafkaio.Writer
	rankW   *kafkaio.Writer
	srv     *httptest.Server
	client  *http.Client
	scorer  *scorer.Scorer
	table   *steering.Table
	svcs    []string
	stop    context.CancelFunc
	done    sync.WaitGroup
	runErrs chan error

	poster *poster
	steer  *steerer
	dns    *dns.Server // nil unless a path asks the DNS

	prober    *probe.Prober // nil without Options.Health
	every     time.Duration // its interval, in virtual time
	nextProbe time.Time
}

const (
	beaconsTopic  = "sim.beacons"
	rankingsTopic = "sim.rankings"
)

// Start builds and starts the loop; Close stops it.
func Start(ctx context.Context, o Options) (_ *Loop, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.SteerPath == "" {
		o.SteerPath = PathEngine
	}
	if _, err := ParsePath(string(o.SteerPath)); err != nil {
		return nil, fmt.Errorf("steering path: %w", err)
	}
	l := &Loop{log: o.Logger, runErrs: make(chan error, 3)}
	l.clock.Store(o.Start.UnixNano())
	now := func() time.Time { return time.Unix(0, l.clock.Load()) }
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.stop = cancel
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	for _, s := range o.Catalog.Services {
		l.svcs = append(l.svcs, s.Name)
	}
	if l.broker, err = kafkaio.StartEmbedded(0, "", kafkaio.Topic{Name: beaconsTopic, Partitions: 3},
		kafkaio.Topic{Name: rankingsTopic, Partitions: 1, Compacted: true}); err != nil {
		return nil, err
	}
	brokers := l.broker.Addrs()
	reg := prometheus.NewRegistry()
	if l.table, err = steering.NewTable(o.Catalog, o.Policy.Stale, now); err != nil {
		return nil, err
	}

	// Ingest, as deployed: the players are behind a trusted loopback
	// proxy that sets X-Forwarded-For, like the demo's.
	if l.writer, err = kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: beaconsTopic, Compression: "lz4", BatchTimeout: time.Millisecond}); err != nil {
		return nil, err
	}
	prod := beacons.NewProducer(l.writer, beacons.ProducerOptions{Retries: 3, Timeout: 10 * time.Second, Registerer: reg})
	loop4, loop6 := netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")
	loc := geo.Chain{geo.Demo()}
	h := beacons.NewHandler(prod, loc, beacons.Options{
		MaxBodyBytes: 1 << 20, MaxBeaconsPerBody: 1000, TrustedProxies: []netip.Prefix{loop4, loop6},
		MaxClockSkew: 24 * time.Hour, Now: now, Logger: o.Logger, Registerer: reg,
	})
	mux := http.NewServeMux()
	h.Register(mux)
	if o.Health != nil {
		mux.HandleFunc("GET /health/{cdn}", func(w http.ResponseWriter, r *http.Request) {
			if !o.Health(r.PathValue("cdn"), now()) {
				http.Error(w, "simulated outage", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		})
	}
	if o.SteerPath != PathEngine && o.SteerPath != PathDNS {
		// The redirector and content steering, trusting the same proxy.
		rs, err := redirect.New(redirect.Options{
			Catalog: o.Catalog, Decider: l.table, Geo: loc, TrustedProxies: []netip.Prefix{loop4, loop6},
			Logger: o.Logger, Registerer: reg, Now: now,
		})
		if err != nil {
			return nil, err
		}
		rs.Register(mux)
	}
	if o.SteerPath == PathDNS || o.SteerPath == PathMixed {
		if err := l.startDNS(rctx, o, loc, reg, now); err != nil {
			return nil, err
		}
	}
	l.srv = httptest.NewServer(mux)
	l.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
	l.poster = newPoster(l.srv.URL, l.client, o.Concurrency)
	so := steerOptions{Path: o.SteerPath, HTTPBase: l.srv.URL, Zone: simZone, Catalog: o.Catalog, Registerer: reg}
	if l.dns != nil {
		so.DNSAddr = l.dns.Addr()
	}
	if l.steer, err = newSteerer(so); err != nil {
		return nil, err
	}

	eng, err := steering.NewEngine(o.Catalog, o.Policy, o.Start)
	if err != nil {
		return nil, err
	}
	rd := kafkaio.NewReader(kafkaio.ReaderOptions{Brokers: brokers, Topic: beaconsTopic, GroupID: "sim-scorer"})
	if l.rankW, err = kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: rankingsTopic, Compression: "zstd", BatchTimeout: time.Millisecond}); err != nil {
		_ = rd.Close()
		return nil, err
	}
	l.scorer = scorer.New(eng, rd, l.rankW, scorer.Options{Now: now, Logger: o.Logger, Registerer: reg})
	if o.Health != nil {
		var targets []probe.Target
		for _, c := range o.Catalog.CDNs {
			targets = append(targets, probe.Target{CDN: c.Name, URL: l.srv.URL + "/health/" + url.PathEscape(c.Name)})
		}
		l.every = o.Policy.Probe.Interval
		if l.prober, err = probe.New(targets, l.scorer, probe.Options{Interval: l.every, Timeout: o.Policy.Probe.Timeout,
			Logger: o.Logger, Registerer: reg, Now: now}); err != nil {
			_ = rd.Close()
			return nil, fmt.Errorf("health probes: %w", err)
		}
	}
	sub := scorer.NewSubscriber(l.table, l.svcs, scorer.SubscriberOptions{Brokers: brokers, Topic: rankingsTopic, Logger: o.Logger})

	l.done.Go(func() {
		defer rd.Close()
		if err := l.scorer.Run(rctx); err != nil {
			l.runErrs <- fmt.Errorf("scorer: %w", err)
		}
	})
	l.done.Go(func() {
		if err := sub.Run(rctx); err != nil {
			l.runErrs <- fmt.Errorf("rankings subscriber: %w", err)
		}
	})
	return l, nil
}

// startDNS runs the steering DNS over the table on a free loopback port
// until ctx is done, as a steering node runs it (no rate limit: every
// simulated resolver is on 127.0.0.1).
func (l *Loop) startDNS(ctx context.Context, o Options, loc geo.Lookuper, reg prometheus.Registerer, now func() time.Time) error {
	s, err := dns.New(dns.Options{
		Zones: []string{simZone}, TTL: 20 * time.Second, IncidentTTL: 10 * time.Second, ApexTTL: time.Hour,
		SOA: dns.SOA{
			MName: "ns1." + simZone, RName: "hostmaster." + simZone, Serial: 1,
			Refresh: time.Hour, Retry: 10 * time.Minute, Expire: 7 * 24 * time.Hour, Minimum: time.Minute,
		},
		NS:      []dns.NameServer{{Name: "ns1." + simZone, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}},
		Catalog: o.Catalog, Decider: l.table, Geo: loc,
		Logger: o.Logger, Registerer: reg, Now: now,
	})
	if err != nil {
		return err
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		return err
	}
	l.dns = s
	l.done.Go(func() {
		if err := s.Run(ctx); err != nil {
			l.runErrs <- fmt.Errorf("steering dns: %w", err)
		}
	})
	return nil
}

// Table is the steering node's table (for paths other than the engine's).
func (l *Loop) Table() *steering.Table { return l.table }

// Now is the virtual clock.
func (l *Loop) Now() time.Time { return time.Unix(0, l.clock.Load()) }

// Steer asks the view's path: the node's Table, or the loop's DNS,
// redirector or content steering over loopback (falling back to the
// Table when a request fails).
func (l *Loop) Steer(ctx context.Context, q steering.Query, client netip.Addr) (string, error) {
	return l.steer.steer(ctx, l.table, l.log, q, client)
}

// Lead is the CDN the node's Table gives a query's decision the most
// weight, whichever CDN the view is picked for: what a flip of the
// decision is counted on.
func (l *Loop) Lead(q steering.Query) (string, error) {
	d, err := l.table.Decide(q)
	if err != nil {
		return "", err
	}
	return lead(d), nil
}

// lead is the choice of most weight, the first of those tied; without a
// ranking, the pick.
func lead(d steering.Decision) string {
	if d.Ranking == nil || len(d.Ranking.Choices) == 0 {
		return d.CDN
	}
	best := &d.Ranking.Choices[0]
	for i := range d.Ranking.Choices {
		if c := &d.Ranking.Choices[i]; c.Weight > best.Weight {
			best = c
		}
	}
	return best.CDN
}

// Stats are the steering requests per path so far, and how many failed.
func (l *Loop) Stats() map[Path]PathStats { return l.steer.snapshot() }

// Send posts one client's beacons to ingest in the background; Advance
// waits for them.
func (l *Loop) Send(ctx context.Context, client netip.Addr, batch []beacons.Input) error {
	return l.poster.send(ctx, client, batch)
}

// Advance moves the virtual clock to now once everything sent has been
// acknowledged by the broker and read by the scorer, ticks the scorer at
// now, and returns when the node's Table holds that tick's snapshots.
func (l *Loop) Advance(ctx context.Context, now time.Time) error {
	if err := l.poster.wait(); err != nil {
		return err
	}
	want := l.poster.accepted.Load()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for l.scorer.Observed() < want {
		if err := l.wait(ctx, "the scorer to read %d beacons (read %d)", want, l.scorer.Observed()); err != nil {
			return err
		}
	}
	l.clock.Store(now.UnixNano())
	if l.prober != nil && !now.Before(l.nextProbe) {
		l.prober.Round(ctx)
		l.nextProbe = now.Add(l.every)
	}
	snaps := l.scorer.Tick(ctx, now)
	for _, s := range snaps {
		for {
			if got := l.table.Snapshot(s.Service); got != nil && got.Version >= s.Version {
				break
			}
			if err := l.wait(ctx, "the snapshot of %s version %d to reach the table", s.Service, s.Version); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Loop) wait(ctx context.Context, what string, args ...any) error {
	select {
	case err := <-l.runErrs:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", fmt.Sprintf(what, args...), ctx.Err())
	case <-time.After(200 * time.Microsecond):
		return nil
	}
}

// Close stops every part and waits for them.
func (l *Loop) Close() error {
	if l.poster != nil {
		_ = l.poster.wait() // the run already reported it
	}
	if l.stop != nil {
		l.stop()
	}
	l.done.Wait()
	var errs []error
	if l.srv != nil {
		l.srv.Close()
	}
	if l.client != nil {
		l.client.CloseIdleConnections()
	}
	if l.steer != nil {
		l.steer.close()
	}
	if l.writer != nil {
		errs = append(errs, l.writer.Close())
	}
	if l.rankW != nil {
		errs = append(errs, l.rankW.Close())
	}
	if l.broker != nil {
		l.broker.Close()
	}
	return errors.Join(errs...)
}

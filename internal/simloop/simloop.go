// Package simloop closes the simulator's loop through the code users run:
// simulated players post their beacons over HTTP to the real ingest
// handler, which publishes them to a Kafka-protocol broker; the scorer
// role consumes them, ticks the engine and publishes ranking snapshots to
// the rankings topic; a subscriber feeds a steering node's Table; and the
// players' next views ask that Table for a CDN. Time is virtual: ingest,
// the scorer and the Table all read the simulator's clock, and every step
// waits until the scorer has seen every beacon sent and the node holds the
// snapshot of that instant, so a 15-minute scenario runs in seconds and
// the same seed gives the same run.
package simloop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/internal/scorer"
	"github.com/cdnpilot/cdnpilot/steering"
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
}

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
	l := &Loop{log: o.Logger, runErrs: make(chan error, 2)}
	l.clock.Store(o.Start.UnixNano())
	now := func() time.Time { return time.Unix(0, l.clock.Load()) }
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

	// Ingest, as deployed: the players are behind a trusted loopback
	// proxy that sets X-Forwarded-For, like the demo's.
	if l.writer, err = kafkaio.NewWriter(kafkaio.WriterOptions{Brokers: brokers, Topic: beaconsTopic, Compression: "lz4", BatchTimeout: time.Millisecond}); err != nil {
		return nil, err
	}
	prod := beacons.NewProducer(l.writer, beacons.ProducerOptions{Retries: 3, Timeout: 10 * time.Second, Registerer: reg})
	loop4, loop6 := netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")
	h := beacons.NewHandler(prod, geo.Chain{geo.Demo()}, beacons.Options{
		MaxBodyBytes: 1 << 20, MaxBeaconsPerBody: 1000, TrustedProxies: []netip.Prefix{loop4, loop6},
		MaxClockSkew: 24 * time.Hour, Now: now, Logger: o.Logger, Registerer: reg,
	})
	mux := http.NewServeMux()
	h.Register(mux)
	l.srv = httptest.NewServer(mux)
	l.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
	l.poster = newPoster(l.srv.URL, l.client, o.Concurrency)

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
	if l.table, err = steering.NewTable(o.Catalog, o.Policy.Stale, now); err != nil {
		_ = rd.Close()
		return nil, err
	}
	sub := scorer.NewSubscriber(l.table, l.svcs, scorer.SubscriberOptions{Brokers: brokers, Topic: rankingsTopic, Logger: o.Logger})

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.stop = cancel
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

// Table is the steering node's table (for paths other than the engine's).
func (l *Loop) Table() *steering.Table { return l.table }

// Now is the virtual clock.
func (l *Loop) Now() time.Time { return time.Unix(0, l.clock.Load()) }

// Steer asks the node's Table, as a steering node does.
func (l *Loop) Steer(_ context.Context, q steering.Query, _ netip.Addr) (string, error) {
	d, err := l.table.Decide(q)
	if err != nil {
		return "", err
	}
	return d.CDN, nil
}

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

// Package app wires cdnpilot's roles into one process: the broker (embedded
// or real), ingest, the analytics consumer and store, the synthetic fleet,
// and the HTTP server they share. cmd/cdnpilot chooses the roles; end-to-end
// tests start the same App on free ports.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/analytics/consume"
	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/beacons/sdk"
	"github.com/cdnpilot/cdnpilot/dns"
	"github.com/cdnpilot/cdnpilot/internal/auth"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/internal/fleet"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/internal/live"
	"github.com/cdnpilot/cdnpilot/internal/overrides"
	"github.com/cdnpilot/cdnpilot/internal/probe"
	"github.com/cdnpilot/cdnpilot/internal/scorer"
	"github.com/cdnpilot/cdnpilot/internal/sim"
	"github.com/cdnpilot/cdnpilot/internal/simloop"
	"github.com/cdnpilot/cdnpilot/steering"
	"github.com/cdnpilot/cdnpilot/steering/redirect"
	"github.com/cdnpilot/cdnpilot/ui/api"
)

// Roles selects what this process runs.
type Roles struct {
	Ingest  bool
	Consume bool
	Fleet   bool // synthetic players posting to this process's ingest
	// Score runs the steering engine: beacons in, ranking snapshots out
	// to the rankings topic, plus active health probes.
	Score bool
	// Steer keeps a steering node's Table from the rankings topic and
	// serves the read-only rankings API, the HTTP redirector and content
	// steering server and, when dns_addr is set, the steering DNS server.
	Steer bool
	// Players runs the simulator's steady world in real time: viewers
	// ask this process's Table for a CDN and post beacons to its ingest.
	// Needs Steer and Ingest.
	Players bool
	// Admin serves the admin API: overrides to the overrides topic, the
	// audit trail, explain, QoE series and replay.
	Admin bool
}

// Store is what the app needs of an analytics store.
type Store interface {
	consume.Sink
	Ping(ctx context.Context) error
	Close() error
}

// App is one cdnpilot process.
type App struct {
	cfg   config.Config
	roles Roles
	log   *slog.Logger
	reg   *prometheus.Registry

	broker  *kafkaio.Embedded
	brokers []string
	store   Store

	httpLn  net.Listener
	httpSrv *http.Server
	mux     *http.ServeMux

	writer   *kafkaio.Writer
	dlq      *kafkaio.Writer
	reader   *kafkaio.GroupReader
	consumer *consume.Consumer
	fleet    *fleet.Fleet

	rankWriter  *kafkaio.Writer
	deltaWriter *kafkaio.Writer
	partWriter  *kafkaio.Writer
	scorer      *scorer.Group
	prober      *probe.Prober
	table       *steering.Table
	subscriber  *scorer.Subscriber
	dns         *dns.Server
	declog      *analytics.DecisionLog
	decisions   DecisionStore
	decisionCH  *lazyClickHouse // the decision log's own connection, when the process has none
	players     func(context.Context) error

	// Overrides: every scorer and steering node follows the topic; the
	// admin role also writes it.
	follower *overrides.Follower
	overLog  *overrides.Log
	auth     *auth.Authenticator
	audit    api.AuditStore
	auditCH  *analytics.ClickHouse // the admin role's own connection, when the process has none
	admin    *api.Server
	live     *live.Tracker
	lagGauge *kafkaio.LagGauge // consume role
}

// New builds the process and binds its listeners, so the caller can print
// or hand out real addresses (":0" picks free ports) before Run.
func New(ctx context.Context, cfg config.Config, roles Roles, log *slog.Logger) (a *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	a = &App{cfg: cfg, roles: roles, log: log, reg: prometheus.NewRegistry(), mux: http.NewServeMux()}
	defer func() {
		if err != nil {
			a.closeAll()
		}
	}()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	topics := Topics(cfg)
	if !(roles.Score || roles.Steer || roles.Admin || cfg.Kafka.Embedded()) {
		topics = topics[:2] // the beacons and dead-letter topics
	}
	if cfg.Kafka.Embedded() {
		if a.broker, err = kafkaio.StartEmbedded(0, "", topics...); err != nil {
			return nil, err
		}
		a.brokers = a.broker.Addrs()
		log.Info("embedded kafka broker started", "addrs", a.brokers)
	} else {
		a.brokers = cfg.Kafka.Brokers
		if err := kafkaio.EnsureTopics(ctx, a.brokers, topics...); err != nil {
			return nil, err
		}
	}

	if roles.Consume {
		if cfg.ClickHouse.Addr != "" {
			ch, err := analytics.OpenClickHouse(ctx, ClickHouseOptions(cfg.ClickHouse), log)
			if err != nil {
				return nil, fmt.Errorf("open clickhouse: %w", err)
			}
			a.store = ch
		} else {
			a.store = analytics.NewMemory(analytics.MemoryOptions{Retention: cfg.ClickHouse.MemoryRetention.D()})
		}
		a.reader = kafkaio.NewGroupReader(kafkaio.ReaderOptions{
			Brokers: a.brokers, Topic: cfg.Kafka.BeaconsTopic, GroupID: cfg.Consume.GroupID,
			ClientID: cfg.Kafka.ClientID, Logger: log.With("component", "kafka-reader"),
		}, 0)
		if a.dlq, err = kafkaio.NewWriter(kafkaio.WriterOptions{
			Brokers: a.brokers, Topic: cfg.Kafka.DeadLetterTopic, ClientID: cfg.Kafka.ClientID,
			Compression: cfg.Kafka.Compression, BatchTimeout: time.Millisecond,
			Logger: log.With("component", "kafka-dead-letters"),
		}); err != nil {
			return nil, err
		}
		// The backlog over every partition, for the lag alerts: the
		// consumer's own gauge sees one partition at a time.
		a.lagGauge = kafkaio.NewLagGauge(a.brokers, cfg.Consume.GroupID, cfg.Kafka.BeaconsTopic, 15*time.Second, a.reg)
		reader := a.reader
		a.consumer = consume.New(reader, a.dlq, a.store, consume.Options{
			BatchRows: cfg.Consume.BatchRows, BatchInterval: cfg.Consume.BatchInterval.D(),
			InsertTimeout: cfg.Consume.InsertTimeout.D(), Logger: log, Registerer: a.reg,
			Lag: func() int64 { return reader.Stats().Lag },
		})
	}

	if roles.Ingest {
		if a.writer, err = kafkaio.NewWriter(kafkaio.WriterOptions{
			Brokers: a.brokers, Topic: cfg.Kafka.BeaconsTopic, ClientID: cfg.Kafka.ClientID,
			Compression: cfg.Kafka.Compression, BatchTimeout: cfg.Kafka.BatchTimeout.D(),
			Logger: log.With("component", "kafka-writer"),
		}); err != nil {
			return nil, err
		}
		loc, _, err := buildGeo(cfg.Geo)
		if err != nil {
			return nil, err
		}
		trusted, _ := cfg.Ingest.TrustedPrefixes() // validated above
		prod := beacons.NewProducer(a.writer, beacons.ProducerOptions{
			Retries: cfg.Kafka.ProduceRetries, Timeout: cfg.Kafka.ProduceTimeout.D(), Registerer: a.reg,
		})
		h := beacons.NewHandler(prod, loc, beacons.Options{
			MaxBodyBytes: cfg.Ingest.MaxBodyBytes, MaxBeaconsPerBody: cfg.Ingest.MaxBeaconsPerBody,
			RateLimitRPS: cfg.Ingest.RateLimit.PerClientRPS, RateLimitBurst: cfg.Ingest.RateLimit.Burst,
			CORSOrigins: cfg.Ingest.CORSOrigins, TrustedProxies: trusted, MaxClockSkew: cfg.Ingest.MaxClockSkew.D(),
			Logger: log, Registerer: a.reg,
		})
		h.Register(a.mux)
		// The player plugin posts to this ingest, so it is served here.
		sdk.Register(a.mux)
	}

	if roles.Score || roles.Steer || roles.Admin {
		if !cfg.Kafka.Embedded() {
			if err := overrides.EnsureTopic(ctx, a.brokers, cfg.Kafka.OverridesTopic, 1); err != nil {
				return nil, err
			}
		}
		a.follower = overrides.NewFollower(overrides.FollowerOptions{
			Brokers: a.brokers, Topic: cfg.Kafka.OverridesTopic, ClientID: cfg.Kafka.ClientID,
			Logger: log, Registerer: a.reg,
		})
	}
	if roles.Score {
		if err := a.buildScorer(cfg, log); err != nil {
			return nil, err
		}
	}
	if roles.Steer || roles.Admin {
		if err := a.buildTable(cfg, log); err != nil {
			return nil, err
		}
	}
	if roles.Steer {
		if err := a.buildSteer(cfg, log); err != nil {
			return nil, err
		}
	}
	if roles.Admin {
		if err := a.buildAdmin(ctx, cfg, log); err != nil {
			return nil, err
		}
	}

	a.mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	a.mux.HandleFunc("GET /readyz", a.readyz)

	if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPAddr, err)
	}
	a.httpSrv = &http.Server{
		Handler:           a.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	if roles.Players {
		if a.table == nil || !roles.Ingest {
			return nil, errors.New("simulated players need the steer and ingest roles")
		}
		sc, err := sim.Load("steady")
		if err != nil {
			return nil, err
		}
		// The steady world has about 460 concurrent viewers at scale 1.
		sc = sc.Scaled(max(0.01, float64(cfg.Demo.Viewers)/460))
		sc.Seed = uint64(cfg.Demo.Seed)
		// The players ask the real actuators over the network, each view
		// one of DNS, 302 and content steering (HLS, DASH), so the loop
		// closes through the code users run and every actuator's
		// dashboards move.
		lo := simloop.LiveOptions{
			Ingest: "http://" + a.httpLn.Addr().String(), // also the /r/ and /steer/ base
			Path:   simloop.PathMixed, Catalog: cfg.Catalog(),
			Logger: log, Registerer: a.reg,
		}
		if addr := a.DNSAddr(); addr != "" {
			lo.DNSAddr, lo.Zone = addr, cfg.DNS.Zones[0]
		} else {
			lo.Mix = []simloop.Path{simloop.PathHTTP, simloop.PathHLS, simloop.PathDASH}
		}
		players, err := simloop.NewLiveWith(a.table, lo)
		if err != nil {
			return nil, err
		}
		a.players = func(ctx context.Context) error {
			defer players.Close()
			_, err := sim.Run(ctx, sc, players, sim.RunOptions{RealTime: true, Policy: "demo", Logger: log})
			return err
		}
	}
	if roles.Fleet {
		// The players live where the coverage file says clients are, so
		// every one of them resolves to a region the operator configured.
		_, cov, err := buildGeo(cfg.Geo)
		if err != nil {
			return nil, err
		}
		cdns := make([]string, len(cfg.CDNs))
		for i, c := range cfg.CDNs {
			cdns[i] = c.Name
		}
		a.fleet = fleet.New(fleet.Options{
			Target: "http://" + a.httpLn.Addr().String(), Viewers: cfg.Demo.Viewers, Seed: cfg.Demo.Seed,
			Coverage: cov, Services: serviceNames(cfg), CDNs: cdns, Logger: log,
		})
	}
	return a, nil
}

// Topics are every topic the roles use, as they create them: the beacons
// and dead-letter topics first.
func Topics(cfg config.Config) []kafkaio.Topic {
	return []kafkaio.Topic{
		{Name: cfg.Kafka.BeaconsTopic, Partitions: cfg.Kafka.Partitions},
		{Name: cfg.Kafka.DeadLetterTopic, Partitions: 1},
		// One partition: nodes read it whole, and per-key order is total.
		{Name: cfg.Kafka.RankingsTopic, Partitions: 1, Compacted: true},
		{Name: cfg.Kafka.OverridesTopic, Partitions: 1, Compacted: true},
		// Every member of the scorer group reads both whole; the deltas a
		// score.replay back (at most an hour), the parts a few ticks.
		{Name: cfg.Kafka.ScoreDeltasTopic, Partitions: 1, Retention: time.Hour},
		{Name: cfg.Kafka.ScorePartsTopic, Partitions: 1, Retention: 15 * time.Minute},
	}
}

func (a *App) buildScorer(cfg config.Config, log *slog.Logger) error {
	// Checked here once, so a bad catalog or policy fails the start, not
	// every generation.
	if _, err := steering.NewEngine(cfg.Catalog(), cfg.Policy(), time.Now()); err != nil {
		return fmt.Errorf("steering engine: %w", err)
	}
	var err error
	for _, w := range []struct {
		to    **kafkaio.Writer
		topic string
	}{{&a.rankWriter, cfg.Kafka.RankingsTopic}, {&a.deltaWriter, cfg.Kafka.ScoreDeltasTopic}, {&a.partWriter, cfg.Kafka.ScorePartsTopic}} {
		if *w.to, err = kafkaio.NewWriter(kafkaio.WriterOptions{
			Brokers: a.brokers, Topic: w.topic, ClientID: cfg.Kafka.ClientID,
			Compression: "zstd", BatchTimeout: time.Millisecond, Logger: log.With("component", "kafka-writer", "topic", w.topic),
		}); err != nil {
			return err
		}
	}
	cat, pol := cfg.Catalog(), cfg.Policy()
	if a.scorer, err = scorer.NewGroup(a.deltaWriter, a.partWriter, scorer.GroupOptions{
		Brokers: a.brokers, ClientID: cfg.Kafka.ClientID, GroupID: cfg.Score.GroupID,
		Beacons: cfg.Kafka.BeaconsTopic, Deltas: cfg.Kafka.ScoreDeltasTopic, Parts: cfg.Kafka.ScorePartsTopic,
		NewEngine: func(now time.Time) (*steering.Engine, error) { return steering.NewEngine(cat, pol, now) },
		Interval:  cfg.Score.Interval.D(), Replay: cfg.Score.Replay.D(), PartMaxAge: pol.Stale.Static,
		Rankings: a.rankWriter, RankingsTopic: cfg.Kafka.RankingsTopic, Services: serviceNames(cfg),
		Overrides: a.follower, Logger: log, Registerer: a.reg,
	}); err != nil {
		return err
	}
	var targets []probe.Target
	for _, c := range cfg.CDNs {
		if c.HealthURL != "" {
			targets = append(targets, probe.Target{CDN: c.Name, URL: c.HealthURL})
		}
	}
	if len(targets) > 0 {
		pol := cfg.Policy()
		if a.prober, err = probe.New(targets, a.scorer, probe.Options{
			Interval: pol.Probe.Interval, Timeout: pol.Probe.Timeout, Logger: log, Registerer: a.reg,
		}); err != nil {
			return fmt.Errorf("health probes: %w", err)
		}
	}
	return nil
}

// buildTable is the steering table a node decides from, kept current
// from the rankings topic, with the overrides of the overrides topic
// applied by the node itself (so one stops at its expiry here, whatever
// the scorer does).
func (a *App) buildTable(cfg config.Config, log *slog.Logger) error {
	var err error
	if a.table, err = steering.NewTable(cfg.Catalog(), cfg.Policy().Stale, nil); err != nil {
		return err
	}
	var services []string
	for _, s := range cfg.Services {
		services = append(services, s.Name)
	}
	a.subscriber = scorer.NewSubscriber(a.table, services, scorer.SubscriberOptions{
		Brokers: a.brokers, Topic: cfg.Kafka.RankingsTopic, ClientID: cfg.Kafka.ClientID, Logger: log, Registerer: a.reg,
	})
	table := a.table
	a.follower.OnChange(func(active []steering.Override) {
		if err := table.SetOverrides(active); err != nil {
			// One the catalog refuses (a CDN removed since it was
			// made) is left out; the others apply.
			log.Error("overrides refused by the steering table", "err", err)
		}
	})
	return nil
}

func (a *App) buildSteer(cfg config.Config, log *slog.Logger) error {
	var err error
	loc, _, err := buildGeo(cfg.Geo)
	if err != nil {
		return err
	}
	// The decision log goes to ClickHouse when there is one (the consume
	// role's connection, or one of its own), else to a ring in memory.
	var sink analytics.DecisionSink
	switch ch, ok := a.store.(*analytics.ClickHouse); {
	case ok:
		sink, a.decisions = ch, ch
	case cfg.ClickHouse.Addr != "":
		// Opened when first needed: a node starts and answers with
		// ClickHouse down.
		a.decisionCH = &lazyClickHouse{opts: ClickHouseOptions(cfg.ClickHouse), log: log}
		sink, a.decisions = a.decisionCH, a.decisionCH
	default:
		ring := analytics.NewDecisionRing(0)
		sink, a.decisions = ring, ring
	}
	if a.declog, err = analytics.NewDecisionLog(sink, analytics.DecisionLogOptions{Logger: log.With("component", "decision-log"), Registerer: a.reg}); err != nil {
		return err
	}
	ro, err := RedirectOptions(cfg, a.table, loc, a.declog, a.reg, log)
	if err != nil {
		return err
	}
	rs, err := redirect.New(ro)
	if err != nil {
		return err
	}
	rs.Register(a.mux)
	if cfg.DNSAddr == "" {
		return nil
	}
	if a.dns, err = dns.New(DNSOptions(cfg, a.table, loc, a.declog, a.reg, log)); err != nil {
		return err
	}
	return a.dns.Listen(cfg.DNSAddr)
}

// RedirectOptions maps the config onto the HTTP redirector's and content
// steering server's options, with a signer for each CDN that wants one.
func RedirectOptions(cfg config.Config, d redirect.Decider, loc geo.Lookuper, decisions redirect.DecisionLogger, reg prometheus.Registerer, log *slog.Logger) (redirect.Options, error) {
	h := cfg.HTTPSteering
	trusted, _ := cfg.Ingest.TrustedPrefixes() // validated with the config
	o := redirect.Options{
		Catalog: cfg.Catalog(), Decider: d, Geo: loc,
		TTL: h.TTL.D(), IncidentTTL: h.IncidentTTL.D(), MaxTTL: h.MaxTTL.D(), TTLJitter: h.TTLJitter,
		ShedAboveRPS: h.ShedAboveRPS, DemoteFactor: h.DemoteFactor, DemoteFor: h.DemoteFor.D(),
		ViewCookie: h.ViewCookie, TrustedProxies: trusted,
		DecisionLog: decisions, LogSample: h.DecisionLogSample,
		Logger: log, Registerer: reg,
	}
	for _, c := range cfg.CDNs {
		if c.Signing.Scheme == "" {
			continue
		}
		sg, err := redirect.NewAkamai2(c.Signing.Key, c.Signing.Param, c.Signing.Expiry.D(), c.Signing.ACL)
		if err != nil {
			return o, fmt.Errorf("cdn %q signing: %w", c.Name, err)
		}
		if o.Signers == nil {
			o.Signers = map[string]redirect.Signer{}
		}
		o.Signers[c.Name] = sg
	}
	return o, nil
}

// DNSOptions maps the config onto the DNS server's options.
func DNSOptions(cfg config.Config, d dns.Decider, loc geo.Lookuper, decisions dns.DecisionLogger, reg prometheus.Registerer, log *slog.Logger) dns.Options {
	c := cfg.DNS
	o := dns.Options{
		Zones: c.Zones, TTL: c.TTL.D(), IncidentTTL: c.IncidentTTL.D(), TTLJitter: c.TTLJitter, ApexTTL: c.ApexTTL.D(),
		SOA: dns.SOA{
			MName: c.SOA.MName, RName: c.SOA.RName, Serial: c.SOA.Serial,
			Refresh: c.SOA.Refresh.D(), Retry: c.SOA.Retry.D(), Expire: c.SOA.Expire.D(), Minimum: c.SOA.Minimum.D(),
		},
		RateLimit: dns.RateLimit{PerSecond: c.RateLimit.ResponsesPerSecond, Slip: c.RateLimit.Slip},
		Catalog:   cfg.Catalog(), Decider: d, Geo: loc,
		DecisionLog: decisions, LogSample: c.DecisionLogSample,
		Logger: log, Registerer: reg,
	}
	for _, ns := range c.NS {
		o.NS = append(o.NS, dns.NameServer{Name: ns.Name, Addrs: ns.NSAddrs()})
	}
	return o
}

// Table is the steering node's snapshot table, nil unless Steer runs.
func (a *App) Table() *steering.Table { return a.table }

// Scorer is the score role, nil unless it runs.
func (a *App) Scorer() *scorer.Group { return a.scorer }

// DecisionStore answers questions about the steering decisions logged.
type DecisionStore interface {
	Decisions(ctx context.Context, q analytics.DecisionQuery) ([]steering.DecisionRecord, error)
}

// Decisions is where the decision log is kept (DNS, 302 and content
// steering answers), nil unless the steer role runs.
func (a *App) Decisions() DecisionStore { return a.decisions }

// DNSAddr is the steering DNS server's bound address (UDP and TCP), ""
// when it does not run.
func (a *App) DNSAddr() string {
	if a.dns == nil {
		return ""
	}
	return a.dns.Addr()
}

// Mux lets later roles (steering, admin API, UI) mount their handlers.
func (a *App) Mux() *http.ServeMux { return a.mux }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// Brokers are the Kafka addresses in use (the embedded broker's, or the
// configured ones).
func (a *App) Brokers() []string { return a.brokers }

// Embedded is the in-process broker, nil with real brokers.
func (a *App) Embedded() *kafkaio.Embedded { return a.broker }

// Store is the analytics store, nil unless the consume role runs.
func (a *App) Store() Store { return a.store }

// Registry is the process's metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Run serves until ctx is done, then stops in dependency order: players,
// then ingest (in-flight requests finish publishing), then the producer;
// with the embedded broker the consumer drains it before it stops, because
// that broker's data dies with the process; then the store and the broker.
func (a *App) Run(ctx context.Context) error {
	defer a.closeAll()
	consumeCtx, stopConsume := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsume()

	g, gctx := errgroup.WithContext(ctx)
	var consumeDone chan error
	if a.consumer != nil {
		consumeDone = make(chan error, 1)
		go func() { consumeDone <- a.consumer.Run(consumeCtx) }()
	}
	g.Go(func() error {
		if err := a.httpSrv.Serve(a.httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if a.fleet != nil {
		g.Go(func() error { return a.fleet.Run(gctx) })
	}
	if a.scorer != nil {
		g.Go(func() error { return a.scorer.Run(gctx) })
	}
	if a.prober != nil {
		g.Go(func() error { return a.prober.Run(gctx) })
	}
	if a.subscriber != nil {
		g.Go(func() error { return a.subscriber.Run(gctx) })
	}
	if a.follower != nil {
		g.Go(func() error { return a.follower.Run(gctx) })
	}
	if a.dns != nil {
		srv := a.dns
		g.Go(func() error { return srv.Run(gctx) })
	}
	if a.live != nil {
		g.Go(func() error { return a.live.Run(gctx) })
	}
	if a.lagGauge != nil {
		g.Go(func() error { return a.lagGauge.Run(gctx) })
	}
	if a.declog != nil {
		dl := a.declog
		g.Go(func() error { return dl.Run(gctx) })
	}
	if a.players != nil {
		g.Go(func() error {
			if err := a.players(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("simulated players: %w", err)
			}
			return nil
		})
	}
	if consumeDone != nil {
		g.Go(func() error {
			select {
			case err := <-consumeDone:
				consumeDone <- err // for the shutdown path below
				if err != nil {
					return fmt.Errorf("consumer: %w", err)
				}
				return errors.New("consumer stopped")
			case <-gctx.Done():
				return nil
			}
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := a.httpSrv.Shutdown(sctx); err != nil {
			a.log.Warn("http shutdown", "err", err)
		}
		return nil
	})
	err := g.Wait()

	if a.writer != nil {
		if cerr := a.writer.Close(); cerr != nil {
			a.log.Warn("close kafka writer", "err", cerr)
		}
		a.writer = nil
	}
	if consumeDone != nil {
		if a.broker != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if derr := kafkaio.WaitDrained(dctx, a.brokers, a.cfg.Consume.GroupID, a.cfg.Kafka.BeaconsTopic); derr != nil {
				a.log.Error("embedded broker not drained before exit; beacons may be lost", "err", derr)
			}
			cancel()
		}
		stopConsume()
		if cerr := <-consumeDone; cerr != nil {
			a.log.Error("consumer", "err", cerr)
			err = errors.Join(err, cerr)
		}
	}
	return err
}

func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []string
	if err := kafkaio.Ping(ctx, a.brokers); err != nil {
		problems = append(problems, "kafka: "+err.Error())
	}
	if a.store != nil {
		if err := a.store.Ping(ctx); err != nil {
			problems = append(problems, "analytics store: "+err.Error())
		}
	}
	if a.auditCH != nil {
		// The admin role's own connection: without the audit store it
		// refuses every change (fail closed), so it is not ready.
		if err := a.auditCH.Ping(ctx); err != nil {
			problems = append(problems, "audit store: "+err.Error())
		}
	}
	if a.scorer != nil && !a.scorer.Ready() {
		problems = append(problems, "scorer: not given its beacon partitions by the scorer group yet")
	}
	if a.follower != nil {
		select {
		case <-a.follower.Ready():
		default:
			// Deciding with half the overrides would undo a ban or a pin.
			problems = append(problems, "overrides: the override topic is not read to its end yet")
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, p := range problems {
			_, _ = fmt.Fprintln(w, p)
		}
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (a *App) closeAll() {
	if a.writer != nil {
		_ = a.writer.Close()
	}
	if a.reader != nil {
		_ = a.reader.Close()
		a.reader = nil
	}
	if a.dlq != nil {
		_ = a.dlq.Close()
		a.dlq = nil
	}
	for _, w := range []**kafkaio.Writer{&a.rankWriter, &a.deltaWriter, &a.partWriter} {
		if *w != nil {
			_ = (*w).Close()
			*w = nil
		}
	}
	if a.store != nil {
		_ = a.store.Close()
		a.store = nil
	}
	if a.broker != nil {
		a.broker.Close()
		a.broker = nil
	}
	if a.httpLn != nil {
		_ = a.httpLn.Close()
	}
	if a.dns != nil {
		_ = a.dns.Close() // already closed when it ran
	}
	if a.decisionCH != nil {
		_ = a.decisionCH.Close()
	}
	if a.overLog != nil {
		_ = a.overLog.Close()
		a.overLog = nil
	}
	if a.auth != nil {
		_ = a.auth.Close()
		a.auth = nil
	}
	if a.auditCH != nil {
		_ = a.auditCH.Close()
		a.auditCH = nil
	}
}

// ClickHouseOptions maps the config section onto the store's options.
func ClickHouseOptions(c config.ClickHouse) analytics.ClickHouseOptions {
	return analytics.ClickHouseOptions{
		Addr: c.Addr, Database: c.Database, Username: c.Username, Password: c.Password,
		DialTimeout: c.DialTimeout.D(), QueryTimeout: c.QueryTimeout.D(), ExactRange: c.ExactRange.D(),
	}
}

// buildGeo returns the lookup chain (coverage file first, then MaxMind
// databases) and the coverage file on its own.
func buildGeo(g config.Geo) (beacons.Locator, *geo.Coverage, error) {
	cov := geo.Demo()
	if g.Coverage != "" {
		f, err := os.Open(g.Coverage)
		if err != nil {
			return nil, nil, fmt.Errorf("geo.coverage: %w", err)
		}
		defer f.Close()
		if cov, err = geo.LoadCoverage(f); err != nil {
			return nil, nil, fmt.Errorf("geo.coverage %s: %w", g.Coverage, err)
		}
	}
	chain := geo.Chain{cov}
	if g.MMDB != "" || g.ASNMMDB != "" {
		db, err := geo.OpenMMDB(g.MMDB, g.ASNMMDB, g.Regions)
		if err != nil {
			return nil, nil, fmt.Errorf("geo mmdb: %w", err)
		}
		chain = append(chain, db)
	}
	return chain, cov, nil
}

package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/auth"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/internal/live"
	"github.com/cdnpilot/cdnpilot/internal/overrides"
	"github.com/cdnpilot/cdnpilot/internal/replay"
	"github.com/cdnpilot/cdnpilot/ui/api"
	"github.com/cdnpilot/cdnpilot/ui/web"
)

// buildAdmin mounts the admin API on /api/v1/: overrides written to the
// overrides topic, the audit trail in ClickHouse (in memory in the demo),
// QoE series and replay over the analytics store.
func (a *App) buildAdmin(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	ac := cfg.Admin
	if len(ac.Tokens) == 0 && ac.Token == "" && ac.OIDC.Issuer == "" {
		return errors.New("admin: no way to authenticate: set CDNPILOT_ADMIN_TOKEN, admin.tokens or admin.oidc.issuer")
	}
	var err error
	if a.auth, err = auth.New(ctx, ac, auth.Options{Logger: log.With("component", "admin-auth")}); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if a.overLog, err = overrides.NewLog(overrides.LogOptions{
		Brokers: a.brokers, Topic: cfg.Kafka.OverridesTopic, ClientID: cfg.Kafka.ClientID, Logger: log,
	}); err != nil {
		return err
	}
	store := overrides.NewStore(a.overLog, a.follower, nil)

	// The audit trail and the QoE queries use the process's ClickHouse
	// when it has one (the consume role's connection, or its own), else
	// the in-memory store of the demo.
	var qoe interface {
		api.SeriesSource
		replay.Source
	}
	switch st := a.store.(type) {
	case *analytics.ClickHouse:
		a.audit, qoe = st, st
	case *analytics.Memory:
		a.audit, qoe = analytics.NewAuditMemory(0), st
	default:
		if cfg.ClickHouse.Addr == "" {
			return errors.New("admin: no ClickHouse address: the audit trail needs one (set --clickhouse, CDNPILOT_CLICKHOUSE_ADDR or clickhouse.addr)")
		}
		if a.auditCH, err = analytics.OpenClickHouse(ctx, ClickHouseOptions(cfg.ClickHouse), log); err != nil {
			return fmt.Errorf("admin: open clickhouse for the audit trail: %w", err)
		}
		a.audit, qoe = a.auditCH, a.auditCH
	}

	loc, cov, err := buildGeo(cfg.Geo)
	if err != nil {
		return err
	}
	asns := map[uint32]geo.Location{}
	for _, e := range cov.Entries() {
		if _, seen := asns[e.ASN]; !seen && e.ASN != 0 {
			asns[e.ASN] = e
		}
	}
	trusted, err := ac.TrustedPrefixes()
	if err != nil {
		return err
	}
	// The decision rates come from the decision log: the steer role's
	// own store in one process, else ClickHouse.
	var decisions api.DecisionCounter
	if dc, ok := a.decisions.(api.DecisionCounter); ok {
		decisions = dc
	} else if dc, ok := qoe.(api.DecisionCounter); ok {
		decisions = dc
	}
	pol := cfg.Policy()
	if a.live, err = live.New(a.table, live.Options{Services: serviceNames(cfg), StaleAfter: pol.Stale.Freeze, Registerer: a.reg}); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	a.admin = api.New(api.Options{
		Auth: a.auth, Catalog: cfg.Catalog(), Rankings: a.table, Overrides: store, Audit: a.audit,
		QoE: qoe, Replay: qoe, Policy: pol, Geo: loc, ASNs: asns,
		Live: a.live, Decisions: decisions,
		DecisionSample: map[string]float64{
			"dns": cfg.DNS.DecisionLogSample, "http": cfg.HTTPSteering.DecisionLogSample,
			"hls": cfg.HTTPSteering.DecisionLogSample, "dash": cfg.HTTPSteering.DecisionLogSample,
		},
		MaxOverrideTTL: ac.MaxOverrideTTL.D(),
		PerTokenRPS:    ac.RateLimit.PerTokenRPS, PerClientRPS: ac.RateLimit.PerClientRPS, Burst: ac.RateLimit.Burst,
		CORSOrigins: ac.CORSOrigins, TrustedProxies: trusted, Logger: log, Registerer: a.reg,
	})
	a.mux.Handle("/api/v1/", a.admin)
	// The web UI: a client of the API above, nothing more.
	ui := web.Handler()
	a.mux.Handle("GET /{$}", ui)
	a.mux.Handle("GET /ui/", ui)
	return nil
}

func serviceNames(cfg config.Config) []string {
	out := make([]string, len(cfg.Services))
	for i, s := range cfg.Services {
		out[i] = s.Name
	}
	return out
}

// Admin is the admin API, nil unless the admin role runs.
func (a *App) Admin() *api.Server { return a.admin }

// Overrides is the override follower of a scorer or steering node, nil
// when the process is neither.
func (a *App) Overrides() *overrides.Follower { return a.follower }

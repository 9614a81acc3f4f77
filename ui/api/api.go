// Package api is cdnpilot's admin API under /api/v1 (gin): rankings and
// decision explanations for operators, audited overrides for on-call
// engineers, the audit trail, QoE series and the counterfactual replay.
// docs/API.md is the reader's guide; openapi.json here is the contract,
// served at /api/v1/openapi.json and checked against the routes by test.
//
// Every route but those outside /api/v1 (health, metrics) needs a bearer
// token; each route names the weakest role that may call it. The middleware
// chain, outermost first: recover, CORS, client address, per-client rate
// limit, body limit, authentication, per-token rate limit, role. A denial
// (401, 403) is written to the audit trail like a change.
package api

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/auth"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/internal/overrides"
	"github.com/cdnpilot/cdnpilot/internal/replay"
	"github.com/cdnpilot/cdnpilot/steering"
)

// OpenAPI is the API's OpenAPI 3 document.
//
//go:embed openapi.json
var OpenAPI []byte

// MaxBody is the largest request body taken; larger ones get 413.
const MaxBody = 64 << 10

// Authenticator turns an Authorization header into a caller.
type Authenticator interface {
	Authenticate(ctx context.Context, header string) (auth.Principal, error)
}

// Rankings is what a steering node decides from (a steering.Table): the
// effective snapshot of a service (overrides applied), its age, the
// overrides it holds, and a decision for one query.
type Rankings interface {
	Snapshot(service string) *steering.Snapshot
	Age(service string) (time.Duration, bool)
	Decide(q steering.Query) (steering.Decision, error)
	Overrides() []steering.Override
}

// OverrideStore is the durable override log (internal/overrides.Store).
// Changes are planned first, so that the audit record is written before
// anything is committed.
type OverrideStore interface {
	PlanCreate(o steering.Override, actor string) (overrides.Record, error)
	PlanExtend(id string, expires time.Time, reason, actor string) (before, after overrides.Record, err error)
	PlanDelete(id, reason, actor string) (before, after overrides.Record, err error)
	Commit(ctx context.Context, r overrides.Record) error
	Get(id string) (overrides.Record, bool)
	List(f overrides.Filter) []overrides.Record
}

// AuditStore is the append-only audit trail. AppendAudit must be
// synchronous: a mutation goes ahead only once its record is stored.
type AuditStore interface {
	AppendAudit(ctx context.Context, r analytics.AuditRecord) error
	Audit(ctx context.Context, q analytics.AuditQuery) (analytics.AuditPage, error)
}

// SeriesSource answers QoE time series (an analytics store).
type SeriesSource interface {
	Series(ctx context.Context, q analytics.SeriesQuery) ([]analytics.Series, error)
}

// Options configure the API.
type Options struct {
	Auth      Authenticator
	Catalog   steering.Catalog
	Rankings  Rankings
	Overrides OverrideStore
	Audit     AuditStore
	// QoE and Replay read the analytics store; nil answers 503 on their
	// routes (a node without a store).
	QoE    SeriesSource
	Replay replay.Source
	// Live is the live history behind /api/v1/stream; Decisions counts
	// the decision log for /api/v1/decisions/rate, whose rates are the
	// counts divided by DecisionSample (per protocol: the share logged).
	// nil answers 503 on their routes.
	Live           LiveSource
	Decisions      DecisionCounter
	DecisionSample map[string]float64
	// StreamMax ends a stream after this long (default 10 minutes): the
	// client reconnects, and so its token is checked again.
	StreamMax time.Duration
	// Policy is the steering policy in force: the replay's yardstick.
	Policy steering.Policy
	// Geo places an explained client address; ASNs maps an AS number to
	// where the coverage file puts it, for explain by ASN alone.
	Geo  geo.Lookuper
	ASNs map[uint32]geo.Location
	// MaxOverrideTTL caps how far ahead an override may expire.
	MaxOverrideTTL time.Duration
	// Rate limits, requests per second per token and per client address
	// (0: off), with one burst for both.
	PerTokenRPS, PerClientRPS float64
	Burst                     int
	// CORSOrigins are the exact origins browsers may call from.
	CORSOrigins []string
	// TrustedProxies are believed about X-Forwarded-For.
	TrustedProxies []netip.Prefix
	Now            func() time.Time
	Logger         *slog.Logger
	// Registerer takes the API's metrics; nil: not exported.
	Registerer prometheus.Registerer
}

// route is one endpoint: the weakest role that may call it, and whether
// it changes state (a change is audited before it is made).
type route struct {
	method, path string
	role         auth.Role
	handler      gin.HandlerFunc
}

// Server is the API.
type Server struct {
	o      Options
	audits *prometheus.CounterVec
	log    *slog.Logger
	engine *gin.Engine
	limits *limiter
	routes []route
}

// New builds the API. Every dependency but QoE and Replay is required.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StreamMax <= 0 {
		o.StreamMax = 10 * time.Minute
	}
	if o.MaxOverrideTTL <= 0 {
		o.MaxOverrideTTL = 24 * time.Hour
	}
	s := &Server{o: o, log: o.Logger.With("component", "admin-api"), limits: newLimiter(o.PerTokenRPS, o.PerClientRPS, o.Burst)}
	s.audits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdnpilot_admin_audit_writes_total",
		Help: "Audit records written (result ok) or refused by the audit store (result error); with errors every change is refused.",
	}, []string{"result"})
	for _, r := range []string{"ok", "error"} {
		s.audits.WithLabelValues(r) // both series from the start, for alerts
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(s.audits)
	}
	s.routes = []route{
		{"GET", "/api/v1/openapi.json", auth.RoleViewer, s.openapi},
		{"GET", "/api/v1/whoami", auth.RoleViewer, s.whoami},
		{"GET", "/api/v1/rankings", auth.RoleViewer, s.rankings},
		{"GET", "/api/v1/decisions/explain", auth.RoleViewer, s.explain},
		{"GET", "/api/v1/decisions/rate", auth.RoleViewer, s.decisionRate},
		{"GET", "/api/v1/stream", auth.RoleViewer, s.stream},
		{"GET", "/api/v1/cdns", auth.RoleViewer, s.cdns},
		{"GET", "/api/v1/qoe/series", auth.RoleViewer, s.series},
		{"GET", "/api/v1/overrides", auth.RoleViewer, s.listOverrides},
		{"GET", "/api/v1/overrides/:id", auth.RoleViewer, s.getOverride},
		{"POST", "/api/v1/overrides", auth.RoleOperator, s.createOverride},
		{"POST", "/api/v1/overrides/:id/extend", auth.RoleOperator, s.extendOverride},
		{"DELETE", "/api/v1/overrides/:id", auth.RoleOperator, s.deleteOverride},
		{"POST", "/api/v1/replay", auth.RoleOperator, s.replay},
		{"GET", "/api/v1/audit", auth.RoleAdmin, s.audit},
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// The client address is ours to find (trusted proxies only); gin must
	// not believe X-Forwarded-For on its own.
	_ = r.SetTrustedProxies(nil)
	r.HandleMethodNotAllowed = true
	r.Use(s.recover, s.cors, s.clientLimit, s.bodyLimit)
	r.NoRoute(func(c *gin.Context) { apiError(c, http.StatusNotFound, "", "no such endpoint: "+c.Request.URL.Path) })
	r.NoMethod(func(c *gin.Context) {
		apiError(c, http.StatusMethodNotAllowed, "", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	for _, rt := range s.routes {
		r.Handle(rt.method, rt.path, s.authenticate, s.tokenLimit, s.authorize(rt.role), rt.handler)
	}
	s.engine = r
	return s
}

// ServeHTTP serves /api/v1/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// Route is one endpoint of the API and the weakest role that may call it.
type Route struct {
	Method, Path string // Path in gin's form: /api/v1/overrides/:id
	Role         auth.Role
}

// Routes lists the endpoints, for the route x role test and the docs.
func (s *Server) Routes() []Route {
	out := make([]Route, len(s.routes))
	for i, r := range s.routes {
		out[i] = Route{Method: r.method, Path: r.path, Role: r.role}
	}
	return out
}

// GinRoutes is what gin itself has registered: the test holds it equal to
// Routes and to the OpenAPI document.
func (s *Server) GinRoutes() gin.RoutesInfo { return s.engine.Routes() }

// appendAudit writes one audit record and counts the outcome.
func (s *Server) appendAudit(ctx context.Context, r analytics.AuditRecord) error {
	err := s.o.Audit.AppendAudit(ctx, r)
	if err != nil {
		s.audits.WithLabelValues("error").Inc()
		return err
	}
	s.audits.WithLabelValues("ok").Inc()
	return nil
}

// apiError is the one error shape of the API: what is wrong, and which
// field when one is to blame.
func apiError(c *gin.Context, status int, field, msg string) {
	body := gin.H{"error": msg}
	if field != "" {
		body["field"] = field
	}
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(status, body)
}

// ok writes a JSON answer that no cache may keep.
func ok(c *gin.Context, status int, v any) {
	c.Header("Cache-Control", "no-store")
	c.JSON(status, v)
}

func (s *Server) openapi(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "application/json", OpenAPI)
}

type whoamiResponse struct {
	Name     string   `json:"name"`
	Role     string   `json:"role"`
	Via      string   `json:"via"`
	Services []string `json:"services"`
}

func (s *Server) whoami(c *gin.Context) {
	p := principal(c)
	svcs := p.Services
	if svcs == nil {
		svcs = []string{}
	}
	ok(c, http.StatusOK, whoamiResponse{Name: p.Name, Role: p.Role.String(), Via: p.Via, Services: svcs})
}

// retryAfter sets Retry-After in whole seconds, at least 1.
func retryAfter(c *gin.Context, d time.Duration) {
	c.Header("Retry-After", strconv.Itoa(max(1, int((d+time.Second-1)/time.Second))))
}

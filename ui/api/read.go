package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/internal/replay"
	"github.com/cdnpilot/cdnpilot/steering"
)

// ExplainJSON answers GET /api/v1/decisions/explain: where the client is
// placed, the ranking that answers it, and the CDN its view would get.
type ExplainJSON struct {
	Service string `json:"service"`
	// Client is what was asked about: an address, a subnet or an ASN.
	Client   string       `json:"client"`
	Located  bool         `json:"located"`
	Location LocationJSON `json:"location"`
	Decision DecisionJSON `json:"decision"`
	// Ranking is the scope's ranked list, with every CDN's score,
	// confidence, health, weight and reason.
	Ranking *steering.Ranking `json:"ranking"`
	// Overrides are the active overrides that cover the client.
	Overrides []OverrideRef `json:"overrides"`
	// Why says it in words, most important first.
	Why []string `json:"why"`
}

// LocationJSON is where steering places a client.
type LocationJSON struct {
	Country string `json:"country,omitempty"`
	Region  string `json:"region,omitempty"`
	ASN     uint32 `json:"asn,omitempty"`
	// Prefix is the coverage entry that matched.
	Prefix string `json:"prefix,omitempty"`
}

// DecisionJSON is the answer a steering node gives the client.
type DecisionJSON struct {
	CDN             string         `json:"cdn"`
	Host            string         `json:"host"`
	Rule            steering.Rule  `json:"rule"`
	Scope           steering.Scope `json:"scope"`
	ViewID          string         `json:"view_id,omitempty"`
	Stale           bool           `json:"stale"`
	Incident        bool           `json:"incident"`
	SnapshotVersion uint64         `json:"snapshot_version"`
	SnapshotAge     float64        `json:"snapshot_age_seconds"`
}

// OverrideRef is an override as explain lists it.
type OverrideRef struct {
	ID        string    `json:"id"`
	Action    string    `json:"action"`
	CDN       string    `json:"cdn,omitempty"`
	Scope     ScopeJSON `json:"scope"`
	Reason    string    `json:"reason"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) explain(c *gin.Context) {
	q := c.Request.URL.Query()
	if !knownParams(c, q, "service", "ip", "subnet", "region", "asn", "view_id") {
		return
	}
	svc := q.Get("service")
	if !s.requireService(c, svc) {
		return
	}
	given := 0
	for _, k := range []string{"ip", "subnet", "region", "asn"} {
		if q.Has(k) && !(k == "asn" && q.Has("region")) {
			given++
		}
	}
	if given != 1 {
		apiError(c, http.StatusBadRequest, "ip", "give exactly one of ip=, subnet=, asn= or region= (with an optional asn=)")
		return
	}
	out := ExplainJSON{Service: svc, Overrides: []OverrideRef{}}
	var loc geo.Location
	switch {
	case q.Has("ip"):
		a, err := netip.ParseAddr(q.Get("ip"))
		if err != nil {
			apiError(c, http.StatusBadRequest, "ip", "ip: "+strconv.Quote(truncate(q.Get("ip"), 64))+" is not an IP address")
			return
		}
		out.Client = a.Unmap().String()
		loc, out.Located = s.locate(a.Unmap())
	case q.Has("subnet"):
		p, err := netip.ParsePrefix(q.Get("subnet"))
		if err != nil {
			apiError(c, http.StatusBadRequest, "subnet", "subnet: "+strconv.Quote(truncate(q.Get("subnet"), 64))+" is not a CIDR prefix")
			return
		}
		// What the DNS server does with an ECS option: place the
		// prefix's first address.
		p = p.Masked()
		out.Client = p.String()
		loc, out.Located = s.locate(p.Addr().Unmap())
	default:
		var asn uint32
		if v := q.Get("asn"); q.Has("asn") {
			n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(v), "AS"), 10, 32)
			if err != nil || n == 0 {
				apiError(c, http.StatusBadRequest, "asn", "asn: "+strconv.Quote(truncate(v, 64))+" is not an AS number")
				return
			}
			asn = uint32(n)
		}
		if q.Has("region") {
			loc, out.Located = geo.Location{Region: q.Get("region"), ASN: asn}, true
			out.Client = "region " + q.Get("region")
			if asn != 0 {
				out.Client += " AS" + strconv.FormatUint(uint64(asn), 10)
			}
		} else {
			out.Client = "AS" + strconv.FormatUint(uint64(asn), 10)
			loc, out.Located = s.o.ASNs[asn]
			loc.ASN = asn
		}
	}
	out.Location = LocationJSON{Country: loc.Country, Region: loc.Region, ASN: loc.ASN}
	if loc.Prefix.IsValid() {
		out.Location.Prefix = loc.Prefix.String()
	}
	sloc := steering.Location{Region: loc.Region, Country: loc.Country, ASN: loc.ASN}
	viewID := q.Get("view_id")
	d, err := s.o.Rankings.Decide(steering.Query{Service: svc, Location: sloc, ViewID: viewID})
	if err != nil {
		apiError(c, http.StatusServiceUnavailable, "", "no decision for "+strconv.Quote(svc)+": "+err.Error())
		return
	}
	age, _ := s.o.Rankings.Age(svc)
	out.Decision = DecisionJSON{CDN: d.CDN, Host: d.Host, Rule: d.Rule, ViewID: viewID, Stale: d.Stale, Incident: d.Incident(),
		SnapshotVersion: d.Version, SnapshotAge: round(age.Seconds(), 3)}
	out.Ranking = d.Ranking
	if d.Ranking != nil {
		out.Decision.Scope = d.Ranking.Scope
	}
	now := s.o.Now()
	for _, o := range s.o.Rankings.Overrides() {
		if covers(o, svc, sloc) && (o.Expires.IsZero() || now.Before(o.Expires)) {
			out.Overrides = append(out.Overrides, OverrideRef{ID: o.ID, Action: actionOf(o), CDN: o.CDN,
				Scope: ScopeJSON{Service: o.Service, Region: o.Region, ASN: o.ASN}, Reason: o.Reason, ExpiresAt: o.Expires})
		}
	}
	out.Why = why(out, d)
	ok(c, http.StatusOK, out)
}

func (s *Server) locate(a netip.Addr) (geo.Location, bool) {
	if s.o.Geo == nil {
		return geo.Location{}, false
	}
	return s.o.Geo.Lookup(a)
}

// covers reports whether an override's scope holds a client location.
func covers(o steering.Override, svc string, loc steering.Location) bool {
	return o.Service == svc && (o.Region == "" || o.Region == loc.Region) && (o.ASN == 0 || o.ASN == loc.ASN)
}

// why puts a decision into words.
func why(e ExplainJSON, d steering.Decision) []string {
	var out []string
	if !e.Located {
		out = append(out, "the client is not in the coverage data: it is steered by the service-wide ranking")
	}
	if d.Stale {
		out = append(out, "the ranking snapshot is older than steering.stale.static: the static fallback order answers")
	}
	r := d.Ranking
	if r == nil {
		return out
	}
	out = append(out, fmt.Sprintf("ranked in scope %s by rule %s", r.Scope, r.Rule))
	if names := r.Fired.Names(); len(names) > 0 {
		out = append(out, "safety rules that acted this round: "+strings.Join(names, ", "))
	}
	for _, o := range e.Overrides {
		out = append(out, fmt.Sprintf("override %s (%s %s) applies: %s", o.ID, o.Action, o.CDN, o.Reason))
	}
	for _, ch := range r.Choices {
		line := fmt.Sprintf("%s: weight %.3f, health %s", ch.CDN, ch.Weight, ch.Health)
		if ch.Score >= 0 {
			line += fmt.Sprintf(", score %.1f from the %s window (confidence %.2f)", ch.Score, ch.ScoreScope, ch.Confidence)
		}
		if ch.Reason != "" {
			line += "; " + ch.Reason
		}
		out = append(out, line)
	}
	out = append(out, fmt.Sprintf("this client gets %s (%s)", d.CDN, d.Host))
	return out
}

// actionOf is the public action of an override: weight and split are
// both "weight" (one CDN's share, or shares summing to 100).
func actionOf(o steering.Override) string {
	if o.Kind == steering.OverrideSplit {
		return "weight"
	}
	return string(o.Kind)
}

// CDNJSON is one CDN in GET /api/v1/cdns.
type CDNJSON struct {
	Name      string           `json:"name"`
	Host      string           `json:"host"`
	Services  []CDNServiceJSON `json:"services"`
	Overrides []OverrideRef    `json:"overrides"`
}

// CDNServiceJSON is a CDN's state in one service's service-wide ranking.
type CDNServiceJSON struct {
	Service string          `json:"service"`
	Health  steering.Health `json:"health"`
	Weight  float64         `json:"weight"`
	Score   float64         `json:"score"`
	Reason  string          `json:"reason,omitempty"`
	// Down lists the scopes where this CDN is down or evacuated.
	Down []string `json:"down"`
}

// CDNList answers GET /api/v1/cdns.
type CDNList struct {
	CDNs []CDNJSON `json:"cdns"`
}

func (s *Server) cdns(c *gin.Context) {
	if !knownParams(c, c.Request.URL.Query()) {
		return
	}
	now := s.o.Now()
	ovs := s.o.Rankings.Overrides()
	out := CDNList{CDNs: []CDNJSON{}}
	for _, cdn := range s.o.Catalog.CDNs {
		j := CDNJSON{Name: cdn.Name, Host: cdn.Host, Services: []CDNServiceJSON{}, Overrides: []OverrideRef{}}
		for _, svc := range s.o.Catalog.Services {
			if !slices.Contains(svc.CDNs, cdn.Name) {
				continue
			}
			st := CDNServiceJSON{Service: svc.Name, Health: steering.HealthUnknown, Score: -1, Down: []string{}}
			if snap := s.o.Rankings.Snapshot(svc.Name); snap != nil {
				for _, r := range snap.Rankings {
					for _, ch := range r.Choices {
						if ch.CDN != cdn.Name {
							continue
						}
						if r.Scope.Level == steering.LevelGlobal {
							st.Health, st.Weight, st.Score, st.Reason = ch.Health, ch.Weight, round(ch.Score, 2), ch.Reason
						}
						if ch.Health == steering.HealthDown || ch.Health == steering.HealthEvacuated {
							st.Down = append(st.Down, r.Scope.String())
						}
					}
				}
			}
			j.Services = append(j.Services, st)
		}
		for _, o := range ovs {
			if (o.CDN == cdn.Name || o.Split[cdn.Name] > 0) && (o.Expires.IsZero() || now.Before(o.Expires)) {
				j.Overrides = append(j.Overrides, OverrideRef{ID: o.ID, Action: actionOf(o), CDN: o.CDN,
					Scope: ScopeJSON{Service: o.Service, Region: o.Region, ASN: o.ASN}, Reason: o.Reason, ExpiresAt: o.Expires})
			}
		}
		out.CDNs = append(out.CDNs, j)
	}
	ok(c, http.StatusOK, out)
}

// SeriesJSON answers GET /api/v1/qoe/series.
type SeriesJSON struct {
	Metric  analytics.Metric `json:"metric"`
	From    time.Time        `json:"from"`
	To      time.Time        `json:"to"`
	Step    string           `json:"step"`
	GroupBy string           `json:"group_by,omitempty"`
	Series  []SeriesLine     `json:"series"`
}

// SeriesLine is one line of a chart.
type SeriesLine struct {
	Key    string      `json:"key"`
	Points []PointJSON `json:"points"`
}

// PointJSON is one bucket: its start, value and sample count.
type PointJSON struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
	N uint64    `json:"n"`
}

func (s *Server) series(c *gin.Context) {
	q := c.Request.URL.Query()
	if !knownParams(c, q, "metric", "service", "cdn", "region", "country", "asn", "from", "to", "step", "group_by") {
		return
	}
	if s.o.QoE == nil {
		apiError(c, http.StatusServiceUnavailable, "", "this node has no analytics store")
		return
	}
	now := s.o.Now()
	sq := analytics.SeriesQuery{
		Filter:  analytics.Filter{Service: q.Get("service"), CDN: q.Get("cdn"), Region: q.Get("region"), Country: q.Get("country")},
		Metric:  analytics.Metric(q.Get("metric")),
		From:    now.Add(-time.Hour).Truncate(time.Minute),
		To:      now.Truncate(time.Minute).Add(time.Minute),
		Step:    time.Minute,
		GroupBy: analytics.Dimension(q.Get("group_by")),
	}
	if sq.Metric == "" {
		apiError(c, http.StatusBadRequest, "metric", "metric: required; one of "+metricNames())
		return
	}
	if v := q.Get("asn"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			apiError(c, http.StatusBadRequest, "asn", "asn: "+strconv.Quote(truncate(v, 64))+" is not an AS number")
			return
		}
		sq.ASN = uint32(n)
	}
	if !timeParams(c, q, "from", &sq.From, "to", &sq.To) {
		return
	}
	if v := q.Get("step"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			apiError(c, http.StatusBadRequest, "step", "step: "+strconv.Quote(truncate(v, 64))+" is not a duration like 1m or 5m")
			return
		}
		sq.Step = d
	}
	if err := sq.Validate(); err != nil {
		field, _, _ := strings.Cut(err.Error(), ":")
		apiError(c, http.StatusBadRequest, field, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 30*time.Second)
	defer cancel()
	lines, err := s.o.QoE.Series(ctx, sq)
	if err != nil {
		s.log.Error("qoe series query failed", "err", err)
		apiError(c, http.StatusServiceUnavailable, "", "analytics store: "+err.Error())
		return
	}
	out := SeriesJSON{Metric: sq.Metric, From: sq.From, To: sq.To, Step: sq.Step.String(), GroupBy: string(sq.GroupBy), Series: []SeriesLine{}}
	for _, l := range lines {
		line := SeriesLine{Key: l.Key, Points: make([]PointJSON, len(l.Points))}
		for i, p := range l.Points {
			line.Points[i] = PointJSON{T: p.T, V: round(p.V, 3), N: p.N}
		}
		out.Series = append(out.Series, line)
	}
	ok(c, http.StatusOK, out)
}

// timeParams reads two optional RFC 3339 query parameters (from and to,
// since and until) into the defaults already there; false means it
// answered 400 naming the bad one.
func timeParams(c *gin.Context, q url.Values, first string, a *time.Time, second string, b *time.Time) bool {
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{first, a}, {second, b}} {
		if v := q.Get(t.name); v != "" {
			p, err := time.Parse(time.RFC3339, v)
			if err != nil {
				apiError(c, http.StatusBadRequest, t.name, t.name+": "+strconv.Quote(truncate(v, 64))+" is not an RFC 3339 time")
				return false
			}
			*t.dst = p
		}
	}
	return true
}

func metricNames() string {
	ms := analytics.Metrics()
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// AuditJSON answers GET /api/v1/audit.
type AuditJSON struct {
	Records []analytics.AuditRecord `json:"records"`
	Next    string                  `json:"next,omitempty"`
}

func (s *Server) audit(c *gin.Context) {
	q := c.Request.URL.Query()
	if !knownParams(c, q, "actor", "action", "outcome", "service", "override_id", "since", "until", "limit", "before") {
		return
	}
	aq := analytics.AuditQuery{Actor: q.Get("actor"), Action: q.Get("action"), Outcome: q.Get("outcome"), Service: q.Get("service"),
		OverrideID: q.Get("override_id"), Before: q.Get("before")}
	if !timeParams(c, q, "since", &aq.Since, "until", &aq.Until) {
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			apiError(c, http.StatusBadRequest, "limit", "limit: "+strconv.Quote(truncate(v, 64))+" is not a number")
			return
		}
		aq.Limit = n
	}
	if err := aq.Validate(); err != nil {
		field, _, _ := strings.Cut(err.Error(), ":")
		apiError(c, http.StatusBadRequest, field, err.Error())
		return
	}
	page, err := s.o.Audit.Audit(c.Request.Context(), aq)
	if err != nil {
		s.log.Error("audit query failed", "err", err)
		apiError(c, http.StatusServiceUnavailable, "", "audit store: "+err.Error())
		return
	}
	out := AuditJSON{Records: page.Records, Next: page.Next}
	if out.Records == nil {
		out.Records = []analytics.AuditRecord{}
	}
	ok(c, http.StatusOK, out)
}

func (s *Server) replay(c *gin.Context) {
	if s.o.Replay == nil {
		apiError(c, http.StatusServiceUnavailable, "", "this node has no analytics store to replay")
		return
	}
	req, err := replay.Decode(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			apiError(c, http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("body: over the limit of %d bytes", MaxBody))
			return
		}
		field, _, _ := strings.Cut(err.Error(), ":")
		apiError(c, http.StatusBadRequest, field, err.Error())
		return
	}
	if !s.hasService(req.Service) && req.Service != "" {
		apiError(c, http.StatusUnprocessableEntity, "service", "service: "+strconv.Quote(req.Service)+" is not a configured service")
		return
	}
	if err := req.Validate(s.o.Now()); err != nil {
		field, _, _ := strings.Cut(err.Error(), ":")
		apiError(c, http.StatusUnprocessableEntity, field, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 60*time.Second)
	defer cancel()
	res, err := replay.Run(ctx, s.o.Replay, s.o.Policy, req)
	if err != nil {
		s.log.Error("replay failed", "err", err)
		apiError(c, http.StatusServiceUnavailable, "", "replay: "+err.Error())
		return
	}
	ok(c, http.StatusOK, res)
}

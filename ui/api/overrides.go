package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cdnpilot/cdnpilot/internal/auth"
	"github.com/cdnpilot/cdnpilot/internal/overrides"
	"github.com/cdnpilot/cdnpilot/steering"
)

// OverrideRequest is the body of POST /api/v1/overrides: the public shape
// of an override (docs/API.md).
type OverrideRequest struct {
	Action    string             `json:"action"`
	CDN       string             `json:"cdn,omitempty"`
	Weights   map[string]float64 `json:"weights,omitempty"`
	Scope     ScopeJSON          `json:"scope"`
	Reason    string             `json:"reason"`
	ExpiresAt string             `json:"expires_at"`
	DryRun    bool               `json:"dry_run,omitempty"`
}

// ScopeJSON is the clients an override covers.
type ScopeJSON struct {
	Service string `json:"service"`
	Region  string `json:"region,omitempty"`
	ASN     uint32 `json:"asn,omitempty"`
}

// OverrideJSON is an override as the API answers it.
type OverrideJSON struct {
	ID           string             `json:"id"`
	Action       string             `json:"action"`
	CDN          string             `json:"cdn,omitempty"`
	Weights      map[string]float64 `json:"weights,omitempty"`
	Scope        ScopeJSON          `json:"scope"`
	Reason       string             `json:"reason"`
	State        string             `json:"state"`
	CreatedAt    time.Time          `json:"created_at"`
	CreatedBy    string             `json:"created_by"`
	ExpiresAt    time.Time          `json:"expires_at"`
	Revision     uint64             `json:"revision"`
	UpdatedAt    time.Time          `json:"updated_at"`
	UpdatedBy    string             `json:"updated_by"`
	DeletedAt    *time.Time         `json:"deleted_at,omitempty"`
	DeletedBy    string             `json:"deleted_by,omitempty"`
	DeleteReason string             `json:"delete_reason,omitempty"`
}

// fieldError is a request error that names the field to blame.
type fieldError struct {
	status int
	field  string
	msg    string
}

func (e *fieldError) Error() string { return e.msg }

func badField(status int, field, format string, args ...any) *fieldError {
	return &fieldError{status: status, field: field, msg: field + ": " + fmt.Sprintf(format, args...)}
}

// decodeJSON reads one JSON object into v, strictly: unknown fields,
// trailing data and a body over MaxBody are errors naming what is wrong.
func decodeJSON(c *gin.Context, v any) *fieldError {
	if c.Request.Body == nil {
		return &fieldError{http.StatusBadRequest, "body", "body: empty; expected a JSON object"}
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return &fieldError{http.StatusBadRequest, "body", "body: more than one JSON value"}
		}
		var extra json.RawMessage
		if dec.Decode(&extra) == nil {
			return &fieldError{http.StatusBadRequest, "body", "body: more than one JSON value"}
		}
		return nil
	}
	return jsonError(err)
}

// jsonError names the field a decoding error is about.
func jsonError(err error) *fieldError {
	var (
		tooBig *http.MaxBytesError
		syn    *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return &fieldError{http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("body: over the limit of %d bytes", MaxBody)}
	case errors.Is(err, io.EOF):
		return &fieldError{http.StatusBadRequest, "body", "body: empty; expected a JSON object"}
	case errors.As(err, &syn):
		return &fieldError{http.StatusBadRequest, "body", fmt.Sprintf("body: invalid JSON at byte %d: %v", syn.Offset, syn)}
	case errors.As(err, &typ):
		f := typ.Field
		if f == "" {
			f = "body"
		}
		return &fieldError{http.StatusBadRequest, f, fmt.Sprintf("%s: %s is not a %s", f, typ.Value, typ.Type)}
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f, _ := strconv.Unquote(name)
		return &fieldError{http.StatusBadRequest, f, "unknown field " + name}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &fieldError{http.StatusBadRequest, "body", "body: truncated JSON"}
	}
	return &fieldError{http.StatusBadRequest, "body", "body: " + msg}
}

// ParseOverride turns the public shape into a steering override and checks
// it against the catalog and the expiry rules. Errors name the field, in
// the request's own words (scope.service, weights.cdn-a, expires_at).
func ParseOverride(req OverrideRequest, cat steering.Catalog, now time.Time, maxTTL time.Duration) (steering.Override, *fieldError) {
	const unproc = http.StatusUnprocessableEntity
	o := steering.Override{Service: req.Scope.Service, Region: req.Scope.Region, ASN: req.Scope.ASN, Reason: strings.TrimSpace(req.Reason), Created: now}
	svc, ok := serviceOf(cat, req.Scope.Service)
	switch {
	case req.Scope.Service == "":
		return o, badField(unproc, "scope.service", "required")
	case !ok:
		return o, badField(unproc, "scope.service", "%q is not a configured service", req.Scope.Service)
	case req.Scope.ASN != 0 && req.Scope.Region == "":
		return o, badField(unproc, "scope.asn", "an ASN scope needs scope.region")
	case len(req.Scope.Region) > 64:
		return o, badField(unproc, "scope.region", "longer than 64 characters")
	}
	switch {
	case o.Reason == "":
		return o, badField(unproc, "reason", "required: say why, for the audit trail and the next on-call")
	case len(o.Reason) > 1024:
		return o, badField(unproc, "reason", "%d bytes is over 1024", len(o.Reason))
	}
	if req.ExpiresAt == "" {
		return o, badField(unproc, "expires_at", "required (RFC 3339, at most %s ahead)", maxTTL)
	}
	exp, err := time.Parse(time.RFC3339, req.ExpiresAt)
	switch {
	case err != nil:
		return o, badField(unproc, "expires_at", "%q is not an RFC 3339 time", req.ExpiresAt)
	case !exp.After(now):
		return o, badField(unproc, "expires_at", "%s is not in the future", exp.UTC().Format(time.RFC3339))
	case exp.Sub(now) > maxTTL:
		return o, badField(unproc, "expires_at", "%s is more than %s ahead (admin.max_override_ttl)", exp.UTC().Format(time.RFC3339), maxTTL)
	}
	o.Expires = exp.UTC()
	inSvc := func(cdn string) bool { return slices.Contains(svc.CDNs, cdn) }
	switch req.Action {
	case "pin", "ban", "drain":
		o.Kind = steering.OverrideKind(req.Action)
		switch {
		case req.CDN == "":
			return o, badField(unproc, "cdn", "required for %s", req.Action)
		case !inSvc(req.CDN):
			return o, badField(unproc, "cdn", "%q is not a CDN of service %q", req.CDN, svc.Name)
		case req.Weights != nil:
			return o, badField(unproc, "weights", "only for action weight")
		}
		o.CDN = req.CDN
	case "weight":
		if len(req.Weights) == 0 {
			return o, badField(unproc, "weights", "required for action weight: percent per CDN")
		}
		sum := 0.0
		for _, cdn := range slices.Sorted(maps.Keys(req.Weights)) {
			p := req.Weights[cdn]
			switch {
			case !inSvc(cdn):
				return o, badField(unproc, "weights."+cdn, "%q is not a CDN of service %q", cdn, svc.Name)
			case math.IsNaN(p) || p < 0 || p > 100:
				return o, badField(unproc, "weights."+cdn, "%v is not a percentage in 0..100", p)
			}
			sum += p
		}
		switch {
		case math.Abs(sum-100) <= 0.01:
			// Shares of the listed CDNs, exactly: a split.
			if req.CDN != "" {
				return o, badField(unproc, "cdn", "a split names its CDNs in weights only")
			}
			o.Kind, o.Split = steering.OverrideSplit, maps.Clone(req.Weights)
		case len(req.Weights) == 1:
			// One CDN's share fixed; the engine shares the rest.
			for cdn, p := range req.Weights {
				if req.CDN != "" && req.CDN != cdn {
					return o, badField(unproc, "cdn", "%q is not the CDN named in weights (%q)", req.CDN, cdn)
				}
				o.Kind, o.CDN, o.Weight = steering.OverrideWeight, cdn, p/100
			}
		default:
			return o, badField(unproc, "weights", "percentages sum to %s: give shares summing to 100 (a split), or one CDN's share", strconv.FormatFloat(sum, 'f', -1, 64))
		}
	case "":
		return o, badField(unproc, "action", "required: one of pin, ban, drain, weight")
	default:
		return o, badField(unproc, "action", "%q is not one of pin, ban, drain, weight", req.Action)
	}
	if err := o.Validate(cat); err != nil {
		// The steering rule is the last word; its field names are the
		// override's, mapped to the request's.
		field, _, _ := strings.Cut(err.Error(), ":")
		f := map[string]string{"service": "scope.service", "asn": "scope.asn", "split": "weights", "weight": "weights"}[field]
		if f == "" {
			f = field
		}
		return o, &fieldError{unproc, f, err.Error()}
	}
	return o, nil
}

func serviceOf(cat steering.Catalog, name string) (steering.Service, bool) {
	for _, s := range cat.Services {
		if s.Name == name {
			return s, true
		}
	}
	return steering.Service{}, false
}

// overrideJSON is the public shape of a stored override.
func overrideJSON(r overrides.Record, now time.Time) OverrideJSON {
	o := r.Override
	j := OverrideJSON{
		ID: o.ID, Action: string(o.Kind), CDN: o.CDN, Scope: ScopeJSON{Service: o.Service, Region: o.Region, ASN: o.ASN},
		Reason: o.Reason, State: r.State(now), CreatedAt: o.Created, CreatedBy: o.Author, ExpiresAt: o.Expires,
		Revision: r.Revision, UpdatedAt: r.UpdatedAt, UpdatedBy: r.UpdatedBy, DeletedBy: r.DeletedBy, DeleteReason: r.DeleteReason,
	}
	switch o.Kind {
	case steering.OverrideWeight:
		j.Action, j.Weights = "weight", map[string]float64{o.CDN: round(o.Weight*100, 4)}
	case steering.OverrideSplit:
		j.Action, j.Weights = "weight", maps.Clone(o.Split)
	}
	if !r.DeletedAt.IsZero() {
		d := r.DeletedAt
		j.DeletedAt = &d
	}
	return j
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// canTouch checks that the caller's token covers the service: an
// operator may be limited to some services. A refusal is audited.
func (s *Server) canTouch(c *gin.Context, p auth.Principal, service string) bool {
	if p.CanService(service) {
		return true
	}
	msg := fmt.Sprintf("forbidden: %s may change services %s only, not %q", p.Name, strings.Join(p.Services, ", "), service)
	s.denied(c, p, http.StatusForbidden, msg)
	apiError(c, http.StatusForbidden, "scope.service", msg)
	return false
}

// ShareChangeJSON is one scope's traffic shift in a dry run: the share of
// new views per CDN (0..1) before and after, and the change in
// percentage points.
type ShareChangeJSON struct {
	Scope   steering.Scope     `json:"scope"`
	Before  map[string]float64 `json:"before"`
	After   map[string]float64 `json:"after"`
	DeltaPP map[string]float64 `json:"delta_pp"`
}

// DryRunJSON answers a dry run.
type DryRunJSON struct {
	DryRun   bool              `json:"dry_run"`
	Override OverrideJSON      `json:"override"`
	Changes  []ShareChangeJSON `json:"changes"`
	// Version of the snapshot the shares come from; 0 with none yet.
	SnapshotVersion uint64 `json:"snapshot_version"`
}

func (s *Server) createOverride(c *gin.Context) {
	p := principal(c)
	var req OverrideRequest
	if ferr := decodeJSON(c, &req); ferr != nil {
		apiError(c, ferr.status, ferr.field, ferr.msg)
		return
	}
	now := s.o.Now()
	o, ferr := ParseOverride(req, s.o.Catalog, now, s.o.MaxOverrideTTL)
	if ferr != nil {
		apiError(c, ferr.status, ferr.field, ferr.msg)
		return
	}
	if !s.canTouch(c, p, o.Service) {
		return
	}
	rec, err := s.o.Overrides.PlanCreate(o, p.Name)
	if err != nil {
		s.planError(c, err)
		return
	}
	if req.DryRun {
		s.dryRun(c, rec, now)
		return
	}
	if !s.commit(c, p, "override.create", overrides.Record{}, rec) {
		return
	}
	ok(c, http.StatusCreated, overrideJSON(rec, now))
}

func (s *Server) dryRun(c *gin.Context, rec overrides.Record, now time.Time) {
	out := DryRunJSON{DryRun: true, Override: overrideJSON(rec, now), Changes: []ShareChangeJSON{}}
	snap := s.o.Rankings.Snapshot(rec.Override.Service)
	if snap == nil {
		c.Header("Retry-After", "1")
		apiError(c, http.StatusServiceUnavailable, "", "no ranking snapshot for "+strconv.Quote(rec.Override.Service)+" yet: nothing to compute the shares from")
		return
	}
	out.SnapshotVersion = snap.Version
	for _, ch := range steering.DryRun(snap, rec.Override, s.o.Rankings.Overrides(), now) {
		j := ShareChangeJSON{Scope: ch.Scope, Before: ch.Before, After: ch.After, DeltaPP: map[string]float64{}}
		for cdn := range unionKeys(ch.Before, ch.After) {
			j.DeltaPP[cdn] = round((ch.After[cdn]-ch.Before[cdn])*100, 2)
		}
		out.Changes = append(out.Changes, j)
	}
	ok(c, http.StatusOK, out)
}

func unionKeys(a, b map[string]float64) map[string]struct{} {
	out := map[string]struct{}{}
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}

// commit writes the audit record of a change, then the change. Without
// the audit record nothing is written (503); a change that then fails is
// recorded as failed, best effort.
func (s *Server) commit(c *gin.Context, p auth.Principal, action string, before, after overrides.Record) bool {
	ctx := c.Request.Context()
	rec := s.auditRecord(c, p, action, "ok", http.StatusOK)
	rec.Service, rec.OverrideID, rec.Reason = after.Override.Service, after.Override.ID, after.Override.Reason
	if action == "override.delete" {
		rec.Reason = after.DeleteReason
	}
	if action == "override.create" {
		rec.Status = http.StatusCreated
	}
	if before.Override.ID != "" {
		rec.Before = recordJSON(before)
	}
	rec.After = recordJSON(after)
	if err := s.appendAudit(ctx, rec); err != nil {
		s.log.Error("audit store refused a change record; the change is refused", "action", action, "override", after.Override.ID, "err", err)
		c.Header("Retry-After", "5")
		apiError(c, http.StatusServiceUnavailable, "", "audit trail unavailable, so nothing was changed: "+err.Error())
		return false
	}
	if err := s.o.Overrides.Commit(ctx, after); err != nil {
		if errors.Is(err, overrides.ErrNotSeen) {
			// Written to the log, not yet read back here: it is durable
			// and reaches the nodes; say so rather than fail.
			s.log.Warn("override written but not yet seen by this node", "override", after.Override.ID, "err", err)
			return true
		}
		failed := rec
		failed.ID, failed.Outcome, failed.Status, failed.Detail = "", "failed", http.StatusServiceUnavailable, truncate(err.Error(), 1024)
		if errors.Is(err, overrides.ErrConflict) {
			failed.Status = http.StatusConflict
		}
		failed.At = s.o.Now()
		if aerr := s.appendAudit(ctx, failed); aerr != nil {
			s.log.Error("audit: the failure of a change could not be recorded", "override", after.Override.ID, "err", aerr)
		}
		if errors.Is(err, overrides.ErrConflict) {
			apiError(c, http.StatusConflict, "id", "nothing was changed: "+err.Error())
			return false
		}
		s.log.Error("override log refused a change", "action", action, "override", after.Override.ID, "err", err)
		c.Header("Retry-After", "5")
		apiError(c, http.StatusServiceUnavailable, "", "override log unavailable, nothing was changed: "+err.Error())
		return false
	}
	return true
}

func recordJSON(r overrides.Record) string {
	b, err := json.Marshal(overrideJSON(r, r.UpdatedAt))
	if err != nil {
		return ""
	}
	return string(b)
}

var overrideStates = []string{"active", "expired", "deleted", "all"}

// OverrideList answers GET /api/v1/overrides.
type OverrideList struct {
	Overrides []OverrideJSON `json:"overrides"`
}

func (s *Server) listOverrides(c *gin.Context) {
	q := c.Request.URL.Query()
	if !knownParams(c, q, "state", "service") {
		return
	}
	state := q.Get("state")
	if state == "" {
		state = "active"
	}
	if !slices.Contains(overrideStates, state) {
		apiError(c, http.StatusBadRequest, "state", "state: "+strconv.Quote(state)+" is not one of active, expired, deleted, all")
		return
	}
	svc := q.Get("service")
	if svc != "" {
		if _, ok := serviceOf(s.o.Catalog, svc); !ok {
			apiError(c, http.StatusBadRequest, "service", "service: "+strconv.Quote(svc)+" is not a configured service")
			return
		}
	}
	f := overrides.Filter{Service: svc, Now: s.o.Now()}
	if state != "all" {
		f.State = state
	}
	now := s.o.Now()
	out := OverrideList{Overrides: []OverrideJSON{}}
	for _, r := range s.o.Overrides.List(f) {
		out.Overrides = append(out.Overrides, overrideJSON(r, now))
	}
	ok(c, http.StatusOK, out)
}

func (s *Server) lookup(c *gin.Context) (overrides.Record, bool) {
	id := c.Param("id")
	r, found := s.o.Overrides.Get(id)
	if !found {
		apiError(c, http.StatusNotFound, "id", "id: no override "+strconv.Quote(truncate(id, 80)))
		return r, false
	}
	return r, true
}

func (s *Server) getOverride(c *gin.Context) {
	if r, found := s.lookup(c); found {
		ok(c, http.StatusOK, overrideJSON(r, s.o.Now()))
	}
}

// ExtendRequest is the body of POST /api/v1/overrides/{id}/extend.
type ExtendRequest struct {
	ExpiresAt string `json:"expires_at"`
	Reason    string `json:"reason"`
}

// DeleteRequest is the body of DELETE /api/v1/overrides/{id}.
type DeleteRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) extendOverride(c *gin.Context) {
	p := principal(c)
	cur, found := s.lookup(c)
	if !found {
		return
	}
	var req ExtendRequest
	if ferr := decodeJSON(c, &req); ferr != nil {
		apiError(c, ferr.status, ferr.field, ferr.msg)
		return
	}
	now := s.o.Now()
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		apiError(c, http.StatusUnprocessableEntity, "reason", "reason: required: say why the override must last longer")
		return
	}
	exp, err := time.Parse(time.RFC3339, req.ExpiresAt)
	switch {
	case req.ExpiresAt == "":
		apiError(c, http.StatusUnprocessableEntity, "expires_at", "expires_at: required (RFC 3339)")
		return
	case err != nil:
		apiError(c, http.StatusUnprocessableEntity, "expires_at", "expires_at: "+strconv.Quote(req.ExpiresAt)+" is not an RFC 3339 time")
		return
	case !exp.After(now):
		apiError(c, http.StatusUnprocessableEntity, "expires_at", "expires_at: "+exp.UTC().Format(time.RFC3339)+" is not in the future")
		return
	case exp.Sub(now) > s.o.MaxOverrideTTL:
		apiError(c, http.StatusUnprocessableEntity, "expires_at", fmt.Sprintf("expires_at: %s is more than %s ahead (admin.max_override_ttl)", exp.UTC().Format(time.RFC3339), s.o.MaxOverrideTTL))
		return
	}
	if !s.canTouch(c, p, cur.Override.Service) {
		return
	}
	before, after, err := s.o.Overrides.PlanExtend(cur.Override.ID, exp.UTC(), reason, p.Name)
	if err != nil {
		s.planError(c, err)
		return
	}
	if !s.commit(c, p, "override.extend", before, after) {
		return
	}
	ok(c, http.StatusOK, overrideJSON(after, now))
}

func (s *Server) deleteOverride(c *gin.Context) {
	p := principal(c)
	cur, found := s.lookup(c)
	if !found {
		return
	}
	var req DeleteRequest
	if c.Request.ContentLength != 0 {
		if ferr := decodeJSON(c, &req); ferr != nil {
			apiError(c, ferr.status, ferr.field, ferr.msg)
			return
		}
	}
	if r := c.Query("reason"); req.Reason == "" && r != "" {
		req.Reason = r
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		apiError(c, http.StatusUnprocessableEntity, "reason", `reason: required (a JSON body {"reason": ...} or ?reason=)`)
		return
	}
	if !s.canTouch(c, p, cur.Override.Service) {
		return
	}
	before, after, err := s.o.Overrides.PlanDelete(cur.Override.ID, truncate(reason, 1024), p.Name)
	if err != nil {
		s.planError(c, err)
		return
	}
	if !s.commit(c, p, "override.delete", before, after) {
		return
	}
	ok(c, http.StatusOK, overrideJSON(after, s.o.Now()))
}

func (s *Server) planError(c *gin.Context, err error) {
	switch {
	case errors.Is(err, overrides.ErrNotFound):
		apiError(c, http.StatusNotFound, "id", "id: "+err.Error())
	case errors.Is(err, overrides.ErrNotActive):
		apiError(c, http.StatusConflict, "id", "id: "+err.Error())
	case errors.Is(err, overrides.ErrNotReady):
		c.Header("Retry-After", "2")
		apiError(c, http.StatusServiceUnavailable, "", err.Error())
	default:
		apiError(c, http.StatusUnprocessableEntity, "", err.Error())
	}
}

// knownParams refuses a query parameter the endpoint does not take, so a
// typo is not silently ignored.
func knownParams(c *gin.Context, q map[string][]string, names ...string) bool {
	for k := range q {
		if !slices.Contains(names, k) {
			apiError(c, http.StatusBadRequest, k, "unknown query parameter "+strconv.Quote(k)+"; expected "+strings.Join(names, ", "))
			return false
		}
	}
	return true
}

package analytics

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// AuditRecord is one entry of the admin API's audit trail: a mutation, a
// dry run, a replay or a denied attempt. It is also the API's answer shape.
type AuditRecord struct {
	// ID is unique: set by the caller (NewAuditID) or by AppendAudit when
	// empty.
	ID string `json:"id"`
	// At is kept at millisecond resolution, in UTC.
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Role   string    `json:"role"`
	Auth   string    `json:"auth"`   // AuditAuthToken, AuditAuthJWT or "" when none
	Source string    `json:"source"` // the client address as text
	Method string    `json:"method"`
	Path   string    `json:"path"`
	// Action names what was attempted: "override.create", "override.extend",
	// "override.delete", "override.dry_run", "replay", "auth.denied".
	Action     string `json:"action"`
	Outcome    string `json:"outcome"` // AuditOK, AuditDenied or AuditFailed
	Status     int    `json:"status"`  // the HTTP status answered; 0 for none
	Service    string `json:"service"`
	OverrideID string `json:"override_id"`
	Reason     string `json:"reason"`
	// Before and After are the override as JSON text before and after the
	// change, "" for none.
	Before string `json:"before"`
	After  string `json:"after"`
	Detail string `json:"detail"`
}

// Outcomes of an audited request.
const (
	AuditOK     = "ok"
	AuditDenied = "denied"
	AuditFailed = "failed"
)

// How the actor of an audited request authenticated; "" for not at all.
const (
	AuditAuthToken = "token"
	AuditAuthJWT   = "jwt"
)

// AuditQuery selects audit records, newest first (At, then ID, descending).
// Empty fields match everything.
type AuditQuery struct {
	Actor, Action, Outcome, Service, OverrideID string
	// A record matches when Since <= At < Until; a zero bound is open.
	Since, Until time.Time
	Limit        int    // default 100, at most 1000
	Before       string // AuditPage.Next of the previous page; "" for the first
}

// AuditPage is one page of an audit query. Next is the AuditQuery.Before of
// the following page, "" on the last one.
type AuditPage struct {
	Records []AuditRecord `json:"records"`
	Next    string        `json:"next"`
}

// AuditFieldError is a rejected audit record or query: Field names the
// JSON/query field to blame, so the API can answer 400 with it.
type AuditFieldError struct {
	Field   string
	Problem string
}

func (e *AuditFieldError) Error() string { return e.Field + ": " + e.Problem }

func auditFieldErr(field, format string, args ...any) error {
	return &AuditFieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
	maxAuditIDLen     = 128
	maxAuditTextLen   = 4 << 10  // path, reason, detail
	maxAuditJSONLen   = 64 << 10 // before, after
)

// NewAuditID returns a fresh record id: "aud_" and 128 random bits in hex.
func NewAuditID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails; it crashes instead
	return "aud_" + hex.EncodeToString(b[:])
}

// Validate reports the first field the stores cannot keep faithfully, as an
// *AuditFieldError. An empty ID is fine: AppendAudit sets one.
func (r *AuditRecord) Validate() error {
	if r.At.IsZero() {
		return auditFieldErr("at", "not set")
	}
	if s := r.At.Unix(); s < 1 || s > maxDateTime {
		return auditFieldErr("at", "%s is outside the DateTime range (1970 to 2106)", r.At.Format(time.RFC3339))
	}
	if r.Action == "" {
		return auditFieldErr("action", "empty")
	}
	switch r.Outcome {
	case AuditOK, AuditDenied, AuditFailed:
	case "":
		return auditFieldErr("outcome", "empty")
	default:
		return auditFieldErr("outcome", "must be %q, %q or %q, got %q", AuditOK, AuditDenied, AuditFailed, clip(r.Outcome))
	}
	switch r.Auth {
	case "", AuditAuthToken, AuditAuthJWT:
	default:
		return auditFieldErr("auth", "must be %q, %q or empty, got %q", AuditAuthToken, AuditAuthJWT, clip(r.Auth))
	}
	if r.Status != 0 && (r.Status < 100 || r.Status > 599) {
		return auditFieldErr("status", "must be an HTTP status (100 to 599) or 0, got %d", r.Status)
	}
	for _, f := range []struct {
		name, v string
		maxLen  int
	}{
		{"id", r.ID, maxAuditIDLen},
		{"actor", r.Actor, maxKeyLen}, {"role", r.Role, maxKeyLen}, {"source", r.Source, maxKeyLen},
		{"method", r.Method, maxKeyLen}, {"action", r.Action, maxKeyLen},
		{"service", r.Service, maxKeyLen}, {"override_id", r.OverrideID, maxKeyLen},
		{"path", r.Path, maxAuditTextLen}, {"reason", r.Reason, maxAuditTextLen}, {"detail", r.Detail, maxAuditTextLen},
		{"before", r.Before, maxAuditJSONLen}, {"after", r.After, maxAuditJSONLen},
	} {
		if err := checkText(f.name, f.v, f.maxLen); err != nil {
			return err
		}
	}
	for _, f := range []struct{ name, v string }{{"before", r.Before}, {"after", r.After}} {
		if f.v != "" && !json.Valid([]byte(f.v)) {
			return auditFieldErr(f.name, "not valid JSON")
		}
	}
	return nil
}

func checkText(field, v string, maxLen int) error {
	if len(v) > maxLen {
		return auditFieldErr(field, "longer than %d bytes (%d)", maxLen, len(v))
	}
	if !utf8.ValidString(v) {
		return auditFieldErr(field, "not valid UTF-8")
	}
	return nil
}

// clip shortens a rejected value for an error message.
func clip(s string) string {
	if len(s) <= 32 {
		return s
	}
	return s[:32] + "..."
}

// prepareAudit checks r and returns it as both stores keep it: with an ID,
// and At in UTC at millisecond resolution.
func prepareAudit(r AuditRecord) (AuditRecord, error) {
	if err := r.Validate(); err != nil {
		return AuditRecord{}, err
	}
	if r.ID == "" {
		r.ID = NewAuditID()
	}
	r.At = time.UnixMilli(r.At.UnixMilli()).UTC()
	return r, nil
}

// auditScan is a validated AuditQuery in the form both stores apply: the
// bounds and the cursor in milliseconds since the epoch.
type auditScan struct {
	q                AuditQuery
	limit            int
	sinceMS, untilMS int64 // untilMS is exclusive; each valid when has* is set
	hasSince         bool
	hasUntil         bool
	cursor           *auditCursor
}

type auditCursor struct {
	ms int64
	id string
}

// Validate reports the first bad field of q as an *AuditFieldError.
func (q AuditQuery) Validate() error {
	_, err := q.scan()
	return err
}

func (q AuditQuery) scan() (auditScan, error) {
	s := auditScan{q: q, limit: cmp.Or(q.Limit, defaultAuditLimit)}
	if q.Limit < 0 || q.Limit > maxAuditLimit {
		return s, auditFieldErr("limit", "must be between 1 and %d (0 for %d), got %d", maxAuditLimit, defaultAuditLimit, q.Limit)
	}
	for _, f := range []struct{ name, v string }{
		{"actor", q.Actor}, {"action", q.Action}, {"outcome", q.Outcome}, {"service", q.Service}, {"override_id", q.OverrideID},
	} {
		if err := checkText(f.name, f.v, maxKeyLen); err != nil {
			return s, err
		}
	}
	switch q.Outcome {
	case "", AuditOK, AuditDenied, AuditFailed:
	default:
		return s, auditFieldErr("outcome", "must be %q, %q or %q, got %q", AuditOK, AuditDenied, AuditFailed, clip(q.Outcome))
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Since.After(q.Until) {
		return s, auditFieldErr("since", "after until (since=%s until=%s)", q.Since.Format(time.RFC3339Nano), q.Until.Format(time.RFC3339Nano))
	}
	// Stored times are whole milliseconds, so At >= t is At >= t rounded up,
	// and At < t is At < t rounded up.
	if !q.Since.IsZero() {
		s.sinceMS, s.hasSince = ceilMS(q.Since), true
	}
	if !q.Until.IsZero() {
		s.untilMS, s.hasUntil = ceilMS(q.Until), true
	}
	if q.Before != "" {
		c, err := parseAuditCursor(q.Before)
		if err != nil {
			return s, err
		}
		s.cursor = &c
	}
	return s, nil
}

func ceilMS(t time.Time) int64 {
	ms := t.UnixMilli() // rounds down: the nanoseconds are never negative
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		ms++
	}
	return ms
}

// The cursor is opaque to clients: the position (At in ms, ID) of the last
// record of a page, base64url-encoded so it is safe in a query string.
func (c auditCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.ms, 10) + ":" + c.id))
}

func parseAuditCursor(s string) (auditCursor, error) {
	bad := auditFieldErr("before", "not a cursor from a previous page")
	if len(s) > 2*maxAuditIDLen {
		return auditCursor{}, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return auditCursor{}, bad
	}
	msText, id, ok := strings.Cut(string(b), ":")
	ms, err := strconv.ParseInt(msText, 10, 64)
	if !ok || err != nil || ms < 1000 || ms > (maxDateTime+1)*1000-1 ||
		id == "" || len(id) > maxAuditIDLen || !utf8.ValidString(id) {
		return auditCursor{}, bad
	}
	return auditCursor{ms: ms, id: id}, nil
}

// match applies the query to a stored record; it is the Go form of the
// WHERE clause in audit_clickhouse.go.
func (s *auditScan) match(r *AuditRecord) bool {
	ms := r.At.UnixMilli()
	q := &s.q
	return (!s.hasSince || ms >= s.sinceMS) && (!s.hasUntil || ms < s.untilMS) &&
		(s.cursor == nil || ms < s.cursor.ms || (ms == s.cursor.ms && r.ID < s.cursor.id)) &&
		(q.Actor == "" || q.Actor == r.Actor) &&
		(q.Action == "" || q.Action == r.Action) &&
		(q.Outcome == "" || q.Outcome == r.Outcome) &&
		(q.Service == "" || q.Service == r.Service) &&
		(q.OverrideID == "" || q.OverrideID == r.OverrideID)
}

// page cuts records, newest first and one more than the limit when there is
// a next page, into the page the query answers.
func (s *auditScan) page(records []AuditRecord) AuditPage {
	if records == nil {
		records = []AuditRecord{}
	}
	if len(records) <= s.limit {
		return AuditPage{Records: records}
	}
	records = records[:s.limit]
	last := &records[len(records)-1]
	return AuditPage{Records: records, Next: auditCursor{ms: last.At.UnixMilli(), id: last.ID}.String()}
}

// compareAuditNewestFirst is the order both stores return: At, then ID,
// descending.
func compareAuditNewestFirst(a, b *AuditRecord) int {
	return cmp.Or(b.At.Compare(a.At), strings.Compare(b.ID, a.ID))
}

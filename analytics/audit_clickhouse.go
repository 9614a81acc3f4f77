package analytics

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// auditColumns is the insert and select list of the audit_log table
// (migrations/0004_audit_log.sql), apart from at, which only inserts set.
const auditColumns = "at_ms, id, actor, role, auth, source, method, path, action, outcome, status, " +
	"service, override_id, reason, before_json, after_json, detail"

// AppendAudit validates r and writes it as one synchronous insert: when it
// returns nil the server has the row, and any failure (server down, timeout,
// ctx cancelled) is returned, so a caller can refuse the change it audits.
// An empty ID is replaced by a fresh one. After a timeout the row may still
// have landed; a retry with the same ID is then a duplicate.
func (c *ClickHouse) AppendAudit(ctx context.Context, r AuditRecord) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	r, err := prepareAudit(r)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	// A batch, not INSERT ... VALUES: 18.16 waits for data blocks after any
	// INSERT over the native protocol. No async_insert: Send returns once
	// the server has written the part.
	q := "INSERT INTO " + c.db + ".audit_log (at, " + auditColumns + ")"
	batch, err := c.prepareBatch(ctx, q)
	if err != nil {
		return fmt.Errorf("append audit: prepare: %w", err)
	}
	// The order is the insert list's: at, then auditColumns'.
	if err := batch.Append(time.Unix(r.At.Unix(), 0).UTC(), uint64(r.At.UnixMilli()), r.ID, r.Actor, r.Role, r.Auth,
		r.Source, r.Method, r.Path, r.Action, r.Outcome, uint16(r.Status), r.Service, r.OverrideID, r.Reason,
		r.Before, r.After, r.Detail); err != nil {
		_ = batch.Abort()
		return fmt.Errorf("append audit: %w", err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("append audit: send: %w", err)
	}
	return nil
}

// where builds the WHERE clause of an audit query and its bound arguments;
// auditScan.match is its Go form. Only fixed fragments are spliced in.
func (s *auditScan) where() (string, []any) {
	var (
		conds []string
		args  []any
	)
	// at (whole seconds, in the sorting key and the partition key) prunes;
	// at_ms decides. Milliseconds are clamped to the column's range, so an
	// out-of-range bound still compares as it does in Go.
	sec := func(ms int64) int64 { return min(max(floorDiv(ms, 1000), 0), maxDateTime) }
	unsigned := func(ms int64) uint64 { return uint64(max(ms, 0)) }
	if s.hasSince {
		conds = append(conds, "at >= toDateTime(?)", "at_ms >= ?")
		args = append(args, sec(s.sinceMS), unsigned(s.sinceMS))
	}
	if s.hasUntil {
		// The last second that can hold a match is the one of untilMS - 1.
		conds = append(conds, "at <= toDateTime(?)", "at_ms < ?")
		args = append(args, sec(s.untilMS-1), unsigned(s.untilMS))
	}
	if c := s.cursor; c != nil {
		conds = append(conds, "at <= toDateTime(?)", "(at_ms < ? OR (at_ms = ? AND id < ?))")
		args = append(args, sec(c.ms), unsigned(c.ms), unsigned(c.ms), c.id)
	}
	for _, w := range []struct{ col, val string }{
		{"actor", s.q.Actor}, {"action", s.q.Action}, {"outcome", s.q.Outcome},
		{"service", s.q.Service}, {"override_id", s.q.OverrideID},
	} {
		if w.val != "" {
			conds = append(conds, w.col+" = ?")
			args = append(args, w.val)
		}
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Audit returns one page of the records matching q, newest first.
func (c *ClickHouse) Audit(ctx context.Context, q AuditQuery) (AuditPage, error) {
	s, err := q.scan()
	if err != nil {
		return AuditPage{}, fmt.Errorf("audit query: %w", err)
	}
	where, args := s.where()
	// One row past the limit tells whether there is a next page.
	query := "SELECT " + auditColumns + " FROM " + c.db + ".audit_log" + where +
		" ORDER BY at_ms DESC, id DESC LIMIT " + strconv.Itoa(s.limit+1)
	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return AuditPage{}, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var (
			r      AuditRecord
			atMS   uint64
			status uint16
		)
		if err := rows.Scan(&atMS, &r.ID, &r.Actor, &r.Role, &r.Auth, &r.Source, &r.Method, &r.Path, &r.Action,
			&r.Outcome, &status, &r.Service, &r.OverrideID, &r.Reason, &r.Before, &r.After, &r.Detail); err != nil {
			return AuditPage{}, fmt.Errorf("audit: %w", err)
		}
		r.At = time.UnixMilli(int64(atMS)).UTC()
		r.Status = int(status)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return AuditPage{}, fmt.Errorf("audit: %w", err)
	}
	return s.page(out), nil
}

package analytics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/chserver"
)

// auditStore is the method set both audit stores share; declared here, by
// its user.
type auditStore interface {
	AppendAudit(ctx context.Context, r analytics.AuditRecord) error
	Audit(ctx context.Context, q analytics.AuditQuery) (analytics.AuditPage, error)
}

func TestMemoryAuditContract(t *testing.T) {
	auditContract(t, func(*testing.T) auditStore { return analytics.NewAuditMemory(0) })
}

func TestClickHouseAuditContract(t *testing.T) {
	addr := chserver.ForTest(t)
	auditContract(t, func(t *testing.T) auditStore { return openClickHouse(t, addr, analytics.ClickHouseOptions{}) })
}

// auditRecords is the contract's data set; expectations below are lists of
// ids, newest first.
func auditRecords() []analytics.AuditRecord {
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ov1 := `{"id":"ov_1","action":"pin","cdn":"cdn-b","scope":{"service":"vod"},"revision":1}`
	ov1b := `{"id":"ov_1","action":"pin","cdn":"cdn-b","scope":{"service":"vod"},"revision":2}`
	return []analytics.AuditRecord{
		{ID: "aud_01", At: at(0), Actor: "alice", Role: "operator", Auth: analytics.AuditAuthToken, Source: "192.0.2.10",
			Method: "POST", Path: "/api/v1/overrides", Action: "override.create", Outcome: analytics.AuditOK, Status: 201,
			Service: "vod", OverrideID: "ov_1", Reason: "INC-4711: cdn-a 5xx in Frankfurt", After: ov1},
		{ID: "aud_02", At: at(time.Minute), Actor: "alice", Role: "operator", Auth: analytics.AuditAuthToken, Source: "192.0.2.10",
			Method: "POST", Path: "/api/v1/overrides/ov_1/extend", Action: "override.extend", Outcome: analytics.AuditOK, Status: 200,
			Service: "vod", OverrideID: "ov_1", Reason: "still failing", Before: ov1, After: ov1b},
		// No credentials at all: no actor, no role, no auth.
		{ID: "aud_03", At: at(2 * time.Minute), Source: "2001:db8::7", Method: "DELETE", Path: "/api/v1/overrides/ov_1",
			Action: "auth.denied", Outcome: analytics.AuditDenied, Status: 401, Detail: "no bearer token"},
		{ID: "aud_04", At: at(3 * time.Minute), Actor: "bob", Role: "viewer", Auth: analytics.AuditAuthJWT, Source: "198.51.100.4",
			Method: "POST", Path: "/api/v1/overrides", Action: "override.create", Outcome: analytics.AuditDenied, Status: 403,
			Service: "live", Detail: "role viewer may not change overrides"},
		{ID: "aud_05", At: at(4 * time.Minute), Actor: "carol", Role: "admin", Auth: analytics.AuditAuthJWT, Source: "192.0.2.11",
			Method: "DELETE", Path: "/api/v1/overrides/ov_1", Action: "override.delete", Outcome: analytics.AuditOK, Status: 200,
			Service: "vod", OverrideID: "ov_1", Reason: "cdn-a recovered", Before: ov1b},
		// The override log could not take it: 503, nothing changed.
		{ID: "aud_06", At: at(5 * time.Minute), Actor: "alice", Role: "operator", Auth: analytics.AuditAuthToken, Source: "192.0.2.10",
			Method: "POST", Path: "/api/v1/overrides", Action: "override.create", Outcome: analytics.AuditFailed, Status: 503,
			Service: "live", OverrideID: "ov_2", Reason: "drain cdn-c", Detail: "override log: kafka: not enough replicas"},
		{ID: "aud_07", At: at(6 * time.Minute), Actor: "bob", Role: "operator", Auth: analytics.AuditAuthToken, Source: "198.51.100.4",
			Method: "POST", Path: "/api/v1/replay", Action: "replay", Outcome: analytics.AuditOK, Status: 200, Service: "vod"},
		{ID: "aud_08", At: at(7 * time.Minute), Actor: "alice", Role: "operator", Auth: analytics.AuditAuthToken, Source: "192.0.2.10",
			Method: "POST", Path: "/api/v1/overrides", Action: "override.dry_run", Outcome: analytics.AuditOK, Status: 200,
			Service: "vod", Reason: "what if", Detail: `{"scopes":3}`},
		// The same millisecond: the larger id is the newer.
		{ID: "aud_09", At: at(8 * time.Minute), Actor: "dave", Role: "admin", Auth: analytics.AuditAuthToken, Action: "override.delete",
			Outcome: analytics.AuditOK, Status: 200, Service: "vod", OverrideID: "ov_3", Reason: "tidy up"},
		{ID: "aud_10", At: at(8 * time.Minute), Actor: "dave", Role: "admin", Auth: analytics.AuditAuthToken, Action: "override.delete",
			Outcome: analytics.AuditOK, Status: 200, Service: "vod", OverrideID: "ov_4", Reason: "tidy up"},
		// Below a millisecond is cut off; text is kept byte for byte.
		{ID: "aud_11", At: at(9*time.Minute + 1500*time.Microsecond + 789), Actor: "émile", Role: "operator", Auth: analytics.AuditAuthToken,
			Action: "override.create", Outcome: analytics.AuditOK, Status: 201, Service: "live", OverrideID: "ov_5",
			Reason: "quote ' backslash \\ newline \n tab \t nul \x00 emoji 🚦"},
		// A non-UTC At comes back in UTC.
		{ID: "aud_12", At: at(10 * time.Minute).In(time.FixedZone("X", 3600)), Actor: "alice", Role: "operator", Auth: analytics.AuditAuthToken,
			Action: "override.extend", Outcome: analytics.AuditOK, Status: 200, Service: "live", OverrideID: "ov_5"},
		// An hour before the rest.
		{ID: "aud_00", At: at(-time.Hour), Actor: "alice", Role: "operator", Auth: analytics.AuditAuthToken,
			Action: "override.create", Outcome: analytics.AuditOK, Status: 201, Service: "vod", OverrideID: "ov_0"},
	}
}

// normalizedAudit is the documented form a stored record comes back in.
func normalizedAudit(r analytics.AuditRecord) analytics.AuditRecord {
	r.At = r.At.Truncate(time.Millisecond).UTC()
	return r
}

func auditIDs(rs []analytics.AuditRecord) string {
	ids := make([]string, 0, len(rs))
	for _, r := range rs {
		ids = append(ids, strings.TrimPrefix(r.ID, "aud_"))
	}
	return fmt.Sprint(ids)
}

func appendAll(t *testing.T, s auditStore, rs []analytics.AuditRecord) {
	t.Helper()
	for _, r := range rs {
		if err := s.AppendAudit(t.Context(), r); err != nil {
			t.Fatalf("append %s: %v", r.ID, err)
		}
	}
}

// allAudit pages through every record matching q, checking the pages.
func allAudit(t *testing.T, s auditStore, q analytics.AuditQuery) []analytics.AuditRecord {
	t.Helper()
	var out []analytics.AuditRecord
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("more than 1000 pages")
		}
		p, err := s.Audit(t.Context(), q)
		if err != nil {
			t.Fatalf("audit page %d: %v", pages, err)
		}
		if p.Records == nil {
			t.Fatalf("page %d: nil records, want an empty list", pages)
		}
		limit := q.Limit
		if limit == 0 {
			limit = 100
		}
		if len(p.Records) > limit || (p.Next != "" && len(p.Records) != limit) {
			t.Fatalf("page %d: %d records with next %q, limit %d", pages, len(p.Records), p.Next, limit)
		}
		out = append(out, p.Records...)
		if p.Next == "" {
			return out
		}
		q.Before = p.Next
	}
}

func fieldOf(err error) string {
	var fe *analytics.AuditFieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return fmt.Sprintf("(not a field error: %v)", err)
}

// auditContract runs the same cases against any audit store.
func auditContract(t *testing.T, open func(t *testing.T) auditStore) {
	loaded := func(t *testing.T) auditStore {
		t.Helper()
		s := open(t)
		appendAll(t, s, auditRecords())
		return s
	}

	t.Run("round trip", func(t *testing.T) {
		s := loaded(t)
		p, err := s.Audit(t.Context(), analytics.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatalf("audit: %v", err)
		}
		if got := auditIDs(p.Records); got != "[12 11 10 09 08 07 06 05 04 03 02 01 00]" || p.Next != "" {
			t.Fatalf("order = %s next %q, want newest first, one page", got, p.Next)
		}
		want := map[string]analytics.AuditRecord{}
		for _, r := range auditRecords() {
			want[r.ID] = normalizedAudit(r)
		}
		for _, g := range p.Records {
			w := want[g.ID]
			if !g.At.Equal(w.At) || g.At.Location() != time.UTC {
				t.Errorf("%s: at = %v, want %v in UTC", g.ID, g.At, w.At)
			}
			g.At, w.At = time.Time{}, time.Time{}
			if g != w {
				t.Errorf("%s:\n got  %+v\n want %+v", g.ID, g, w)
			}
		}
	})

	t.Run("filters", func(t *testing.T) {
		s := loaded(t)
		at := func(d time.Duration) time.Time { return t0.Add(d) }
		cases := []struct {
			name string
			q    analytics.AuditQuery
			want string
		}{
			{"all", analytics.AuditQuery{}, "[12 11 10 09 08 07 06 05 04 03 02 01 00]"},
			{"actor", analytics.AuditQuery{Actor: "alice"}, "[12 08 06 02 01 00]"},
			{"actor with accent", analytics.AuditQuery{Actor: "émile"}, "[11]"},
			{"action", analytics.AuditQuery{Action: "override.create"}, "[11 06 04 01 00]"},
			{"outcome denied", analytics.AuditQuery{Outcome: analytics.AuditDenied}, "[04 03]"},
			{"outcome failed", analytics.AuditQuery{Outcome: analytics.AuditFailed}, "[06]"},
			{"service", analytics.AuditQuery{Service: "live"}, "[12 11 06 04]"},
			{"override id", analytics.AuditQuery{OverrideID: "ov_1"}, "[05 02 01]"},
			{"combined", analytics.AuditQuery{Actor: "alice", Action: "override.create", Outcome: analytics.AuditOK}, "[01 00]"},
			{"since inclusive", analytics.AuditQuery{Since: at(8 * time.Minute)}, "[12 11 10 09]"},
			{"until exclusive", analytics.AuditQuery{Until: at(2 * time.Minute)}, "[02 01 00]"},
			{"since and until", analytics.AuditQuery{Since: at(time.Minute), Until: at(4 * time.Minute)}, "[04 03 02]"},
			{"since equals until", analytics.AuditQuery{Since: at(time.Minute), Until: at(time.Minute)}, "[]"},
			// 11 is stored at 9m+1ms: a bound inside that millisecond rounds up.
			{"sub-millisecond since", analytics.AuditQuery{Since: at(9*time.Minute + 999*time.Microsecond + 1)}, "[12 11]"},
			{"sub-millisecond since, after", analytics.AuditQuery{Since: at(9*time.Minute + 1000*time.Microsecond + 1)}, "[12]"},
			{"sub-millisecond until", analytics.AuditQuery{Since: at(9 * time.Minute), Until: at(9*time.Minute + 1000*time.Microsecond + 1)}, "[11]"},
			{"sub-millisecond until, before", analytics.AuditQuery{Since: at(9 * time.Minute), Until: at(9*time.Minute + 1000*time.Microsecond)}, "[]"},
			{"since before 1970", analytics.AuditQuery{Since: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), Until: at(0)}, "[00]"},
			{"until before 1970", analytics.AuditQuery{Until: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}, "[]"},
			{"until past DateTime", analytics.AuditQuery{Since: at(10 * time.Minute), Until: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)}, "[12]"},
			{"limit", analytics.AuditQuery{Limit: 3}, "[12 11 10]"},
			{"limit with filter", analytics.AuditQuery{Service: "vod", Limit: 2}, "[10 09]"},
			{"no match", analytics.AuditQuery{Actor: "mallory"}, "[]"},
			{"quote is a value", analytics.AuditQuery{Actor: "alice' OR 1=1 --"}, "[]"},
			{"question mark is a value", analytics.AuditQuery{Service: "?", Actor: "?"}, "[]"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				p, err := s.Audit(t.Context(), tc.q)
				if err != nil {
					t.Fatalf("audit: %v", err)
				}
				if g := auditIDs(p.Records); g != tc.want {
					t.Fatalf("got %s, want %s", g, tc.want)
				}
				if p.Records == nil {
					t.Fatal("nil records, want an empty list")
				}
			})
		}
	})

	t.Run("paging", func(t *testing.T) {
		s := open(t)
		// 250 records, three to a millisecond, appended out of order; every
		// other one gets its id from AppendAudit.
		const n = 250
		for _, i := range permutation(n) {
			r := analytics.AuditRecord{At: t0.Add(time.Duration(i/3) * time.Millisecond), Actor: "pager",
				Action: "override.create", Outcome: analytics.AuditOK, Detail: fmt.Sprintf("n=%03d", i)}
			if i%2 == 0 {
				r.ID = fmt.Sprintf("aud_p%03d", i)
			}
			if i%5 == 0 {
				r.Outcome = analytics.AuditDenied
			}
			if err := s.AppendAudit(t.Context(), r); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		for _, tc := range []struct {
			name  string
			q     analytics.AuditQuery
			count int
		}{
			{"limit 7", analytics.AuditQuery{Limit: 7}, n},
			{"default limit", analytics.AuditQuery{}, n},
			{"limit divides", analytics.AuditQuery{Limit: 125}, n},
			{"one page", analytics.AuditQuery{Limit: n}, n},
			{"max limit", analytics.AuditQuery{Limit: 1000}, n},
			{"with a filter", analytics.AuditQuery{Outcome: analytics.AuditDenied, Limit: 4}, n / 5},
			{"with a range", analytics.AuditQuery{Since: t0.Add(10 * time.Millisecond), Until: t0.Add(20 * time.Millisecond), Limit: 4}, 30},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := allAudit(t, s, tc.q)
				if len(got) != tc.count {
					t.Fatalf("%d records over all pages, want %d", len(got), tc.count)
				}
				seen := map[string]bool{}
				for i, r := range got {
					if r.ID == "" || seen[r.ID] || seen[r.Detail] {
						t.Fatalf("record %d (%s, %s): empty or seen before", i, r.ID, r.Detail)
					}
					seen[r.ID], seen[r.Detail] = true, true
					if i > 0 {
						prev := got[i-1]
						if !(r.At.Before(prev.At) || (r.At.Equal(prev.At) && r.ID < prev.ID)) {
							t.Fatalf("record %d (%v %s) not older than record %d (%v %s)", i, r.At, r.ID, i-1, prev.At, prev.ID)
						}
					}
				}
			})
		}
		t.Run("newer records do not shift a cursor", func(t *testing.T) {
			p1, err := s.Audit(t.Context(), analytics.AuditQuery{Limit: 10})
			if err != nil || p1.Next == "" {
				t.Fatalf("first page: next %q, %v", p1.Next, err)
			}
			appendAll(t, s, []analytics.AuditRecord{{ID: "aud_zz", At: t0.Add(time.Hour), Action: "replay", Outcome: analytics.AuditOK}})
			p2, err := s.Audit(t.Context(), analytics.AuditQuery{Limit: 10, Before: p1.Next})
			if err != nil {
				t.Fatal(err)
			}
			last, first := p1.Records[9], p2.Records[0]
			if !(first.At.Before(last.At) || (first.At.Equal(last.At) && first.ID < last.ID)) {
				t.Fatalf("second page starts at %v %s, not after %v %s", first.At, first.ID, last.At, last.ID)
			}
		})
	})

	t.Run("append validation", func(t *testing.T) {
		s := open(t)
		cases := []struct {
			name  string
			edit  func(r *analytics.AuditRecord)
			field string
		}{
			{"zero at", func(r *analytics.AuditRecord) { r.At = time.Time{} }, "at"},
			{"at before 1970", func(r *analytics.AuditRecord) { r.At = time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC) }, "at"},
			{"at past DateTime", func(r *analytics.AuditRecord) { r.At = time.Date(2107, 1, 1, 0, 0, 0, 0, time.UTC) }, "at"},
			{"no action", func(r *analytics.AuditRecord) { r.Action = "" }, "action"},
			{"no outcome", func(r *analytics.AuditRecord) { r.Outcome = "" }, "outcome"},
			{"unknown outcome", func(r *analytics.AuditRecord) { r.Outcome = "maybe" }, "outcome"},
			{"unknown auth", func(r *analytics.AuditRecord) { r.Auth = "basic" }, "auth"},
			{"status", func(r *analytics.AuditRecord) { r.Status = 1000 }, "status"},
			{"long id", func(r *analytics.AuditRecord) { r.ID = strings.Repeat("x", 129) }, "id"},
			{"long actor", func(r *analytics.AuditRecord) { r.Actor = strings.Repeat("x", 257) }, "actor"},
			{"bad utf-8 source", func(r *analytics.AuditRecord) { r.Source = "\xff" }, "source"},
			{"long path", func(r *analytics.AuditRecord) { r.Path = "/" + strings.Repeat("x", 4096) }, "path"},
			{"long reason", func(r *analytics.AuditRecord) { r.Reason = strings.Repeat("x", 4097) }, "reason"},
			{"long detail", func(r *analytics.AuditRecord) { r.Detail = strings.Repeat("x", 4097) }, "detail"},
			{"long before", func(r *analytics.AuditRecord) { r.Before = `"` + strings.Repeat("x", 64<<10) + `"` }, "before"},
			{"after not json", func(r *analytics.AuditRecord) { r.After = "{nope" }, "after"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := auditRecords()[0]
				tc.edit(&r)
				if err := r.Validate(); fieldOf(err) != tc.field {
					t.Fatalf("validate error = %v, want one naming %s", err, tc.field)
				}
				err := s.AppendAudit(t.Context(), r)
				if fieldOf(err) != tc.field || !strings.Contains(err.Error(), tc.field+":") {
					t.Fatalf("append error = %v, want one naming %s", err, tc.field)
				}
			})
		}
		p, err := s.Audit(t.Context(), analytics.AuditQuery{})
		if err != nil || len(p.Records) != 0 {
			t.Fatalf("after rejected appends: %s, %v; want none", auditIDs(p.Records), err)
		}
		// At the limits is fine.
		r := auditRecords()[1]
		r.ID, r.Actor, r.Reason = strings.Repeat("i", 128), strings.Repeat("a", 256), strings.Repeat("r", 4096)
		r.Before = `"` + strings.Repeat("b", 64<<10-2) + `"`
		if err := s.AppendAudit(t.Context(), r); err != nil {
			t.Fatalf("append at the limits: %v", err)
		}
		if p, err := s.Audit(t.Context(), analytics.AuditQuery{}); err != nil || len(p.Records) != 1 || p.Records[0].Before != r.Before {
			t.Fatalf("after an append at the limits: %d records, %v", len(p.Records), err)
		}
	})

	t.Run("query validation", func(t *testing.T) {
		s := loaded(t)
		cases := []struct {
			name  string
			q     analytics.AuditQuery
			field string
		}{
			{"negative limit", analytics.AuditQuery{Limit: -1}, "limit"},
			{"limit too large", analytics.AuditQuery{Limit: 1001}, "limit"},
			{"cursor not base64", analytics.AuditQuery{Before: "not a cursor!"}, "before"},
			{"cursor not ours", analytics.AuditQuery{Before: "aGVsbG8"}, "before"},
			{"cursor without id", analytics.AuditQuery{Before: "MTc2NzI2MTYwMDAwMDo"}, "before"},
			{"cursor before 1970", analytics.AuditQuery{Before: "LTE6YXVkXzAx"}, "before"},
			{"cursor too long", analytics.AuditQuery{Before: strings.Repeat("A", 1000)}, "before"},
			{"since after until", analytics.AuditQuery{Since: t0.Add(time.Second), Until: t0}, "since"},
			{"unknown outcome", analytics.AuditQuery{Outcome: "maybe"}, "outcome"},
			{"long actor", analytics.AuditQuery{Actor: strings.Repeat("x", 257)}, "actor"},
			{"bad utf-8 service", analytics.AuditQuery{Service: "\xff"}, "service"},
			{"long override id", analytics.AuditQuery{OverrideID: strings.Repeat("x", 257)}, "override_id"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.q.Validate(); fieldOf(err) != tc.field {
					t.Fatalf("validate error = %v, want one naming %s", err, tc.field)
				}
				_, err := s.Audit(t.Context(), tc.q)
				if fieldOf(err) != tc.field || !strings.Contains(err.Error(), tc.field+":") {
					t.Fatalf("audit error = %v, want one naming %s", err, tc.field)
				}
			})
		}
		// "MTc2NzI2MTYwMDAwMDo" above is the cursor format with an empty id;
		// with one it is a cursor.
		p, err := s.Audit(t.Context(), analytics.AuditQuery{Before: "MTc2NzI2MTc4MDAwMDphdWRfMDQ"}) // "1767261780000:aud_04"
		if err != nil || auditIDs(p.Records) != "[03 02 01 00]" {
			t.Fatalf("hand-made cursor: %s, %v", auditIDs(p.Records), err)
		}
	})

	t.Run("concurrent appends", func(t *testing.T) {
		s := open(t)
		const writers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					r := analytics.AuditRecord{At: t0.Add(time.Duration(i) * time.Second), Actor: fmt.Sprintf("w%d", w),
						Action: "override.create", Outcome: analytics.AuditOK, Detail: fmt.Sprintf("w%d-%d", w, i)}
					if err := s.AppendAudit(t.Context(), r); err != nil {
						errs <- err
					}
				}
			})
		}
		// Reads while writing must be safe too.
		wg.Go(func() {
			for range 20 {
				if _, err := s.Audit(t.Context(), analytics.AuditQuery{Limit: 10}); err != nil {
					errs <- err
				}
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent: %v", err)
		}
		got := allAudit(t, s, analytics.AuditQuery{Limit: 1000})
		ids, details := map[string]bool{}, map[string]bool{}
		for _, r := range got {
			ids[r.ID], details[r.Detail] = true, true
		}
		if len(got) != writers*each || len(ids) != writers*each || len(details) != writers*each {
			t.Fatalf("%d records, %d ids, %d details; want %d of each", len(got), len(ids), len(details), writers*each)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		s := open(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		r := auditRecords()[0]
		if err := s.AppendAudit(ctx, r); !errors.Is(err, context.Canceled) {
			t.Fatalf("append with a cancelled context: %v, want context.Canceled", err)
		}
		if _, err := s.Audit(ctx, analytics.AuditQuery{}); err == nil {
			t.Fatal("audit with a cancelled context: no error")
		}
		p, err := s.Audit(t.Context(), analytics.AuditQuery{})
		if err != nil || len(p.Records) != 0 {
			t.Fatalf("after a cancelled append: %s, %v; want none", auditIDs(p.Records), err)
		}
	})
}

// permutation is 0..n-1 in a fixed scrambled order (7 is prime to 250).
func permutation(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i * 7 % n
	}
	return out
}

// A store that cannot take the record makes AppendAudit fail, so the
// mutation it audits fails too.
func TestClickHouseAuditFailClosed(t *testing.T) {
	t.Run("closed store", func(t *testing.T) {
		c := openClickHouse(t, chserver.ForTest(t), analytics.ClickHouseOptions{})
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.AppendAudit(t.Context(), auditRecords()[0]); err == nil {
			t.Fatal("append on a closed store: no error")
		}
	})

	t.Run("server gone", func(t *testing.T) {
		srv := chserver.ForTestServer(t)
		c := openClickHouse(t, srv.Addr(), analytics.ClickHouseOptions{DialTimeout: time.Second, QueryTimeout: 5 * time.Second})
		rs := auditRecords()
		if err := c.AppendAudit(t.Context(), rs[0]); err != nil {
			t.Fatalf("append while up: %v", err)
		}
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := c.AppendAudit(t.Context(), rs[1]); err == nil {
			t.Fatal("append with the server gone: no error")
		}
		if err := srv.Restart(t.Context()); err != nil {
			t.Fatalf("restart: %v", err)
		}
		if err := c.AppendAudit(t.Context(), rs[2]); err != nil {
			t.Fatalf("append after restart: %v", err)
		}
		p, err := c.Audit(t.Context(), analytics.AuditQuery{})
		if err != nil || auditIDs(p.Records) != "[03 01]" {
			t.Fatalf("stored %s, %v; want exactly the acknowledged appends", auditIDs(p.Records), err)
		}
	})
}

func TestAuditMemoryEvictsOldestAppended(t *testing.T) {
	m := analytics.NewAuditMemory(3)
	rs := auditRecords()
	// Appended newest first: eviction goes by append order, not by At.
	appendAll(t, m, []analytics.AuditRecord{rs[4], rs[3], rs[2], rs[1], rs[0]})
	if m.Len() != 3 || m.Dropped() != 2 {
		t.Fatalf("len %d dropped %d, want 3 and 2", m.Len(), m.Dropped())
	}
	p, err := m.Audit(t.Context(), analytics.AuditQuery{})
	if err != nil || auditIDs(p.Records) != "[03 02 01]" {
		t.Fatalf("held %s, %v; want the last three appended", auditIDs(p.Records), err)
	}
	if n := analytics.NewAuditMemory(0); n.Len() != 0 || n.Dropped() != 0 {
		t.Fatalf("new: len %d dropped %d", n.Len(), n.Dropped())
	}
}

func TestAuditAppendSetsID(t *testing.T) {
	m := analytics.NewAuditMemory(0)
	r := auditRecords()[0]
	r.ID = ""
	appendAll(t, m, []analytics.AuditRecord{r, r})
	p, err := m.Audit(t.Context(), analytics.AuditQuery{})
	if err != nil || len(p.Records) != 2 {
		t.Fatalf("audit: %d records, %v", len(p.Records), err)
	}
	a, b := p.Records[0].ID, p.Records[1].ID
	if !strings.HasPrefix(a, "aud_") || len(a) != len("aud_")+32 || a == b {
		t.Fatalf("ids %q and %q, want two distinct aud_ + 32 hex", a, b)
	}
}

// The record is the admin API's answer shape: snake_case, every field.
func TestAuditRecordJSON(t *testing.T) {
	r := normalizedAudit(auditRecords()[1])
	b, err := json.Marshal(analytics.AuditPage{Records: []analytics.AuditRecord{r}, Next: "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"records":[{"id":"aud_02","at":"2026-01-01T10:01:00Z","actor":"alice","role":"operator","auth":"token",` +
		`"source":"192.0.2.10","method":"POST","path":"/api/v1/overrides/ov_1/extend","action":"override.extend",` +
		`"outcome":"ok","status":200,"service":"vod","override_id":"ov_1","reason":"still failing",` +
		`"before":"{\"id\":\"ov_1\",\"action\":\"pin\",\"cdn\":\"cdn-b\",\"scope\":{\"service\":\"vod\"},\"revision\":1}",` +
		`"after":"{\"id\":\"ov_1\",\"action\":\"pin\",\"cdn\":\"cdn-b\",\"scope\":{\"service\":\"vod\"},\"revision\":2}",` +
		`"detail":""}],"next":"x"}`
	if string(b) != want {
		t.Fatalf("json:\n got  %s\n want %s", b, want)
	}
}

package overrides

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

// seenTimeout bounds how long Commit waits for this node's follower to
// read back what it wrote.
const seenTimeout = 5 * time.Second

// Filter selects records for List.
type Filter struct {
	State   string // StateActive, StateExpired, StateDeleted; empty or "all": all
	Service string // empty: all
	Now     time.Time
}

// Store is what the admin API changes overrides through. A change is
// planned first (Plan*, which writes nothing), so the caller can store
// its audit record, then committed (Commit: written to the log, then
// read back by this node's follower). Create, Extend and Delete do both.
//
// Checking an override against the catalog is the caller's job
// (steering.Override.Validate); the Store refuses what no override may
// have: no reason, no expiry, an expiry in the past.
type Store struct {
	log  *Log
	f    *Follower
	now  func() time.Time
	seen time.Duration

	// commit serializes this node's commits, so that two changes planned
	// from the same revision cannot both be written from here.
	commit sync.Mutex
}

// NewStore builds a store writing to log and reading from f, which must
// follow the topic log writes to. now is time.Now when nil.
func NewStore(log *Log, f *Follower, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{log: log, f: f, now: now, seen: seenTimeout}
}

// Get is the latest record of id this node holds.
func (s *Store) Get(id string) (Record, bool) { return s.f.Get(id) }

// List is the records that pass the filter, newest first. A zero
// filter.Now is the store's clock.
func (s *Store) List(filter Filter) []Record {
	now := filter.Now
	if now.IsZero() {
		now = s.now()
	}
	out := []Record{}
	for _, r := range s.f.All() {
		if filter.Service != "" && r.Service != filter.Service {
			continue
		}
		if filter.State != "" && filter.State != "all" && r.State(now) != filter.State {
			continue
		}
		out = append(out, r)
	}
	return out
}

// PlanCreate is the record a create of o by actor would write: a new id
// ("ovr_" and 16 hex digits) unless o has one, created now, revision 1.
func (s *Store) PlanCreate(o steering.Override, actor string) (Record, error) {
	if !s.f.isReadyNow() {
		return Record{}, ErrNotReady
	}
	now := clean(s.now())
	if err := checkChange(actor, o.Reason, o.Expires, now); err != nil {
		return Record{}, err
	}
	if o.ID == "" {
		o.ID = newID()
	} else if _, ok := s.f.Get(o.ID); ok {
		return Record{}, fmt.Errorf("override %s: the id exists: %w", o.ID, ErrConflict)
	}
	o.Created, o.Author, o.Expires = now, actor, clean(o.Expires)
	if len(o.Split) == 0 {
		o.Split = nil
	} else {
		o.Split = maps.Clone(o.Split)
	}
	r := Record{Override: o, Revision: 1, UpdatedAt: now, UpdatedBy: actor}
	if err := r.check(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// PlanExtend is the record an extension of id's expiry would write. The
// override's reason stays the one it was created with; the extension's
// reason belongs in the audit record.
func (s *Store) PlanExtend(id string, expires time.Time, reason, actor string) (before, after Record, err error) {
	now := clean(s.now())
	before, err = s.current(id, now)
	if err != nil {
		return Record{}, Record{}, err
	}
	if err := checkChange(actor, reason, expires, now); err != nil {
		return Record{}, Record{}, err
	}
	after = before.clone()
	after.Expires = clean(expires)
	after.Revision++
	after.UpdatedAt, after.UpdatedBy = now, actor
	return before, after, nil
}

// PlanDelete is the record the end of id now would write.
func (s *Store) PlanDelete(id, reason, actor string) (before, after Record, err error) {
	now := clean(s.now())
	before, err = s.current(id, now)
	if err != nil {
		return Record{}, Record{}, err
	}
	if err := checkChange(actor, reason, time.Time{}, time.Time{}); err != nil {
		return Record{}, Record{}, err
	}
	after = before.clone()
	after.Revision++
	after.UpdatedAt, after.UpdatedBy = now, actor
	after.DeletedAt, after.DeletedBy, after.DeleteReason = now, actor, reason
	return before, after, nil
}

// current is id's record if it can still be changed at now.
func (s *Store) current(id string, now time.Time) (Record, error) {
	if !s.f.isReadyNow() {
		return Record{}, ErrNotReady
	}
	r, ok := s.f.Get(id)
	if !ok {
		return Record{}, fmt.Errorf("override %s: %w", id, ErrNotFound)
	}
	if st := r.State(now); st != StateActive {
		return Record{}, fmt.Errorf("override %s is %s: %w", id, st, ErrNotActive)
	}
	return r, nil
}

// Commit writes a planned record and waits (at most 5 s) until this
// node's follower holds it, so that the caller's answer and a following
// read agree. It returns ErrConflict when the override changed since the
// plan and ErrNotActive when it expired since (nothing is written in
// either case), an error wrapping the log's when the log
// refused the write (nothing changed), and ErrNotSeen when the write was
// accepted but not read back in time (the change is durable).
func (s *Store) Commit(ctx context.Context, r Record) error {
	if err := r.check(); err != nil {
		return fmt.Errorf("commit override: %w", err)
	}
	s.commit.Lock()
	defer s.commit.Unlock()
	cur, ok := s.f.Get(r.ID)
	switch {
	case r.Revision == 1 && ok:
		return fmt.Errorf("override %s: the id exists: %w", r.ID, ErrConflict)
	case r.Revision > 1 && !ok:
		return fmt.Errorf("override %s: %w", r.ID, ErrNotFound)
	case r.Revision > 1 && cur.Revision != r.Revision-1:
		return fmt.Errorf("override %s is at revision %d, the change was planned from %d: %w", r.ID, cur.Revision, r.Revision-1, ErrConflict)
	case r.Revision > 1:
		// It may have expired since the plan: an extension must not
		// bring it back.
		if st := cur.State(s.now()); st != StateActive {
			return fmt.Errorf("override %s is %s: %w", r.ID, st, ErrNotActive)
		}
	}
	if err := s.log.Put(ctx, r); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, s.seen)
	defer cancel()
	if err := s.f.WaitRevision(wctx, r.ID, r.Revision); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("override %s revision %d written to %s; %w", r.ID, r.Revision, s.log.Topic(), ctx.Err())
		}
		return fmt.Errorf("override %s revision %d: %w after %s", r.ID, r.Revision, ErrNotSeen, s.seen)
	}
	return nil
}

// Create plans and commits a new override.
func (s *Store) Create(ctx context.Context, o steering.Override, actor string) (Record, error) {
	r, err := s.PlanCreate(o, actor)
	if err != nil {
		return Record{}, err
	}
	return r, s.Commit(ctx, r)
}

// Extend plans and commits a new expiry.
func (s *Store) Extend(ctx context.Context, id string, expires time.Time, reason, actor string) (before, after Record, err error) {
	before, after, err = s.PlanExtend(id, expires, reason, actor)
	if err != nil {
		return before, after, err
	}
	return before, after, s.Commit(ctx, after)
}

// Delete plans and commits the end of an override.
func (s *Store) Delete(ctx context.Context, id, reason, actor string) (before, after Record, err error) {
	before, after, err = s.PlanDelete(id, reason, actor)
	if err != nil {
		return before, after, err
	}
	return before, after, s.Commit(ctx, after)
}

// checkChange refuses a change without an actor or a reason and, when
// now is set, an expiry that is not after now.
func checkChange(actor, reason string, expires, now time.Time) error {
	switch {
	case actor == "":
		return fieldErr("actor", "empty; every change names who made it")
	case reason == "":
		return fieldErr("reason", "empty; say why for the audit log")
	case now.IsZero():
		return nil
	case expires.IsZero():
		return fieldErr("expires", "missing; every override ends")
	case !expires.After(now):
		return fieldErr("expires", "%s is not in the future", expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// clean is t as it reads back from the topic: UTC, no monotonic reading.
func clean(t time.Time) time.Time { return t.UTC().Round(0) }

// newID is "ovr_" and 16 random hex digits.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never returns an error: since Go 1.24 it crashes the program instead
	return "ovr_" + hex.EncodeToString(b[:])
}

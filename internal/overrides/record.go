// Package overrides is the durable, distributed override log: a compacted
// Kafka topic with one record per override id that the admin API writes
// (Store, Log) and every scorer and steering node follows (Follower).
package overrides

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

// FormatVersion is the "v" of every record this package writes and the
// only one it reads.
const FormatVersion = 1

// The states of a record at a given time.
const (
	StateActive  = "active"
	StateExpired = "expired"
	StateDeleted = "deleted"
)

// maxIDLen bounds an override id, which is also the Kafka key.
const maxIDLen = 128

var (
	// ErrNotFound: no override has that id.
	ErrNotFound = errors.New("no such override")
	// ErrNotActive: the override has expired or was deleted, so it can
	// no longer be changed.
	ErrNotActive = errors.New("override is not active")
	// ErrConflict: the override changed (on this node or another) between
	// the plan and the commit, or a create names an id that exists.
	ErrConflict = errors.New("override changed since the change was planned")
	// ErrNotSeen: the log took the write, but this node's follower has
	// not read it back in time. The change is durable and will reach
	// every node.
	ErrNotSeen = errors.New("accepted by the override log but not yet seen by this node")
	// ErrNotReady: the follower has not read the topic up to where it
	// stood at start, so its set is incomplete.
	ErrNotReady = errors.New("override log not read to its end yet")
	// ErrInvalid is what every *FieldError is.
	ErrInvalid = errors.New("invalid override")
)

// FieldError names the field of a record or a change that is wrong.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Record is the persisted state of one override: what the engine applies,
// plus the bookkeeping of its changes. A deleted override stays a record
// (DeletedAt set) so that it can still be listed; only a Kafka tombstone
// makes the log forget an id.
type Record struct {
	steering.Override
	// Revision starts at 1 and grows by one per change. A follower keeps
	// the highest it has read of each id.
	Revision     uint64
	UpdatedAt    time.Time
	UpdatedBy    string
	DeletedAt    time.Time // zero: not deleted
	DeletedBy    string
	DeleteReason string
}

// State is StateDeleted, StateExpired or StateActive at now. An override
// expires at Expires exactly, as the engine sees it.
func (r Record) State(now time.Time) string {
	switch {
	case !r.DeletedAt.IsZero():
		return StateDeleted
	case !r.Expires.IsZero() && !now.Before(r.Expires):
		return StateExpired
	}
	return StateActive
}

// clone copies the record's one reference, the split map, so that callers
// cannot change what a follower holds.
func (r Record) clone() Record {
	r.Split = maps.Clone(r.Split)
	return r
}

// wire is the JSON of a record, version 1. It is spelled out here rather
// than taken from steering.Override's tags so that the topic's format
// changes only on purpose.
type wire struct {
	V            int                   `json:"v"`
	ID           string                `json:"id"`
	Kind         steering.OverrideKind `json:"kind"`
	Service      string                `json:"service"`
	Region       string                `json:"region,omitempty"`
	ASN          uint32                `json:"asn,omitempty"`
	CDN          string                `json:"cdn,omitempty"`
	Weight       float64               `json:"weight,omitempty"`
	Split        map[string]float64    `json:"split,omitempty"`
	Reason       string                `json:"reason"`
	Author       string                `json:"author,omitempty"`
	Created      time.Time             `json:"created"`
	Expires      time.Time             `json:"expires,omitzero"`
	Revision     uint64                `json:"revision"`
	UpdatedAt    time.Time             `json:"updated_at,omitzero"`
	UpdatedBy    string                `json:"updated_by,omitempty"`
	DeletedAt    time.Time             `json:"deleted_at,omitzero"`
	DeletedBy    string                `json:"deleted_by,omitempty"`
	DeleteReason string                `json:"delete_reason,omitempty"`
}

// MarshalJSON writes the record in the topic's format.
func (r Record) MarshalJSON() ([]byte, error) {
	o := r.Override
	return json.Marshal(wire{
		V: FormatVersion, ID: o.ID, Kind: o.Kind, Service: o.Service, Region: o.Region, ASN: o.ASN, CDN: o.CDN,
		Weight: o.Weight, Split: o.Split, Reason: o.Reason, Author: o.Author, Created: o.Created, Expires: o.Expires,
		Revision: r.Revision, UpdatedAt: r.UpdatedAt, UpdatedBy: r.UpdatedBy,
		DeletedAt: r.DeletedAt, DeletedBy: r.DeletedBy, DeleteReason: r.DeleteReason,
	})
}

// UnmarshalJSON reads the topic's format strictly: unknown fields, a
// version other than 1, trailing data and a record that fails the checks
// of a stored record are errors naming the field.
func (r *Record) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("override record: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("override record: data after the JSON object")
	}
	if w.V != FormatVersion {
		if w.V == 0 {
			return fieldErr("v", "missing; the format version must be %d", FormatVersion)
		}
		return fieldErr("v", "%d is not a supported format version (want %d)", w.V, FormatVersion)
	}
	rec := Record{
		Override: steering.Override{
			ID: w.ID, Kind: w.Kind, Service: w.Service, Region: w.Region, ASN: w.ASN, CDN: w.CDN,
			Weight: w.Weight, Split: w.Split, Reason: w.Reason, Author: w.Author, Created: w.Created, Expires: w.Expires,
		},
		Revision: w.Revision, UpdatedAt: w.UpdatedAt, UpdatedBy: w.UpdatedBy,
		DeletedAt: w.DeletedAt, DeletedBy: w.DeletedBy, DeleteReason: w.DeleteReason,
	}
	if err := rec.check(); err != nil {
		return err
	}
	*r = rec
	return nil
}

// DecodeRecord decodes a message of the topic: key is the Kafka key,
// which must be the record's id.
func DecodeRecord(key, value []byte) (Record, error) {
	var r Record
	if err := r.UnmarshalJSON(value); err != nil {
		return Record{}, err
	}
	if string(key) != r.ID {
		return Record{}, fieldErr("id", "%s is not the message key %s", strconv.Quote(r.ID), strconv.Quote(truncate(string(key), 80)))
	}
	return r, nil
}

// check is what every stored record satisfies: the format's invariants,
// not the catalog's (steering.Override.Validate is the caller's).
func (r Record) check() error {
	switch {
	case r.ID == "":
		return fieldErr("id", "missing")
	case len(r.ID) > maxIDLen:
		return fieldErr("id", "longer than %d bytes", maxIDLen)
	}
	for i := 0; i < len(r.ID); i++ {
		if c := r.ID[i]; c <= ' ' || c >= 0x7f {
			return fieldErr("id", "%s has a byte that is not printable ASCII", strconv.Quote(r.ID))
		}
	}
	switch r.Kind {
	case steering.OverridePin, steering.OverrideBan, steering.OverrideDrain, steering.OverrideWeight, steering.OverrideSplit:
	case "":
		return fieldErr("kind", "missing")
	default:
		return fieldErr("kind", "%s is not one of pin, ban, drain, weight, split", strconv.Quote(string(r.Kind)))
	}
	switch {
	case r.Service == "":
		return fieldErr("service", "missing")
	case r.Revision == 0:
		return fieldErr("revision", "missing; revisions start at 1")
	case r.Created.IsZero():
		return fieldErr("created", "missing")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

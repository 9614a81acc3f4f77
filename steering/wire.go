package steering

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// WireFormat is the version of the snapshot encoding on the rankings
// topic. A node refuses a format it does not know rather than guess.
const WireFormat = 1

type wireSnapshot struct {
	Format int `json:"format"`
	*Snapshot
}

// MarshalSnapshot encodes a snapshot for the rankings topic (JSON; see
// steering/SNAPSHOT.md).
func MarshalSnapshot(s *Snapshot) ([]byte, error) {
	b, err := json.Marshal(wireSnapshot{Format: WireFormat, Snapshot: s})
	if err != nil {
		return nil, fmt.Errorf("encode snapshot of %q: %w", s.Service, err)
	}
	return b, nil
}

// UnmarshalSnapshot decodes and checks a snapshot from the rankings
// topic. Every error names what is wrong; a snapshot that decodes is safe
// to decide from (a global ranking, weights in 0..1 summing to 1).
func UnmarshalSnapshot(data []byte) (*Snapshot, error) {
	var w struct {
		Format *int `json:"format"`
		Snapshot
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode snapshot: data after the object")
	}
	s := &w.Snapshot
	switch {
	case w.Format == nil:
		return nil, fmt.Errorf("snapshot: format is missing")
	case *w.Format != WireFormat:
		return nil, fmt.Errorf("snapshot: format %d is not %d", *w.Format, WireFormat)
	case s.Service == "":
		return nil, fmt.Errorf("snapshot: service is empty")
	case s.At.IsZero():
		return nil, fmt.Errorf("snapshot of %q: at is missing", s.Service)
	case len(s.Rankings) == 0:
		return nil, fmt.Errorf("snapshot of %q: no rankings", s.Service)
	}
	for i, r := range s.Rankings {
		if err := CheckRanking(s.Service, r); err != nil {
			return nil, fmt.Errorf("snapshot of %q: rankings[%d]%w", s.Service, i, err)
		}
	}
	s.build()
	if len(s.index) != len(s.Rankings) {
		return nil, fmt.Errorf("snapshot of %q: a scope is ranked twice", s.Service)
	}
	if s.Ranking(Scope{Service: s.Service}) == nil {
		return nil, fmt.Errorf("snapshot of %q: no global ranking", s.Service)
	}
	return s, nil
}

// CheckRanking checks one ranking of a service as a node would decide
// from it: the service's scope, choices, weights in 0..1 summing to 1.
// The error starts with what follows the ranking's position.
func CheckRanking(service string, r *Ranking) error {
	if r == nil {
		return fmt.Errorf(" is null")
	}
	if r.Scope.Service != service {
		return fmt.Errorf(".scope.service is %q", r.Scope.Service)
	}
	if len(r.Choices) == 0 {
		return fmt.Errorf(" (%s) has no choices", r.Scope)
	}
	sum := 0.0
	for j, c := range r.Choices {
		if c.CDN == "" {
			return fmt.Errorf(".choices[%d].cdn is empty", j)
		}
		if math.IsNaN(c.Weight) || c.Weight < 0 || c.Weight > 1 {
			return fmt.Errorf(".choices[%d].weight %v is outside 0..1", j, c.Weight)
		}
		sum += c.Weight
	}
	if math.Abs(sum-1) > 1e-3 {
		return fmt.Errorf(" (%s) weights sum to %v, not 1", r.Scope, sum)
	}
	return nil
}

// NewSnapshot puts rankings made elsewhere together into one snapshot (a
// scorer group's leader adds the other members' regions to its own). The
// rankings are shared, not copied; it refuses what UnmarshalSnapshot
// would.
func NewSnapshot(service string, version uint64, at time.Time, rankings []*Ranking) (*Snapshot, error) {
	for i, r := range rankings {
		if err := CheckRanking(service, r); err != nil {
			return nil, fmt.Errorf("snapshot of %q: rankings[%d]%w", service, i, err)
		}
	}
	s := &Snapshot{Service: service, Version: version, At: at, Rankings: slices.Clone(rankings)}
	sort.SliceStable(s.Rankings, func(i, j int) bool { return scopeLess(s.Rankings[i].Scope, s.Rankings[j].Scope) })
	s.build()
	if len(s.index) != len(s.Rankings) {
		return nil, fmt.Errorf("snapshot of %q: a scope is ranked twice", service)
	}
	if s.Ranking(Scope{Service: service}) == nil {
		return nil, fmt.Errorf("snapshot of %q: no global ranking", service)
	}
	return s, nil
}

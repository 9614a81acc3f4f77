package steering

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
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
		if r == nil {
			return nil, fmt.Errorf("snapshot of %q: rankings[%d] is null", s.Service, i)
		}
		if r.Scope.Service != s.Service {
			return nil, fmt.Errorf("snapshot of %q: rankings[%d].scope.service is %q", s.Service, i, r.Scope.Service)
		}
		if len(r.Choices) == 0 {
			return nil, fmt.Errorf("snapshot of %q: rankings[%d] (%s) has no choices", s.Service, i, r.Scope)
		}
		sum := 0.0
		for j, c := range r.Choices {
			if c.CDN == "" {
				return nil, fmt.Errorf("snapshot of %q: rankings[%d].choices[%d].cdn is empty", s.Service, i, j)
			}
			if math.IsNaN(c.Weight) || c.Weight < 0 || c.Weight > 1 {
				return nil, fmt.Errorf("snapshot of %q: rankings[%d].choices[%d].weight %v is outside 0..1", s.Service, i, j, c.Weight)
			}
			sum += c.Weight
		}
		if math.Abs(sum-1) > 1e-3 {
			return nil, fmt.Errorf("snapshot of %q: rankings[%d] (%s) weights sum to %v, not 1", s.Service, i, r.Scope, sum)
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

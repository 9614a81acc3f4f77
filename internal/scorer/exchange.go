package scorer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

// The two topics the members of a scorer group talk over (see
// docs/ARCHITECTURE.md, "Scorer group"). Both carry JSON, zstd-compressed
// by the producer, in format exchangeFormat.
//
//   - deltas (kafka.score_deltas_topic): what each member's beacons added
//     to the shared scopes each tick, with the beacon offsets they came
//     from. Every member applies every delta, its own included.
//   - parts (kafka.score_parts_topic): each member's rankings of the
//     regions and ASNs it owns, which the leader puts into the snapshots.
const exchangeFormat = 1

// OffsetRange is the beacon offsets of one partition a delta holds.
type OffsetRange struct {
	Partition int   `json:"partition"`
	From      int64 `json:"from"`
	To        int64 `json:"to"`
}

// DeltaMessage is one record of the deltas topic.
type DeltaMessage struct {
	Format int `json:"format"`
	// Group is the consumer group: members of other groups that share the
	// topic (a second installation, an old standby) are ignored.
	Group      string          `json:"group"`
	Member     string          `json:"member"`
	Generation int32           `json:"generation"`
	At         time.Time       `json:"at"`
	Offsets    []OffsetRange   `json:"offsets"`
	Delta      *steering.Delta `json:"delta"`
}

// PartMessage is one record of the parts topic: a member's rankings of
// one service's regions and ASNs.
type PartMessage struct {
	Format     int                 `json:"format"`
	Group      string              `json:"group"`
	Service    string              `json:"service"`
	Member     string              `json:"member"`
	Generation int32               `json:"generation"`
	Partitions []int               `json:"partitions"`
	At         time.Time           `json:"at"`
	Rankings   []*steering.Ranking `json:"rankings"`
}

func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the object")
	}
	return nil
}

// UnmarshalDeltaMessage decodes and checks a deltas record. What the
// engine checks (services, CDNs, figures) it checks on ApplyDelta.
func UnmarshalDeltaMessage(data []byte) (*DeltaMessage, error) {
	var m DeltaMessage
	if err := strictDecode(data, &m); err != nil {
		return nil, fmt.Errorf("decode delta: %w", err)
	}
	switch {
	case m.Format != exchangeFormat:
		return nil, fmt.Errorf("delta: format %d is not %d", m.Format, exchangeFormat)
	case m.Member == "" || m.Group == "":
		return nil, fmt.Errorf("delta: group or member is empty")
	case m.At.IsZero():
		return nil, fmt.Errorf("delta of %s: at is missing", m.Member)
	case m.Delta == nil:
		return nil, fmt.Errorf("delta of %s: delta is missing", m.Member)
	case len(m.Offsets) == 0:
		return nil, fmt.Errorf("delta of %s: offsets are missing", m.Member)
	}
	seen := map[int]bool{}
	for i, r := range m.Offsets {
		if r.Partition < 0 || r.From < 0 || r.To < r.From || seen[r.Partition] {
			return nil, fmt.Errorf("delta of %s: offsets[%d] (partition %d, %d..%d) is not a range of a new partition", m.Member, i, r.Partition, r.From, r.To)
		}
		seen[r.Partition] = true
	}
	return &m, nil
}

// UnmarshalPartMessage decodes and checks a parts record: only region and
// ASN rankings of its service, each one a node could decide from.
func UnmarshalPartMessage(data []byte) (*PartMessage, error) {
	var m PartMessage
	if err := strictDecode(data, &m); err != nil {
		return nil, fmt.Errorf("decode part: %w", err)
	}
	switch {
	case m.Format != exchangeFormat:
		return nil, fmt.Errorf("part: format %d is not %d", m.Format, exchangeFormat)
	case m.Service == "" || m.Member == "" || m.Group == "":
		return nil, fmt.Errorf("part: service, group or member is empty")
	case m.At.IsZero():
		return nil, fmt.Errorf("part of %s from %s: at is missing", m.Service, m.Member)
	}
	seen := map[steering.Scope]bool{}
	for i, r := range m.Rankings {
		if err := steering.CheckRanking(m.Service, r); err != nil {
			return nil, fmt.Errorf("part of %s from %s: rankings[%d]%w", m.Service, m.Member, i, err)
		}
		if l := r.Scope.Level; l != steering.LevelRegion && l != steering.LevelASN {
			return nil, fmt.Errorf("part of %s from %s: rankings[%d] is a %s scope; parts hold regions and ASNs", m.Service, m.Member, i, l)
		}
		if seen[r.Scope] {
			return nil, fmt.Errorf("part of %s from %s: %s is ranked twice", m.Service, m.Member, r.Scope)
		}
		seen[r.Scope] = true
	}
	return &m, nil
}

// assemble is the leader's snapshot: its own rankings (every global and
// country scope, its own regions, the scopes only overrides name) with
// the regions and ASNs of the other members' parts. The scopes of a
// region the leader got beacons of (mine) are its own; otherwise the
// newest part that has the scope wins.
// Parts older than maxAge are left out: their member is gone and no other
// has taken its partitions yet for that long.
func assemble(own *steering.Snapshot, mine map[string]bool, parts []*PartMessage, now time.Time, maxAge time.Duration) (*steering.Snapshot, error) {
	byScope := make(map[steering.Scope]int, len(own.Rankings))
	out := slices.Clone(own.Rankings)
	for i, r := range out {
		byScope[r.Scope] = i
	}
	taken := map[steering.Scope]time.Time{}
	for _, p := range parts {
		if p.Service != own.Service || now.Sub(p.At) > maxAge {
			continue
		}
		for _, r := range p.Rankings {
			i, ok := byScope[r.Scope]
			switch {
			case mine[r.Scope.Region]:
				continue
			case !taken[r.Scope].IsZero() && !p.At.After(taken[r.Scope]):
				continue
			}
			taken[r.Scope] = p.At
			if ok {
				out[i] = r
				continue
			}
			byScope[r.Scope] = len(out)
			out = append(out, r)
		}
	}
	return steering.NewSnapshot(own.Service, own.Version, own.At, out)
}

package steering

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Rule names what set a scope's weights; every decision carries it.
type Rule string

const (
	RuleMeasured    Rule = "measured"     // QoE scores with hysteresis, shift cap, exploration, cost
	RuleNoData      Rule = "no_data"      // no window anywhere up the scope chain: static order
	RuleStaleFreeze Rule = "stale_freeze" // no fresh beacons for stale.freeze: weights held
	RuleStaleStatic Rule = "stale_static" // no fresh beacons (or snapshot) for stale.static: static order
	RuleFailOpen    Rule = "fail_open"    // every CDN down or banned: static order
	RulePin         Rule = "override_pin"
	RuleSplit       Rule = "override_split"
)

// Health of a CDN in a scope.
type Health uint8

const (
	HealthUp         Health = iota
	HealthUnknown           // no probe configured or no result yet, and no beacons
	HealthSuppressed        // flapping: keeps exploration, may not lead
	HealthProbation         // was down or evacuated, no fresh data since: exploration only
	HealthEvacuated         // fast QoE far below the best: traffic leaves without the cap
	HealthDown              // probes failing or fatal failures over passive.failure_rate
	HealthBanned            // operator ban: not offered at all
	HealthDrained           // operator drain: no new views, still a last-resort fallback
	healthEnd
)

var healthNames = [...]string{"up", "unknown", "suppressed", "probation", "evacuated", "down", "banned", "drained"}

func (h Health) String() string {
	if h < healthEnd {
		return healthNames[h]
	}
	return "health(" + strconv.Itoa(int(h)) + ")"
}

// MarshalText writes the name.
func (h Health) MarshalText() ([]byte, error) {
	if h >= healthEnd {
		return nil, fmt.Errorf("health %d has no name", h)
	}
	return []byte(h.String()), nil
}

// UnmarshalText reads a name; an unknown one is an error.
func (h *Health) UnmarshalText(b []byte) error {
	for i, n := range healthNames {
		if n == string(b) {
			*h = Health(i)
			return nil
		}
	}
	return fmt.Errorf("unknown health %q", b)
}

// eligible reports whether a CDN in this state may get new views from the
// measured allocation.
func (h Health) eligible() bool {
	return h == HealthUp || h == HealthUnknown || h == HealthSuppressed || h == HealthProbation
}

// Choice is one CDN in a ranking, with everything that explains its weight.
type Choice struct {
	CDN    string  `json:"cdn"`
	Host   string  `json:"host"`
	Weight float64 `json:"weight"` // share of new views, 0..1; the weights of a ranking sum to 1
	// Score is the QoE score 0-100 from the window at ScoreScope; -1 when
	// no window up the chain has data.
	Score      float64  `json:"score"`
	Confidence float64  `json:"confidence"` // 0..1 from the decayed sample count
	ScoreScope Level    `json:"score_scope"`
	Health     Health   `json:"health"`
	Leader     bool     `json:"leader,omitempty"`
	Samples    float64  `json:"samples"` // decayed beacons in that window
	Views      float64  `json:"views"`   // decayed play attempts in that window
	Stats      *Figures `json:"stats,omitempty"`
	FastScore  float64  `json:"fast_score"` // QoE over the passive-health window, -1 without data
	// Reason says why the health and weight are what they are, in words
	// ("probe: 3 consecutive failures", "passive: ...").
	Reason   string `json:"reason,omitempty"`
	Override string `json:"override,omitempty"` // id of the override that applied
	// LeaderSince is when the leader took the lead, ms since the epoch.
	LeaderSince int64 `json:"leader_since,omitempty"`

	seed uint64 // rendezvous hashing seed of the CDN name
}

// Ranking is the immutable answer for one scope: CDNs best first.
type Ranking struct {
	Scope   Scope    `json:"scope"`
	Rule    Rule     `json:"rule"`
	Choices []Choice `json:"choices"`
	// Fired lists the safety rules that acted on the weights this round.
	Fired Fired `json:"fired,omitempty"`
}

// Fired is a set of safety rules, as a list of names in JSON.
type Fired uint16

const (
	FiredCost Fired = 1 << iota
	FiredFailover
	FiredHysteresisHold
	FiredHysteresisSwitch
	FiredExploration
	FiredShiftCap
	FiredMaxShare
	FiredStaticOrder
	FiredStaleFreeze
	FiredRestore
	firedEnd
)

var firedNames = [...]string{"cost", "failover", "hysteresis_hold", "hysteresis_switch", "exploration", "shift_cap", "max_share", "static_order", "stale_freeze", "restore"}

// Has reports whether every rule of x fired.
func (f Fired) Has(x Fired) bool { return f&x == x }

// Names lists the rules that fired.
func (f Fired) Names() []string {
	var out []string
	for i, n := range firedNames {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// MarshalJSON writes the names, so the wire says what fired in words.
func (f Fired) MarshalJSON() ([]byte, error) { return json.Marshal(f.Names()) }

// UnmarshalJSON reads a list of names; an unknown name is an error.
func (f *Fired) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return fmt.Errorf("fired: %w", err)
	}
	*f = 0
next:
	for _, n := range names {
		for i, k := range firedNames {
			if k == n {
				*f |= 1 << i
				continue next
			}
		}
		return fmt.Errorf("fired: unknown rule %q", n)
	}
	return nil
}

// Decision is the answer to a Query. It points into an immutable snapshot
// and allocates nothing.
type Decision struct {
	CDN     string
	Host    string
	Ranking *Ranking // the ranked list with weights and reasons
	Rule    Rule
	Version uint64 // of the snapshot that answered
	// Stale is set when the snapshot was older than stale.static and the
	// static order answered.
	Stale bool
}

// Incident reports whether a decision was made while something is wrong
// or moving: stale inputs, fail-open, a failover or restore this round, a
// CDN of the ranking down or evacuated, or no ranking at all. Steering
// protocols then ask clients back sooner (a shorter DNS or content
// steering TTL) so they see the next change.
func (d *Decision) Incident() bool {
	switch {
	case d.Stale, d.Ranking == nil:
		return true
	case d.Rule == RuleFailOpen, d.Rule == RuleStaleFreeze, d.Rule == RuleStaleStatic:
		return true
	case d.Ranking.Fired&(FiredFailover|FiredRestore) != 0:
		return true
	}
	for i := range d.Ranking.Choices {
		if h := d.Ranking.Choices[i].Health; h == HealthDown || h == HealthEvacuated {
			return true
		}
	}
	return false
}

// ErrUnknownService is returned for a service not in the catalog.
var ErrUnknownService = errors.New("unknown service")

// Snapshot is the immutable ranking state of one service at one instant.
// The engine makes a new one every tick; steering nodes swap them in
// atomically and never modify them.
type Snapshot struct {
	Service  string     `json:"service"`
	Version  uint64     `json:"version"`
	At       time.Time  `json:"at"`
	Rankings []*Ranking `json:"rankings"`

	// index is each scope's position in Rankings. Consecutive snapshots
	// that rank the same scopes in the same order share it: building a
	// map of 15,000 scopes every second was a tenth of a tick.
	index map[Scope]int32
}

// build completes a snapshot made outside the engine (decoded, static):
// the pick seeds and the index.
func (s *Snapshot) build() {
	for _, r := range s.Rankings {
		for i := range r.Choices {
			if c := &r.Choices[i]; c.seed == 0 {
				c.seed = seedOf(c.CDN)
			}
		}
	}
	s.indexFrom(nil)
}

// indexFrom indexes the rankings, sharing prev's index when prev ranks
// the same scopes in the same order.
func (s *Snapshot) indexFrom(prev *Snapshot) {
	if prev != nil && len(prev.Rankings) == len(s.Rankings) && prev.index != nil {
		same := true
		for i, r := range s.Rankings {
			if prev.Rankings[i] != r && prev.Rankings[i].Scope != r.Scope {
				same = false
				break
			}
		}
		if same {
			s.index = prev.index
			return
		}
	}
	s.index = make(map[Scope]int32, len(s.Rankings))
	for i, r := range s.Rankings {
		s.index[r.Scope] = int32(i)
	}
}

// Lookup is the ranking that answers a location: its most specific scope
// with a ranking. Every snapshot has the global one.
func (s *Snapshot) Lookup(loc Location) *Ranking {
	sc := mostSpecific(s.Service, loc)
	for {
		if i, ok := s.index[sc]; ok {
			return s.Rankings[i]
		}
		p, ok := sc.parent(loc)
		if !ok {
			return nil
		}
		sc = p
	}
}

// Ranking is the ranking of exactly this scope, nil if the snapshot has none.
func (s *Snapshot) Ranking(sc Scope) *Ranking {
	if i, ok := s.index[sc]; ok {
		return s.Rankings[i]
	}
	return nil
}

// Decide picks a CDN for a view.
func (s *Snapshot) Decide(q Query) (Decision, error) {
	r := s.Lookup(q.Location)
	if r == nil {
		return Decision{}, fmt.Errorf("snapshot of %q has no global ranking", s.Service)
	}
	c := r.pick(q.ViewID)
	return Decision{CDN: c.CDN, Host: c.Host, Ranking: r, Rule: r.Rule, Version: s.Version}, nil
}

// pick is weighted rendezvous hashing: each CDN draws a key from the view
// id and its own seed, scaled by its weight; the best key wins. When a
// weight changes, only the views that must move do, so a view stays on
// its CDN unless that CDN loses share or fails.
func (r *Ranking) pick(viewID string) *Choice {
	if viewID == "" {
		for i := range r.Choices {
			if r.Choices[i].Weight > 0 {
				return &r.Choices[i]
			}
		}
		return &r.Choices[0]
	}
	h := hashString(viewID)
	best, bestKey := 0, math.Inf(1)
	for i := range r.Choices {
		c := &r.Choices[i]
		if c.Weight <= 0 {
			continue
		}
		// u in (0,1]; -ln(u)/w is exponential with rate w: the minimum
		// over CDNs lands on CDN i with probability w_i / sum(w).
		u := (float64(mix(h^c.seed)>>11) + 1) / (1 << 53)
		if k := -math.Log(u) / c.Weight; k < bestKey {
			best, bestKey = i, k
		}
	}
	return &r.Choices[best]
}

// hashString is FNV-1a 64: stable across processes and releases, so every
// steering node (DNS, HTTP, content steering) picks the same CDN for a view.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finalizer: FNV's low bits are weak on their own.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func seedOf(cdn string) uint64 { return mix(hashString(cdn) + 0x9e3779b97f4a7c15) }

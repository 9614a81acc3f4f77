package analytics

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cdnpilot/cdnpilot/steering"
)

// DecisionFilter selects logged decisions; empty fields match everything.
// Both stores apply it the same way.
type DecisionFilter struct {
	Service  string
	Protocol string // "dns", "http", "hls", "dash"
	Region   string // the client's region (Location.Region), not the scope's
	CDN      string
	// Client, when set, matches a decision whose client address is Client or
	// whose ECS prefix contains it: for DNS the client is the resolver, and
	// the viewer's own address is only ever inside the ECS prefix.
	Client netip.Addr
	// From and To are required: a decision matches when From <= At < To, at
	// microsecond resolution.
	From, To time.Time
}

// DecisionQuery asks for the newest matching decisions.
type DecisionQuery struct {
	DecisionFilter
	Limit int // default 100, at most 10,000
}

// DecisionCount is the number of logged decisions in one minute with one
// CDN and result. With sampling on, it counts the sampled decisions.
type DecisionCount struct {
	Minute time.Time // start of the minute, UTC
	CDN    string
	Result string
	N      uint64
}

const (
	defaultDecisionLimit = 100
	maxDecisionLimit     = 10_000
	// maxDecisionCountRange bounds DecisionCounts to as many minutes as a
	// series may have buckets.
	maxDecisionCountRange = maxBuckets * time.Minute
)

func (f DecisionFilter) validate() error {
	if err := checkRange(f.From, f.To); err != nil {
		return err
	}
	for _, s := range []struct{ name, v string }{
		{"service", f.Service}, {"protocol", f.Protocol}, {"region", f.Region}, {"cdn", f.CDN},
	} {
		if len(s.v) > maxKeyLen || !utf8.ValidString(s.v) {
			return fmt.Errorf("filter %s: must be valid UTF-8 of at most %d bytes", s.name, maxKeyLen)
		}
	}
	return nil
}

// validate checks q and returns its effective limit.
func (q DecisionQuery) validate() (int, error) {
	if q.Limit < 0 || q.Limit > maxDecisionLimit {
		return 0, fmt.Errorf("limit: must be between 1 and %d (0 for %d), got %d", maxDecisionLimit, defaultDecisionLimit, q.Limit)
	}
	return cmp.Or(q.Limit, defaultDecisionLimit), q.DecisionFilter.validate()
}

func validateCountFilter(f DecisionFilter) error {
	if err := f.validate(); err != nil {
		return err
	}
	if f.To.Sub(f.From) > maxDecisionCountRange {
		return fmt.Errorf("from: range longer than %d minutes", maxBuckets)
	}
	return nil
}

// DateTime holds whole seconds in [0, 2^32); 0 is left out as the mark of
// an unset time.
const maxDateTime = 1<<32 - 1

// checkDecision rejects what the table cannot hold faithfully.
func checkDecision(r *steering.DecisionRecord) error {
	if r.At.IsZero() {
		return fmt.Errorf("at: not set")
	}
	if s := r.At.Unix(); s < 1 || s > maxDateTime {
		return fmt.Errorf("at: %s is outside the DateTime range (1970 to 2106)", r.At.Format(time.RFC3339))
	}
	return nil
}

func checkDecisions(rows []steering.DecisionRecord) error {
	for i := range rows {
		if err := checkDecision(&rows[i]); err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
	}
	return nil
}

// normalizeDecision is a record as both stores keep and return it: At and
// Latency at microsecond resolution (At in UTC), the client address
// unmapped and without zone, the ECS prefix masked, and the scope's service
// the decision's (the table keeps the scope's level and key only: a
// decision's scope is always of its own service). A level without a name
// becomes global.
func normalizeDecision(r steering.DecisionRecord) steering.DecisionRecord {
	r.At = time.UnixMicro(r.At.UnixMicro()).UTC()
	r.Latency = time.Duration(latencyMicros(r.Latency)) * time.Microsecond
	r.Client = normalizeAddr(r.Client)
	r.ECS = normalizePrefix(r.ECS)
	r.Scope.Service = r.Service
	if _, ok := parseLevel(r.Scope.Level.String()); !ok {
		r.Scope.Level = steering.LevelGlobal
	}
	return r
}

func normalizeAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

func normalizePrefix(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return netip.Prefix{}
	}
	return p.Masked()
}

func latencyMicros(d time.Duration) uint32 {
	us := d.Microseconds()
	switch {
	case us < 0:
		return 0
	case us > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(us)
}

func parseLevel(s string) (steering.Level, bool) {
	var l steering.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return steering.LevelGlobal, false
	}
	return l, true
}

// addrText and prefixText are the column forms of client and ecs: "" for
// none.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// ecsCandidates lists, as ecs column text, every prefix that contains a:
// a lets ClickHouse test "the ECS prefix contains a" as set membership on
// any server version.
func ecsCandidates(a netip.Addr) []string {
	out := make([]string, 0, a.BitLen()+1)
	for bits := 0; bits <= a.BitLen(); bits++ {
		out = append(out, netip.PrefixFrom(a, bits).Masked().String())
	}
	return out
}

// match applies f to a normalized record; it is the Go form of the WHERE
// clause in decisions_clickhouse.go.
func (f *DecisionFilter) match(r *steering.DecisionRecord, fromUS, toUS int64, client netip.Addr) bool {
	at := r.At.UnixMicro()
	return at >= fromUS && at < toUS &&
		(f.Service == "" || f.Service == r.Service) &&
		(f.Protocol == "" || f.Protocol == r.Protocol) &&
		(f.Region == "" || f.Region == r.Location.Region) &&
		(f.CDN == "" || f.CDN == r.CDN) &&
		(!client.IsValid() || r.Client == client || (r.ECS.IsValid() && r.ECS.Contains(client)))
}

// sortDecisionCounts puts counts in the order both stores return them:
// by minute, then CDN, then result.
func sortDecisionCounts(out []DecisionCount) {
	slices.SortFunc(out, func(a, b DecisionCount) int {
		return cmp.Or(a.Minute.Compare(b.Minute), strings.Compare(a.CDN, b.CDN), strings.Compare(a.Result, b.Result))
	})
}

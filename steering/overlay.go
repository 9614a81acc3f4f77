package steering

import (
	"slices"
	"strings"
	"time"
)

// WithOverrides is the snapshot as a steering node serves it while the
// overrides in active are in force at now. The scorer applies overrides
// when it ranks, but a node must not wait for it: an override reaches
// every node by the same topic as the scorer, a scorer can be down or
// behind, and an override expires on the node's clock.
//
//   - Every override of the snapshot's service active at now applies to
//     every ranking it matches, with the engine's precedence: every ban and
//     drain (a ban beats a drain), then the most specific pin or split (the
//     newest on a tie), else weight overrides. A ban drops the CDN from the
//     choices; a drain lists it with weight 0 and HealthDrained, and its
//     share goes to the eligible CDN with the best score (the ties in the
//     ranking's order); a pin gives its CDN weight 1 whatever its health,
//     or fails open to the static order when the CDN is banned; a split
//     gives exactly its shares to the CDNs not banned; a weight override
//     fixes its CDN's share at once (the scorer moves toward it under the
//     shift cap) and scales the others to the rest.
//   - A ranking with an override scope of its own and none in the snapshot
//     is made from the ranking Lookup gives for that scope, so the scope's
//     clients find the override.
//   - What the snapshot carries of an override not in active (expired,
//     deleted) is undone as far as a node can: a pinned or split ranking
//     gives all its weight to the eligible CDN with the best score, a
//     banned or drained CDN comes back listed with HealthUnknown and weight
//     0 (unless no other CDN can take the views), a weight override's
//     shares stay until the scorer ranks again. The Reason says so.
//
// Every choice an override acts on carries its id and a Reason; the rule
// is override_pin or override_split where one applies, fail_open when no
// CDN may take views. Weights are millionths that sum to 1, and some CDN
// always has weight. A ranking that already shows the overrides (the
// scorer applied them) is returned as it is, and a snapshot nothing
// applies to is returned itself; otherwise the result shares every
// ranking it does not change. Without the catalog, "static order" is the
// order a ranking lists its CDNs; a Table uses the catalog's.
func (s *Snapshot) WithOverrides(active []Override, now time.Time) *Snapshot {
	return s.overlay(active, now, nil)
}

// ShareChange is how an override would move one scope's traffic: the
// weight (0..1) of every CDN of the ranking before and after.
type ShareChange struct {
	Scope         Scope
	Before, After map[string]float64
}

// DryRun is what adding cand to active would change in s at now: one
// entry per ranking cand matches (its own scope included, made if the
// snapshot has none) whose weights change, sorted by scope. A scope made
// for cand is compared with the ranking that answered its clients before.
// An active override with cand's id is replaced by cand, and the rankings
// it matched are compared too; from a snapshot that has it applied
// already (what a Table serves), what it did is undone as WithOverrides
// undoes a gone override.
func DryRun(s *Snapshot, cand Override, active []Override, now time.Time) []ShareChange {
	before := s.WithOverrides(active, now)
	var replaced []Override
	with := slices.DeleteFunc(slices.Clone(active), func(o Override) bool {
		if o.ID == cand.ID {
			replaced = append(replaced, o)
		}
		return o.ID == cand.ID
	})
	after := s.WithOverrides(append(with, cand), now)
	var out []ShareChange
	for _, r := range after.Rankings {
		matched := func(o Override) bool { _, ok := o.matches(r.Scope); return ok }
		if !matched(cand) && !slices.ContainsFunc(replaced, matched) {
			continue
		}
		b := before.Ranking(r.Scope)
		if b == nil {
			b = before.Lookup(Location{Region: r.Scope.Region, ASN: r.Scope.ASN})
		}
		ch := ShareChange{Scope: r.Scope, Before: weightsOf(b), After: weightsOf(r)}
		if !equalWeights(ch.Before, ch.After) {
			out = append(out, ch)
		}
	}
	slices.SortFunc(out, func(a, b ShareChange) int { return compareScopes(a.Scope, b.Scope) })
	return out
}

func weightsOf(r *Ranking) map[string]float64 {
	m := make(map[string]float64, len(r.Choices))
	for _, c := range r.Choices {
		m[c.CDN] = c.Weight
	}
	return m
}

func equalWeights(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func compareScopes(a, b Scope) int {
	switch {
	case scopeLess(a, b):
		return -1
	case scopeLess(b, a):
		return 1
	}
	return 0
}

// scope is the scope an override names.
func (o Override) scope() Scope {
	return mostSpecific(o.Service, Location{Region: o.Region, ASN: o.ASN})
}

// precedence sorts the overrides that cover a scope as the engine does
// (applicable reads nothing of the engine): a node and the scorer must
// resolve the same overrides the same way.
func precedence(sc Scope, active []Override) (bans map[string]Override, pin, split *Override, weights map[string]Override) {
	return (*Engine).applicable(nil, sc, active)
}

// overlay is WithOverrides with the service's CDNs in static order, with
// their hosts (a Table has them from the catalog); nil: the CDNs the
// snapshot lists, and each ranking's own order for the static one.
func (s *Snapshot) overlay(active []Override, now time.Time, static []Choice) *Snapshot {
	if s.index == nil {
		c := *s
		c.build()
		s = &c
	}
	ov := &overlayer{snap: s, static: static, roster: static, live: map[string]bool{}}
	for _, o := range active {
		if o.Service == s.Service && o.active(now) {
			ov.act = append(ov.act, o)
			ov.live[o.ID] = true
		}
	}
	var out []*Ranking
	for i, r := range s.Rankings {
		if !ov.touches(r) {
			continue
		}
		ov.left = len(s.Rankings) - i + len(ov.act)
		if nr := ov.apply(r); nr != r {
			if out == nil {
				out = slices.Clone(s.Rankings)
			}
			out[i] = nr
		}
	}
	var made []*Ranking
	for _, o := range ov.act {
		sc := o.scope()
		if s.Ranking(sc) != nil || slices.ContainsFunc(made, func(r *Ranking) bool { return r.Scope == sc }) {
			continue
		}
		ov.left = len(ov.act)
		base := s.Lookup(Location{Region: o.Region, ASN: o.ASN})
		if base == nil {
			continue // no global ranking: nothing to start from
		}
		made = append(made, ov.apply(&Ranking{Scope: sc, Rule: base.Rule, Fired: base.Fired, Choices: base.Choices}))
	}
	if out == nil && made == nil {
		return s
	}
	n := &Snapshot{Service: s.Service, Version: s.Version, At: s.At, Rankings: out}
	if out == nil {
		n.Rankings = s.Rankings
	}
	if made == nil {
		n.index = s.index // the same scopes at the same places
		return n
	}
	n.Rankings = append(slices.Clip(n.Rankings), made...)
	slices.SortStableFunc(n.Rankings, func(a, b *Ranking) int { return compareScopes(a.Scope, b.Scope) })
	n.indexFrom(nil)
	return n
}

// overlayer applies one set of overrides to the rankings of a snapshot,
// with scratch space reused from ranking to ranking.
type overlayer struct {
	snap   *Snapshot
	act    []Override      // of the service, active
	live   map[string]bool // their ids
	static []Choice        // the catalog's static order; nil: unknown
	roster []Choice        // every CDN of the service; from the snapshot when static is nil
	// precedence by the set of overrides that match a scope: a few
	// distinct sets cover thousands of scopes.
	prec map[uint64]*resolved
	left int // rankings still to apply to, at most: slab sizes
	// the ranking being applied to: r's choices then the missing CDNs
	cs    []Choice
	w     []float64
	why   []note
	gone  []string // override ids r carries that are gone
	fixed []bool
	order []int
	wk    worker
	cslab []Choice
	rslab []Ranking
	said  map[note]string
}

type resolved struct {
	bans, weights map[string]Override
	pin, split    *Override
}

// touches reports whether an override in force or gone may change r.
func (ov *overlayer) touches(r *Ranking) bool {
	if r.Rule == RulePin || r.Rule == RuleSplit {
		return true
	}
	for i := range ov.act {
		if _, ok := ov.act[i].matches(r.Scope); ok {
			return true
		}
	}
	for i := range r.Choices {
		c := &r.Choices[i]
		if c.Override != "" && !ov.live[c.Override] {
			return true
		}
	}
	return false
}

// resolve is precedence, shared by scopes matched by the same overrides.
func (ov *overlayer) resolve(sc Scope) *resolved {
	var key uint64
	if len(ov.act) < 64 {
		for i := range ov.act {
			if _, ok := ov.act[i].matches(sc); ok {
				key |= 1 << i
			}
		}
		if p, ok := ov.prec[key]; ok {
			return p
		}
	}
	p := &resolved{}
	p.bans, p.pin, p.split, p.weights = precedence(sc, ov.act)
	if len(ov.act) < 64 {
		if ov.prec == nil {
			ov.prec = map[uint64]*resolved{}
		}
		ov.prec[key] = p
	}
	return p
}

// cdns is every CDN of the service: the catalog's, or each CDN the
// snapshot lists (a CDN banned everywhere cannot come back without it).
func (ov *overlayer) cdns() []Choice {
	if ov.roster != nil {
		return ov.roster
	}
	seen := map[string]bool{}
	add := func(r *Ranking) {
		for _, c := range r.Choices {
			if !seen[c.CDN] {
				seen[c.CDN] = true
				ov.roster = append(ov.roster, c)
			}
		}
	}
	if g := ov.snap.Ranking(Scope{Service: ov.snap.Service}); g != nil {
		add(g)
	}
	for _, r := range ov.snap.Rankings {
		add(r)
	}
	return ov.roster
}

// Reasons a node gives where it changed a choice.
const (
	whyUnknown  = "health unknown until the scorer ranks again"
	whyBest     = "best measured score among eligible CDNs"
	whyFailOpen = "fail open: no CDN may take views, static order"
)

// note is why a node changed a choice, put together only if it is
// published: most rankings come out unchanged.
type note struct{ prefix, text string }

// apply is r with the overrides applied, r itself when they change
// nothing it publishes (CDNs, weights, health, override ids, leader,
// order, rule).
func (ov *overlayer) apply(r *Ranking) *Ranking {
	p := ov.resolve(r.Scope)
	ov.load(r)
	ov.health(r, p)
	rule, fired := ov.shares(r, p)
	return ov.emit(r, rule, fired)
}

// load copies r's choices, in r's order, then the CDNs missing from r:
// a missing CDN was banned, and comes back while no ban covers it (or is
// listed banned in case the ranking fails open).
func (ov *overlayer) load(r *Ranking) {
	ov.cs = append(ov.cs[:0], r.Choices...)
	if roster := ov.cdns(); len(r.Choices) < len(roster) {
		for _, c := range roster {
			if ov.index(c.CDN) >= 0 {
				continue
			}
			seed := c.seed
			if seed == 0 {
				seed = seedOf(c.CDN)
			}
			ov.cs = append(ov.cs, Choice{CDN: c.CDN, Host: c.Host, Score: -1, FastScore: -1, Health: HealthUnknown,
				Reason: "no ban applies any more: " + whyUnknown, seed: seed})
		}
	}
	ov.w, ov.why, ov.gone = ov.w[:0], ov.why[:0], ov.gone[:0]
	for i := range ov.cs {
		var n note
		if i >= len(r.Choices) {
			n.text = ov.cs[i].Reason
		}
		ov.w = append(ov.w, ov.cs[i].Weight)
		ov.why = append(ov.why, n)
	}
}

func (ov *overlayer) index(cdn string) int {
	for i := range ov.cs {
		if ov.cs[i].CDN == cdn {
			return i
		}
	}
	return -1
}

// health applies bans and drains, lifts what a gone one left, and clears
// the other override ids: pins, splits and weights set theirs again.
func (ov *overlayer) health(r *Ranking, p *resolved) {
	for i := range ov.cs {
		c, w, why := &ov.cs[i], &ov.w[i], &ov.why[i]
		gone := c.Override != "" && !ov.live[c.Override]
		if gone && !slices.Contains(ov.gone, c.Override) {
			ov.gone = append(ov.gone, c.Override)
		}
		switch o, ok := p.bans[c.CDN]; {
		case ok:
			h, msg := HealthBanned, "banned: "
			if o.Kind == OverrideDrain {
				h, msg = HealthDrained, "drained: "
			}
			if c.Health != h {
				c.Health, c.Leader = h, false // it cannot lead now
			}
			c.Override, *why = o.ID, note{msg, o.Reason}
		case (c.Health == HealthBanned || c.Health == HealthDrained) && c.Override != "":
			kind := "ban"
			if c.Health == HealthDrained {
				kind = "drain"
			}
			if gone {
				kind += " " + c.Override // else live, but not for this scope
			}
			*why = note{kind + " lifted: ", whyUnknown}
			c.Health, c.Override, *w = HealthUnknown, "", 0
		case gone:
			*why = note{"override " + c.Override + " gone", ""}
			if r.Rule != RulePin && r.Rule != RuleSplit && r.Rule != RuleFailOpen {
				*why = note{"weight override " + c.Override + " gone: ", "shares held until the scorer ranks again"}
			}
			c.Override = ""
		default:
			c.Override = ""
		}
	}
}

// shares sets the weights: a pin or a split, else the measured ones with
// what may not take views moved to the best, then weight overrides.
func (ov *overlayer) shares(r *Ranking, p *resolved) (Rule, Fired) {
	cs, w, why := ov.cs, ov.w, ov.why
	if p.pin != nil {
		if j := ov.index(p.pin.CDN); j >= 0 {
			if cs[j].Health == HealthBanned {
				return ov.failOpen() // a ban beats a pin
			}
			clear(w)
			w[j], why[j] = 1, note{"pinned: ", p.pin.Reason}
			cs[j].Override = p.pin.ID
			return RulePin, 0
		}
	}
	if p.split != nil {
		clear(w)
		for cdn, pct := range p.split.Split {
			if j := ov.index(cdn); j >= 0 && cs[j].Health != HealthBanned {
				w[j], why[j] = pct/100, note{"split: ", p.split.Reason}
				cs[j].Override = p.split.ID
			}
		}
		if floatSum(w) == 0 {
			return ov.failOpen()
		}
		normalize(w)
		return RuleSplit, 0
	}
	rule, fired := r.Rule, r.Fired
	if r.Rule == RulePin || r.Rule == RuleSplit || r.Rule == RuleFailOpen {
		// The pin, split or ban that set these weights is gone, or the
		// CDN that failed open may take views again: the best measured
		// score takes them until the scorer ranks again.
		clear(w)
		b := ov.best()
		if b < 0 {
			return ov.failOpen()
		}
		msg := "rule " + string(r.Rule) + " no longer applies: "
		if len(ov.gone) > 0 {
			msg = "override " + strings.Join(ov.gone, ", ") + " gone: "
		}
		w[b], why[b] = 1, note{msg, whyBest + " until the scorer ranks again"}
		rule = RuleMeasured
		if cs[b].Score < 0 {
			rule = RuleNoData
		}
	}
	// A CDN that may not take views gives its share to the best.
	freed := 0.0
	for j := range cs {
		if !cs[j].Health.eligible() {
			freed += w[j]
			w[j] = 0
		}
	}
	if freed > 0 {
		b := ov.best()
		if b < 0 {
			return ov.failOpen()
		}
		w[b] += freed
		if why[b] == (note{}) {
			why[b] = note{whyBest, ": takes the share of CDNs that may not take views"}
		}
	}
	ov.weigh(p.weights)
	if floatSum(w) <= 0 { // every share fixed at 0
		b := ov.best()
		if b < 0 {
			return ov.failOpen()
		}
		w[b] = 1
	}
	return rule, fired
}

// best is the eligible CDN with the best score; on a tie (CDNs without
// data all tie) the first in static order, then in the ranking's order:
// a pin moved its CDN to the front, and undoing it must not keep it
// there. -1 when none may take views.
func (ov *overlayer) best() int {
	b := -1
	consider := func(j int) {
		if j >= 0 && ov.cs[j].Health.eligible() && (b < 0 || ov.cs[j].Score > ov.cs[b].Score) {
			b = j
		}
	}
	for _, c := range ov.static {
		consider(ov.index(c.CDN))
	}
	for j := range ov.cs {
		consider(j)
	}
	return b
}

// failOpen: no CDN may take views. The first CDN not banned in static
// order gets them all the same (with every CDN banned, the first), as the
// engine does; without the catalog (or for a CDN it lacks), in the
// ranking's order.
func (ov *overlayer) failOpen() (Rule, Fired) {
	cs := ov.cs
	first := -1
	consider := func(j int) {
		if j >= 0 && (first < 0 || cs[first].Health == HealthBanned && cs[j].Health != HealthBanned) {
			first = j
		}
	}
	for _, c := range ov.static {
		consider(ov.index(c.CDN))
	}
	for j := range cs {
		consider(j)
	}
	clear(ov.w)
	ov.w[first], ov.why[first] = 1, note{whyFailOpen, ""}
	for j := range cs {
		cs[j].Leader = false
	}
	return RuleFailOpen, 0
}

// weigh applies weight overrides as the engine's targets do: each fixes
// its CDN's share (not one that may not take views, unless to 0), the
// others keep their proportions of the rest. When they have none, the
// eligible ones share it evenly, as their exploration shares would.
func (ov *overlayer) weigh(weights map[string]Override) {
	if len(weights) == 0 {
		return
	}
	cs, w, why := ov.cs, ov.w, ov.why
	fixed := ov.fixed[:0]
	for range cs {
		fixed = append(fixed, false)
	}
	ov.fixed = fixed
	fixedSum := 0.0
	for cdn, o := range weights {
		j := ov.index(cdn)
		if j < 0 || !cs[j].Health.eligible() && o.Weight > 0 {
			continue
		}
		w[j], fixed[j], why[j] = o.Weight, true, note{"weight: ", o.Reason}
		cs[j].Override = o.ID
		fixedSum += o.Weight
	}
	free, spread := 0.0, 0
	for j := range w {
		if !fixed[j] {
			free += w[j]
			if cs[j].Health.eligible() {
				spread++
			}
		}
	}
	rest := max(0, 1-fixedSum)
	for j := range w {
		switch {
		case fixed[j]:
		case free > 0:
			w[j] = w[j] / free * rest
		case rest > 0 && cs[j].Health.eligible():
			w[j] = rest / float64(spread)
		}
	}
	normalize(w)
}

// emit publishes the draft: weights in millionths summing to exactly 1,
// ordered as the engine orders (weight, eligibility, score, then as
// listed), banned CDNs left out unless the ranking fails open. A choice
// that reads as it did is r's own.
func (ov *overlayer) emit(r *Ranking, rule Rule, fired Fired) *Ranking {
	cs := ov.cs
	micro := ov.wk.microShares(ov.w)
	before := func(a, b int) bool {
		x, y := &cs[a], &cs[b]
		switch {
		case micro[a] != micro[b]:
			return micro[a] > micro[b]
		case x.Health.eligible() != y.Health.eligible():
			return x.Health.eligible()
		case x.Score != y.Score:
			return x.Score > y.Score
		}
		return a < b
	}
	order := ov.order[:0]
	for j := range cs {
		if cs[j].Health == HealthBanned && rule != RuleFailOpen {
			continue
		}
		order = append(order, j)
		for k := len(order) - 1; k > 0 && before(order[k], order[k-1]); k-- {
			order[k], order[k-1] = order[k-1], order[k]
		}
	}
	ov.order = order
	same := rule == r.Rule && len(order) == len(r.Choices)
	for k, j := range order {
		if !same {
			break
		}
		same = r.Choices[k].CDN == cs[j].CDN && unchangedChoice(&r.Choices[k], &cs[j], micro[j])
	}
	if same {
		return r
	}
	out := ov.choices(len(order))
	for k, j := range order {
		// cs[:len(r.Choices)] are r's choices, in r's order.
		if j < len(r.Choices) && unchangedChoice(&r.Choices[j], &cs[j], micro[j]) {
			out[k] = r.Choices[j]
			continue
		}
		out[k] = cs[j]
		out[k].Weight = float64(micro[j]) / 1e6
		if n := ov.why[j]; n != (note{}) {
			out[k].Reason = ov.say(n)
		}
	}
	nr := ov.ranking()
	*nr = Ranking{Scope: r.Scope, Rule: rule, Fired: fired, Choices: out}
	return nr
}

// say is a note in words, made once per snapshot.
func (ov *overlayer) say(n note) string {
	if s, ok := ov.said[n]; ok {
		return s
	}
	if ov.said == nil {
		ov.said = map[note]string{}
	}
	ov.said[n] = n.prefix + n.text
	return ov.said[n]
}

// choices and ranking hand out the new rankings from slabs: a drain of
// a whole service rewrites every ranking of it.
func (ov *overlayer) choices(n int) []Choice {
	if len(ov.cslab) < n {
		ov.cslab = make([]Choice, max(n, min(4096, n*ov.left)))
	}
	out := ov.cslab[:n:n]
	ov.cslab = ov.cslab[n:]
	return out
}

func (ov *overlayer) ranking() *Ranking {
	if len(ov.rslab) == 0 {
		ov.rslab = make([]Ranking, max(1, min(256, ov.left)))
	}
	r := &ov.rslab[0]
	ov.rslab = ov.rslab[1:]
	return r
}

// unchangedChoice reports whether c, weighing micro millionths, publishes
// the same as x.
func unchangedChoice(x, c *Choice, micro int64) bool {
	return x.Weight == float64(micro)/1e6 && x.Health == c.Health && x.Override == c.Override && x.Leader == c.Leader
}

func floatSum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

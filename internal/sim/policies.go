package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/steering"
)

// The baselines are policies that need no steering engine. They read the
// run's world (the services' CDN lists; the oracle also the model), so
// they work only inside Run. Send only counts beacons; Advance does
// nothing.
var (
	_ Loop = (*Oracle)(nil)
	_ Loop = (*RoundRobin)(nil)
	_ Loop = (*BestSingle)(nil)
	_ Loop = (*Static)(nil)
)

var errNotInRun = errors.New("baseline policy used outside sim.Run")

// base is what every baseline shares: the world and a beacon counter.
type base struct {
	w    *world
	sent int
}

func (b *base) observe(w *world) error {
	b.w = w
	return nil
}

// Send counts the beacons.
func (b *base) Send(_ context.Context, _ netip.Addr, batch []beacons.Input) error {
	b.sent += len(batch)
	return nil
}

// Advance does nothing: the baselines decide from the world as it is.
func (b *base) Advance(context.Context, time.Time) error { return nil }

// Sent is the number of beacons the run sent.
func (b *base) Sent() int { return b.sent }

func (b *base) service(q steering.Query) (*svcModel, error) {
	if b.w == nil {
		return nil, errNotInRun
	}
	i, ok := b.w.m.svcIndex[q.Service]
	if !ok {
		return nil, fmt.Errorf("%q: %w", q.Service, steering.ErrUnknownService)
	}
	return &b.w.m.services[i], nil
}

// Oracle knows the model: each new view gets the CDN with the best true
// expected QoE for its service and (region, ASN) at that instant, with
// the CDN's current load (the view included) against its capacity. It
// does not know the future: an event that starts during the view is a
// surprise to it too.
//
// It is greedy, as a steering policy that measures QoE is: on a CDN over
// its capacity it weighs what the view gets, not what the view costs the
// views already there (on capacity, round-robin's even spread does about
// as well).
//
// With a cost margin it wants what the steering policy wants: the
// cheapest CDN gets CostMargin points of bonus, the dearest none, the
// others in proportion to price (steering's cost.margin). Measured
// against a QoE-only oracle, a policy that saves money as configured would
// show the QoE it traded as loss.
type Oracle struct {
	base
	CostMargin float64
}

// NewOracle returns the oracle baseline, QoE only.
func NewOracle() *Oracle { return &Oracle{} }

// Name is "oracle": Compare measures every policy's loss against it.
func (*Oracle) Name() string { return "oracle" }

// Steer picks the best expected CDN.
func (o *Oracle) Steer(_ context.Context, q steering.Query, _ netip.Addr) (string, error) {
	svc, err := o.service(q)
	if err != nil {
		return "", err
	}
	m := o.w.m
	asn, ok := m.locIndex[q.Location.Region][q.Location.ASN]
	if !ok {
		return "", fmt.Errorf("oracle: %s/AS%d is not in the scenario", q.Location.Region, q.Location.ASN)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range svc.cdns {
		lo, hi = min(lo, m.cdns[c].price), max(hi, m.cdns[c].price)
	}
	best, bestV := svc.cdns[0], math.Inf(-1)
	for _, c := range svc.cdns {
		v := m.expectedQoE(m.perfAt(c, asn, o.w.now, o.w.load, 1), svc)
		if hi > lo {
			v += o.CostMargin * (hi - m.cdns[c].price) / (hi - lo)
		}
		if v > bestV {
			best, bestV = c, v
		}
	}
	return m.cdns[best].name, nil
}

// RoundRobin rotates each service's new views over its CDNs.
type RoundRobin struct {
	base
	next map[string]int
}

// NewRoundRobin returns the round-robin baseline.
func NewRoundRobin() *RoundRobin { return &RoundRobin{next: map[string]int{}} }

// Name is "round-robin".
func (*RoundRobin) Name() string { return "round-robin" }

// Steer gives the service's next CDN.
func (r *RoundRobin) Steer(_ context.Context, q steering.Query, _ netip.Addr) (string, error) {
	svc, err := r.service(q)
	if err != nil {
		return "", err
	}
	i := r.next[q.Service]
	r.next[q.Service] = i + 1
	return r.w.m.cdns[svc.cdns[i%len(svc.cdns)]].name, nil
}

// Static sends every view to its service's first CDN: what a player does
// without steering.
type Static struct{ base }

// NewStatic returns the static baseline.
func NewStatic() *Static { return &Static{} }

// Name is "static".
func (*Static) Name() string { return "static" }

// Steer gives the service's first CDN.
func (s *Static) Steer(_ context.Context, q steering.Query, _ netip.Addr) (string, error) {
	svc, err := s.service(q)
	if err != nil {
		return "", err
	}
	return s.w.m.cdns[svc.cdns[0]].name, nil
}

// BestSingle sends every view to the one CDN with the best mean true QoE
// over the whole scenario, as found by a first pass per CDN: the best a
// single-CDN contract could have done, in hindsight. A service that does
// not list that CDN uses its first CDN.
type BestSingle struct {
	base
	// CDN is the winner; QoE the mean true QoE of each CDN's pass.
	CDN string
	QoE map[string]float64
}

// NewBestSingle runs the scenario once per CDN, every view on that CDN,
// and keeps the best.
func NewBestSingle(ctx context.Context, sc *Scenario) (*BestSingle, error) {
	b := &BestSingle{QoE: map[string]float64{}}
	start := time.Unix(0, 0).UTC()
	for _, c := range sc.withDefaults().CDNs {
		res, err := Run(ctx, sc, &fixed{cdn: c.Name}, RunOptions{Start: start})
		if err != nil {
			return nil, fmt.Errorf("best single: pass on %s: %w", c.Name, err)
		}
		b.QoE[c.Name] = res.Summary.QoE
		if b.CDN == "" || res.Summary.QoE > b.QoE[b.CDN] {
			b.CDN = c.Name
		}
	}
	return b, nil
}

// Name is "best-single".
func (*BestSingle) Name() string { return "best-single" }

// Steer gives the best single CDN.
func (b *BestSingle) Steer(_ context.Context, q steering.Query, _ netip.Addr) (string, error) {
	return pinned(&b.base, q, b.CDN)
}

// fixed is one CDN for every view: BestSingle's first passes.
type fixed struct {
	base
	cdn string
}

func (f *fixed) Steer(_ context.Context, q steering.Query, _ netip.Addr) (string, error) {
	return pinned(&f.base, q, f.cdn)
}

func pinned(b *base, q steering.Query, cdn string) (string, error) {
	svc, err := b.service(q)
	if err != nil {
		return "", err
	}
	for _, c := range svc.cdns {
		if b.w.m.cdns[c].name == cdn {
			return cdn, nil
		}
	}
	return b.w.m.cdns[svc.cdns[0]].name, nil
}

// Baselines builds the four baseline policies for a scenario, keyed by
// their names (BestSingle runs its first passes here).
func Baselines(ctx context.Context, sc *Scenario, costMargin float64) (map[string]Loop, error) {
	best, err := NewBestSingle(ctx, sc)
	if err != nil {
		return nil, err
	}
	out := map[string]Loop{}
	for _, l := range []interface {
		Loop
		Name() string
	}{&Oracle{CostMargin: costMargin}, NewRoundRobin(), best, NewStatic()} {
		out[l.Name()] = l
	}
	return out, nil
}

// RunBaselines runs every baseline over a scenario, with the same options
// (and so the same viewers), keyed by policy name: ready for Compare.
func RunBaselines(ctx context.Context, sc *Scenario, opts RunOptions) (map[string]*Result, error) {
	loops, err := Baselines(ctx, sc, opts.CostMargin)
	if err != nil {
		return nil, err
	}
	out := map[string]*Result{}
	for name, l := range loops {
		o := opts
		o.Policy = name
		res, err := Run(ctx, sc, l, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = res
	}
	return out, nil
}

// Package sim is the closed-loop player simulator: a synthetic fleet of
// viewers that ask a steering path for a CDN, play according to a
// scenario's performance model in virtual time, and emit beacons.
package sim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Loop is the world outside the simulated players.
type Loop interface {
	// Steer asks the steering path under test for a view's CDN.
	Steer(ctx context.Context, q steering.Query, client netip.Addr) (cdn string, err error)
	// Send delivers one client's beacons (it will POST them to the real ingest).
	Send(ctx context.Context, client netip.Addr, batch []beacons.Input) error
	// Advance is called after every simulated step with the new virtual time;
	// a closed-loop harness waits there until the scorer has seen everything sent
	// and published a snapshot for that instant.
	Advance(ctx context.Context, now time.Time) error
}

// leadTeller is a Loop that can tell which CDN leads the decision a query
// gets: the one its ranking gives the largest weight. A view's pick may be
// another CDN (exploration, a share being shifted), so the pick alone
// does not show whether the decision flipped. Loops without it lead with
// their pick.
type leadTeller interface {
	Lead(q steering.Query) (cdn string, err error)
}

// observer is a Loop that reads the simulated world during a run: the
// baselines, which need the services' CDN lists and (the oracle) the model.
type observer interface {
	observe(w *world) error
}

// world is what Run shows an observer: the model, and the load and the
// virtual offset of the decision being made. Only the run's goroutine
// touches it.
type world struct {
	m    *model
	load *load
	now  time.Duration
}

// RunOptions configure one run.
type RunOptions struct {
	// CostMargin is for RunBaselines: the steering policy's cost.margin,
	// which the oracle then weighs as the engine does (see Oracle).
	CostMargin float64
	// RealTime paces the run to the wall clock: each step is processed once
	// Start plus the step's end has passed. Needed for Duration 0.
	RealTime bool
	// Start is the virtual time of the run's first instant and the epoch of
	// beacon timestamps. Zero: now. Runs compared with each other need not
	// share it, but a determinism check must.
	Start time.Time
	// Policy names the policy in the Result; default: the loop's Name()
	// if it has one.
	Policy string
	Logger *slog.Logger
}

// Demo runs the embedded "steady" scenario in real time until ctx is done:
// the viewer fleet of `cdnpilot demo`, steered by loop.
func Demo(ctx context.Context, loop Loop, log *slog.Logger) error {
	sc, err := Load("steady")
	if err != nil {
		return err
	}
	_, err = Run(ctx, sc, loop, RunOptions{RealTime: true, Policy: "demo", Logger: log})
	return err
}

// Run steps a scenario through virtual time against a loop: new views ask
// Steer, every view plays per the model, each client's beacons of a step go
// to Send, and Advance follows every step. The arrival sequence and every
// view's random draws depend only on the seed, never on the CDN chosen, so
// runs of different policies replay the same viewers.
//
// A Steer error (or a CDN that is not one of the service's) makes the view
// use the service's first CDN, as a player falls back to its default, and
// is counted in Summary.SteerErrors. Send and Advance errors end the run.
// With Duration 0 (RealTime only) the run lasts until ctx is done, keeps no
// per-step series, and returns a nil error when ctx is done.
func Run(ctx context.Context, sc *Scenario, loop Loop, opts RunOptions) (*Result, error) {
	m, err := compile(sc)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	if m.dur == 0 && !opts.RealTime {
		return nil, errors.New("run: duration 0 (until stopped) needs RealTime")
	}
	if opts.Start.IsZero() {
		opts.Start = time.Now().Truncate(time.Millisecond)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Policy == "" {
		if n, ok := loop.(interface{ Name() string }); ok {
			opts.Policy = n.Name()
		} else {
			opts.Policy = fmt.Sprintf("%T", loop)
		}
	}
	r := newRunner(m, loop, opts)
	if o, ok := loop.(observer); ok {
		if err := o.observe(&r.w); err != nil {
			return nil, err
		}
	}
	return r.run(ctx)
}

type runner struct {
	m      *model
	w      world
	loop   Loop
	opts   RunOptions
	log    *slog.Logger
	gen    *arrivals
	active []*view
	prefix string

	endless bool
	steps   []StepStats
	qSum    []float64 // per step of arrival: true QoE of its views
	qN      []int
	sqSum   []float64 // the same for views in the metrics scope
	sqN     []int
	sum     Summary
	errLogs int
	scored  int // views scored so far

	cache    []perf // [cdn*len(asns)+asn] for the current step
	cacheGen []int
	gen0     int
}

func newRunner(m *model, loop Loop, opts RunOptions) *runner {
	r := &runner{m: m, loop: loop, opts: opts, endless: m.dur == 0,
		log:    opts.Logger.With("component", "sim", "scenario", m.name, "policy", opts.Policy),
		gen:    &arrivals{m: m, rng: rand.New(rand.NewPCG(m.seed, 0xa771fa1))},
		prefix: m.name + "-" + strconv.FormatUint(m.seed, 36) + "-" + strconv.FormatInt(opts.Start.Unix(), 36),
		cache:  make([]perf, len(m.cdns)*len(m.asns)), cacheGen: make([]int, len(m.cdns)*len(m.asns))}
	r.w = world{m: m, load: newLoad(m)}
	return r
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	m := r.m
	n := int((m.dur + m.step - 1) / m.step)
	r.log.Info("simulation started", "duration", m.dur, "step", m.step, "steps", n, "realtime", r.opts.RealTime)
	if m.warm {
		for _, a := range r.gen.warm() {
			if err := r.admit(ctx, a, -1); err != nil {
				return nil, err
			}
		}
	}
	for i := 0; r.endless || i < n; i++ {
		t0, t1 := time.Duration(i)*m.step, time.Duration(i+1)*m.step
		if m.dur > 0 {
			t1 = min(t1, m.dur)
		}
		if err := r.pace(ctx, t1); err != nil {
			if r.endless && ctx.Err() != nil {
				break
			}
			return nil, fmt.Errorf("run: %w", err)
		}
		if err := r.step(ctx, i, t0, t1); err != nil {
			if r.endless && ctx.Err() != nil {
				break
			}
			return nil, err
		}
		if r.endless && t1%time.Minute == 0 {
			r.log.Info("simulation minute", "at", t1, "active", len(r.active), "views", r.sum.Views, "qoe", r.sum.TotalQoE/float64(max(1, r.scored)))
		}
	}
	for _, v := range r.active {
		r.finish(v)
	}
	res := r.result()
	r.log.Info("simulation done", "views", res.Summary.Views, "qoe", res.Summary.QoE, "beacons", res.Summary.Beacons,
		"steer_errors", res.Summary.SteerErrors)
	return res, nil
}

// pace waits for the wall clock in RealTime mode, else only checks ctx.
func (r *runner) pace(ctx context.Context, t1 time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !r.opts.RealTime {
		return nil
	}
	wait := time.Until(r.opts.Start.Add(t1))
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *runner) step(ctx context.Context, i int, t0, t1 time.Duration) error {
	m := r.m
	st := StepStats{At: t0, New: make([]int, len(m.cdns)), Scope: make([]int, len(m.cdns))}
	if !r.endless {
		st.Cells = make([]int, len(m.services)*len(m.asns)*len(m.cdns))
		st.Leads = make([]int, len(st.Cells))
	}
	if !r.endless {
		r.qSum, r.qN = append(r.qSum, 0), append(r.qN, 0)
		r.sqSum, r.sqN = append(r.sqSum, 0), append(r.sqN, 0)
	}
	for _, a := range r.gen.step(t0, t1-t0) {
		if err := r.admit(ctx, a, i); err != nil {
			return err
		}
		v := r.active[len(r.active)-1]
		st.New[v.cdn]++
		if v.inScope {
			st.Scope[v.cdn]++
			if st.Cells != nil {
				cell := (v.svc*len(m.asns) + v.asn) * len(m.cdns)
				st.Cells[cell+v.cdn]++
				st.Leads[cell+v.lead]++
			}
		}
	}
	r.gen0++
	for _, v := range r.active {
		v.step(m, r.perf(v.cdn, v.asn, t0), t0, t1, r.opts.Start)
	}
	for _, v := range r.active {
		if len(v.out) == 0 {
			continue
		}
		batch := v.out
		v.out = nil // the loop may keep the batch
		r.sum.Beacons += len(batch)
		if err := r.loop.Send(ctx, v.client, batch); err != nil {
			return fmt.Errorf("send beacons of %s: %w", v.client, err)
		}
	}
	r.active = slices.DeleteFunc(r.active, func(v *view) bool {
		if v.done {
			r.finish(v)
		}
		return v.done
	})
	if !r.endless {
		st.Active = slices.Clone(r.w.load.total)
		r.steps = append(r.steps, st)
	}
	r.w.now = t1
	if err := r.loop.Advance(ctx, r.opts.Start.Add(t1)); err != nil {
		return fmt.Errorf("advance to %v: %w", t1, err)
	}
	return nil
}

// perf is the performance of (cdn, asn) for the current step, computed
// once per step with the load as it stands after the step's arrivals.
func (r *runner) perf(cdn, asn int, t time.Duration) perf {
	k := cdn*len(r.m.asns) + asn
	if r.cacheGen[k] != r.gen0 {
		r.cache[k] = r.m.perfAt(cdn, asn, t, r.w.load, 0)
		r.cacheGen[k] = r.gen0
	}
	return r.cache[k]
}

// admit steers a new view and starts it. step is the step of its arrival,
// -1 for the warm population.
func (r *runner) admit(ctx context.Context, a arrival, step int) error {
	m := r.m
	svc := &m.services[a.svc]
	id := r.prefix + "-" + strconv.Itoa(a.idx)
	r.w.now = a.at
	q := steering.Query{Service: svc.name, Location: a.loc, ViewID: id}
	name, err := r.loop.Steer(ctx, q, a.client)
	cdn := -1
	if err == nil {
		if cdn, err = m.cdnOf(svc, name); err != nil {
			err = fmt.Errorf("answered %w", err)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.sum.SteerErrors++
		if r.errLogs < 5 {
			r.errLogs++
			r.log.Warn("steer failed; the view uses the service's first CDN", "view_id", id, "err", err)
		}
		cdn = svc.cdns[0]
	}
	lead := cdn
	if lt, ok := r.loop.(leadTeller); ok && err == nil {
		name, err := lt.Lead(q)
		if err == nil {
			lead, err = m.cdnOf(svc, name)
		}
		if err != nil {
			return fmt.Errorf("lead of view %s: %w", id, err)
		}
	}
	v := &view{arrival: a, id: id, session: "s" + id, svcm: svc, cdn: cdn, cdnName: m.cdns[cdn].name,
		host: m.cdns[cdn].host, lead: lead, inScope: m.scope.has(m, a.asn),
		rng: rand.New(rand.NewPCG(m.seed^0x5eedf00d, uint64(a.idx)))}
	v.content = contentID(svc, a.idx)
	v.begin(m, m.perfAt(cdn, a.asn, a.at, r.w.load, 1))
	r.w.load.add(m, cdn, a.asn, 1)
	r.active = append(r.active, v)
	if step >= 0 {
		r.sum.Views++
		if v.inScope {
			r.sum.ScopeViews++
		}
	}
	return nil
}

func contentID(svc *svcModel, idx int) string {
	if svc.live {
		return "live-channel-" + strconv.Itoa(idx%8)
	}
	return "vod-title-" + strconv.Itoa(idx%500)
}

// finish scores a view that ended (or is cut off by the end of the run)
// and takes it off its CDN's load.
func (r *runner) finish(v *view) {
	if !v.done {
		v.done = true
	}
	r.w.load.add(r.m, v.cdn, v.asn, -1)
	if v.warm {
		return
	}
	q := v.outcome().score()
	r.scored++
	r.sum.TotalQoE += q
	if v.inScope {
		r.sum.ScopeQoE += q
	}
	if r.endless {
		return
	}
	i := int(v.at / r.m.step)
	r.qSum[i] += q
	r.qN[i]++
	if v.inScope {
		r.sqSum[i] += q
		r.sqN[i]++
	}
}

func (r *runner) result() *Result {
	m := r.m
	res := &Result{Scenario: m.name, Policy: r.opts.Policy, Start: r.opts.Start, Step: m.step, Duration: m.dur,
		Scope: m.scope.String(m), Steps: r.steps, Summary: r.sum}
	for _, c := range m.cdns {
		res.CDNs = append(res.CDNs, c.name)
	}
	if m.incident != nil {
		inc := *m.incident
		res.Incident = &inc
	}
	for i := range res.Steps {
		res.Steps[i].QoE, res.Steps[i].ScopeQoE = -1, -1
		if r.qN[i] > 0 {
			res.Steps[i].QoE = r.qSum[i] / float64(r.qN[i])
		}
		if r.sqN[i] > 0 {
			res.Steps[i].ScopeQoE = r.sqSum[i] / float64(r.sqN[i])
		}
	}
	summarize(res)
	return res
}

// arrivals is the arrival process: Poisson arrivals per region and step,
// each drawn whole (service, network, client, length, patience, seek)
// from one stream that no policy influences.
type arrivals struct {
	m    *model
	rng  *rand.Rand
	next int
}

// warm draws the population already playing at the start: per region a
// Poisson number with the steady-state mean (rate x mean length), each
// with a length-biased total length of which a uniform part is left.
func (g *arrivals) warm() []arrival {
	m := g.m
	var out []arrival
	weights := make([]float64, len(m.services))
	var meanLen float64
	for i := range m.services {
		s := &m.services[i]
		share := m.svcCum[i]
		if i > 0 {
			share -= m.svcCum[i-1]
		}
		share /= m.svcCum[len(m.svcCum)-1]
		mean := math.Exp(s.durMu + s.durSg*s.durSg/2)
		weights[i] = share * mean
		meanLen += weights[i]
	}
	cum := make([]float64, len(weights))
	for i, w := range weights {
		cum[i] = w
		if i > 0 {
			cum[i] += cum[i-1]
		}
	}
	for ri := range m.regions {
		n := poisson(g.rng, m.regions[ri].rate*meanLen)
		for range n {
			svc := pick(cum, g.rng.Float64())
			s := &m.services[svc]
			// Length-biased lognormal: mu + sigma^2.
			total := math.Exp(s.durMu + s.durSg*s.durSg + s.durSg*g.rng.NormFloat64())
			a := g.draw(ri, 0, svc)
			a.length = time.Duration((1 - g.rng.Float64()) * total * float64(time.Second))
			a.length = max(a.length, m.step)
			a.seekAt, a.warm = -1, true
			out = append(out, a)
		}
	}
	return out
}

// step draws the arrivals of [t0, t0+dt), in time order.
func (g *arrivals) step(t0, dt time.Duration) []arrival {
	m := g.m
	var out []arrival
	for ri := range m.regions {
		n := poisson(g.rng, m.regions[ri].rate*dt.Seconds())
		for range n {
			at := t0 + time.Duration(g.rng.Float64()*float64(dt)).Truncate(time.Millisecond)
			out = append(out, g.draw(ri, at, pick(m.svcCum, g.rng.Float64())))
		}
	}
	slices.SortStableFunc(out, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
	return out
}

func (g *arrivals) draw(ri int, at time.Duration, svc int) arrival {
	m := g.m
	reg := &m.regions[ri]
	asn := reg.asns[pick(reg.cum, g.rng.Float64())]
	am := &m.asns[asn]
	pre := am.prefixes[pick(am.cum, g.rng.Float64())]
	s := &m.services[svc]
	a := arrival{idx: g.next, at: at, svc: svc, asn: asn,
		loc:    steering.Location{Region: reg.name, Country: pre.Country, ASN: am.asn},
		client: pre.RandomAddr(g.rng)}
	g.next++
	a.length = time.Duration(math.Exp(s.durMu+s.durSg*g.rng.NormFloat64()) * float64(time.Second))
	a.patience = time.Duration(math.Exp(m.patMu+m.patSigma*g.rng.NormFloat64()) * float64(time.Second))
	a.seekAt = -1
	if u, w := g.rng.Float64(), g.rng.Float64(); u < m.seekShare {
		a.seekAt = w * a.length.Seconds()
	}
	return a
}

// pick is the index of the first cumulative weight above u x total.
func pick(cum []float64, u float64) int {
	x := u * cum[len(cum)-1]
	for i, c := range cum {
		if x < c {
			return i
		}
	}
	return len(cum) - 1
}

func poisson(r *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 50 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

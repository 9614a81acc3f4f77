package steering

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Ranking behaviour is tested with small script files in
// testdata/scripts, promqltest-style. Each runs in a synctest bubble: time
// only moves when the script says so, and the engine is ticked every
// simulated second as the scorer does.
//
// Commands (one per line; # comments; key=value arguments):
//
//	catalog service=vod cdns=a,b,c [prices=a:0.01,b:0.02] [commits=a:100] [max_share=a:0.5]
//	policy key=value ...          (dwell, margin, exploration, max_shift, min_samples, cost_margin,
//	                               freeze, static, retry, evacuate_margin, half_life, fast_half_life, suppress, steady, client_cap)
//	load [service=vod] [region=eu-west] [country=GB] [asn=64496] [for=60s] [client=1.2.3.0 (one for all views)]
//	  cdn=a [region=..] [asn=..] [client=..] views=100 [playing=0] startup_ms=900 rebuffer=0.01 failure=0 ebvs=0 bitrate=3000 throughput=8000 ttfb=50
//	                              (play the indented lines' views over `for`, ticking every second: `views`
//	                              start evenly over it, `playing` have started before and send heartbeats only)
//	wait 30s                      (tick every second, no data)
//	override id=o1 kind=drain [service=vod] [region=r] [asn=n] [cdn=a] [weight=0.3] [split=a:70,b:30] [expires=60s]
//	clear-overrides
//	probe cdn=a ok|fail [times=3]
//	rank [service=vod] [region=r] [asn=n] [country=c] -> a b c     (CDNs with weight > 0, best first)
//	leader ... -> a
//	weights ... -> a=0.96 b=0.02 c=0.02                           (±0.011)
//	rule ... -> measured
//	health ... cdn=a -> down
//	scope ... cdn=a -> region                                     (the level whose window scored a)
//	fired ... -> hysteresis_hold                                  (the rule is among those fired)
//	pick ... view=v1 -> a
//	answer ... -> vod/eu-west                                     (the scope whose ranking answers)
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/scripts/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runScript(t, f) })
		})
	}
}

type scriptRun struct {
	t     *testing.T
	file  string
	line  int
	cat   Catalog
	pol   Policy
	eng   *Engine
	snaps map[string]*Snapshot
	ovs   []Override
	seq   int
}

func runScript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r := &scriptRun{t: t, file: file, pol: DefaultPolicy(), snaps: map[string]*Snapshot{},
		cat: Catalog{CDNs: []CDN{{Name: "a", Host: "a.example"}, {Name: "b", Host: "b.example"}, {Name: "c", Host: "c.example"}},
			Services: []Service{{Name: "vod", CDNs: []string{"a", "b", "c"}}}}}
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		r.line = i + 1
		ln := strings.TrimSpace(lines[i])
		if ln == "" || strings.HasPrefix(ln, "#") {
			continue
		}
		cmd, rest, _ := strings.Cut(ln, " ")
		if cmd == "load" {
			var body []string
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "  ") {
				i++
				body = append(body, strings.TrimSpace(lines[i]))
			}
			r.load(rest, body)
			continue
		}
		r.exec(cmd, rest)
	}
}

func (r *scriptRun) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s:%d: %s", r.file, r.line, fmt.Sprintf(format, args...))
}

func (r *scriptRun) errorf(format string, args ...any) {
	r.t.Helper()
	r.t.Errorf("%s:%d: %s", r.file, r.line, fmt.Sprintf(format, args...))
}

func kv(s string) (map[string]string, string) {
	args, want, _ := strings.Cut(s, "->")
	m := map[string]string{}
	for _, f := range strings.Fields(args) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			m[f] = ""
			continue
		}
		m[k] = v
	}
	return m, strings.TrimSpace(want)
}

func (r *scriptRun) engine() *Engine {
	if r.eng == nil {
		e, err := NewEngine(r.cat, r.pol, time.Now())
		if err != nil {
			r.fatalf("engine: %v", err)
		}
		r.eng = e
	}
	return r.eng
}

func (r *scriptRun) tick() {
	for _, s := range r.engine().Tick(time.Now()) {
		r.snaps[s.Service] = s
	}
}

func (r *scriptRun) dur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		r.fatalf("%v", err)
	}
	return d
}

func (r *scriptRun) num(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		r.fatalf("%v", err)
	}
	return v
}

func (r *scriptRun) exec(cmd, rest string) {
	a, want := kv(rest)
	switch cmd {
	case "catalog":
		if r.eng != nil {
			r.fatalf("catalog after the engine started")
		}
		r.catalog(a)
	case "policy":
		if r.eng != nil {
			r.fatalf("policy after the engine started")
		}
		r.policy(a)
	case "wait":
		d := r.dur(rest)
		r.engine()
		for range int(d / time.Second) {
			time.Sleep(time.Second)
			r.tick()
		}
	case "override":
		r.seq++
		o := Override{ID: a["id"], Kind: OverrideKind(a["kind"]), Service: or(a["service"], "vod"), Region: a["region"],
			CDN: a["cdn"], Reason: "script", Created: time.Now().Add(time.Duration(r.seq) * time.Nanosecond)}
		if v, ok := a["asn"]; ok {
			o.ASN = uint32(r.num(v))
		}
		if v, ok := a["weight"]; ok {
			o.Weight = r.num(v)
		}
		if v, ok := a["split"]; ok {
			o.Split = map[string]float64{}
			for _, p := range strings.Split(v, ",") {
				c, pct, _ := strings.Cut(p, ":")
				o.Split[c] = r.num(pct)
			}
		}
		if v, ok := a["expires"]; ok {
			o.Expires = time.Now().Add(r.dur(v))
		}
		r.ovs = append(r.ovs, o)
		if err := r.engine().SetOverrides(r.ovs); err != nil {
			if w, ok := a["error"]; ok {
				if !strings.Contains(err.Error(), strings.Trim(w, `"`)) {
					r.errorf("override error %q, want it to contain %q", err, w)
				}
				r.ovs = r.ovs[:len(r.ovs)-1]
				return
			}
			r.fatalf("override: %v", err)
		}
		r.tick()
	case "clear-overrides":
		r.ovs = nil
		if err := r.engine().SetOverrides(nil); err != nil {
			r.fatalf("%v", err)
		}
		r.tick()
	case "probe":
		n := 1
		if v, ok := a["times"]; ok {
			n = int(r.num(v))
		}
		_, ok := a["ok"]
		for range n {
			if err := r.engine().Probe(ProbeResult{CDN: a["cdn"], At: time.Now(), OK: ok, Detail: "status 503"}); err != nil {
				r.fatalf("%v", err)
			}
		}
		r.tick()
	case "rank", "leader", "weights", "rule", "health", "scope", "fired", "pick", "answer":
		r.check(cmd, a, want)
	default:
		r.fatalf("unknown command %q", cmd)
	}
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (r *scriptRun) catalog(a map[string]string) {
	svc := Service{Name: or(a["service"], "vod"), CDNs: strings.Split(or(a["cdns"], "a,b,c"), ",")}
	byName := map[string]*CDN{}
	var cdns []CDN
	for _, s := range r.cat.Services {
		if s.Name != svc.Name {
			for _, n := range s.CDNs {
				if byName[n] == nil {
					cdns = append(cdns, CDN{Name: n, Host: n + ".example"})
					byName[n] = &cdns[len(cdns)-1]
				}
			}
		}
	}
	for _, n := range svc.CDNs {
		if byName[n] == nil {
			cdns = append(cdns, CDN{Name: n, Host: n + ".example"})
		}
	}
	set := func(key string, f func(c *CDN, v float64)) {
		if a[key] == "" {
			return
		}
		for _, p := range strings.Split(a[key], ",") {
			n, v, _ := strings.Cut(p, ":")
			for i := range cdns {
				if cdns[i].Name == n {
					f(&cdns[i], r.num(v))
				}
			}
		}
	}
	set("prices", func(c *CDN, v float64) { c.PricePerGB = v })
	set("commits", func(c *CDN, v float64) { c.CommitGBPerMonth = v })
	set("max_share", func(c *CDN, v float64) { c.MaxShare = v })
	var svcs []Service
	for _, s := range r.cat.Services {
		if s.Name != svc.Name {
			svcs = append(svcs, s)
		}
	}
	r.cat = Catalog{CDNs: cdns, Services: append(svcs, svc)}
}

func (r *scriptRun) policy(a map[string]string) {
	p := &r.pol
	for k, v := range a {
		switch k {
		case "dwell":
			p.Hysteresis.Dwell = r.dur(v)
		case "margin":
			p.Hysteresis.Margin = r.num(v)
		case "warmup":
			p.Hysteresis.Warmup = r.dur(v)
		case "warmup_margin":
			p.Hysteresis.WarmupMargin = r.num(v)
		case "exploration":
			p.Exploration = r.num(v)
		case "max_shift":
			p.MaxShiftPerMinute = r.num(v)
		case "min_samples":
			p.MinSamples = r.num(v)
		case "cost_margin":
			p.Cost.Margin = r.num(v)
		case "freeze":
			p.Stale.Freeze = r.dur(v)
		case "static":
			p.Stale.Static = r.dur(v)
		case "evacuate_margin":
			p.Passive.EvacuateMargin = r.num(v)
		case "retry":
			p.Passive.Retry = r.dur(v)
		case "half_life":
			p.HalfLife = r.dur(v)
		case "fast_half_life":
			p.FastHalfLife = r.dur(v)
		case "suppress":
			p.Flap.Suppress = r.num(v)
		case "steady":
			p.Flap.Steady = r.dur(v)
		case "client_cap":
			p.Poison.ClientCap = r.num(v)
		default:
			r.fatalf("unknown policy key %q", k)
		}
	}
}

// load plays views: each line's views start evenly over the duration, each
// sends a view_start (or a fatal error for the failing share, or an EBVS
// view_end) and then one heartbeat per second while the load lasts.
func (r *scriptRun) load(rest string, body []string) {
	a, _ := kv(rest)
	e := r.engine()
	loc := Location{Region: a["region"], Country: a["country"]}
	if v, ok := a["asn"]; ok {
		loc.ASN = uint32(r.num(v))
	}
	svc := or(a["service"], "vod")
	d := 60 * time.Second
	if v, ok := a["for"]; ok {
		d = r.dur(v)
	}
	type line struct {
		client                                           string
		loc                                              Location
		cdn                                              string
		views, playing                                   int
		startup, rebuf, fail, ebvs, br, tput, ttfb, seen float64
	}
	var ls []line
	for _, b := range body {
		m, _ := kv(b)
		ll := loc
		if v, ok := m["region"]; ok {
			ll.Region = v
		}
		if v, ok := m["country"]; ok {
			ll.Country = v
		}
		if v, ok := m["asn"]; ok {
			ll.ASN = uint32(r.num(v))
		}
		l := line{client: or(m["client"], a["client"]), loc: ll, cdn: m["cdn"], views: int(r.num(or(m["views"], "100"))), playing: int(r.num(or(m["playing"], "0"))), startup: r.num(or(m["startup_ms"], "1000")),
			rebuf: r.num(or(m["rebuffer"], "0")), fail: r.num(or(m["failure"], "0")), ebvs: r.num(or(m["ebvs"], "0")),
			br: r.num(or(m["bitrate"], "3000")), tput: r.num(or(m["throughput"], "8000")), ttfb: r.num(or(m["ttfb"], "50"))}
		ls = append(ls, l)
	}
	r.seq++
	client := func(li, v int) uint64 {
		if c := ls[li].client; c != "" {
			return hashString(c)
		}
		return uint64(r.seq)<<40 | uint64(li)<<32 | uint64(v+1) // one client per view
	}
	secs := int(d / time.Second)
	for s := range secs {
		now := time.Now()
		for li := range ls {
			l := &ls[li]
			// views started by the end of this second
			started := int(math.Round(float64(l.views) * float64(s+1) / float64(secs)))
			for v := int(l.seen); v < started; v++ {
				o := Observation{At: now, Service: svc, CDN: l.cdn, Location: l.loc, Client: client(li, v)}
				// Spread failures evenly: u is a low-discrepancy sequence.
				u := math.Mod(float64(v)*0.6180339887, 1)
				switch {
				case u < l.fail:
					o.Kind, o.Fatal = KindError, true
				case u < l.fail+l.ebvs:
					o.Kind = KindViewEnd
				default:
					o.Kind, o.StartupMS, o.BitrateKbps, o.ThroughputKbps, o.TTFBMS = KindViewStart, uint32(l.startup), uint32(l.br), uint32(l.tput), uint32(l.ttfb)
				}
				r.observe(e, &o)
			}
			l.seen = float64(started)
			// one heartbeat per started, playing view
			playing := int(float64(started)*(1-l.fail-l.ebvs)) + l.playing
			for v := range playing {
				o := Observation{At: now, Service: svc, CDN: l.cdn, Location: l.loc, Client: client(li, v), Kind: KindHeartbeat,
					PlayedMS: uint32(1000 * (1 - l.rebuf)), RebufferMS: uint32(1000 * l.rebuf), BitrateKbps: uint32(l.br), ThroughputKbps: uint32(l.tput), TTFBMS: uint32(l.ttfb)}
				r.observe(e, &o)
			}
		}
		time.Sleep(time.Second)
		r.tick()
	}
}

func (r *scriptRun) observe(e *Engine, o *Observation) {
	if err := e.Observe(o); err != nil {
		r.fatalf("observe: %v", err)
	}
}

func (r *scriptRun) ranking(a map[string]string) *Ranking {
	r.t.Helper()
	svc := or(a["service"], "vod")
	s := r.snaps[svc]
	if s == nil {
		r.fatalf("no snapshot of %q yet", svc)
	}
	loc := Location{Region: a["region"], Country: a["country"]}
	if v, ok := a["asn"]; ok {
		loc.ASN = uint32(r.num(v))
	}
	return s.Lookup(loc)
}

func (r *scriptRun) choice(rk *Ranking, cdn string) *Choice {
	for i := range rk.Choices {
		if rk.Choices[i].CDN == cdn {
			return &rk.Choices[i]
		}
	}
	return nil
}

func (r *scriptRun) check(cmd string, a map[string]string, want string) {
	r.t.Helper()
	rk := r.ranking(a)
	dump := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "ranking %s rule=%s fired=%v", rk.Scope, rk.Rule, rk.Fired.Names())
		for _, c := range rk.Choices {
			fmt.Fprintf(&b, "\n  %s w=%.3f score=%.1f fast=%.1f scope=%s n=%.0f health=%s leader=%v %s", c.CDN, c.Weight, c.Score, c.FastScore, c.ScoreScope, c.Samples, c.Health, c.Leader, c.Reason)
		}
		return b.String()
	}
	switch cmd {
	case "rank":
		var got []string
		for _, c := range rk.Choices {
			if c.Weight > 0 {
				got = append(got, c.CDN)
			}
		}
		if strings.Join(got, " ") != want {
			r.errorf("rank = %v, want %s\n%s", got, want, dump())
		}
	case "leader":
		got := ""
		for _, c := range rk.Choices {
			if c.Leader {
				got = c.CDN
			}
		}
		if got != want {
			r.errorf("leader = %q, want %q\n%s", got, want, dump())
		}
	case "weights":
		for _, f := range strings.Fields(want) {
			n, v, _ := strings.Cut(f, "=")
			c := r.choice(rk, n)
			w := 0.0
			if c != nil {
				w = c.Weight
			}
			if math.Abs(w-r.num(v)) > 0.011 {
				r.errorf("weight of %s = %.4f, want %s\n%s", n, w, v, dump())
			}
		}
	case "rule":
		if string(rk.Rule) != want {
			r.errorf("rule = %s, want %s\n%s", rk.Rule, want, dump())
		}
	case "fired":
		if !slices.Contains(rk.Fired.Names(), want) {
			r.errorf("fired = %v, want %s among them\n%s", rk.Fired.Names(), want, dump())
		}
	case "health", "scope":
		c := r.choice(rk, a["cdn"])
		got := "absent"
		if c != nil {
			got = c.Health.String()
			if cmd == "scope" {
				got = c.ScoreScope.String()
			}
		}
		if got != want {
			r.errorf("%s of %s = %s, want %s\n%s", cmd, a["cdn"], got, want, dump())
		}
	case "answer":
		if got := rk.Scope.String(); got != want {
			r.errorf("answer = %s, want %s\n%s", got, want, dump())
		}
	case "pick":
		s := r.snaps[or(a["service"], "vod")]
		loc := Location{Region: a["region"], Country: a["country"]}
		d, err := s.Decide(Query{Service: s.Service, Location: loc, ViewID: a["view"]})
		if err != nil || d.CDN != want {
			r.errorf("pick = %q (%v), want %q\n%s", d.CDN, err, want, dump())
		}
	}
}

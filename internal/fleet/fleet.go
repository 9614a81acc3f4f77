// Package fleet is the demo's synthetic player fleet: viewers spread over
// the coverage file's regions and ASNs, watching the demo services on the
// demo CDNs and posting real beacons to the real ingest endpoint over HTTP,
// so every dashboard has live data within seconds of `cdnpilot demo`.
package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cdnpilot/cdnpilot/internal/geo"
)

// Options configure a Fleet.
type Options struct {
	Target   string // base URL of ingest, e.g. http://127.0.0.1:8080
	Viewers  int
	Seed     int64
	Coverage *geo.Coverage
	Services []string // default vod, live
	CDNs     []string // default cdn-a, cdn-b, cdn-c
	// Heartbeat is the beacon interval of a playing view (default 5s).
	Heartbeat time.Duration
	Client    *http.Client
	Logger    *slog.Logger
}

// Fleet runs the viewers.
type Fleet struct {
	o       Options
	log     *slog.Logger
	rng     *rand.Rand
	entries []geo.Location

	mu       sync.Mutex
	sent     int64
	failures int64
}

// New builds a fleet; Run starts it.
func New(o Options) *Fleet {
	if len(o.Services) == 0 {
		o.Services = []string{"vod", "live"}
	}
	if len(o.CDNs) == 0 {
		o.CDNs = []string{"cdn-a", "cdn-b", "cdn-c"}
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{o: o, log: o.Logger.With("component", "fleet"),
		rng: rand.New(rand.NewPCG(uint64(o.Seed), 0x5eed))}
	for _, e := range o.Coverage.Entries() {
		if e.Region != "local" && e.Region != "" {
			f.entries = append(f.entries, e)
		}
	}
	return f
}

// Sent returns how many beacons the ingest accepted, and how many posts failed.
func (f *Fleet) Sent() (accepted, failedPosts int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent, f.failures
}

type viewer struct {
	addr    netip.Addr
	loc     geo.Location
	service string
	cdn     string
	viewID  string
	q       quality
	start   time.Time // when the current view began
	startup int       // startup time of the current view, repeated on view_end
	length  time.Duration
	next    time.Time // next beacon due
	started bool
	views   int
}

// Run drives the viewers until ctx is done.
func (f *Fleet) Run(ctx context.Context) error {
	if len(f.entries) == 0 || f.o.Viewers == 0 {
		<-ctx.Done()
		return nil
	}
	now := time.Now()
	vs := make([]*viewer, f.o.Viewers)
	for i := range vs {
		loc := f.entries[f.rng.IntN(len(f.entries))]
		vs[i] = &viewer{addr: loc.RandomAddr(f.rng), loc: loc}
		f.newView(vs[i], now.Add(time.Duration(f.rng.Int64N(int64(3*time.Second)))))
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now = <-tick.C:
		}
		var posts []post
		for _, v := range vs {
			if now.Before(v.next) {
				continue
			}
			if bs := f.step(v, now); len(bs) > 0 {
				posts = append(posts, post{addr: v.addr, beacons: bs})
			}
		}
		f.send(ctx, posts)
	}
}

type post struct {
	addr    netip.Addr
	beacons []map[string]any
}

func (f *Fleet) newView(v *viewer, at time.Time) {
	v.views++
	v.service = f.o.Services[f.rng.IntN(len(f.o.Services))]
	v.cdn = f.o.CDNs[f.rng.IntN(len(f.o.CDNs))]
	v.q = qualityOf(v.cdn, v.loc.Region, v.loc.ASN)
	v.viewID = fmt.Sprintf("demo-%s-%d-%d", strconv.FormatUint(uint64(f.rng.Uint32()), 36), v.views, at.UnixMilli())
	v.start = at
	v.length = time.Duration(30+f.rng.IntN(90)) * time.Second
	v.next = at
	v.started = false
	v.startup = 0
}

// step advances one viewer to now and returns the beacons it sends.
func (f *Fleet) step(v *viewer, now time.Time) []map[string]any {
	base := func(typ string) map[string]any {
		return map[string]any{"type": typ, "view_id": v.viewID, "session_id": v.viewID, "ts": now.UnixMilli(),
			"service": v.service, "cdn": v.cdn, "host": v.cdn + ".demo.cdnpilot.test", "player": "cdnpilot-fleet",
			"player_version": "1", "device": "synthetic", "os": "linux"}
	}
	if !v.started {
		v.started = true
		if f.rng.Float64() < v.q.failure {
			b := base("error")
			b["error_code"] = "MEDIA_ERR_NETWORK"
			b["fatal"] = true
			f.newView(v, now.Add(2*time.Second))
			return []map[string]any{b}
		}
		b := base("view_start")
		v.startup = int(math.Max(150, v.q.startupMS*math.Exp(f.rng.NormFloat64()*0.35)))
		b["startup_ms"] = v.startup
		b["bitrate_kbps"] = v.q.bitrate
		b["throughput_kbps"] = int(float64(v.q.throughput) * (0.7 + 0.6*f.rng.Float64()))
		b["ttfb_ms"] = int(v.q.ttfbMS * (0.6 + 0.8*f.rng.Float64()))
		v.next = now.Add(f.o.Heartbeat)
		return []map[string]any{b}
	}
	interval := f.o.Heartbeat.Milliseconds()
	stall := 0
	count := 0
	if f.rng.Float64() < v.q.rebufferChance {
		count = 1
		stall = 200 + f.rng.IntN(1800)
	}
	played := max(0, int(interval)-stall)
	var out []map[string]any
	typ := "heartbeat"
	if now.Sub(v.start) >= v.length {
		typ = "view_end"
	}
	b := base(typ)
	b["played_ms"] = played
	b["rebuffer_ms"] = stall
	b["rebuffer_count"] = count
	b["bitrate_kbps"] = v.q.bitrate
	b["throughput_kbps"] = int(float64(v.q.throughput) * (0.7 + 0.6*f.rng.Float64()))
	b["ttfb_ms"] = int(v.q.ttfbMS * (0.6 + 0.8*f.rng.Float64()))
	if typ == "view_end" {
		b["startup_ms"] = v.startup // the protocol: view_end repeats it
	}
	out = append(out, b)
	if typ == "view_end" {
		f.newView(v, now.Add(time.Duration(1+f.rng.IntN(4))*time.Second))
	} else {
		v.next = now.Add(f.o.Heartbeat)
	}
	return out
}

func (f *Fleet) send(ctx context.Context, posts []post) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, p := range posts {
		g.Go(func() error {
			n, err := f.post(gctx, p)
			f.mu.Lock()
			f.sent += int64(n)
			if err != nil {
				f.failures++
			}
			f.mu.Unlock()
			if err != nil && gctx.Err() == nil {
				f.log.Debug("post beacons", "err", err)
			}
			return nil
		})
	}
	_ = g.Wait()
}

func (f *Fleet) post(ctx context.Context, p post) (int, error) {
	body, err := json.Marshal(p.beacons)
	if err != nil {
		return 0, fmt.Errorf("encode beacons: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.o.Target+"/v1/beacons", bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	// The demo trusts loopback as a proxy, so each synthetic viewer is
	// located from its own address like a real player behind a balancer.
	req.Header.Set("X-Forwarded-For", p.addr.String())
	resp, err := f.o.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post beacons: %w", err)
	}
	defer resp.Body.Close()
	var res struct {
		Accepted int `json:"accepted"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
		return 0, fmt.Errorf("decode answer (%s): %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return res.Accepted, fmt.Errorf("ingest answered %s", resp.Status)
	}
	return res.Accepted, nil
}

// quality is a CDN's true performance for one region and ASN: fixed per
// triple (a hash), so the demo shows stable winners and losers per region.
type quality struct {
	startupMS      float64
	rebufferChance float64 // per heartbeat
	failure        float64 // per view
	throughput     int     // kbps
	bitrate        int     // kbps
	ttfbMS         float64
}

func qualityOf(cdn, region string, asn uint32) quality {
	h := fnv.New64a()
	_, _ = h.Write([]byte(cdn + "|" + region))
	r := rand.New(rand.NewPCG(h.Sum64(), uint64(asn)))
	q := quality{
		startupMS:      600 + 1800*r.Float64(),
		rebufferChance: 0.005 + 0.08*r.Float64()*r.Float64(),
		failure:        0.003 + 0.03*r.Float64()*r.Float64(),
		throughput:     3000 + r.IntN(27000),
		ttfbMS:         20 + 180*r.Float64(),
	}
	q.bitrate = min(q.throughput*6/10, 8000)
	return q
}

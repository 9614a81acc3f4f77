package fleet

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/beacons"
	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/geo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is the ingest handler's Publisher: it keeps what the handler
// accepted, in arrival order. Kafka is not what these tests are about.
type recorder struct {
	mu  sync.Mutex
	got []record.Beacon
}

func (r *recorder) Publish(_ context.Context, batch []record.Beacon) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, batch...)
	return nil
}

func (r *recorder) beacons() []record.Beacon {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// ingest serves the real beacon handler on loopback, trusting loopback as a
// proxy as the demo does, without a rate limit.
func ingest(t *testing.T) (*httptest.Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	h := beacons.NewHandler(rec, geo.Demo(), beacons.Options{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		RateLimitRPS:   0,
	})
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, rec
}

// run drives a fleet against its own ingest for d and returns it with what
// the ingest accepted.
func run(t *testing.T, seed int64, viewers int, d time.Duration) (*Fleet, []record.Beacon) {
	t.Helper()
	srv, rec := ingest(t)
	f := New(Options{
		Target: srv.URL, Viewers: viewers, Seed: seed, Coverage: geo.Demo(),
		Heartbeat: 200 * time.Millisecond, Client: srv.Client(),
	})
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if err := f.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
	return f, rec.beacons()
}

// firstView is what a viewer's first view looks like from outside.
type firstView struct{ service, cdn, region string }

// firstViews maps the seed-determined part of a first view's id
// ("demo-<rand>-1-<ms>" -> "demo-<rand>") to what it watched and where.
func firstViews(bs []record.Beacon) map[string]firstView {
	m := map[string]firstView{}
	for _, b := range bs {
		parts := strings.Split(b.ViewID, "-")
		if len(parts) != 4 || parts[2] != "1" {
			continue
		}
		m[parts[0]+"-"+parts[1]] = firstView{b.Service, b.CDN, b.Region}
	}
	return m
}

func TestFleetPostsValidBeacons(t *testing.T) {
	// The run ends between two 500ms ticks, so no post is cut off by the
	// cancel and counted as failed.
	const d = 2750 * time.Millisecond
	type result struct {
		f  *Fleet
		bs []record.Beacon
	}
	seeds := []int64{7, 7, 8}
	results := make([]result, len(seeds))
	var wg sync.WaitGroup
	for i, seed := range seeds {
		wg.Go(func() {
			f, bs := run(t, seed, 20, d)
			results[i] = result{f, bs}
		})
	}
	wg.Wait()

	cov := geo.Demo()
	regions := map[string]bool{}
	for _, e := range cov.Entries() {
		if e.Region != "local" {
			regions[e.Region] = true
		}
	}
	services := map[string]bool{"vod": true, "live": true}
	cdns := map[string]bool{"cdn-a": true, "cdn-b": true, "cdn-c": true}

	for i, r := range results {
		t.Run(fmt.Sprintf("fleet%d-seed%d", i, seeds[i]), func(t *testing.T) {
			accepted, failed := r.f.Sent()
			if failed != 0 {
				t.Errorf("Sent: %d failed posts", failed)
			}
			if accepted == 0 || int(accepted) != len(r.bs) {
				t.Fatalf("Sent: %d accepted, ingest published %d", accepted, len(r.bs))
			}
			views := map[string][]record.Beacon{}
			var order []string
			for _, b := range r.bs {
				if err := b.Check(); err != nil {
					t.Errorf("%s: %v", b.ViewID, err)
				}
				if !services[b.Service] || !cdns[b.CDN] {
					t.Errorf("%s: service %q cdn %q, want vod/live on cdn-a/b/c", b.ViewID, b.Service, b.CDN)
				}
				if !regions[b.Region] {
					t.Errorf("%s: region %q is not a coverage region", b.ViewID, b.Region)
				}
				// The handler located the viewer's own address, not the
				// loopback peer: the region is that address's entry.
				ip, err := netip.ParseAddr(b.ClientIP)
				if err != nil || ip.IsLoopback() {
					t.Errorf("%s: client ip %q, want a synthetic viewer address", b.ViewID, b.ClientIP)
				} else if loc, ok := cov.Lookup(ip); !ok || loc.Region != b.Region || loc.ASN != b.ASN {
					t.Errorf("%s: %s is in %+v, beacon says %s/%d", b.ViewID, ip, loc, b.Region, b.ASN)
				}
				if _, ok := views[b.ViewID]; !ok {
					order = append(order, b.ViewID)
				}
				views[b.ViewID] = append(views[b.ViewID], b)
			}
			if len(views) < 10 {
				t.Errorf("%d views from 20 viewers in %v", len(views), d)
			}
			for _, id := range order {
				checkView(t, id, views[id])
			}
		})
	}

	// Determinism: the same seed draws the same viewers, so the first views
	// both fleets got to are the same (service, cdn, region); another seed
	// draws others.
	a, b, other := firstViews(results[0].bs), firstViews(results[1].bs), firstViews(results[2].bs)
	common := 0
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			continue
		}
		common++
		if va != vb {
			t.Errorf("seed 7 viewer %s: first view %+v and %+v", k, va, vb)
		}
	}
	if common < 10 {
		t.Errorf("the two seed-7 fleets share %d first views of %d and %d, want most", common, len(a), len(b))
	}
	for k := range other {
		if _, ok := a[k]; ok {
			t.Errorf("seeds 7 and 8 both drew viewer %s", k)
		}
	}
}

// checkView checks one view's beacons, in the order the ingest got them.
func checkView(t *testing.T, id string, bs []record.Beacon) {
	t.Helper()
	first := bs[0]
	switch {
	case first.Type == record.TypeError && first.Fatal:
		if len(bs) != 1 {
			t.Errorf("%s: %d beacons after a fatal start error", id, len(bs)-1)
		}
		return
	case first.Type != record.TypeViewStart:
		t.Errorf("%s: first beacon is %s, want view_start or a fatal error", id, first.Type)
		return
	}
	if first.StartupMS == 0 {
		t.Errorf("%s: view_start without startup_ms", id)
	}
	for _, b := range bs[1:] {
		switch b.Type {
		case record.TypeHeartbeat:
		case record.TypeViewEnd:
			if b.StartupMS != first.StartupMS {
				t.Errorf("%s: view_end startup_ms %d, view_start said %d", id, b.StartupMS, first.StartupMS)
			}
		default:
			t.Errorf("%s: %s after view_start", id, b.Type)
		}
		if b.Service != first.Service || b.CDN != first.CDN || b.ClientIP != first.ClientIP {
			t.Errorf("%s: %s/%s from %s mid-view, started as %s/%s from %s",
				id, b.Service, b.CDN, b.ClientIP, first.Service, first.CDN, first.ClientIP)
		}
	}
}

// TestViewLifecycle steps viewers through whole short views, with the
// clock in the test's hands, and posts every step to the real ingest.
func TestViewLifecycle(t *testing.T) {
	srv, rec := ingest(t)
	tests := []struct {
		name   string
		seed   int64
		region string
		v6     bool
	}{
		{"eu-west v4", 1, "eu-west", false},
		{"ap-south v6", 2, "ap-south", true},
		{"sa-east v4, other seed", 3, "sa-east", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const hb = time.Second
			f := New(Options{Target: srv.URL, Viewers: 1, Seed: tt.seed, Coverage: geo.Demo(), Heartbeat: hb, Client: srv.Client()})
			i := slices.IndexFunc(f.entries, func(l geo.Location) bool {
				return l.Region == tt.region && l.Prefix.Addr().Is6() == tt.v6
			})
			if i < 0 {
				t.Fatalf("no %s entry (v6 %v) in the demo coverage", tt.region, tt.v6)
			}
			loc := f.entries[i]
			v := &viewer{addr: loc.RandomAddr(f.rng), loc: loc}
			now := time.Now()
			f.newView(v, now)
			v.length = 3 * hb // short views, so a few of them end
			before := len(rec.beacons())
			ends := 0
			for step := 0; ends < 3 && step < 200; step++ {
				now = later(now, v.next)
				id := v.viewID
				bs := f.step(v, now)
				if len(bs) == 0 {
					t.Fatalf("step %d: no beacon when one was due", step)
				}
				for _, b := range bs {
					if b["type"] == "view_end" {
						ends++
					}
				}
				if n, err := f.post(t.Context(), post{addr: v.addr, beacons: bs}); err != nil || n != len(bs) {
					t.Fatalf("step %d: post %v: accepted %d, %v", step, bs, n, err)
				}
				if v.viewID != id {
					v.length = 3 * hb
				}
			}
			if ends < 3 {
				t.Fatalf("%d views ended", ends)
			}
			got := rec.beacons()[before:]
			views := map[string][]record.Beacon{}
			var order []string
			for _, b := range got {
				if _, ok := views[b.ViewID]; !ok {
					order = append(order, b.ViewID)
				}
				views[b.ViewID] = append(views[b.ViewID], b)
				if b.Region != loc.Region || b.ASN != loc.ASN {
					t.Errorf("%s: located in %s/%d, viewer is in %s/%d", b.ViewID, b.Region, b.ASN, loc.Region, loc.ASN)
				}
			}
			ended := 0
			for _, id := range order {
				vs := views[id]
				checkView(t, id, vs)
				if last := vs[len(vs)-1]; last.Type == record.TypeViewEnd {
					ended++
					if last.StartupMS == 0 {
						t.Errorf("%s: view_end with startup_ms 0", id)
					}
				}
			}
			if ended != ends {
				t.Errorf("%d views ended at the ingest, %d stepped", ended, ends)
			}
		})
	}
}

func TestQualityOfIsStablePerTriple(t *testing.T) {
	tests := []struct {
		cdn, region string
		asn         uint32
	}{
		{"cdn-a", "eu-west", 64496},
		{"cdn-b", "eu-west", 64496},
		{"cdn-a", "us-east", 64496},
		{"cdn-a", "eu-west", 64497},
		{"cdn-c", "ap-south", 64504},
	}
	seen := map[quality]string{}
	for _, tt := range tests {
		name := fmt.Sprintf("%s|%s|%d", tt.cdn, tt.region, tt.asn)
		t.Run(name, func(t *testing.T) {
			q := qualityOf(tt.cdn, tt.region, tt.asn)
			for range 3 {
				if again := qualityOf(tt.cdn, tt.region, tt.asn); again != q {
					t.Fatalf("qualityOf changed: %+v then %+v", q, again)
				}
			}
			if prev, ok := seen[q]; ok {
				t.Errorf("same quality as %s: %+v", prev, q)
			}
			seen[q] = name
			switch {
			case q.startupMS < 600 || q.startupMS > 2400:
				t.Errorf("startupMS %v out of [600, 2400]", q.startupMS)
			case q.failure < 0.003 || q.failure > 0.033:
				t.Errorf("failure %v out of [0.003, 0.033]", q.failure)
			case q.rebufferChance < 0.005 || q.rebufferChance > 0.085:
				t.Errorf("rebufferChance %v out of [0.005, 0.085]", q.rebufferChance)
			case q.bitrate > 8000 || q.bitrate > q.throughput:
				t.Errorf("bitrate %d over 8000 or throughput %d", q.bitrate, q.throughput)
			}
		})
	}
}

func TestRunWithoutViewersWaitsForCancel(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"no viewers", Options{Coverage: geo.Demo()}},
		{"loopback-only coverage", Options{Viewers: 5, Coverage: loopbackOnly(t)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- New(tt.o).Run(ctx) }()
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

func loopbackOnly(t *testing.T) *geo.Coverage {
	t.Helper()
	c, err := geo.LoadCoverage(strings.NewReader("cidr,country,region,asn\n127.0.0.0/8,ZZ,local,0\n"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

package httpbench

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/dns/dnsbench"
	"github.com/cdnpilot/cdnpilot/steering/redirect"
)

// TestWorld: the bench's requests, as the script sends them, get valid
// 302s and manifests, from many regions' picks, signed on SignedCDN.
func TestWorld(t *testing.T) {
	w, err := NewWorld(300, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Clients) != 300 {
		t.Fatalf("%d client addresses, want one per region", len(w.Clients))
	}
	get := func(target string, client string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("X-Forwarded-For", client)
		rec := httptest.NewRecorder()
		w.Mux.ServeHTTP(rec, req)
		return rec
	}
	picks := map[string]int{}
	for i, a := range w.Clients {
		if _, ok := w.Coverage.Lookup(a); !ok {
			t.Fatalf("client %s is not in the coverage", a)
		}
		if i%7 != 0 { // 43 regions, leaders of every kind
			continue
		}
		rec := get(RedirectPath+"&cdnpilot_view=v-"+strconv.Itoa(i), a.String())
		if rec.Code != http.StatusFound {
			t.Fatalf("302: status %d: %s", rec.Code, rec.Body)
		}
		u, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || u.Scheme != "https" || u.Path != "/movies/1/master.m3u8" || u.Query().Get("lang") != "en" || u.Query().Has("cdnpilot_view") {
			t.Fatalf("Location %q", rec.Header().Get("Location"))
		}
		cdn := strings.TrimSuffix(u.Host, ".example.net")
		picks[cdn]++
		if signed := u.Query().Has("__token__"); signed != (cdn == SignedCDN) {
			t.Errorf("Location %q: signed %v", u, signed)
		}

		rec = get(SteerPath, a.String())
		if rec.Code != http.StatusOK {
			t.Fatalf("steer: status %d: %s", rec.Code, rec.Body)
		}
		var m redirect.Manifest
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("manifest is not JSON: %v\n%s", err, rec.Body)
		}
		if m.Version != 1 || m.TTL < 1 || m.TTL > 20 || !strings.HasPrefix(m.Reload, "/steer/vod?ladder_min=300000&_ss=") || len(m.Priority) != 5 {
			t.Fatalf("manifest %s", rec.Body)
		}
	}
	if len(picks) < 4 {
		t.Errorf("picks %v: the regions should lead with different CDNs", picks)
	}
	// The script carries every address and, for the redirector, views.
	s := string(w.Script(RedirectPath, 0))
	for _, a := range w.Clients {
		if !strings.Contains(s, strconv.Quote(a.String())) {
			t.Fatalf("script lacks %s", a)
		}
	}
	if !strings.Contains(s, `"/r/vod/movies/1/master.m3u8?lang=en", 1000, 3000`) || strings.Contains(s, "delay") {
		t.Errorf("redirect script:\n%s", s[len(s)-600:])
	}
	if s := string(w.Script(SteerPath, 10)); !strings.Contains(s, ", 0, 300\n") || !strings.Contains(s, "math.random(0, 20)") {
		t.Errorf("steer script:\n%s", s[len(s)-600:])
	}
}

func TestFloor(t *testing.T) {
	rec := httptest.NewRecorder()
	Floor()(rec, httptest.NewRequest(http.MethodGet, RedirectPath, nil))
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != FloorLocation {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
}

func TestParse(t *testing.T) {
	out := []byte(`Running 8s test @ http://127.0.0.1:41789
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.04ms    2.63ms   1.03s    91.57%
    Req/Sec     1.03k   109.22     1.19k    60.00%
  Latency Distribution
     50%  347.00us
     75%    4.26ms
     90%    5.86ms
     99%   17.61ms
  1026 requests in 1.00s, 521.20KB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 12
Requests/sec:   1024.93
Transfer/sec:    520.65KB
`)
	r, err := parse(out)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Requests: 1026, RPS: 1024.93, P50: 347 * time.Microsecond, P75: 4260 * time.Microsecond,
		P90: 5860 * time.Microsecond, P99: 17610 * time.Microsecond, LatencyMax: 1030 * time.Millisecond,
		Connect: 1, Read: 2, Write: 3, Timeout: 4, Bad: 12}
	if r != want || r.Failures() != 22 {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
	// No error lines: no failures.
	clean := strings.NewReplacer("  Socket errors: connect 1, read 2, write 3, timeout 4\n", "", "  Non-2xx or 3xx responses: 12\n", "").Replace(string(out))
	if r, err := parse([]byte(clean)); err != nil || r.Failures() != 0 || r.Requests != 1026 {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := parse([]byte("nonsense")); err == nil {
		t.Fatal("parsed nonsense")
	}
}

// target is one server and the script its requests come from.
type target struct {
	name, url, path string
}

// BenchmarkHTTPPerf is `make bench-http`: wrk over loopback (1 thread,
// 64 connections), in rounds alternating between the floor (a bare
// net/http handler writing one fixed 302), the 302 redirector and the
// steering manifest (300 regions, X-Forwarded-For from every region,
// every decision logged, one CDN signed), at full load; then all three
// at half the floor's rate for the latency percentiles. Goal: the 302
// and the manifest each >= 80% of the floor's requests per second, p99 <
// 5 ms at half load, no failure (a non-2xx/3xx answer or a socket
// error). HTTPPERF_SECONDS and HTTPPERF_ROUNDS change the length.
func BenchmarkHTTPPerf(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk not found: install Debian's wrk (`make bench-http` does)")
	}
	secs, rounds := dnsbench.EnvInt("HTTPPERF_SECONDS", 8), dnsbench.EnvInt("HTTPPERF_ROUNDS", 5)
	w, err := NewWorld(300, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	script := func(path string, delayMS int) string {
		b.Helper()
		f := filepath.Join(dir, strings.NewReplacer("/", "_", "?", "_").Replace(path)+"-"+strconv.Itoa(delayMS)+".lua")
		if err := os.WriteFile(f, w.Script(path, delayMS), 0o644); err != nil {
			b.Fatal(err)
		}
		return f
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	floorAddr, floorWait, err := Serve(ctx, Floor())
	if err != nil {
		b.Fatal(err)
	}
	steerAddr, steerWait, err := Serve(ctx, w.Mux)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		cancel()
		if err := floorWait(); err != nil {
			b.Error(err)
		}
		if err := steerWait(); err != nil {
			b.Error(err)
		}
	}()
	// The floor gets the redirector's requests: the same bytes for wrk
	// to write and the server to parse.
	targets := []target{
		{"floor", "http://" + floorAddr, RedirectPath},
		{"302", "http://" + steerAddr, RedirectPath},
		{"steer", "http://" + steerAddr, SteerPath},
	}
	load := func(t target, d time.Duration, conns, delayMS int) Result {
		b.Helper()
		r, err := WRK(ctx, Load{URL: t.url, Script: script(t.path, delayMS), Duration: d, Connections: conns, Threads: 1})
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	// Warm all up (page faults, the runtime's heap, the pools), then
	// alternate so a noisy neighbour hits all alike.
	for _, t := range targets {
		load(t, 2*time.Second, 64, 0)
	}
	full := time.Duration(secs) * time.Second
	rps := make([][]float64, len(targets))
	failures := 0
	for i := range rounds {
		var rs [3]Result
		for j, t := range targets {
			rs[j] = load(t, full, 64, 0)
			rps[j] = append(rps[j], rs[j].RPS)
			failures += rs[j].Failures()
		}
		b.Logf("round %d: floor %.0f rps (failed %d), 302 %.0f rps (failed %d), steer %.0f rps (failed %d); ratios %.3f %.3f",
			i+1, rs[0].RPS, rs[0].Failures(), rs[1].RPS, rs[1].Failures(), rs[2].RPS, rs[2].Failures(), rs[1].RPS/rs[0].RPS, rs[2].RPS/rs[0].RPS)
	}
	fq, rq, sq := dnsbench.Median(rps[0]), dnsbench.Median(rps[1]), dnsbench.Median(rps[2])
	half := fq / 2
	conns, delayMS := HalfLoad(half)
	var hs [3]Result
	for j, t := range targets {
		hs[j] = load(t, full, conns, delayMS)
		failures += hs[j].Failures()
	}
	r302, rSteer := rq/fq, sq/fq
	b.ReportMetric(fq, "floor-rps")
	b.ReportMetric(rq, "302-rps")
	b.ReportMetric(sq, "steer-rps")
	b.ReportMetric(r302*100, "%floor-302")
	b.ReportMetric(rSteer*100, "%floor-steer")
	b.ReportMetric(float64(hs[1].P99.Microseconds()), "p99-µs@half-302")
	b.ReportMetric(float64(hs[2].P99.Microseconds()), "p99-µs@half-steer")
	b.ReportMetric(float64(failures), "failures")
	b.Logf("median of %d rounds of %ds: floor %.0f rps; 302 %.0f rps, %.1f%% of the floor; steering manifest %.0f rps, %.1f%% of the floor (goal >= 80%% each: %s)",
		rounds, secs, fq, rq, r302*100, sq, rSteer*100, dnsbench.Met(r302 >= 0.8 && rSteer >= 0.8))
	b.Logf("at %.0f rps (half the floor; %d connections pausing 0..%d ms): achieved floor %.0f, 302 %.0f, steer %.0f rps",
		half, conns, 2*delayMS, hs[0].RPS, hs[1].RPS, hs[2].RPS)
	b.Logf("  302:   p50 %v p90 %v p99 %v (goal p99 < 5ms: %s)", hs[1].P50, hs[1].P90, hs[1].P99, dnsbench.Met(hs[1].P99 < 5*time.Millisecond))
	b.Logf("  steer: p50 %v p90 %v p99 %v (goal p99 < 5ms: %s)", hs[2].P50, hs[2].P90, hs[2].P99, dnsbench.Met(hs[2].P99 < 5*time.Millisecond))
	b.Logf("  floor: p50 %v p90 %v p99 %v", hs[0].P50, hs[0].P90, hs[0].P99)
	b.Logf("failures (non-2xx/3xx or socket errors) in all runs: %d (goal 0: %s)", failures, dnsbench.Met(failures == 0))
	b.Logf("| %s | %.0f | %.0f | **%.1f %%** | %.0f | **%.1f %%** | %.0f | %v | %v | %v | %d |",
		time.Now().Format("2006-01-02"), fq, rq, r302*100, sq, rSteer*100, half,
		hs[1].P99.Round(time.Microsecond), hs[2].P99.Round(time.Microsecond), hs[0].P99.Round(time.Microsecond), failures)
}

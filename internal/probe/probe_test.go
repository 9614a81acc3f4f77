package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/steering"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is the Sink: it keeps every result and signals each one.
type recorder struct {
	mu   sync.Mutex
	got  []steering.ProbeResult
	each chan steering.ProbeResult // nil: no signal
}

func (r *recorder) ProbeResult(res steering.ProbeResult) {
	r.mu.Lock()
	r.got = append(r.got, res)
	r.mu.Unlock()
	if r.each != nil {
		r.each <- res
	}
}

func (r *recorder) results() []steering.ProbeResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]steering.ProbeResult(nil), r.got...)
}

func (r *recorder) byCDN() map[string][]steering.ProbeResult {
	out := map[string][]steering.ProbeResult{}
	for _, res := range r.results() {
		out[res.CDN] = append(out[res.CDN], res)
	}
	return out
}

// server starts a loopback HTTP server that the test stops.
func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// closedURL is the URL of a server that is no longer listening.
func closedURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

func newProber(t *testing.T, targets []Target, sink Sink, o Options) *Prober {
	t.Helper()
	p, err := New(targets, sink, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProbe sends one probe to real servers and checks the verdict.
func TestProbe(t *testing.T) {
	var redirected atomic.Bool
	target := server(t, func(http.ResponseWriter, *http.Request) { redirected.Store(true) })

	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc // nil: url is used
		url     string
		timeout time.Duration // 0: long enough for any healthy answer
		ok      bool
		detail  string
	}{
		{name: "healthy", handler: func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }, ok: true},
		{name: "no content", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }, ok: true},
		{
			// Only the first 4 KiB are read; the rest is not waited for.
			name: "large body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.(http.Flusher).Flush()
				io.WriteString(w, strings.Repeat("x", 2*maxBody))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
			ok: true,
		},
		{name: "503", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }, detail: "status 503"},
		{name: "404", handler: http.NotFound, detail: "status 404"},
		{
			name: "redirect not followed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL, http.StatusFound)
			},
			detail: "status 302",
		},
		{
			name:    "slow beyond timeout",
			handler: func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			timeout: 200 * time.Millisecond,
			detail:  "timeout after 200ms",
		},
		{
			name: "body stalls",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
			timeout: 200 * time.Millisecond,
			detail:  "body: timeout after 200ms",
		},
		{
			name: "connection dropped",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			},
			detail: "connection closed without a complete answer",
		},
		{name: "closed listener", url: closedURL(t), detail: "dial: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.url
			if tc.handler != nil {
				u = server(t, tc.handler).URL + "/health"
			}
			if tc.timeout == 0 {
				tc.timeout = 10 * time.Second
			}
			reg := prometheus.NewPedanticRegistry()
			p := newProber(t, []Target{{CDN: "cdn-a", URL: u}}, &recorder{}, Options{
				Interval: tc.timeout, Timeout: tc.timeout, Registerer: reg,
				Now: func() time.Time { return time.Unix(1700000000, 0) },
			})
			r, done := p.probe(t.Context(), p.targets[0])
			if !done {
				t.Fatal("probe reported a cancelled context")
			}
			want := steering.ProbeResult{CDN: "cdn-a", At: time.Unix(1700000000, 0), OK: tc.ok, Detail: tc.detail}
			if r != want {
				t.Fatalf("got %+v, want %+v", r, want)
			}
			result := map[bool]string{true: "ok", false: "fail"}[tc.ok]
			if n := sample(t, reg, "cdnpilot_probe_results_total", "cdn", "cdn-a", "result", result); n != 1 {
				t.Errorf("cdnpilot_probe_results_total{result=%q} = %v, want 1", result, n)
			}
			if n := sample(t, reg, "cdnpilot_probe_duration_seconds", "cdn", "cdn-a"); n != 1 {
				t.Errorf("%v probes in cdnpilot_probe_duration_seconds, want 1", n)
			}
		})
	}
	if redirected.Load() {
		t.Error("the redirect was followed")
	}
}

// TestRunRealServers runs the prober against real servers until every
// CDN has reported a few times, then stops it.
func TestRunRealServers(t *testing.T) {
	healthy := server(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	down := server(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	slow := server(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	want := map[string]steering.ProbeResult{
		"healthy": {CDN: "healthy", OK: true},
		"down":    {CDN: "down", Detail: "status 503"},
		"slow":    {CDN: "slow", Detail: "timeout after 500ms"},
		"gone":    {CDN: "gone", Detail: "dial: connection refused"},
	}
	targets := []Target{
		{CDN: "healthy", URL: healthy.URL}, {CDN: "down", URL: down.URL},
		{CDN: "slow", URL: slow.URL}, {CDN: "gone", URL: closedURL(t)},
	}
	rec := &recorder{each: make(chan steering.ProbeResult)}
	reg := prometheus.NewPedanticRegistry()
	p := newProber(t, targets, rec, Options{Interval: 500 * time.Millisecond, Timeout: 500 * time.Millisecond, Registerer: reg})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	const rounds = 2
	count := map[string]int{}
	for enough := 0; enough < len(targets); {
		var r steering.ProbeResult
		select {
		case r = <-rec.each:
		case <-time.After(10 * time.Second):
			t.Fatalf("results so far: %v", count)
		}
		if r.At.IsZero() {
			t.Errorf("%s: result without a time", r.CDN)
		}
		r.At = time.Time{}
		if r != want[r.CDN] {
			t.Errorf("got %+v, want %+v", r, want[r.CDN])
		}
		if count[r.CDN]++; count[r.CDN] == rounds {
			enough++
		}
	}
	cancel()
	// Drain results of probes that finished as Run was stopping.
	for {
		select {
		case <-rec.each:
			continue
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		}
		break
	}

	for cdn, healthy := range map[string]bool{"healthy": true, "down": false, "slow": false, "gone": false} {
		oks := sample(t, reg, "cdnpilot_probe_results_total", "cdn", cdn, "result", "ok")
		fails := sample(t, reg, "cdnpilot_probe_results_total", "cdn", cdn, "result", "fail")
		if oks+fails < rounds || healthy != (fails == 0) || healthy == (oks == 0) {
			t.Errorf("%s: %v ok, %v fail", cdn, oks, fails)
		}
		if n := sample(t, reg, "cdnpilot_probe_duration_seconds", "cdn", cdn); n != oks+fails {
			t.Errorf("%s: %v durations for %v results", cdn, n, oks+fails)
		}
	}
}

// sample reads a counter's value or a histogram's count from the
// registry, as a scrape would.
func sample(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s%v not registered", name, labels)
	return 0
}

// fakeTransport answers in memory so the schedule can be tested on
// synctest's clock (a bubble cannot wait on real network I/O).
type fakeTransport struct {
	started chan string // nil: no signal
	// answer returns the status for a request, or blocks (hang).
	answer func(*http.Request) int
}

func (f *fakeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if f.started != nil {
		f.started <- req.URL.Host
	}
	status := f.answer(req)
	if status == 0 {
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Request: req,
		Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")),
	}, nil
}

func TestScheduleSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		client := &http.Client{Transport: &fakeTransport{answer: func(*http.Request) int { return http.StatusOK }}}
		targets := []Target{
			{CDN: "a", URL: "http://a.example/health"},
			{CDN: "b", URL: "http://b.example/health"},
			{CDN: "c", URL: "http://c.example/health"},
		}
		p := newProber(t, targets, rec, Options{Interval: 5 * time.Second, Timeout: 2 * time.Second, Client: client})
		start := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- p.Run(ctx) }()

		time.Sleep(60 * time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		firsts := map[time.Time]bool{}
		for cdn, rs := range rec.byCDN() {
			if len(rs) < 12 || len(rs) > 13 {
				t.Errorf("%s: %d probes in 60s at a 5s interval", cdn, len(rs))
			}
			if d := rs[0].At.Sub(start); d < 0 || d >= 5*time.Second {
				t.Errorf("%s: first probe after %v, want within the first interval", cdn, d)
			}
			firsts[rs[0].At] = true
			for i := 1; i < len(rs); i++ {
				if d := rs[i].At.Sub(rs[i-1].At); d != 5*time.Second {
					t.Errorf("%s: probes %d and %d are %v apart", cdn, i-1, i, d)
				}
				if !rs[i].OK {
					t.Errorf("%s: %+v", cdn, rs[i])
				}
			}
		}
		if len(rec.byCDN()) != len(targets) {
			t.Errorf("results for %d CDNs, want %d", len(rec.byCDN()), len(targets))
		}
		if len(firsts) == 1 {
			t.Error("every target was first probed at the same instant: no jitter")
		}
	})
}

func TestTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := &http.Client{Transport: &fakeTransport{answer: func(*http.Request) int { return 0 }}}
		p := newProber(t, []Target{{CDN: "a", URL: "http://a.example/"}}, &recorder{},
			Options{Interval: 5 * time.Second, Timeout: 2 * time.Second, Client: client})
		start := time.Now()
		r, done := p.probe(t.Context(), p.targets[0])
		if !done || r.OK || r.Detail != "timeout after 2s" {
			t.Fatalf("got %+v (done %v)", r, done)
		}
		if d := r.At.Sub(start); d != 2*time.Second {
			t.Fatalf("the timeout took %v", d)
		}
	})
}

// TestStopMidProbe: a probe cut short by shutdown says nothing about the
// CDN, so it is not reported, and Run returns at once.
func TestStopMidProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan string)
		client := &http.Client{Transport: &fakeTransport{started: started, answer: func(*http.Request) int { return 0 }}}
		rec := &recorder{}
		p := newProber(t, []Target{{CDN: "a", URL: "http://a.example/"}}, rec,
			Options{Interval: 5 * time.Second, Timeout: 2 * time.Second, Client: client})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- p.Run(ctx) }()
		<-started
		stoppedAt := time.Now()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if time.Since(stoppedAt) != 0 {
			t.Errorf("Run took %v to stop", time.Since(stoppedAt))
		}
		if got := rec.results(); len(got) != 0 {
			t.Errorf("reported %+v", got)
		}
	})
}

func TestRunWithoutTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newProber(t, nil, &recorder{}, Options{Interval: time.Second, Timeout: time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Run returned before ctx was done")
		default:
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestInjectedClientIsNotChanged(t *testing.T) {
	client := &http.Client{}
	p := newProber(t, []Target{{CDN: "a", URL: "http://a.example/"}}, &recorder{},
		Options{Interval: time.Second, Timeout: time.Second, Client: client})
	if client.CheckRedirect != nil {
		t.Error("New set CheckRedirect on the caller's client")
	}
	if p.client.CheckRedirect == nil {
		t.Error("the prober's client follows redirects")
	}
}

func TestNewRejects(t *testing.T) {
	ok := Options{Interval: 5 * time.Second, Timeout: 2 * time.Second}
	good := []Target{{CDN: "a", URL: "https://a.example/health"}}
	for _, tc := range []struct {
		name    string
		targets []Target
		sink    Sink
		o       Options
		want    string
	}{
		{"no sink", good, nil, ok, "no sink"},
		{"no interval", good, &recorder{}, Options{Timeout: time.Second}, "interval 0s"},
		{"no timeout", good, &recorder{}, Options{Interval: time.Second}, "timeout 0s"},
		{"timeout over interval", good, &recorder{}, Options{Interval: time.Second, Timeout: 2 * time.Second}, "at most the interval"},
		{"no cdn", []Target{{URL: "http://a.example/"}}, &recorder{}, ok, "targets[0]: no cdn"},
		{"repeated cdn", append(good, good[0]), &recorder{}, ok, `targets[1]: cdn "a" is repeated`},
		{"relative url", []Target{{CDN: "a", URL: "/health"}}, &recorder{}, ok, `"/health" is not an absolute http(s) URL`},
		{"ftp url", []Target{{CDN: "a", URL: "ftp://a.example/"}}, &recorder{}, ok, "not an absolute http(s) URL"},
		{"bad url", []Target{{CDN: "a", URL: "http://a b/"}}, &recorder{}, ok, "not an absolute http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.targets, tc.sink, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNewRegistersOnce(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	o := Options{Interval: time.Second, Timeout: time.Second, Registerer: reg}
	targets := []Target{{CDN: "a", URL: "http://a.example/"}}
	newProber(t, targets, &recorder{}, o)
	if _, err := New(targets, &recorder{}, o); err == nil {
		t.Fatal("a second prober registered the same metrics")
	}
	// The failed New left the first prober's metrics alone: a ok, a fail,
	// and a's duration histogram.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	if n != 3 {
		t.Fatalf("%d series, want 3", n)
	}
}

func TestDescribe(t *testing.T) {
	p := &Prober{o: Options{Timeout: 1500 * time.Millisecond}}
	wrap := func(err error) error { return &url.Error{Op: "Get", URL: "http://a.example/", Err: err} }
	for _, tc := range []struct {
		err  error
		want string
	}{
		{wrap(context.DeadlineExceeded), "timeout after 1.5s"},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "dial: connection refused"},
		{wrap(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), "read: connection reset by peer"},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "a.example", IsNotFound: true}}), "dns: no such host"},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("network is down")}), "dial: network is down"},
		{wrap(io.EOF), "connection closed without a complete answer"},
		{wrap(errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority")), "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{fmt.Errorf("other"), "other"},
	} {
		if got := p.describe(tc.err); got != tc.want {
			t.Errorf("describe(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestRound probes every target once, in one call, with the clock of
// Options.Now: what the simulator's virtual time drives.
func TestRound(t *testing.T) {
	ok := server(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	bad := server(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	rec := &recorder{}
	p := newProber(t, []Target{{CDN: "a", URL: ok.URL}, {CDN: "b", URL: bad.URL}}, rec,
		Options{Interval: time.Second, Timeout: time.Second, Now: func() time.Time { return at }})
	for range 2 {
		p.Round(t.Context())
	}
	got := rec.byCDN()
	if len(got["a"]) != 2 || len(got["b"]) != 2 {
		t.Fatalf("results %v, want two per CDN", got)
	}
	for _, r := range got["a"] {
		if !r.OK || !r.At.Equal(at) {
			t.Errorf("a: %+v, want ok at %v", r, at)
		}
	}
	for _, r := range got["b"] {
		if r.OK || r.Detail != "status 503" {
			t.Errorf("b: %+v, want failed with status 503", r)
		}
	}
}

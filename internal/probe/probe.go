// Package probe sends active HTTP health probes to each CDN's health URL
// and reports every result; the engine applies the fall/rise thresholds.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/steering"
)

// Sink takes probe results (the scorer hands them to steering.Engine).
// Results of one CDN arrive in order, one at a time; results of different
// CDNs arrive concurrently.
type Sink interface {
	ProbeResult(r steering.ProbeResult)
}

// Target is one CDN's health URL.
type Target struct {
	CDN, URL string
}

// Options configure a Prober.
type Options struct {
	// Interval is the time between two probes of one target.
	Interval time.Duration
	// Timeout bounds one probe: connecting, the answer and reading the
	// body. At most Interval, so probes of one target never overlap.
	Timeout time.Duration
	// Client sends the probes; nil means a client that ignores HTTP_PROXY
	// and opens a new connection per probe, as a new viewer would.
	// Redirects are never followed, whichever client is used.
	Client     *http.Client
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now stamps the results (steering.ProbeResult.At); nil means time.Now.
	Now func() time.Time
}

// maxBody is how much of an answer is read before the connection is
// closed: enough to drain a health page, not a video segment.
const maxBody = 4 << 10

// Prober probes every target on its own ticker.
type Prober struct {
	targets []Target
	sink    Sink
	o       Options
	client  *http.Client
	own     *http.Transport // the default client's, closed when Run returns
	log     *slog.Logger

	results  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New checks the targets and options and registers the metrics.
func New(targets []Target, sink Sink, o Options) (*Prober, error) {
	if sink == nil {
		return nil, errors.New("probe: no sink")
	}
	if o.Interval <= 0 {
		return nil, fmt.Errorf("probe: interval %v is not positive", o.Interval)
	}
	if o.Timeout <= 0 || o.Timeout > o.Interval {
		return nil, fmt.Errorf("probe: timeout %v must be positive and at most the interval (%v)", o.Timeout, o.Interval)
	}
	seen := make(map[string]bool, len(targets))
	for i, t := range targets {
		switch {
		case t.CDN == "":
			return nil, fmt.Errorf("probe: targets[%d]: no cdn", i)
		case seen[t.CDN]:
			// Two URLs would interleave in one CDN's fall/rise counts.
			return nil, fmt.Errorf("probe: targets[%d]: cdn %q is repeated", i, t.CDN)
		}
		seen[t.CDN] = true
		u, err := url.Parse(t.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("probe: cdn %q: %q is not an absolute http(s) URL", t.CDN, t.URL)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Prober{
		targets: append([]Target(nil), targets...),
		sink:    sink,
		o:       o,
		log:     o.Logger.With("component", "probe"),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdnpilot_probe_results_total",
			Help: "Active health probes by CDN and result (ok: a 2xx answer within the timeout).",
		}, []string{"cdn", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cdnpilot_probe_duration_seconds",
			Help:    "Time of one active health probe, failed ones included.",
			Buckets: prometheus.DefBuckets,
		}, []string{"cdn"}),
	}
	if o.Client != nil {
		c := *o.Client
		p.client = &c
	} else {
		p.own = &http.Transport{
			DialContext:            (&net.Dialer{Timeout: o.Timeout}).DialContext,
			TLSHandshakeTimeout:    o.Timeout,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		}
		p.client = &http.Client{Transport: p.own}
	}
	p.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, t := range p.targets {
		// Zero series from the start, so rates and alerts see every CDN.
		p.results.WithLabelValues(t.CDN, "ok")
		p.results.WithLabelValues(t.CDN, "fail")
		p.duration.WithLabelValues(t.CDN)
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(p.results); err != nil {
			return nil, fmt.Errorf("probe: register metrics: %w", err)
		}
		if err := o.Registerer.Register(p.duration); err != nil {
			o.Registerer.Unregister(p.results)
			return nil, fmt.Errorf("probe: register metrics: %w", err)
		}
	}
	return p, nil
}

// Run probes until ctx is done. Every goroutine it starts has exited when
// it returns. Call it once.
func (p *Prober) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range p.targets {
		wg.Go(func() { p.loop(ctx, t) })
	}
	<-ctx.Done()
	wg.Wait()
	if p.own != nil {
		p.own.CloseIdleConnections()
	}
	return nil
}

// Round probes every target once, at the same time, and returns when
// each result has gone to the sink: for a driver on a clock of its own
// (the simulator's virtual time), in place of Run.
func (p *Prober) Round(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range p.targets {
		wg.Go(func() {
			if r, ok := p.probe(ctx, t); ok {
				p.sink.ProbeResult(r)
			}
		})
	}
	wg.Wait()
}

// loop probes one target every interval.
func (p *Prober) loop(ctx context.Context, t Target) {
	// A random first delay spreads the targets over the interval so their
	// probes do not go out, and land in the engine, together.
	first := time.NewTimer(rand.N(p.o.Interval))
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	tick := time.NewTicker(p.o.Interval)
	defer tick.Stop()
	var known, lastOK bool
	for {
		r, ok := p.probe(ctx, t)
		if !ok {
			return // cancelled mid-probe: that says nothing about the CDN
		}
		p.sink.ProbeResult(r)
		if !known || r.OK != lastOK {
			// Changes only; the metrics count every result.
			p.log.Debug("probe result changed", "cdn", t.CDN, "url", t.URL, "ok", r.OK, "detail", r.Detail)
			known, lastOK = true, r.OK
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe sends one GET and says how it went; ok is false when ctx ended
// first.
func (p *Prober) probe(ctx context.Context, t Target) (r steering.ProbeResult, ok bool) {
	start := time.Now()
	healthy, detail := p.get(ctx, t.URL)
	if ctx.Err() != nil {
		return steering.ProbeResult{}, false
	}
	p.duration.WithLabelValues(t.CDN).Observe(time.Since(start).Seconds())
	result := "ok"
	if !healthy {
		result = "fail"
	}
	p.results.WithLabelValues(t.CDN, result).Inc()
	return steering.ProbeResult{CDN: t.CDN, At: p.o.Now(), OK: healthy, Detail: detail}, true
}

// get is healthy on a 2xx answer whose head and first maxBody bytes
// arrive within the timeout; detail says why not.
func (p *Prober) get(ctx context.Context, target string) (healthy bool, detail string) {
	ctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return false, "request: " + err.Error()
	}
	req.Header.Set("User-Agent", "cdnpilot-probe")
	resp, err := p.client.Do(req)
	if err != nil {
		return false, p.describe(err)
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, "status " + strconv.Itoa(resp.StatusCode)
	}
	if err != nil {
		return false, "body: " + p.describe(err)
	}
	return true, ""
}

// describe turns a client error into a short reason without the URL,
// which the result's CDN already implies.
func (p *Prober) describe(err error) string {
	var (
		ne    net.Error
		dns   *net.DNSError
		op    *net.OpError
		errno syscall.Errno
		ue    *url.Error
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout after " + p.o.Timeout.String()
	case errors.As(err, &dns):
		return "dns: " + dns.Err
	case errors.As(err, &op) && errors.As(op.Err, &errno):
		return op.Op + ": " + errno.Error()
	case errors.As(err, &op):
		return op.Op + ": " + op.Err.Error()
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without a complete answer"
	case errors.As(err, &ue):
		return ue.Err.Error()
	}
	return err.Error()
}

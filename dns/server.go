package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sync/errgroup"

	"github.com/cdnpilot/cdnpilot/steering"
)

// Server is the steering DNS server: the handler chain, and its UDP and
// TCP listeners on one port once Listen has bound them.
type Server struct {
	chain Handler
	log   *slog.Logger
	m     *metrics
	logs  *logStep // nil without a decision log
	to    DecisionLogger

	// requests are reused: a Request holds the reply's buffers, and
	// nothing of it outlives the query (the decision log gets copies).
	requests sync.Pool

	udp net.PacketConn
	tcp net.Listener
}

var _ mdns.Handler = (*Server)(nil)

// New builds the handler chain. It binds nothing: Listen does.
func New(o Options) (*Server, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("dns server: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m, err := newMetrics(o.Registerer, o.Catalog)
	if err != nil {
		return nil, err
	}
	s := &Server{log: o.Logger.With("component", "dns"), m: m}
	s.requests.New = func() any { return &Request{buf: make([]byte, 0, 1024)} }

	// Built from the last step to the first: each wraps the next.
	st, err := newSteer(&o)
	if err != nil {
		return nil, fmt.Errorf("dns server: %w", err)
	}
	fb := newStaticFallback(st, o.Catalog, m.fallbacks)
	st.next = fb
	var h Handler = &clientInfo{next: st, geo: o.Geo}
	if o.DecisionLog != nil && o.LogSample > 0 {
		s.logs = &logStep{next: h, sample: o.LogSample, queue: make(chan steering.DecisionRecord, decisionBuffer), dropped: m.logDropped, now: o.Now}
		s.to = o.DecisionLog
		h = s.logs
	}
	h = &metricsStep{next: h, m: m}
	if o.RateLimit.PerSecond > 0 {
		h = newRateLimit(h, o.RateLimit, o.Now, m)
	}
	s.chain = &recoverStep{next: h, fallback: fb, log: s.log, m: m}
	return s, nil
}

// ServeDNS runs one query through the chain and writes the error reply
// for an error rcode a step returned without writing.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	if r.Response {
		return // answering a response invites reflection loops
	}
	growStack(0)
	q := s.requests.Get().(*Request)
	q.reset(w, time.Now()) // the monotonic clock, for latencies
	s.serve(q, w, r)
	s.requests.Put(q)
}

func (s *Server) serve(q *Request, w mdns.ResponseWriter, r *mdns.Msg) {
	rc, err := s.chain.ServeDNS(q, w, r)
	if err != nil || !ClientWrite(rc) && !q.written {
		s.finish(q, w, r, rc, err)
	}
}

// finish writes the error reply a step asked for, and logs what failed.
//
//go:noinline
func (s *Server) finish(q *Request, w mdns.ResponseWriter, r *mdns.Msg, rc int, err error) {
	if !ClientWrite(rc) && !q.written {
		if werr := q.writeError(w, r, rc); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if err != nil {
		s.log.Debug("answering a query", "client", q.Client, "err", err)
	}
}

// growStack makes sure the goroutine's stack has room for the chain
// before the chain runs. miekg runs every TCP connection (and ran every
// UDP query, before udp.go) on a new goroutine, which starts with the
// runtime's smallest stack, and growing it in the middle of the chain
// copies and re-walks every frame under it: before the chain's frames
// were trimmed and this was added, that was a fifth of the server's CPU
// under dnsperf. Grown here, a few frames deep, it costs little; usually
// unpacking has grown it already and this costs a 2 KiB clear
// (CockroachDB's growstack does the same). The UDP readers keep their
// grown stacks from query to query.
//
//go:noinline
func growStack(i int) byte {
	var buf [growStackBytes]byte
	return buf[i&(len(buf)-1)]
}

// growStackBytes: the chain needs about 2.7 KiB below ServeDNS (the
// table's lookup is the deepest part), which a 4 KiB stack holds; this
// much free at the top makes the stack at least that. Under dnsperf the
// only growth left is miekg's own, while unpacking the query (profiled).
const growStackBytes = 2 << 10

// accept ignores responses and lets everything else through to the
// chain, which answers FORMERR or NOTIMP itself, so those are counted.
func accept(dh mdns.Header) mdns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // QR
		return mdns.MsgIgnore
	}
	return mdns.MsgAccept
}

// Listen binds UDP and TCP on one address; with port 0 both get the same
// free port.
func (s *Server) Listen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dns listen %s: %w", addr, err)
	}
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("dns listen udp %s: %w", addr, err)
		}
		p := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, p))
		if err == nil {
			s.udp, s.tcp = pc, ln
			return nil
		}
		_ = pc.Close()
		// A free UDP port can be a busy TCP one: pick again.
		if port != "0" || try == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("dns listen tcp %s: %w", net.JoinHostPort(host, p), err)
		}
	}
}

// Addr is the bound address (UDP and TCP), "" before Listen.
func (s *Server) Addr() string {
	if s.udp == nil {
		return ""
	}
	return s.udp.LocalAddr().String()
}

// Close releases the listeners of a server that will not Run.
func (s *Server) Close() error {
	var errs []error
	if s.udp != nil {
		errs = append(errs, s.udp.Close())
	}
	if s.tcp != nil {
		errs = append(errs, s.tcp.Close())
	}
	return errors.Join(errs...)
}

// Run serves UDP (udp.go) and TCP (miekg's server) until ctx is done,
// then shuts both down (in-flight queries finish) and hands the decision
// log what is still queued.
func (s *Server) Run(ctx context.Context) error {
	if s.udp == nil {
		return errors.New("dns server: Run before Listen")
	}
	udp, ok := s.udp.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("dns server: a %T is not a UDP socket", s.udp)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.serveUDP(gctx, udp) })
	srv := &mdns.Server{
		Listener: s.tcp, Net: "tcp", Handler: s,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		MsgAcceptFunc:  accept,
		MsgInvalidFunc: func([]byte, error) { s.m.malformed.Inc() },
	}
	g.Go(func() error { return serve(gctx, srv) })
	if s.logs != nil {
		g.Go(func() error {
			s.logs.drain(gctx, s.to)
			return nil
		})
	}
	s.log.Info("serving dns", "addr", s.Addr())
	return g.Wait()
}

// serve runs one miekg server until ctx is done.
func serve(ctx context.Context, srv *mdns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case err := <-done:
		return fmt.Errorf("dns %s server: %w", srv.Net, err)
	case <-started:
	}
	select {
	case err := <-done:
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("dns %s server: %w", srv.Net, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.ShutdownContext(sctx)
	if serr := <-done; err == nil && serr != nil && !errors.Is(serr, net.ErrClosed) {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("dns %s shutdown: %w", srv.Net, err)
	}
	return nil
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// CDN is a stand-in for one CDN: it serves a media directory over HTTP on
// a loopback address with CORS, through one shared throttled link, records every
// request, and can be killed like a failed edge.
type CDN struct {
	Name string

	ln   net.Listener
	srv  *http.Server
	link *link
	done chan error

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	reqs   []Request
	killed bool
	dead   chan struct{} // closed by Kill: aborts throttled writes
}

// Request is one request a CDN received. Status and Bytes are filled in
// when the answer is finished (or aborted).
type Request struct {
	Path   string
	Query  string
	At     time.Time
	Status int
	Bytes  int64
	Done   bool
}

// StartCDN serves dir as the CDN name. bitsPerSecond caps the total rate
// across all connections (0: unthrottled): players turn download times
// into bandwidth estimates, and on loopback those are meaningless.
func StartCDN(name, dir string, bitsPerSecond int64) (*CDN, error) {
	return StartCDNOn(name, dir, bitsPerSecond, "127.0.0.1:0")
}

// StartCDNOn is StartCDN on a given address: another loopback address
// (127.0.0.3) with a port in use on 127.0.0.1 is a CDN on another host
// name with the same port, which is what a content steering clone needs.
func StartCDNOn(name, dir string, bitsPerSecond int64, addr string) (*CDN, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cdn %s: listen: %w", name, err)
	}
	c := &CDN{
		Name: name, ln: ln, done: make(chan error, 1),
		conns: map[net.Conn]struct{}{}, dead: make(chan struct{}),
	}
	if bitsPerSecond > 0 {
		c.link = &link{bytesPerSec: float64(bitsPerSecond) / 8}
	}
	files := http.FileServer(http.Dir(dir))
	c.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.serve(files, w, r) }),
		ReadHeaderTimeout: 5 * time.Second,
		ConnState:         c.track,
	}
	go func() { c.done <- c.srv.Serve(ln) }()
	return c, nil
}

// URL is the CDN's base URL, ending in "/".
func (c *CDN) URL() string { return "http://" + c.ln.Addr().String() + "/" }

// Addr is the listening address.
func (c *CDN) Addr() string { return c.ln.Addr().String() }

func (c *CDN) track(conn net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		if c.killed {
			// Accepted in the instant before Kill closed the listener.
			_ = conn.Close()
			return
		}
		c.conns[conn] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(c.conns, conn)
	}
}

func (c *CDN) serve(files http.Handler, w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, Date, Age")
	h.Set("Timing-Allow-Origin", "*")
	// Every fetch must reach the log: the test reads it to tell which CDN
	// served which segment.
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Range, CMCD-Object, CMCD-Request, CMCD-Session, CMCD-Status")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	c.mu.Lock()
	i := len(c.reqs)
	c.reqs = append(c.reqs, Request{Path: r.URL.Path, Query: r.URL.RawQuery, At: time.Now()})
	c.mu.Unlock()
	rec := &recorder{ResponseWriter: w, cdn: c, status: http.StatusOK}
	files.ServeHTTP(rec, r)
	c.mu.Lock()
	c.reqs[i].Status, c.reqs[i].Bytes, c.reqs[i].Done = rec.status, rec.n, true
	c.mu.Unlock()
}

// Requests returns a copy of the request log.
func (c *CDN) Requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.reqs...)
}

// Segments returns the paths of media segment requests (not playlists,
// manifests or init segments), in arrival order.
func (c *CDN) Segments() []string {
	var out []string
	for _, r := range c.Requests() {
		if strings.HasPrefix(r.Path, "/seg-") {
			out = append(out, r.Path)
		}
	}
	return out
}

// Kill makes the CDN vanish: the listener closes, so new connections are
// refused, and every open connection is cut, mid-response included.
func (c *CDN) Kill() {
	c.mu.Lock()
	if c.killed {
		c.mu.Unlock()
		return
	}
	c.killed = true
	close(c.dead)
	_ = c.ln.Close()
	for conn := range c.conns {
		_ = conn.Close()
	}
	c.mu.Unlock()
}

// Close kills the CDN (if it still lives) and waits for its server to stop.
func (c *CDN) Close() error {
	c.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if errors.Is(err, net.ErrClosed) {
		// Kill closed the listener already: Shutdown closes it again
		// when it runs before Serve has seen it fail.
		err = nil
	}
	if serr := <-c.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && !errors.Is(serr, net.ErrClosed) {
		err = errors.Join(err, serr)
	}
	c.done <- http.ErrServerClosed // Close is idempotent
	if err != nil {
		return fmt.Errorf("cdn %s: close: %w", c.Name, err)
	}
	return nil
}

// recorder counts what is written and throttles it through the CDN's link.
type recorder struct {
	http.ResponseWriter
	cdn    *CDN
	status int
	n      int64
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// chunk is the throttle's grain: at 4 Mbit/s, 8 KiB takes 16 ms, so
// players see a smooth rate and not bursts.
const chunk = 8 << 10

func (r *recorder) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), chunk)
		if l := r.cdn.link; l != nil {
			if err := l.wait(n, r.cdn.dead); err != nil {
				return written, err
			}
		}
		m, err := r.ResponseWriter.Write(p[:n])
		written += m
		r.n += int64(m)
		if err != nil {
			return written, err
		}
		if f, ok := r.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[n:]
	}
	return written, nil
}

// errKilled is what a throttled write returns once the CDN is killed.
var errKilled = errors.New("cdn killed")

// link is a shared pipe of fixed capacity: every byte written by any
// connection books the next free slot on one virtual timeline.
type link struct {
	bytesPerSec float64
	mu          sync.Mutex
	next        time.Time
}

func (l *link) wait(n int, dead <-chan struct{}) error {
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.bytesPerSec * float64(time.Second)))
	until := l.next
	l.mu.Unlock()
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-dead:
		return errKilled
	}
}

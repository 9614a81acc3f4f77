// Package httpbench measures the HTTP steering server (the 302 redirector
// and the content steering manifest) against the floor of net/http on the
// same machine: a bare handler that writes one fixed 302. `make
// bench-http` drives all three with wrk over loopback (BenchmarkHTTPPerf);
// the world it steers in has 300 regions.
package httpbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

// FloorLocation is where the floor sends every request.
const FloorLocation = "https://cdn-a.example.net/movies/1/master.m3u8"

// Floor sets Location and writes 302, nothing else: no lookup, no
// decision, no CORS or cookie. What it costs is what net/http itself
// costs (read, parse, route to one handler, write), the most any server
// on it can do.
func Floor() http.HandlerFunc {
	loc := []string{FloorLocation}
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Location"] = loc
		w.WriteHeader(http.StatusFound)
	}
}

// Serve serves h on a free TCP port of 127.0.0.1 until ctx is done, with
// the server settings `cdnpilot steer` uses (internal/app); the returned
// func waits for the server to stop.
func Serve(ctx context.Context, h http.Handler) (string, func() error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	stopped := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		stopped <- err
	}()
	return ln.Addr().String(), func() error { return <-stopped }, nil
}

package e2e

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestCDNServesWithCORSAndLogs(t *testing.T) {
	dir := t.TempDir()
	body := bytes.Repeat([]byte("x"), 1000)
	if err := os.WriteFile(filepath.Join(dir, "seg-0-00001.m4s"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := StartCDN("cdn-a", dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/seg-0-00001.m4s", http.StatusOK},
		{http.MethodGet, "/missing.m4s", http.StatusNotFound},
		{http.MethodOptions, "/seg-0-00001.m4s", http.StatusNoContent},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), tc.method, c.URL()+tc.path[1:], nil)
		req.Header.Set("Origin", "http://player.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s %s: no CORS header", tc.method, tc.path)
		}
		if tc.status == http.StatusOK && !bytes.Equal(got, body) {
			t.Errorf("%s %s: body %d bytes", tc.method, tc.path, len(got))
		}
	}
	reqs := c.Requests()
	if len(reqs) != 2 || reqs[0].Path != "/seg-0-00001.m4s" || reqs[0].Status != 200 || reqs[0].Bytes != 1000 ||
		reqs[1].Status != 404 {
		t.Errorf("request log %+v (preflights are not logged)", reqs)
	}
	if segs := c.Segments(); len(segs) != 1 {
		t.Errorf("Segments() = %v", segs)
	}
}

// TestCDNThrottle: 64 KiB through a 1 Mbit/s link takes about half a
// second, split across two parallel downloads or not.
func TestCDNThrottle(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 32<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := StartCDN("cdn-a", dir, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			resp, err := http.Get(c.URL() + "f")
			if err != nil {
				errs <- err
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// 2 × 32 KiB × 8 bit / 1 Mbit/s = 0.52 s.
	if el := time.Since(start); el < 450*time.Millisecond || el > 3*time.Second {
		t.Errorf("64 KiB at 1 Mbit/s took %v, want about 0.52 s", el)
	}
}

// TestCDNKill: after Kill an in-flight download is cut and a new dial is
// refused, like an edge that went away.
func TestCDNKill(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := StartCDN("cdn-b", dir, 1_000_000) // 1 MiB takes ~8 s
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := http.Get(c.URL() + "big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	c.Kill()
	cut := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		cut <- err
	}()
	select {
	case err := <-cut:
		if err == nil {
			t.Error("download finished after Kill, want it cut")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("download still running 5 s after Kill")
	}
	conn, err := net.DialTimeout("tcp", c.Addr(), time.Second)
	if err == nil {
		conn.Close()
		t.Fatal("dial after Kill succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Kill: %v, want connection refused", err)
	}
	c.Kill() // idempotent
}

// Package dnsbench measures the steering DNS server against the floor of
// miekg/dns on the same machine: a bare server that answers every query
// with one fixed record. `make bench-dns` drives both with dnsperf over
// loopback (BenchmarkDNSPerf); the world it steers in has 300 regions.
package dnsbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	mdns "github.com/miekg/dns"
)

// Floor answers every query with the same CNAME and nothing else: no
// EDNS, no lookup, no decision, on miekg's own server. What it costs is
// what miekg/dns itself costs (read, unpack, pack, write): the most a
// server can do on miekg's serving loop. The steering server reads UDP
// with its own loop (dns/udp.go), so it can do more.
type Floor struct {
	rr mdns.RR
}

// NewFloor is the floor server's handler.
func NewFloor() *Floor {
	return &Floor{rr: &mdns.CNAME{
		Hdr:    mdns.RR_Header{Name: "vod.demo.cdnpilot.test.", Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: 30},
		Target: "cdn-a.example.net.",
	}}
}

// ServeDNS writes the fixed record (shared between goroutines: packing
// only reads it).
func (f *Floor) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Answer = []mdns.RR{f.rr}
	_ = w.WriteMsg(m)
}

// ServeUDP serves h with miekg's server on a free UDP port of 127.0.0.1
// until ctx is done, with the settings the steering server had on it
// (and has for TCP); the returned func waits for the server to stop.
func ServeUDP(ctx context.Context, h mdns.Handler) (string, func() error, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	started := make(chan struct{})
	srv := &mdns.Server{
		PacketConn: pc, Handler: h, UDPSize: 4096, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		NotifyStartedFunc: func() { close(started) },
	}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case err := <-done:
		return "", nil, fmt.Errorf("floor server: %w", err)
	case <-started:
	}
	stopped := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.ShutdownContext(sctx)
		stopped <- errors.Join(err, <-done)
	}()
	return pc.LocalAddr().String(), func() error { return <-stopped }, nil
}

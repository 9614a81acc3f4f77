package dns

import (
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/dns/dnstest"
)

// packWriter packs the reply as the server does and throws it away.
type packWriter struct {
	dnstest.Recorder
	buf []byte
}

func (w *packWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.PackBuffer(w.buf)
	w.buf = b[:0]
	return err
}

func (w *packWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkServeDNS is the chain's cost per query, reply packed, without
// the sockets: a steered name with ECS (the hot path), the same from the
// floor's handler for comparison, and an NXDOMAIN.
func BenchmarkServeDNS(b *testing.B) {
	s := testServer(b, func(o *Options) {
		o.TTLJitter = 0.1
		o.DecisionLog = &logSink{}
		o.LogSample = 0.01
	})
	w := &packWriter{Recorder: dnstest.Recorder{Remote: netip.MustParseAddrPort("192.0.2.53:5300")}, buf: make([]byte, 0, 4096)}
	w.RemoteAddr()
	unpacked := func(m *mdns.Msg) *mdns.Msg {
		wire, err := m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		r := new(mdns.Msg)
		if err := r.Unpack(wire); err != nil {
			b.Fatal(err)
		}
		return r
	}
	steered := unpacked(dnstest.ECS(dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA), netip.MustParsePrefix("100.64.1.0/24")))
	b.Run("steered-ecs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.ServeDNS(w, steered)
		}
	})
	fixed := &mdns.CNAME{Hdr: mdns.RR_Header{Name: "vod.demo.cdnpilot.test.", Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: 30}, Target: "cdn-a.example.net."}
	b.Run("floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := new(mdns.Msg)
			m.SetReply(steered)
			m.Answer = []mdns.RR{fixed}
			_ = w.WriteMsg(m)
		}
	})
	// As the server runs it: a fresh goroutine per query (miekg starts
	// one per UDP packet), so stack growth shows.
	b.Run("steered-ecs-goroutine", func(b *testing.B) {
		b.ReportAllocs()
		done := make(chan struct{})
		for b.Loop() {
			go func() {
				s.ServeDNS(&packWriter{Recorder: w.Recorder, buf: w.buf[:0:0]}, steered)
				done <- struct{}{}
			}()
			<-done
		}
	})
	b.Run("floor-goroutine", func(b *testing.B) {
		b.ReportAllocs()
		done := make(chan struct{})
		for b.Loop() {
			go func() {
				m := new(mdns.Msg)
				m.SetReply(steered)
				m.Answer = []mdns.RR{fixed}
				pw := &packWriter{Recorder: w.Recorder}
				_ = pw.WriteMsg(m)
				done <- struct{}{}
			}()
			<-done
		}
	})
	nx := unpacked(dnstest.Query("nope.demo.cdnpilot.test.", mdns.TypeA))
	b.Run("nxdomain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.ServeDNS(w, nx)
		}
	})
}

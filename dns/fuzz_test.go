package dns

import (
	"encoding/binary"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cdnpilot/cdnpilot/dns/dnstest"
)

// fuzzSeeds are malformed and borderline packets, each named for what it
// tries.
func fuzzSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	pack := func(m *mdns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	q := func() *mdns.Msg { return dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA) }
	// rawECS is an option 8 with the bytes as given, valid or not.
	rawECS := func(data ...byte) []byte {
		return pack(dnstest.Option(q(), &mdns.EDNS0_LOCAL{Code: mdns.EDNS0SUBNET, Data: data}))
	}
	valid := pack(dnstest.ECS(q(), netip.MustParsePrefix("100.64.1.0/24")))
	set := func(b []byte, f func([]byte)) []byte {
		c := append([]byte(nil), b...)
		f(c)
		return c
	}
	twoQuestions := q()
	twoQuestions.Question = append(twoQuestions.Question, mdns.Question{Name: "live.demo.cdnpilot.test.", Qtype: mdns.TypeAAAA, Qclass: mdns.ClassINET})

	seeds := map[string][]byte{
		"valid ecs":         valid,
		"valid plain":       pack(q()),
		"valid apex any":    pack(dnstest.Query("demo.cdnpilot.test.", mdns.TypeANY)),
		"valid big tc":      pack(dnstest.EDNS(dnstest.Query("big.demo.cdnpilot.test.", mdns.TypeAAAA), 4096)),
		"truncated header":  valid[:7],
		"header only":       valid[:12],
		"truncated section": valid[:len(valid)-5],
		"qdcount 0":         set(valid[:12], func(b []byte) { binary.BigEndian.PutUint16(b[4:], 0); binary.BigEndian.PutUint16(b[10:], 0) }),
		"qdcount 2 one q":   set(valid, func(b []byte) { binary.BigEndian.PutUint16(b[4:], 2) }),
		"qdcount 2":         pack(twoQuestions),
		// The question name is a pointer to itself.
		"compression loop": {0x10, 0x92, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},
		// Two names pointing at each other.
		"compression ping-pong": {0x10, 0x92, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0xc0, 20, 0, 1, 0, 1, 1, 'b', 0xc0, 12},
		"qr set":                set(valid, func(b []byte) { b[2] |= 0x80 }),
		"opcode 3":              set(valid, func(b []byte) { b[2] |= 3 << 3 }),
		"opcode 15":             set(valid, func(b []byte) { b[2] |= 15 << 3 }),
		// OPT RDLENGTH claims more than the packet has, and less than
		// its option needs.
		"opt rdlength long":  set(valid, func(b []byte) { binary.BigEndian.PutUint16(b[len(b)-13:], 200) }),
		"opt rdlength short": set(valid, func(b []byte) { binary.BigEndian.PutUint16(b[len(b)-13:], 5) }),
		// The ECS option's own length claims more than there is.
		"ecs option length long": set(valid, func(b []byte) { binary.BigEndian.PutUint16(b[len(b)-9:], 60) }),
		"ecs family 3":           rawECS(0, 3, 24, 0, 100, 64, 1),
		"ecs family 0 bits 8":    rawECS(0, 0, 8, 0, 100),
		"ecs v4 extra bits":      rawECS(0, 1, 24, 0, 100, 64, 1, 1),
		"ecs v4 source 33":       rawECS(0, 1, 33, 0, 100, 64, 1, 0, 0),
		"ecs v6 extra bits":      rawECS(0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 1),
		"ecs v6 source 129":      rawECS(0, 2, 129, 0, 0x20, 0x01),
		"ecs scope set":          rawECS(0, 1, 24, 16, 100, 64, 1),
		"ecs short":              rawECS(0, 1),
		"ecs too many octets":    rawECS(0, 1, 8, 0, 100, 64, 1, 0, 9, 9),
		"edns version 1": func() []byte {
			m := dnstest.EDNS(q(), 1232)
			m.IsEdns0().SetVersion(1)
			return pack(m)
		}(),
		"two opt": func() []byte {
			m := dnstest.EDNS(q(), 1232)
			m.Extra = append(m.Extra, &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT, Class: 512}})
			return pack(m)
		}(),
	}
	return seeds
}

// FuzzServeDNS feeds arbitrary bytes to the UDP loop's packet handler,
// and through Unpack into the server's chain over UDP and TCP: nothing panics (the Recover step would hide a
// panic as a SERVFAIL, so the panic counter must stay 0), at most one
// reply, and every reply packs, carries the query's id and fits what the
// transport allows.
func FuzzServeDNS(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	s := testServer(f, func(o *Options) {
		o.DecisionLog = &logSink{}
		o.LogSample = 0.01
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		// UDP: the raw bytes, as the UDP loop reads them.
		w := dnstest.NewRecorder("100.64.1.7:5300", "udp")
		s.servePacket(w, data)
		switch {
		case testutil.ToFloat64(s.m.panics) != 0:
			t.Fatalf("panic answering %x over UDP", data)
		case w.Err != nil:
			t.Fatalf("UDP reply to %x: %v", data, w.Err)
		case len(data) < 12 || data[2]&0x80 != 0:
			if w.Writes != 0 {
				t.Fatalf("answered %x (short or a response)", data)
			}
		case w.Writes != 1:
			t.Fatalf("%d UDP replies to %x", w.Writes, data)
		case w.Msg.Id != uint16(data[0])<<8|uint16(data[1]):
			t.Fatalf("UDP reply id %d to %x", w.Msg.Id, data)
		case len(w.Wire) > maxUDPSize:
			t.Fatalf("%d bytes over UDP", len(w.Wire))
		}
		r := new(mdns.Msg)
		if err := r.Unpack(data); err != nil {
			return // the library answers FORMERR (or nothing) itself
		}
		for _, proto := range []string{"udp", "tcp"} {
			w := dnstest.NewRecorder("100.64.1.7:5300", proto)
			s.ServeDNS(w, r)
			if n := testutil.ToFloat64(s.m.panics); n != 0 {
				t.Fatalf("%v panics answering %x", n, data)
			}
			if w.Err != nil {
				t.Fatalf("reply to %x: %v", data, w.Err)
			}
			switch {
			case w.Writes > 1:
				t.Fatalf("%d replies to %x", w.Writes, data)
			case r.Response && w.Writes != 0:
				t.Fatalf("answered a response %x", data)
			case !r.Response && w.Writes != 1:
				t.Fatalf("no reply to %x", data)
			case w.Msg == nil:
				continue
			case w.Msg.Id != r.Id:
				t.Fatalf("reply id %d to query id %d", w.Msg.Id, r.Id)
			case proto == "udp" && len(w.Wire) > maxUDPSize:
				t.Fatalf("%d bytes over UDP", len(w.Wire))
			}
		}
	})
}

// TestFuzzSeedsReach: the seeds that miekg unpacks reach the chain and get
// the reply they are meant to provoke.
func TestFuzzSeedsReach(t *testing.T) {
	s := testServer(t)
	want := map[string]int{
		"valid ecs": mdns.RcodeSuccess, "qdcount 0": mdns.RcodeFormatError, "qdcount 2": mdns.RcodeFormatError,
		"opcode 3": mdns.RcodeNotImplemented, "opcode 15": mdns.RcodeNotImplemented, "edns version 1": mdns.RcodeBadVers,
		"two opt": mdns.RcodeFormatError, "qr set": -1,
	}
	seeds := fuzzSeeds(t)
	for name, rc := range want {
		r := new(mdns.Msg)
		if err := r.Unpack(seeds[name]); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		w := dnstest.NewRecorder("100.64.1.7:5300", "udp")
		s.ServeDNS(w, r)
		if w.Rcode() != rc {
			t.Errorf("%s: rcode %d, want %d", name, w.Rcode(), rc)
		}
	}
	// The rest miekg refuses to unpack; the server answers those FORMERR
	// (or drops them) before the chain.
	for _, name := range []string{"truncated header", "compression loop", "compression ping-pong", "opt rdlength long", "ecs family 3", "ecs v4 source 33", "ecs family 0 bits 8"} {
		if err := new(mdns.Msg).Unpack(seeds[name]); err == nil {
			t.Errorf("%s: unpacked", name)
		}
	}
}

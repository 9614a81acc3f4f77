package dns

import (
	"bytes"
	"net"
	"testing"

	mdns "github.com/miekg/dns"
)

// packCases are replies of every shape the fast packer takes, and some it
// must hand to miekg.
func packCases() map[string]*mdns.Msg {
	q := func(name string, t uint16) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetQuestion(name, t)
		r := new(mdns.Msg)
		r.SetReply(m)
		r.Authoritative = true
		return r
	}
	cname := func(owner, target string, ttl uint32) mdns.RR {
		return &mdns.CNAME{Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: ttl}, Target: target}
	}
	withOPT := func(m *mdns.Msg, do bool, ecs *mdns.EDNS0_SUBNET) *mdns.Msg {
		o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT, Class: 1232}}
		if do {
			o.SetDo()
		}
		if ecs != nil {
			o.Option = []mdns.EDNS0{ecs}
		}
		m.Extra = append(m.Extra, o)
		return m
	}
	out := map[string]*mdns.Msg{}
	m := q("vod.demo.cdnpilot.test.", mdns.TypeA)
	m.Answer = []mdns.RR{cname("vod.demo.cdnpilot.test.", "cdn-a.demo.cdnpilot.test.", 29)}
	out["cname"] = m
	m = q("VoD.Demo.CDNpilot.test.", mdns.TypeAAAA)
	m.Answer = []mdns.RR{cname("VoD.Demo.CDNpilot.test.", "cdn-b.example.", 7)}
	out["cname, case kept"] = withOPT(m, true, &mdns.EDNS0_SUBNET{Code: 8, Family: 1, SourceNetmask: 24, SourceScope: 20, Address: net.ParseIP("81.2.69.77")})
	m = q("live.demo.cdnpilot.test.", mdns.TypeA)
	m.Answer = []mdns.RR{cname("live.demo.cdnpilot.test.", "x.y.", 30)}
	out["ecs v4 /19"] = withOPT(m, false, &mdns.EDNS0_SUBNET{Code: 8, Family: 1, SourceNetmask: 19, SourceScope: 16, Address: net.ParseIP("81.2.255.255").To4()})
	m = q("live.demo.cdnpilot.test.", mdns.TypeAAAA)
	m.Answer = []mdns.RR{cname("live.demo.cdnpilot.test.", "x.y.", 30)}
	out["ecs v6 /57"] = withOPT(m, false, &mdns.EDNS0_SUBNET{Code: 8, Family: 2, SourceNetmask: 57, SourceScope: 48, Address: net.ParseIP("2001:db8:ffff:ffff:ffff::1")})
	m = q("live.demo.cdnpilot.test.", mdns.TypeA)
	out["ecs family 0"] = withOPT(m, false, &mdns.EDNS0_SUBNET{Code: 8, Family: 0, SourceNetmask: 0, SourceScope: 0})
	m = q("a.demo.cdnpilot.test.", mdns.TypeA)
	m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: "a.demo.cdnpilot.test.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: net.ParseIP("192.0.2.1")},
		&mdns.A{Hdr: mdns.RR_Header{Name: "a.demo.cdnpilot.test.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: net.ParseIP("192.0.2.2").To4()}}
	out["two A"] = withOPT(m, false, nil)
	m = q("a.demo.cdnpilot.test.", mdns.TypeAAAA)
	m.Answer = []mdns.RR{&mdns.AAAA{Hdr: mdns.RR_Header{Name: "a.demo.cdnpilot.test.", Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: 30}, AAAA: net.ParseIP("2001:db8::1")}}
	out["AAAA"] = m
	m = q("nope.demo.cdnpilot.test.", mdns.TypeA)
	m.Rcode = mdns.RcodeNameError
	out["nxdomain, no authority"] = m
	m = q("x.", mdns.TypeA)
	m.Rcode = mdns.RcodeRefused
	m.RecursionDesired, m.CheckingDisabled, m.AuthenticatedData, m.Zero, m.Truncated = true, true, true, true, true
	out["every flag"] = withOPT(m, true, nil)
	m = q(".", mdns.TypeNS)
	out["root"] = m
	// Handed to miekg:
	m = q(`we\.ird.demo.cdnpilot.test.`, mdns.TypeA)
	out["escaped name"] = m
	m = q("vod.demo.cdnpilot.test.", mdns.TypeA)
	m.Rcode = mdns.RcodeBadVers
	out["extended rcode"] = withOPT(m, false, nil)
	m = q("demo.cdnpilot.test.", mdns.TypeSOA)
	m.Answer = []mdns.RR{&mdns.SOA{Hdr: mdns.RR_Header{Name: "demo.cdnpilot.test.", Rrtype: mdns.TypeSOA, Class: mdns.ClassINET}, Ns: "ns.x.", Mbox: "h.x."}}
	out["SOA"] = m
	return out
}

// TestPackReplyMatchesMiekg: what the fast packer packs, it packs as
// miekg does; the rest it declines.
func TestPackReplyMatchesMiekg(t *testing.T) {
	declined := map[string]bool{"escaped name": true, "extended rcode": true, "SOA": true}
	for name, m := range packCases() {
		t.Run(name, func(t *testing.T) {
			got, ok := packReply(nil, m.Copy())
			if ok == declined[name] {
				t.Fatalf("packReply ok = %v", ok)
			}
			if !ok {
				return
			}
			want, err := m.Copy().Pack()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("packReply\n%x\nmiekg\n%x", got, want)
			}
		})
	}
}

// FuzzPackReply: any message miekg unpacks that the fast packer takes
// packs to miekg's bytes.
func FuzzPackReply(f *testing.F) {
	for _, m := range packCases() {
		if b, err := m.Pack(); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(mdns.Msg)
		if m.Unpack(data) != nil {
			return
		}
		got, ok := packReply(nil, m.Copy())
		if !ok {
			return
		}
		want, err := m.Copy().Pack()
		if err != nil {
			t.Fatalf("packReply took a message miekg refuses (%v): %v", err, m)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("packReply\n%x\nmiekg\n%x\nfor %v", got, want, m)
		}
	})
}

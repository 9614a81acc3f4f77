package dns

import (
	"net"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/dns/dnstest"
)

// TestAnswers runs queries through the whole chain and compares every
// reply with its golden file (go test ./dns/ -run TestAnswers -update).
func TestAnswers(t *testing.T) {
	const (
		vod  = "vod.demo.cdnpilot.test."
		apex = "demo.cdnpilot.test."
	)
	pfx := netip.MustParsePrefix
	withOpt := func(m *mdns.Msg, f func(o *mdns.OPT)) *mdns.Msg {
		if m.IsEdns0() == nil {
			dnstest.EDNS(m, 1232)
		}
		f(m.IsEdns0())
		return m
	}
	ecsRaw := func(family uint16, bits uint8, addr string) *mdns.EDNS0_SUBNET {
		return &mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: family, SourceNetmask: bits, Address: net.ParseIP(addr)}
	}
	q := dnstest.Query
	tests := []struct {
		name  string
		q     *mdns.Msg
		from  string // default 127.0.0.1:53000 (region "local": the global ranking)
		proto string // default udp
		// raw hands the query to the chain as built: miekg's packer
		// would repair it (mask the address, pick the family).
		raw bool
	}{
		// Steered names.
		{name: "cname_no_edns", q: q(vod, mdns.TypeA)},
		{name: "cname_resolver_located", q: q(vod, mdns.TypeA), from: "100.64.9.9:5300"},
		{name: "cname_ecs_eu_west", q: dnstest.ECS(q(vod, mdns.TypeA), pfx("100.64.1.0/24"))},
		{name: "cname_ecs_v6", q: dnstest.ECS(q(vod, mdns.TypeAAAA), pfx("2001:db8:1::/56"))},
		{name: "cname_ecs_short_source", q: dnstest.ECS(q(vod, mdns.TypeA), pfx("100.64.0.0/12"))},
		{name: "ecs_miss_scope_is_source", q: dnstest.ECS(q(vod, mdns.TypeA), pfx("10.1.2.0/24"))},
		{name: "ecs_source_zero", q: dnstest.Option(q(vod, mdns.TypeA), ecsRaw(0, 0, "0.0.0.0")), from: "100.64.9.9:5300"},
		{name: "incident_ttl", q: dnstest.ECS(q(vod, mdns.TypeA), pfx("203.0.113.0/24"))},
		{name: "stale_static_order", q: q("live.demo.cdnpilot.test.", mdns.TypeA)},
		{name: "case_preserved", q: q("VoD.DeMo.CdnPilot.TEST.", mdns.TypeA)},
		{name: "cname_for_txt", q: q(vod, mdns.TypeTXT)},
		{name: "any_minimal", q: q(vod, mdns.TypeANY)},
		{name: "addrs_a", q: q("anycast.demo.cdnpilot.test.", mdns.TypeA)},
		{name: "addrs_aaaa", q: q("anycast.demo.cdnpilot.test.", mdns.TypeAAAA)},
		{name: "addrs_txt_nodata", q: q("anycast.demo.cdnpilot.test.", mdns.TypeTXT)},
		{name: "literal_a", q: q("lit.demo.cdnpilot.test.", mdns.TypeA)},
		{name: "literal_aaaa_nodata", q: q("lit.demo.cdnpilot.test.", mdns.TypeAAAA)},
		{name: "do_bit", q: withOpt(q(vod, mdns.TypeA), func(o *mdns.OPT) { o.SetDo() })},
		{name: "small_payload_is_512", q: dnstest.EDNS(q("big.demo.cdnpilot.test.", mdns.TypeAAAA), 100)},

		// Truncation.
		{name: "tc_udp_no_edns", q: q("big.demo.cdnpilot.test.", mdns.TypeAAAA)},
		{name: "tc_udp_capped_1232", q: dnstest.EDNS(q("big.demo.cdnpilot.test.", mdns.TypeAAAA), 4096)},
		{name: "tcp_full", q: q("big.demo.cdnpilot.test.", mdns.TypeAAAA), proto: "tcp"},

		// The apex and the name servers.
		{name: "apex_soa", q: q(apex, mdns.TypeSOA)},
		{name: "apex_soa_edns", q: dnstest.EDNS(q(apex, mdns.TypeSOA), 1232)},
		{name: "apex_ns_glue", q: q(apex, mdns.TypeNS)},
		{name: "apex_any", q: q(apex, mdns.TypeANY)},
		{name: "apex_a_nodata", q: q(apex, mdns.TypeA)},
		{name: "ns_host_a", q: q("ns1.demo.cdnpilot.test.", mdns.TypeA)},
		{name: "ns_host_aaaa", q: q("ns1.demo.cdnpilot.test.", mdns.TypeAAAA)},
		{name: "ns_host_mx_nodata", q: q("ns1.demo.cdnpilot.test.", mdns.TypeMX)},

		// Names that do not exist, and names not ours.
		{name: "nxdomain", q: q("nope.demo.cdnpilot.test.", mdns.TypeA)},
		{name: "nxdomain_below_service", q: q("x.vod.demo.cdnpilot.test.", mdns.TypeA)},
		{name: "nxdomain_ecs_scope_zero", q: dnstest.ECS(q("nope.demo.cdnpilot.test.", mdns.TypeA), pfx("100.64.1.0/24"))},
		{name: "refused_outside", q: q("www.example.com.", mdns.TypeA)},
		{name: "refused_parent", q: q("cdnpilot.test.", mdns.TypeSOA)},
		{name: "refused_escaped_dot", q: q(`vod\.demo.cdnpilot.test.`, mdns.TypeA)},
		{name: "refused_chaos", q: func() *mdns.Msg {
			m := q("version.bind.", mdns.TypeTXT)
			m.Question[0].Qclass = mdns.ClassCHAOS
			return m
		}()},
		{name: "refused_axfr", q: q(apex, mdns.TypeAXFR), proto: "tcp"},
		{name: "refused_ecs_echo", q: dnstest.ECS(q("www.example.com.", mdns.TypeA), pfx("100.64.1.0/24"))},

		// Malformed queries.
		{name: "badvers", q: withOpt(q(vod, mdns.TypeA), func(o *mdns.OPT) { o.SetVersion(1) })},
		{name: "formerr_ecs_address_bits", q: dnstest.Option(q(vod, mdns.TypeA), ecsRaw(1, 24, "100.64.1.1")), raw: true},
		{name: "formerr_ecs_v6_address_bits", q: dnstest.Option(q(vod, mdns.TypeAAAA), ecsRaw(2, 48, "2001:db8:1::1")), raw: true},
		{name: "formerr_ecs_wrong_family", q: dnstest.Option(q(vod, mdns.TypeA), ecsRaw(1, 24, "2001:db8:1::")), raw: true},
		{name: "formerr_ecs_source_too_long", q: dnstest.Option(q(vod, mdns.TypeA), ecsRaw(1, 33, "100.64.1.0"))},
		{name: "formerr_ecs_family_zero_bits", q: dnstest.Option(q(vod, mdns.TypeA), ecsRaw(0, 8, "0.0.0.0"))},
		{name: "formerr_ecs_unknown_family", q: dnstest.Option(q(vod, mdns.TypeA), ecsRaw(3, 8, "100.0.0.0"))},
		{name: "formerr_two_ecs", q: dnstest.ECS(dnstest.ECS(q(vod, mdns.TypeA), pfx("100.64.1.0/24")), pfx("100.64.2.0/24"))},
		{name: "formerr_two_opt", q: func() *mdns.Msg {
			m := dnstest.EDNS(q(vod, mdns.TypeA), 1232)
			m.Extra = append(m.Extra, &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT, Class: 512}})
			return m
		}()},
		{name: "formerr_opt_owner", q: withOpt(q(vod, mdns.TypeA), func(o *mdns.OPT) { o.Hdr.Name = "demo.cdnpilot.test." })},
		{name: "formerr_qdcount_0", q: func() *mdns.Msg { m := q(vod, mdns.TypeA); m.Question = nil; return m }()},
		{name: "formerr_qdcount_2", q: func() *mdns.Msg {
			m := q(vod, mdns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}()},
		{name: "formerr_answer_in_query", q: func() *mdns.Msg {
			m := q(vod, mdns.TypeA)
			m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: vod, Rrtype: mdns.TypeA, Class: mdns.ClassINET}, A: net.IPv4(192, 0, 2, 1)}}
			return m
		}()},
		{name: "notimp_notify", q: func() *mdns.Msg { m := q(apex, mdns.TypeSOA); m.Opcode = mdns.OpcodeNotify; return m }()},
		{name: "notimp_update", q: func() *mdns.Msg { m := q(apex, mdns.TypeSOA); m.Opcode = mdns.OpcodeUpdate; return m }()},
	}
	s := testServer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, proto := tt.from, tt.proto
			if from == "" {
				from = "127.0.0.1:53000"
			}
			if proto == "" {
				proto = "udp"
			}
			// The server sees the query as it comes off the wire,
			// but miekg refuses to pack or unpack a few malformed
			// ones (the server answers those FORMERR before the
			// chain): the chain gets those as built.
			r := tt.q
			if wire, err := tt.q.Pack(); err == nil && !tt.raw {
				r = new(mdns.Msg)
				if err := r.Unpack(wire); err != nil {
					r = tt.q
				}
			}
			w := dnstest.NewRecorder(from, proto)
			s.ServeDNS(w, r)
			if w.Err != nil {
				t.Fatal(w.Err)
			}
			if w.Writes != 1 {
				t.Fatalf("%d replies", w.Writes)
			}
			if w.Msg.RecursionAvailable {
				t.Error("RA set")
			}
			if w.Msg.Id != tt.q.Id {
				t.Errorf("id %d, want %d", w.Msg.Id, tt.q.Id)
			}
			limit := 512
			if o := tt.q.IsEdns0(); o != nil {
				limit = min(max(int(o.UDPSize()), 512), 1232)
			}
			if proto == "udp" && len(w.Wire) > limit {
				t.Errorf("reply of %d bytes over UDP, limit %d", len(w.Wire), limit)
			}
			dnstest.Golden(t, tt.name, dnstest.Format(w.Msg))
		})
	}
}

// TestResponsesNotAnswered: a message with QR set gets no reply at all.
func TestResponsesNotAnswered(t *testing.T) {
	s := testServer(t)
	m := dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA)
	m.Response = true
	w := dnstest.NewRecorder("127.0.0.1:53000", "udp")
	s.ServeDNS(w, m)
	if w.Writes != 0 {
		t.Fatalf("answered a response: %s", dnstest.Format(w.Msg))
	}
}

package dns

import (
	"context"
	"net/netip"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/internal/geo"
)

// clientInfo checks the query's shape and EDNS, then places the client:
// from its EDNS Client Subnet (RFC 7871) when there is one, else from the
// address the query came from (the resolver). What it learns goes into
// the Request for the steps after it.
type clientInfo struct {
	next Handler
	geo  geo.Lookuper
}

func (h *clientInfo) Name() string { return "clientinfo" }

func (h *clientInfo) ServeDNS(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) (int, error) {
	q := RequestFrom(ctx)
	if rc := h.place(q, r); rc != mdns.RcodeSuccess {
		if rc == mdns.RcodeBadVers {
			return badVersion(q, w, r)
		}
		return rc, nil
	}
	return h.next.ServeDNS(ctx, w, r)
}

// place checks the query and fills in q; an rcode other than NOERROR is
// the query's answer. Its own function, so its frame is gone before the
// rest of the chain runs.
//
//go:noinline
func (h *clientInfo) place(q *Request, r *mdns.Msg) int {
	switch {
	case r.Opcode != mdns.OpcodeQuery:
		return mdns.RcodeNotImplemented
	case len(r.Question) != 1, len(r.Answer) > 0, len(r.Ns) > 0:
		return mdns.RcodeFormatError
	}
	var opt *mdns.OPT
	for _, rr := range r.Extra {
		if o, ok := rr.(*mdns.OPT); ok {
			if opt != nil || o.Hdr.Name != "." {
				return mdns.RcodeFormatError // RFC 6891 6.1.1
			}
			opt = o
		}
	}
	if opt != nil {
		if opt.Version() != 0 {
			return mdns.RcodeBadVers
		}
		q.OPT = opt
		if !q.TCP {
			q.Size = min(max(int(opt.UDPSize()), mdns.MinMsgSize), maxUDPSize)
		}
		for _, o := range opt.Option {
			e, ok := o.(*mdns.EDNS0_SUBNET)
			if !ok {
				continue
			}
			p, ok := ecsPrefix(e)
			if !ok || q.ecs != nil {
				q.ecs = nil
				return mdns.RcodeFormatError // RFC 7871 7.1.1; and one ECS per query
			}
			q.ecs, q.ECS = e, p
		}
	}

	addr := q.Client
	if q.ECS.IsValid() && q.ECS.Bits() > 0 {
		addr = q.ECS.Addr()
	}
	if addr.IsValid() {
		q.Loc, q.Located = h.geo.Lookup(addr)
	}
	switch {
	case q.ecs == nil:
		// No ECS: the answer is for the resolver, nothing to scope.
	case q.ECS.Bits() <= 0:
		q.Scope = 0 // source prefix 0: the resolver asked for an untailored answer
	case q.Located && q.Loc.Prefix.Bits() > 0:
		q.Scope = uint8(q.Loc.Prefix.Bits())
	default:
		// A miss: the answer holds for the source prefix, not for
		// everyone (scope 0 would let the resolver hand the global
		// answer to clients the coverage does place).
		q.Scope = uint8(q.ECS.Bits())
	}
	q.ViewID = viewID(q.vbuf[:0], q.ECS, q.Client)
	return mdns.RcodeSuccess
}

// ecsPrefix checks an ECS option (RFC 7871 6 and 7.1.1): a known family,
// a source prefix that fits it, no address bits set beyond it. Family 0
// with prefix 0 is what dig sends for +subnet=0: valid, and the zero
// Prefix.
func ecsPrefix(e *mdns.EDNS0_SUBNET) (netip.Prefix, bool) {
	var a netip.Addr
	switch e.Family {
	case 0:
		return netip.Prefix{}, e.SourceNetmask == 0
	case 1:
		ip4 := e.Address.To4()
		if ip4 == nil || e.SourceNetmask > 32 {
			return netip.Prefix{}, false
		}
		a = netip.AddrFrom4([4]byte(ip4))
	case 2:
		if len(e.Address) != 16 || e.SourceNetmask > 128 {
			return netip.Prefix{}, false
		}
		a = netip.AddrFrom16([16]byte(e.Address))
	default:
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(a, int(e.SourceNetmask))
	if p.Masked().Addr() != a {
		return netip.Prefix{}, false // address bits beyond the source prefix
	}
	return p, true
}

// viewID is the key of the deterministic pick: one resolver subnet (the
// ECS prefix, else the resolver's /24 or /56) gets one stable answer
// while the weights allow it. It is formatted in buf.
func viewID(buf []byte, ecs netip.Prefix, client netip.Addr) string {
	if ecs.IsValid() && ecs.Bits() > 0 {
		return string(ecs.AppendTo(buf))
	}
	if !client.IsValid() {
		return ""
	}
	bits := 56
	if client.Is4() {
		bits = 24
	}
	p, _ := client.Prefix(bits)
	return string(p.AppendTo(buf))
}

// badVersion answers an EDNS version other than 0 with BADVERS and an OPT
// record of the version we speak (RFC 6891 6.1.3).
func badVersion(q *Request, w mdns.ResponseWriter, r *mdns.Msg) (int, error) {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Rcode = mdns.RcodeBadVers
	m.Extra = []mdns.RR{&mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT, Class: maxUDPSize}}}
	q.written, q.rcode = true, m.Rcode
	return mdns.RcodeBadVers, w.WriteMsg(m)
}

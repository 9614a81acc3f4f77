package dns

import (
	"encoding/binary"
	"net"

	mdns "github.com/miekg/dns"
)

// packReply packs m into buf byte for byte as m.PackBuffer does without
// name compression, for the replies of the hot path: one question,
// answers of CNAME, A and AAAA, no authority section, and at most an OPT
// record carrying at most an ECS option. ok is false for any other
// reply, and for anything miekg would refuse or escape (a name with a
// backslash, an extended rcode): those go to miekg's packer.
//
// miekg measures a message before packing it and packs names through a
// general escaper; for the steered answer that was four tenths of the
// handler. TestPackReplyMatchesMiekg and FuzzPackReply hold the two to
// the same bytes.
func packReply(buf []byte, m *mdns.Msg) ([]byte, bool) {
	if m.Rcode < 0 || m.Rcode > 0xF || len(m.Question) != 1 || len(m.Ns) != 0 || len(m.Extra) > 1 {
		return nil, false
	}
	var opt *mdns.OPT
	if len(m.Extra) == 1 {
		o, ok := m.Extra[0].(*mdns.OPT)
		if !ok {
			return nil, false
		}
		opt = o
	}
	b := buf[:0]
	bits := uint16(m.Opcode)<<11 | uint16(m.Rcode&0xF)
	for _, f := range []struct {
		set bool
		bit uint16
	}{{m.Response, 1 << 15}, {m.Authoritative, 1 << 10}, {m.Truncated, 1 << 9}, {m.RecursionDesired, 1 << 8},
		{m.RecursionAvailable, 1 << 7}, {m.Zero, 1 << 6}, {m.AuthenticatedData, 1 << 5}, {m.CheckingDisabled, 1 << 4}} {
		if f.set {
			bits |= f.bit
		}
	}
	b = binary.BigEndian.AppendUint16(b, m.Id)
	b = binary.BigEndian.AppendUint16(b, bits)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Answer)))
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Extra)))

	q := m.Question[0]
	var ok bool
	if b, ok = appendName(b, q.Name); !ok {
		return nil, false
	}
	b = binary.BigEndian.AppendUint16(b, q.Qtype)
	b = binary.BigEndian.AppendUint16(b, q.Qclass)

	for _, rr := range m.Answer {
		h := rr.Header()
		if b, ok = appendName(b, h.Name); !ok {
			return nil, false
		}
		b = binary.BigEndian.AppendUint16(b, h.Rrtype)
		b = binary.BigEndian.AppendUint16(b, h.Class)
		b = binary.BigEndian.AppendUint32(b, h.Ttl)
		at := len(b)
		b = append(b, 0, 0) // rdlength, set below
		switch rr := rr.(type) {
		case *mdns.CNAME:
			if h.Rrtype != mdns.TypeCNAME {
				return nil, false
			}
			if b, ok = appendName(b, rr.Target); !ok {
				return nil, false
			}
		case *mdns.A:
			ip := rr.A.To4()
			if h.Rrtype != mdns.TypeA || ip == nil || len(rr.A) != net.IPv4len && len(rr.A) != net.IPv6len {
				return nil, false
			}
			b = append(b, ip...)
		case *mdns.AAAA:
			if h.Rrtype != mdns.TypeAAAA || len(rr.AAAA) != net.IPv6len {
				return nil, false
			}
			b = append(b, rr.AAAA...)
		default:
			return nil, false
		}
		binary.BigEndian.PutUint16(b[at:], uint16(len(b)-at-2))
	}

	if opt != nil {
		if b, ok = appendOPT(b, opt, m.Rcode); !ok {
			return nil, false
		}
	}
	return b, true
}

// appendOPT appends the OPT record with the extended rcode bits set from
// rcode, as miekg's packer sets them (it writes them into the record).
func appendOPT(b []byte, opt *mdns.OPT, rcode int) ([]byte, bool) {
	if opt.Hdr.Name != "." || opt.Hdr.Rrtype != mdns.TypeOPT || len(opt.Option) > 1 {
		return nil, false
	}
	opt.SetExtendedRcode(uint16(rcode))
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, mdns.TypeOPT)
	b = binary.BigEndian.AppendUint16(b, opt.Hdr.Class)
	b = binary.BigEndian.AppendUint32(b, opt.Hdr.Ttl)
	if len(opt.Option) == 0 {
		return binary.BigEndian.AppendUint16(b, 0), true
	}
	e, ok := opt.Option[0].(*mdns.EDNS0_SUBNET)
	if !ok {
		return nil, false
	}
	var addr net.IP
	bits := 0
	switch e.Family {
	case 0:
		if e.SourceNetmask != 0 {
			return nil, false
		}
	case 1:
		if addr, bits = e.Address.To4(), net.IPv4len*8; addr == nil {
			return nil, false
		}
	case 2:
		if addr, bits = e.Address, net.IPv6len*8; len(addr) != net.IPv6len {
			return nil, false
		}
	default:
		return nil, false
	}
	if int(e.SourceNetmask) > bits && e.Family != 0 {
		return nil, false
	}
	n := (int(e.SourceNetmask) + 7) / 8
	b = binary.BigEndian.AppendUint16(b, uint16(4+4+n)) // rdlength: option code and length, then the option
	b = binary.BigEndian.AppendUint16(b, mdns.EDNS0SUBNET)
	b = binary.BigEndian.AppendUint16(b, uint16(4+n))
	b = binary.BigEndian.AppendUint16(b, e.Family)
	b = append(b, e.SourceNetmask, e.SourceScope)
	for i := range n {
		// The address masked to the source prefix, as miekg sends it.
		keep := min(8, int(e.SourceNetmask)-8*i)
		b = append(b, addr[i]&byte(0xFF<<(8-keep)))
	}
	return b, true
}

// appendName appends a fully qualified name in presentation form as
// uncompressed wire labels; ok is false for a name miekg would escape or
// refuse.
func appendName(b []byte, name string) ([]byte, bool) {
	if len(name) == 0 || len(name) > 254 || name[len(name)-1] != '.' {
		return nil, false
	}
	if name == "." {
		return append(b, 0), true
	}
	start := 0
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			return nil, false
		case '.':
			l := i - start
			if l == 0 || l > 63 {
				return nil, false
			}
			b = append(b, byte(l))
			b = append(b, name[start:i]...)
			start = i + 1
		}
	}
	return append(b, 0), true
}

package dns

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/steering"
)

// zone is one served zone with its apex records, built once.
type zone struct {
	name string // canonical: "demo.cdnpilot.test."
	soa  []mdns.RR
	ns   []mdns.RR
	glue []mdns.RR // addresses of the name servers inside served zones
	neg  []mdns.RR // the SOA with the negative-caching TTL (RFC 2308 3)
}

// target is how a CDN is answered: a CNAME to its host, or its addresses.
type target struct {
	cname  string // fully qualified; "" when answered with addresses
	v4, v6 []net.IP
}

// steer answers the names of the served zones: the apex (SOA, NS), the
// name servers' own addresses, and <service>.<zone>, which it asks the
// Decider about. A decision it cannot use (an error, a panic, a CDN it
// cannot answer) goes to the next step, the static fallback.
type steer struct {
	next     Handler
	zones    []*zone // longest first, so a nested zone wins
	services map[string]string
	targets  map[string]*target
	hosts    map[string]*target // name server name -> its addresses
	decider  Decider

	ttl, incidentTTL, apexTTL uint32
	jitter                    float64
}

func (h *steer) Name() string { return "steer" }

func newSteer(o *Options) (*steer, error) {
	h := &steer{
		services: map[string]string{}, targets: map[string]*target{}, hosts: map[string]*target{},
		decider: o.Decider, ttl: seconds(o.TTL), incidentTTL: seconds(o.IncidentTTL), apexTTL: seconds(o.ApexTTL),
		jitter: o.TTLJitter,
	}
	for _, s := range o.Catalog.Services {
		h.services[strings.ToLower(s.Name)] = s.Name
	}
	for _, c := range o.Catalog.CDNs {
		t, err := targetOf(c.Host, c.Addrs)
		if err != nil {
			return nil, fmt.Errorf("cdn %q: %w", c.Name, err)
		}
		h.targets[c.Name] = t
	}
	for _, z := range o.Zones {
		h.zones = append(h.zones, &zone{name: canonical(z)})
	}
	slices.SortFunc(h.zones, func(a, b *zone) int { return len(b.name) - len(a.name) })
	for _, ns := range o.NS {
		name := canonical(ns.Name)
		if z, _ := h.find(name); z != nil {
			if len(ns.Addrs) == 0 {
				return nil, fmt.Errorf("name server %s is inside zone %s but has no addresses", ns.Name, z.name)
			}
			h.hosts[name] = addrTarget(ns.Addrs)
		}
	}
	for _, z := range h.zones {
		soa := &mdns.SOA{
			Hdr: mdns.RR_Header{Name: z.name, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: h.apexTTL},
			Ns:  canonical(o.SOA.MName), Mbox: canonical(o.SOA.RName), Serial: o.SOA.Serial,
			Refresh: seconds(o.SOA.Refresh), Retry: seconds(o.SOA.Retry), Expire: seconds(o.SOA.Expire),
			Minttl: seconds(o.SOA.Minimum),
		}
		neg := *soa
		neg.Hdr.Ttl = min(h.apexTTL, soa.Minttl)
		z.soa, z.neg = []mdns.RR{soa}, []mdns.RR{&neg}
		for _, ns := range o.NS {
			name := canonical(ns.Name)
			z.ns = append(z.ns, &mdns.NS{Hdr: mdns.RR_Header{Name: z.name, Rrtype: mdns.TypeNS, Class: mdns.ClassINET, Ttl: h.apexTTL}, Ns: name})
			if t := h.hosts[name]; t != nil {
				z.glue = append(z.glue, t.records(name, mdns.TypeA, h.apexTTL)...)
				z.glue = append(z.glue, t.records(name, mdns.TypeAAAA, h.apexTTL)...)
			}
		}
		// Replies append to copies of these slices, never into them:
		// they are shared by every goroutine answering.
		z.soa, z.ns, z.glue, z.neg = slices.Clip(z.soa), slices.Clip(z.ns), slices.Clip(z.glue), slices.Clip(z.neg)
	}
	return h, nil
}

// targetOf is how a CDN is answered: its addresses when it has some, else
// its host with the port dropped, as a CNAME or, for an IP literal, as
// that address.
func targetOf(host string, addrs []netip.Addr) (*target, error) {
	if len(addrs) > 0 {
		return addrTarget(addrs), nil
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return addrTarget([]netip.Addr{a}), nil
	}
	if !hostname(host) {
		return nil, fmt.Errorf("host %q is neither a domain name nor an address", host)
	}
	return &target{cname: mdns.Fqdn(host)}, nil
}

func addrTarget(addrs []netip.Addr) *target {
	t := &target{}
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			t.v4 = append(t.v4, net.IP(a.AsSlice()))
		} else {
			t.v6 = append(t.v6, net.IP(a.AsSlice()))
		}
	}
	return t
}

// records are the target's addresses of one type as RRs named owner.
func (t *target) records(owner string, qtype uint16, ttl uint32) []mdns.RR {
	var out []mdns.RR
	switch qtype {
	case mdns.TypeA:
		for _, ip := range t.v4 {
			out = append(out, &mdns.A{Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: ttl}, A: ip})
		}
	case mdns.TypeAAAA:
		for _, ip := range t.v6 {
			out = append(out, &mdns.AAAA{Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: ttl}, AAAA: ip})
		}
	}
	return out
}

func seconds(d time.Duration) uint32 { return uint32(d / time.Second) }

// find is the served zone a canonical name is in, and the name relative
// to it ("" at the apex); nil outside every zone.
func (h *steer) find(name string) (*zone, string) {
	for _, z := range h.zones {
		if name == z.name {
			return z, ""
		}
		n := len(name) - len(z.name)
		if n < 2 || name[n-1] != '.' || name[n:] != z.name {
			continue
		}
		rel := name[:n-1]
		// "a\.demo.cdnpilot.test." is the label "a.demo" under
		// cdnpilot.test.: an escaped dot is no label boundary.
		slashes := 0
		for i := len(rel) - 1; i >= 0 && rel[i] == '\\'; i-- {
			slashes++
		}
		if slashes%2 == 1 {
			continue
		}
		return z, rel
	}
	return nil, ""
}

func (h *steer) ServeDNS(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) (int, error) {
	q := RequestFrom(ctx)
	qs := r.Question[0]
	switch {
	case qs.Qclass != mdns.ClassINET:
		return mdns.RcodeRefused, nil // CHAOS and friends: not ours
	case qs.Qtype == mdns.TypeAXFR, qs.Qtype == mdns.TypeIXFR:
		return mdns.RcodeRefused, nil // no zone transfers: the zone is computed per query
	}
	name := canonical(qs.Name)
	z, rel := h.find(name)
	if z == nil {
		return mdns.RcodeRefused, nil
	}
	q.zone = z
	if rel == "" {
		return h.apex(q, w, r, z)
	}
	if svc, ok := h.services[rel]; ok {
		q.Service = svc
		if qs.Qtype == mdns.TypeANY {
			return h.hinfo(q, w, r, h.ttl)
		}
		if t := h.decide(q); t != nil {
			return h.answer(q, w, r, t, h.steeredTTL(&q.Decision))
		}
		return h.next.ServeDNS(ctx, w, r)
	}
	if t, ok := h.hosts[name]; ok {
		if qs.Qtype == mdns.TypeANY {
			return h.hinfo(q, w, r, h.apexTTL)
		}
		return h.addresses(q, w, r, t, h.apexTTL, 0)
	}
	return h.negative(q, w, r, mdns.RcodeNameError)
}

// decide asks the Decider and keeps the decision in q; nil when there is
// none this node can answer with, for the static fallback. A panic in the
// Decider reaches the Recover step, which answers a steered name with the
// static fallback too, never SERVFAIL. (Not inlined: the decision's
// copies stay out of the frame the rest of the chain runs under.)
//
//go:noinline
func (h *steer) decide(q *Request) *target {
	loc := steering.Location{Region: q.Loc.Region, Country: q.Loc.Country, ASN: q.Loc.ASN}
	d, err := h.decider.Decide(steering.Query{Service: q.Service, Location: loc, ViewID: q.ViewID})
	if err != nil {
		return nil
	}
	t := h.targetFor(&d)
	if t != nil {
		q.Decision, q.Decided = d, true
	}
	return t
}

// targetFor is the answer for a decision's CDN: from this node's catalog,
// else (a scorer on a newer catalog) from the decision's host.
func (h *steer) targetFor(d *steering.Decision) *target {
	if t, ok := h.targets[d.CDN]; ok {
		return t
	}
	if d.Host == "" {
		return nil
	}
	t, err := targetOf(d.Host, nil)
	if err != nil {
		return nil
	}
	return t
}

// steeredTTL is the policy TTL, shorter while the ranking shows trouble,
// less a random share so caches that filled together expire apart.
func (h *steer) steeredTTL(d *steering.Decision) uint32 {
	ttl := h.ttl
	if d.Incident() {
		ttl = h.incidentTTL
	}
	return h.jittered(ttl)
}

func (h *steer) jittered(ttl uint32) uint32 {
	if h.jitter > 0 {
		ttl -= uint32(float64(ttl) * h.jitter * rand.Float64())
	}
	return max(ttl, 1)
}

// answer is a steered name's answer. A name that owns a CNAME answers it
// for every type (RFC 1034 3.6.2); one answered with addresses has A and
// AAAA records only, and NODATA for the rest.
func (h *steer) answer(q *Request, w mdns.ResponseWriter, r *mdns.Msg, t *target, ttl uint32) (int, error) {
	if t.cname == "" {
		return h.addresses(q, w, r, t, ttl, q.Scope)
	}
	m := q.reply(r, mdns.RcodeSuccess)
	q.cname = mdns.CNAME{
		Hdr:    mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: ttl},
		Target: t.cname,
	}
	q.rrs[0] = &q.cname
	m.Answer = q.rrs[:1]
	return mdns.RcodeSuccess, q.write(w, m, q.Scope)
}

func (h *steer) addresses(q *Request, w mdns.ResponseWriter, r *mdns.Msg, t *target, ttl uint32, scope uint8) (int, error) {
	qs := r.Question[0]
	rrs := t.records(qs.Name, qs.Qtype, ttl)
	if len(rrs) == 0 {
		return h.nodata(q, w, r, scope)
	}
	m := q.reply(r, mdns.RcodeSuccess)
	m.Answer = rrs
	return mdns.RcodeSuccess, q.write(w, m, scope)
}

func (h *steer) apex(q *Request, w mdns.ResponseWriter, r *mdns.Msg, z *zone) (int, error) {
	m := q.reply(r, mdns.RcodeSuccess)
	switch r.Question[0].Qtype {
	case mdns.TypeSOA:
		m.Answer = z.soa
	case mdns.TypeNS:
		m.Answer = z.ns
		m.Extra = z.glue
	case mdns.TypeANY:
		return h.hinfo(q, w, r, h.apexTTL)
	default:
		return h.nodata(q, w, r, 0)
	}
	return mdns.RcodeSuccess, q.write(w, m, 0)
}

// hinfo is the minimal answer to ANY (RFC 8482 4.2): one synthesized
// HINFO record instead of everything the name has.
func (h *steer) hinfo(q *Request, w mdns.ResponseWriter, r *mdns.Msg, ttl uint32) (int, error) {
	m := q.reply(r, mdns.RcodeSuccess)
	m.Answer = []mdns.RR{&mdns.HINFO{
		Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeHINFO, Class: mdns.ClassINET, Ttl: ttl},
		Cpu: "RFC8482",
	}}
	return mdns.RcodeSuccess, q.write(w, m, 0)
}

// nodata: the name exists, not with this type. The SOA in the authority
// section lets resolvers cache that (RFC 2308).
func (h *steer) nodata(q *Request, w mdns.ResponseWriter, r *mdns.Msg, scope uint8) (int, error) {
	m := q.reply(r, mdns.RcodeSuccess)
	m.Ns = q.zone.neg
	return mdns.RcodeSuccess, q.write(w, m, scope)
}

func (h *steer) negative(q *Request, w mdns.ResponseWriter, r *mdns.Msg, rcode int) (int, error) {
	m := q.reply(r, rcode)
	m.Ns = q.zone.neg
	return rcode, q.write(w, m, 0)
}

package dns

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// rateLimitEntries bounds the limiter's table: when it is full, entries of
// past seconds are swept, so spoofed sources cannot grow it without end.
const rateLimitEntries = 1 << 16

// rateLimit is response-rate limiting per client /24 (IPv6 /56) over UDP,
// in one-second windows. It runs before anything is computed, so a flood
// costs a map lookup per packet. TCP is never limited: its source address
// cannot be spoofed, and the slip replies send real clients there.
type rateLimit struct {
	next    Handler
	perSec  uint32
	slip    uint32
	now     func() time.Time
	dropped prometheus.Counter
	slipped prometheus.Counter

	mu      sync.Mutex
	clients map[uint64]rlEntry
}

type rlEntry struct {
	sec     int64
	n       uint32 // replies this second
	limited uint32 // replies over the limit this second
}

func newRateLimit(next Handler, rl RateLimit, now func() time.Time, m *metrics) *rateLimit {
	return &rateLimit{
		next: next, perSec: uint32(rl.PerSecond), slip: uint32(rl.Slip), now: now,
		dropped: m.rateLimited.WithLabelValues("drop"), slipped: m.rateLimited.WithLabelValues("slip"),
		clients: map[uint64]rlEntry{},
	}
}

func (h *rateLimit) Name() string { return "ratelimit" }

type rlAction uint8

const (
	rlAllow rlAction = iota
	rlDrop
	rlSlip
)

func (h *rateLimit) ServeDNS(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) (int, error) {
	q := RequestFrom(ctx)
	if q.TCP || !q.Client.IsValid() {
		return h.next.ServeDNS(ctx, w, r)
	}
	switch h.check(q.Client) {
	case rlDrop:
		h.dropped.Inc()
		return mdns.RcodeSuccess, nil // nothing written, nothing to write
	case rlSlip:
		h.slipped.Inc()
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Truncated = true
		if r.IsEdns0() != nil {
			m.Extra = []mdns.RR{&mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT, Class: maxUDPSize}}}
		}
		q.written, q.rcode = true, m.Rcode
		return mdns.RcodeSuccess, w.WriteMsg(m)
	}
	return h.next.ServeDNS(ctx, w, r)
}

func (h *rateLimit) check(a netip.Addr) rlAction {
	key := clientKey(a)
	sec := h.now().Unix()
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.clients[key]
	if e.sec != sec {
		e = rlEntry{sec: sec}
	}
	e.n++
	act := rlAllow
	if e.n > h.perSec {
		e.limited++
		act = rlDrop
		if h.slip > 0 && e.limited%h.slip == 0 {
			act = rlSlip
		}
	}
	if !ok && len(h.clients) >= rateLimitEntries {
		for k, v := range h.clients {
			if v.sec != sec {
				delete(h.clients, k)
			}
		}
	}
	if ok || len(h.clients) < rateLimitEntries {
		h.clients[key] = e
	}
	return act
}

// clientKey is the client's /24 (IPv4) or /56 (IPv6); the low byte tells
// the families apart (4, or 0 for IPv6).
func clientKey(a netip.Addr) uint64 {
	if a.Is4() {
		b := a.As4()
		return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | 4
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]) &^ 0xff
}

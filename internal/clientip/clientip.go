// Package clientip finds the address an HTTP request really came from,
// believing X-Forwarded-For only from the operator's own proxies.
package clientip

import (
	"net/http"
	"net/netip"
	"strings"
)

// From is the socket peer, or, when the peer is a trusted proxy, the
// right-most X-Forwarded-For hop that is not itself trusted. Walking from
// the right matters: everything left of our own proxies is client-written.
func From(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := ap.Addr().Unmap()
	if !inPrefixes(addr, trusted) {
		return addr
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				// A garbled hop ends the chain we can believe.
				return addr
			}
			a = a.Unmap()
			addr = a
			if !inPrefixes(a, trusted) {
				return a
			}
		}
	}
	return addr
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

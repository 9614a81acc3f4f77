package steering

import (
	"net/netip"
	"time"
)

// DecisionRecord is one steering answer as the decision log keeps it,
// whichever protocol gave it (DNS, HTTP 302, HLS or DASH content
// steering): the shape of Traffic Router's access log, so an operator can
// ask afterwards why a client got a CDN.
type DecisionRecord struct {
	At       time.Time
	Protocol string // "dns", "http", "hls", "dash"
	Service  string
	// Client is the address the request came from: the resolver for DNS.
	Client netip.Addr
	// ECS is the EDNS Client Subnet the resolver sent (the zero Prefix when
	// none); Location was looked up from it when present.
	ECS      netip.Prefix
	Location Location
	Scope    Scope // of the ranking that answered
	CDN      string
	Rule     Rule
	Stale    bool   // the static order answered: no snapshot, or one older than stale.static
	Version  uint64 // of the snapshot that answered
	// Result is the protocol's outcome: a DNS rcode name ("NOERROR",
	// "NXDOMAIN", "REFUSED") or an HTTP status ("302").
	Result  string
	Latency time.Duration
}

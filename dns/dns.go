// Package dns is cdnpilot's authoritative steering DNS server on miekg/dns:
// <service>.<zone> answers with the CDN the steering table picks for the
// client's location, taken from EDNS Client Subnet or the resolver's
// address. Queries run through a handler chain built once, CoreDNS-style:
// Recover -> [RateLimit] -> Metrics -> [Log] -> ClientInfo -> Steer ->
// Static fallback.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Handler answers or delegates. Returning SERVFAIL, REFUSED, FORMERR or
// NOTIMP means nothing was written yet, and the server writes the error.
type Handler interface {
	ServeDNS(ctx context.Context, w mdns.ResponseWriter, r *mdns.Msg) (int, error)
	Name() string
}

// ClientWrite reports whether a handler that returned rcode has written
// the reply itself; for the four error codes the server writes it.
func ClientWrite(rcode int) bool {
	switch rcode {
	case mdns.RcodeServerFailure, mdns.RcodeRefused, mdns.RcodeFormatError, mdns.RcodeNotImplemented:
		return false
	}
	return true
}

// Decider picks a CDN for a query; *steering.Table is the one in use.
type Decider interface {
	Decide(q steering.Query) (steering.Decision, error)
}

var _ Decider = (*steering.Table)(nil)

// DecisionLogger keeps sampled steering decisions (the analytics store's
// decision log). The server hands records over from its own goroutine,
// never from the one answering, so a slow logger costs records, not
// answers.
type DecisionLogger interface {
	LogDecision(steering.DecisionRecord)
}

// SOA is the start-of-authority record every zone answers with.
type SOA struct {
	MName, RName                    string
	Serial                          uint32
	Refresh, Retry, Expire, Minimum time.Duration
}

// NameServer is an NS record of every zone. Addrs are needed for a name
// inside a served zone: the server answers them and adds them as glue.
type NameServer struct {
	Name  string
	Addrs []netip.Addr
}

// RateLimit is response-rate limiting per client /24 (IPv6 /56) over UDP.
// PerSecond 0 disables it. Over the limit every Slip-th reply is an empty
// truncated one, so a real client retries over TCP (which is never
// limited); the others are dropped. Slip 0 drops them all.
type RateLimit struct {
	PerSecond int
	Slip      int
}

// Options configure a Server.
type Options struct {
	Zones []string // served zones, e.g. "demo.cdnpilot.test."
	// TTL of a steered answer, IncidentTTL while its ranking shows
	// trouble; TTLJitter (0..0.5) takes up to that share off at random.
	TTL, IncidentTTL time.Duration
	TTLJitter        float64
	ApexTTL          time.Duration // SOA, NS and name server addresses
	SOA              SOA
	NS               []NameServer
	RateLimit        RateLimit

	Catalog steering.Catalog // services steered and where each CDN is
	Decider Decider
	Geo     geo.Lookuper // client address or ECS prefix -> location

	// DecisionLog receives a LogSample share (0..1) of the steered
	// answers; nil turns the Log step off.
	DecisionLog DecisionLogger
	LogSample   float64

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are kept but not exported
	Now        func() time.Time      // nil: time.Now
}

// validate checks what New cannot work without; the config package has
// already checked the values an operator writes, key by key.
func (o *Options) validate() error {
	var errs []error
	if len(o.Zones) == 0 {
		errs = append(errs, errors.New("no zones"))
	}
	for _, z := range o.Zones {
		if !hostname(z) {
			errs = append(errs, fmt.Errorf("zone %q is not a domain name", z))
		}
	}
	if o.TTL < time.Second || o.IncidentTTL < time.Second || o.ApexTTL < time.Second {
		errs = append(errs, errors.New("ttl, incident ttl and apex ttl must be at least 1s"))
	}
	if !(o.TTLJitter >= 0 && o.TTLJitter <= 0.5) {
		errs = append(errs, fmt.Errorf("ttl jitter %v is not in 0..0.5", o.TTLJitter))
	}
	if len(o.NS) == 0 {
		errs = append(errs, errors.New("no name servers"))
	}
	if o.Decider == nil || o.Geo == nil {
		errs = append(errs, errors.New("a decider and a geo lookup are required"))
	}
	if err := o.Catalog.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("catalog: %w", err))
	}
	if !(o.LogSample >= 0 && o.LogSample <= 1) {
		errs = append(errs, fmt.Errorf("decision log sample %v is not in 0..1", o.LogSample))
	}
	if o.RateLimit.PerSecond < 0 || o.RateLimit.Slip < 0 {
		errs = append(errs, errors.New("rate limit and slip must not be negative"))
	}
	return errors.Join(errs...)
}

// hostname reports whether s is a domain name of letters, digits,
// hyphens and underscores, optionally fully qualified, not the root.
func hostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i] | 0x20
			if !(c >= 'a' && c <= 'z' || label[i] >= '0' && label[i] <= '9' || label[i] == '-' || label[i] == '_') {
				return false
			}
		}
	}
	return true
}

// canonical is a domain name as the server compares it: lower case, with
// the trailing dot.
func canonical(name string) string { return strings.ToLower(mdns.Fqdn(name)) }

// rcodeName names an rcode for metrics and the decision log. 16 is
// BADVERS here: the server does no TSIG, so it is never BADSIG.
func rcodeName(rc int) string {
	switch rc {
	case mdns.RcodeSuccess:
		return "NOERROR"
	case mdns.RcodeNameError:
		return "NXDOMAIN"
	case mdns.RcodeRefused:
		return "REFUSED"
	case mdns.RcodeFormatError:
		return "FORMERR"
	case mdns.RcodeServerFailure:
		return "SERVFAIL"
	case mdns.RcodeNotImplemented:
		return "NOTIMP"
	case mdns.RcodeBadVers:
		return "BADVERS"
	}
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + fmt.Sprint(rc)
}

package scorer

import (
	"net/netip"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/steering"
)

// Observation is a beacon as the engine sees it: the server's receive time
// (never the client's clock), the server's geo lookup, and the client's
// network for the poisoning caps.
func Observation(b *record.Beacon) steering.Observation {
	o := steering.Observation{
		At:       time.UnixMilli(b.ReceivedAt),
		Service:  b.Service,
		CDN:      b.CDN,
		Location: steering.Location{Region: b.Region, Country: b.Country, ASN: b.ASN},
		CMCD:     b.Source == record.SourceCMCD,

		StartupMS:      b.StartupMS,
		PlayedMS:       b.PlayedMS,
		RebufferMS:     b.RebufferMS,
		BitrateKbps:    b.BitrateKbps,
		ThroughputKbps: b.ThroughputKbps,
		TTFBMS:         b.TTFBMS,
		Fatal:          b.Fatal,
	}
	if a, err := netip.ParseAddr(b.ClientIP); err == nil {
		o.Client = steering.ClientKey(a)
	}
	switch b.Type {
	case record.TypeViewStart:
		o.Kind = steering.KindViewStart
	case record.TypeHeartbeat:
		o.Kind = steering.KindHeartbeat
	case record.TypeError:
		o.Kind = steering.KindError
	case record.TypeViewEnd:
		o.Kind = steering.KindViewEnd
	default:
		o.Kind = steering.KindOther
	}
	return o
}

package steering

import (
	"net/netip"
	"time"
)

// Kind is what an observation reports, reduced from the beacon types to
// what the windows count.
type Kind uint8

const (
	KindOther     Kind = iota // carries metrics only (bitrate_change, rebuffer_*, cdn_switch)
	KindViewStart             // first frame: a play attempt that started, with startup time
	KindHeartbeat             // play and stall time deltas
	KindError                 // Fatal: the view failed
	KindViewEnd               // StartupMS 0 on a view_end from the SDK: exit before video start
)

// Observation is one beacon as the engine sees it.
type Observation struct {
	At       time.Time // server receive time
	Service  string
	CDN      string
	Location Location
	// Client groups beacons per network (ClientKey) for poisoning limits.
	Client uint64
	Kind   Kind
	// CMCD is set for observations from CMCD reports: they carry no play
	// time, so they stay out of the rebuffer ratio, and cannot tell an
	// exit before video start.
	CMCD bool

	StartupMS      uint32
	PlayedMS       uint32
	RebufferMS     uint32 // excluding seek-induced stalls
	BitrateKbps    uint32
	ThroughputKbps uint32
	TTFBMS         uint32
	Fatal          bool
}

// ClientKey groups client addresses the way an attacker's addresses
// cluster: an IPv4 /24 or an IPv6 /48 count as one client.
func ClientKey(a netip.Addr) uint64 {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return uint64(b[0])<<16 | uint64(b[1])<<8 | uint64(b[2]) | 1<<32
	}
	b := a.As16()
	return hashBytes(b[:6]) | 1<<63
}

func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// attempt reports whether the observation counts a play attempt.
func (o *Observation) attempt() bool {
	switch o.Kind {
	case KindViewStart:
		return true
	case KindError:
		return o.Fatal && o.StartupMS == 0
	case KindViewEnd:
		return o.StartupMS == 0 && !o.CMCD
	}
	return false
}

// exit reports whether the observation ends a view: a view_end of a view
// that started, or a fatal error.
func (o *Observation) exit() bool {
	switch o.Kind {
	case KindError:
		return o.Fatal
	case KindViewEnd:
		return o.StartupMS > 0 || o.CMCD
	}
	return false
}

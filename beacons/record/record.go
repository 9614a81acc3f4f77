// Package record is the versioned Kafka record for one QoE beacon: the wire
// contract between ingest, the analytics consumer and the scorer.
//
// The encoding is a compact, length-prefixed binary format (see FORMAT.md).
// It is hand-written rather than JSON because ingest encodes and the consumer
// and the scorer both decode every beacon, and reflection-based JSON costs
// more than the rest of the hot path together.
package record

import (
	"fmt"
)

// Version is the record version this package writes. Decode accepts every
// version up to and including it.
const Version = 1

// Type is a beacon event type. The string forms are the public JSON names.
type Type uint8

// Event types. The numeric values are part of the wire format: never reorder.
const (
	TypeUnknown Type = iota
	TypeViewStart
	TypeHeartbeat
	TypeRebufferStart
	TypeRebufferEnd
	TypeBitrateChange
	TypeError
	TypeCDNSwitch
	TypeViewEnd
	typeCount
)

var typeNames = [...]string{
	TypeUnknown:       "unknown",
	TypeViewStart:     "view_start",
	TypeHeartbeat:     "heartbeat",
	TypeRebufferStart: "rebuffer_start",
	TypeRebufferEnd:   "rebuffer_end",
	TypeBitrateChange: "bitrate_change",
	TypeError:         "error",
	TypeCDNSwitch:     "cdn_switch",
	TypeViewEnd:       "view_end",
}

func (t Type) String() string {
	if t < typeCount {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseType maps a public JSON name to a Type.
func ParseType(s string) (Type, bool) {
	for i := TypeViewStart; i < typeCount; i++ {
		if typeNames[i] == s {
			return i, true
		}
	}
	return TypeUnknown, false
}

// Source says which ingest path produced a record.
type Source uint8

// Sources. Numeric values are part of the wire format.
const (
	SourceBeacon Source = iota // POST /v1/beacons
	SourceCMCD                 // /v1/cmcd (event or request mode)
)

func (s Source) String() string {
	switch s {
	case SourceBeacon:
		return "beacon"
	case SourceCMCD:
		return "cmcd"
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// Beacon is one player event, as accepted and enriched by ingest. Zero means
// "not reported" for every metric: a player that has no value omits it.
type Beacon struct {
	// Set by the server.
	EventID    string // server-assigned, unique per accepted beacon; the dedup key downstream
	ReceivedAt int64  // ms since epoch, server clock
	ClientIP   string // from the socket, or X-Forwarded-For of a trusted proxy
	Country    string // ISO 3166-1 alpha-2, from the geo lookup
	Region     string // steering region, from the geo lookup
	ASN        uint32 // from the geo lookup
	Source     Source

	// Sent by the player.
	Type          Type
	ViewID        string
	SessionID     string
	TS            int64 // ms since epoch, client clock
	Seq           uint32
	Service       string
	CDN           string // the pathway / service-location id
	PrevCDN       string // for cdn_switch: the CDN the view left
	Host          string
	ContentID     string
	Player        string
	PlayerVersion string
	Device        string
	OS            string

	StartupMS      uint32 // video startup time (play intent to first frame)
	RebufferMS     uint32 // stall time excluding seek-induced stalls
	RebufferCount  uint32 // stalls excluding seek-induced ones
	SeekRebufferMS uint32 // seek-induced stall time, reported apart
	Seek           bool   // on rebuffer_start/end: the stall was caused by a seek
	PlayedMS       uint32 // watch time spent playing
	BitrateKbps    uint32
	ThroughputKbps uint32
	TTFBMS         uint32 // segment time to first byte
	DroppedFrames  uint32
	ErrorCode      string
	Fatal          bool
}

package cmcd

import (
	"crypto/sha256"
	"math"
	"strconv"
	"strings"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

const maxErrorCode = 256 // joined ec codes kept in a beacon

// Beacon maps the report onto the beacon model. It fills only what CMCD
// carries; the ingest handler sets the server-side fields (EventID,
// ReceivedAt, ClientIP, geo, Source) and Service. docs/CMCD.md has the table.
func (r Report) Beacon() (record.Beacon, error) {
	if r.SID == "" {
		return record.Beacon{}, &Error{Key: "sid", Reason: "missing: a beacon needs a session"}
	}
	typ, err := r.beaconType()
	if err != nil {
		return record.Beacon{}, err
	}
	b := record.Beacon{
		Type: typ,
		// A CMCD session is one playback (players mint a new sid per load),
		// so it is both the view and the session.
		ViewID:         r.SID,
		SessionID:      r.SID,
		TS:             r.TS,
		CDN:            r.CDN,
		Host:           r.H,
		ContentID:      r.CID,
		StartupMS:      clamp32(r.MSD),
		BitrateKbps:    clamp32(pick(r.PB, r.BR)),
		ThroughputKbps: clamp32(pick(r.MTP)),
		TTFBMS:         clamp32(r.TTFB),
		RebufferMS:     clamp32(largest(r.BSD)),
		DroppedFrames:  clamp32(r.DFA),
		ErrorCode:      errorCode(r.EC),
	}
	if r.SN != nil {
		b.Seq = clamp32(*r.SN)
	}
	if typ == record.TypeError && r.STA == "f" {
		b.Fatal = true
	}
	return b, nil
}

// beaconType decides the event type. The rules are stateless, since ingest
// sees one report at a time: a ps report with msd is the first "playing"
// after start, and one with bs/bsd is the end of a stall.
func (r Report) beaconType() (record.Type, error) {
	switch r.E {
	case "":
		// Request mode has no events; msd rides on the first request after
		// playback started, which makes that request the view start.
		if r.MSD > 0 {
			return record.TypeViewStart, nil
		}
		return record.TypeHeartbeat, nil
	case "ps":
		return r.playStateType()
	case "e":
		return record.TypeError, nil
	case "bc":
		return record.TypeBitrateChange, nil
	case "t", "rr":
		return record.TypeHeartbeat, nil
	case "pr", "c", "b", "h", "m", "um", "pe", "pc", "as", "ae", "abs", "abe", "sk", "ce":
		// No beacon type of their own; as heartbeats they still carry the
		// player's current bitrate, buffer and CDN.
		return record.TypeHeartbeat, nil
	}
	return record.TypeUnknown, &Error{Key: "e", Reason: "unknown event type " + strconv.Quote(r.E)}
}

func (r Report) playStateType() (record.Type, error) {
	switch r.STA {
	case "":
		return record.TypeUnknown, &Error{Key: "sta", Reason: "missing: required with e=ps"}
	case "p":
		switch {
		case r.MSD > 0:
			return record.TypeViewStart, nil
		case r.BS || len(r.BSD) > 0:
			return record.TypeRebufferEnd, nil
		}
		return record.TypeHeartbeat, nil
	case "r":
		return record.TypeRebufferStart, nil
	case "e", "q":
		return record.TypeViewEnd, nil
	case "f":
		return record.TypeError, nil
	}
	// s starting, k seeking, a paused, w waiting, d preloading, and states
	// newer than this code.
	return record.TypeHeartbeat, nil
}

// pick returns the value of the first list that has one, preferring the
// entry tagged video ("v" or "av"): the video rendition is what viewers rate.
func pick(lists ...[]Measure) int64 {
	for _, l := range lists {
		if len(l) == 0 {
			continue
		}
		for _, m := range l {
			if m.OT == "v" || m.OT == "av" {
				return m.Value
			}
		}
		return l[0].Value
	}
	return 0
}

// largest is used for stall durations: playback stops when any track
// starves, so the longest one is the stall the viewer saw.
func largest(l []Measure) int64 {
	var n int64
	for _, m := range l {
		n = max(n, m.Value)
	}
	return n
}

func clamp32(n int64) uint32 {
	if n <= 0 {
		return 0
	}
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

func errorCode(ec []string) string {
	s := strings.Join(ec, ",")
	if len(s) > maxErrorCode {
		s = s[:maxErrorCode]
	}
	return s
}

// EventID derives a stable, UUID-formatted id for an event report. Players
// re-send a batch after 429/5xx, and sn only resets with a new sid, so
// (sid, sn) names one report; e is mixed in because sn is counted per target
// and one target may take several event types. The id is the first 16 bytes
// of SHA-256 with the RFC 9562 version 8 (custom) and variant bits set.
func EventID(sid string, sn uint32, e string) string {
	// Length-prefixed fields: no sid/e pair can collide with another by
	// moving bytes across the boundary.
	buf := make([]byte, 0, 64+len(sid)+len(e))
	buf = append(buf, "cdnpilot-cmcd-event-v1\x00"...)
	buf = strconv.AppendInt(buf, int64(len(sid)), 10)
	buf = append(buf, ':')
	buf = append(buf, sid...)
	buf = strconv.AppendUint(buf, uint64(sn), 10)
	buf = append(buf, ':')
	buf = strconv.AppendInt(buf, int64(len(e)), 10)
	buf = append(buf, ':')
	buf = append(buf, e...)
	sum := sha256.Sum256(buf)
	return record.FormatUUID([16]byte(sum[:16]), 8)
}

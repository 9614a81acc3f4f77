package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Magic is the first byte of every encoded record, so a consumer can tell a
// record from stray bytes on the topic before trusting the version byte.
const Magic = 0xCB

// MaxStringLen bounds every string field on decode: a record is produced by
// our own ingest, so anything longer is corruption or a forged message.
const MaxStringLen = 4096

const (
	flagSeek  = 1 << 0
	flagFatal = 1 << 1
)

// ErrCorrupt is wrapped by every decode error.
var ErrCorrupt = errors.New("corrupt beacon record")

// AppendBinary appends the encoded record to dst. It never fails; the error
// is there to satisfy encoding.BinaryAppender.
func (b *Beacon) AppendBinary(dst []byte) ([]byte, error) {
	dst = append(dst, Magic, Version)
	dst = appendString(dst, b.EventID)
	dst = binary.AppendVarint(dst, b.ReceivedAt)
	dst = appendString(dst, b.ClientIP)
	dst = appendString(dst, b.Country)
	dst = appendString(dst, b.Region)
	dst = binary.AppendUvarint(dst, uint64(b.ASN))
	dst = append(dst, byte(b.Source), byte(b.Type))
	dst = appendString(dst, b.ViewID)
	dst = appendString(dst, b.SessionID)
	dst = binary.AppendVarint(dst, b.TS)
	dst = binary.AppendUvarint(dst, uint64(b.Seq))
	dst = appendString(dst, b.Service)
	dst = appendString(dst, b.CDN)
	dst = appendString(dst, b.PrevCDN)
	dst = appendString(dst, b.Host)
	dst = appendString(dst, b.ContentID)
	dst = appendString(dst, b.Player)
	dst = appendString(dst, b.PlayerVersion)
	dst = appendString(dst, b.Device)
	dst = appendString(dst, b.OS)
	var flags byte
	if b.Seek {
		flags |= flagSeek
	}
	if b.Fatal {
		flags |= flagFatal
	}
	dst = append(dst, flags)
	for _, v := range [...]uint32{b.StartupMS, b.RebufferMS, b.RebufferCount, b.SeekRebufferMS,
		b.PlayedMS, b.BitrateKbps, b.ThroughputKbps, b.TTFBMS, b.DroppedFrames} {
		dst = binary.AppendUvarint(dst, uint64(v))
	}
	dst = appendString(dst, b.ErrorCode)
	return dst, nil
}

// MarshalBinary encodes the record into a new slice.
func (b *Beacon) MarshalBinary() ([]byte, error) {
	return b.AppendBinary(make([]byte, 0, 256))
}

// UnmarshalBinary decodes one record. Errors wrap ErrCorrupt and name the
// field that could not be read.
func (b *Beacon) UnmarshalBinary(data []byte) error {
	return b.Decode(data, nil)
}

// Interner shares the strings of low-cardinality fields (service, CDN,
// region, player, ...) between decoded records, so a consumer holding
// tens of thousands of rows allocates each distinct value once. It is not
// safe for concurrent use; the zero value is ready.
type Interner struct {
	m map[string]string
}

// maxInterned bounds the table: past it, it starts over, so a stream of
// distinct values costs a map reset now and then, not unbounded memory.
const maxInterned = 16384

func (in *Interner) bytes(p []byte) string {
	if s, ok := in.m[string(p)]; ok { // no allocation for the lookup
		return s
	}
	if in.m == nil || len(in.m) >= maxInterned {
		in.m = make(map[string]string, 256)
	}
	s := string(p)
	in.m[s] = s
	return s
}

// Decode is UnmarshalBinary with an optional Interner.
func (b *Beacon) Decode(data []byte, in *Interner) error {
	d := decoder{buf: data, in: in}
	if len(data) < 2 || data[0] != Magic {
		return fmt.Errorf("%w: bad magic byte", ErrCorrupt)
	}
	if v := data[1]; v == 0 || v > Version {
		return fmt.Errorf("%w: unsupported version %d (this build reads up to %d)", ErrCorrupt, v, Version)
	}
	d.pos = 2
	*b = Beacon{
		EventID:       d.str("event_id"),
		ReceivedAt:    d.varint("received_at"),
		ClientIP:      d.str("client_ip"),
		Country:       d.istr("country"),
		Region:        d.istr("region"),
		ASN:           d.u32("asn"),
		Source:        Source(d.byte("source")),
		Type:          Type(d.byte("type")),
		ViewID:        d.str("view_id"),
		SessionID:     d.str("session_id"),
		TS:            d.varint("ts"),
		Seq:           d.u32("seq"),
		Service:       d.istr("service"),
		CDN:           d.istr("cdn"),
		PrevCDN:       d.istr("prev_cdn"),
		Host:          d.istr("host"),
		ContentID:     d.str("content_id"),
		Player:        d.istr("player"),
		PlayerVersion: d.istr("player_version"),
		Device:        d.istr("device"),
		OS:            d.istr("os"),
	}
	flags := d.byte("flags")
	b.Seek = flags&flagSeek != 0
	b.Fatal = flags&flagFatal != 0
	b.StartupMS = d.u32("startup_ms")
	b.RebufferMS = d.u32("rebuffer_ms")
	b.RebufferCount = d.u32("rebuffer_count")
	b.SeekRebufferMS = d.u32("seek_rebuffer_ms")
	b.PlayedMS = d.u32("played_ms")
	b.BitrateKbps = d.u32("bitrate_kbps")
	b.ThroughputKbps = d.u32("throughput_kbps")
	b.TTFBMS = d.u32("ttfb_ms")
	b.DroppedFrames = d.u32("dropped_frames")
	b.ErrorCode = d.istr("error_code")
	if d.err != nil {
		return d.err
	}
	if d.pos != len(data) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(data)-d.pos)
	}
	if b.Type == TypeUnknown || b.Type >= typeCount {
		return fmt.Errorf("%w: field type: unknown event type %d", ErrCorrupt, b.Type)
	}
	if b.Source > SourceCMCD {
		return fmt.Errorf("%w: field source: unknown source %d", ErrCorrupt, b.Source)
	}
	if flags&^(flagSeek|flagFatal) != 0 {
		return fmt.Errorf("%w: field flags: unknown bits %#x", ErrCorrupt, flags)
	}
	if err := b.Check(); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

// Check reports what no store can take: ingest always sets these, so a
// record without them did not come from ingest. The consumer dead-letters
// such records instead of retrying an insert that can never succeed.
func (b *Beacon) Check() error {
	switch {
	case b.EventID == "":
		return errors.New("field event_id: empty")
	case b.ReceivedAt <= 0 || b.ReceivedAt/1000 > math.MaxUint32:
		// DateTime is unsigned 32-bit seconds on every ClickHouse version.
		return fmt.Errorf("field received_at: %d ms out of range", b.ReceivedAt)
	case b.Type == TypeUnknown || b.Type >= typeCount:
		return fmt.Errorf("field type: unknown event type %d", b.Type)
	}
	return nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decoder keeps the first error so the field list above reads straight.
type decoder struct {
	buf []byte
	pos int
	err error
	in  *Interner
}

func (d *decoder) fail(field, why string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: field %s: %s", ErrCorrupt, field, why)
	}
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.pos >= len(d.buf) {
		d.fail(field, "truncated")
		return 0
	}
	c := d.buf[d.pos]
	d.pos++
	return c
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.pos:])
	if n <= 0 || n > 1 && d.buf[d.pos+n-1] == 0 {
		// An overlong varint would make two encodings of one record.
		d.fail(field, "bad varint")
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf[d.pos:])
	if n <= 0 || n > 1 && d.buf[d.pos+n-1] == 0 {
		d.fail(field, "bad varint")
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) u32(field string) uint32 {
	v := d.uvarint(field)
	if v > math.MaxUint32 {
		d.fail(field, "out of range")
		return 0
	}
	return uint32(v)
}

func (d *decoder) str(field string) string { return d.strWith(field, false) }

// istr reads a low-cardinality string, interned when the decoder has an
// Interner.
func (d *decoder) istr(field string) string { return d.strWith(field, d.in != nil) }

func (d *decoder) strWith(field string, intern bool) string {
	n := d.uvarint(field)
	if d.err != nil {
		return ""
	}
	if n > MaxStringLen {
		d.fail(field, fmt.Sprintf("length %d over %d", n, MaxStringLen))
		return ""
	}
	if uint64(len(d.buf)-d.pos) < n {
		d.fail(field, "truncated")
		return ""
	}
	p := d.buf[d.pos : d.pos+int(n)]
	d.pos += int(n)
	if n == 0 {
		return ""
	}
	if intern {
		return d.in.bytes(p)
	}
	return string(p)
}

package record

import (
	"crypto/rand"
	"encoding/hex"
)

// NewEventID returns a random UUIDv4 string: the event id ingest gives a
// beacon. The client cannot choose it, so it cannot make a real beacon look
// like a duplicate of a forged one.
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms (Go 1.24+)
	return FormatUUID(b, 4)
}

// FormatUUID sets the RFC 9562 version and variant bits of b and formats it
// the canonical 8-4-4-4-12 way.
func FormatUUID(b [16]byte, version byte) string {
	b[6] = b[6]&0x0f | version<<4
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

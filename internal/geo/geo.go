// Package geo maps a client address to the steering location (country, region, ASN) it is steered by.
package geo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
)

// Location is where steering places a client address.
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code, upper case ("ZZ" for unknown or local).
	Country string
	// Region is the steering region ("eu-west"). It may be empty for an
	// mmdb hit whose country has no entry in the region map; steering then
	// falls back to the country or global scope.
	Region string
	// ASN is the autonomous system number, 0 when unknown.
	ASN uint32
	// Prefix is the network the answer came from. The DNS server uses
	// Prefix.Bits() as the ECS scope, so a resolver caches the answer for
	// exactly the addresses that would get the same location.
	Prefix netip.Prefix
}

// RandomAddr returns an address drawn uniformly from l.Prefix. The network
// and broadcast addresses are not excluded: callers use these addresses as
// synthetic client identities, never as destinations. It returns the zero
// Addr when l.Prefix is not valid.
func (l Location) RandomAddr(r *rand.Rand) netip.Addr {
	p := l.Prefix
	if !p.IsValid() {
		return netip.Addr{}
	}
	p = p.Masked()
	if p.Addr().Is4() {
		b := p.Addr().As4()
		v := binary.BigEndian.Uint32(b[:]) | uint32(r.Uint64())&lowMask32(32-p.Bits())
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	b := p.Addr().As16()
	host := 128 - p.Bits()
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	lo |= r.Uint64() & lowMask64(min(host, 64))
	hi |= r.Uint64() & lowMask64(max(host-64, 0))
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// lowMask32 returns a mask of the n low bits; shifts by 32 are defined in Go
// (they yield 0), so n == 32 needs no special case.
func lowMask32(n int) uint32 { return ^(^uint32(0) << n) }

func lowMask64(n int) uint64 { return ^(^uint64(0) << n) }

var (
	errCountry = errors.New("want two ASCII letters (ISO 3166-1 alpha-2)")
	errRegion  = errors.New("want 1-64 characters from [a-z0-9._-]")
	errEmpty   = errors.New("empty")
)

// normCountry validates an ISO 3166-1 alpha-2 code and returns it in upper
// case. Only the shape is checked: the code list changes over time and
// user-assigned codes such as "ZZ" are legitimate here.
func normCountry(s string) (string, error) {
	if len(s) != 2 {
		return "", fmt.Errorf("%q: %w", s, errCountry)
	}
	var b [2]byte
	for i := range 2 {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		default:
			return "", fmt.Errorf("%q: %w", s, errCountry)
		}
		b[i] = c
	}
	return string(b[:]), nil
}

// checkRegion keeps region names safe to use unescaped as metric label
// values, Kafka keys, DNS labels and URL path segments.
func checkRegion(s string) error {
	if s == "" {
		return errEmpty
	}
	if len(s) > 64 {
		return fmt.Errorf("%q: %w", s, errRegion)
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: %w", s, errRegion)
		}
	}
	return nil
}

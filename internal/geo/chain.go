package geo

import "net/netip"

// Lookuper resolves a client address to a location.
type Lookuper interface {
	Lookup(addr netip.Addr) (Location, bool)
}

// Chain asks each Lookuper in turn and returns the first hit. Put the
// operator's coverage file first so it can correct or refine an mmdb, and
// the mmdb after it to cover the rest of the world.
type Chain []Lookuper

var _ Lookuper = Chain(nil)

// Lookup returns the first hit in chain order.
func (c Chain) Lookup(addr netip.Addr) (Location, bool) {
	for _, l := range c {
		if loc, ok := l.Lookup(addr); ok {
			return loc, true
		}
	}
	return Location{}, false
}

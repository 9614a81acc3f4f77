package geo

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// MMDB answers lookups from MaxMind-format databases (GeoLite2/GeoIP2 City,
// Country and ASN, or any database with the same field names). It is safe
// for concurrent use; Close it when done.
//
// It takes a country database and an ASN database together, rather than
// leaving that to a Chain, because a Chain stops at the first hit while a
// location needs fields from both: the country from one and the ASN from the
// other.
type MMDB struct {
	readers []*maxminddb.Reader // country database first, then ASN
	regions map[string]string   // country -> region
}

var _ Lookuper = (*MMDB)(nil)

// mmdbRecord names the only fields Lookup reads; the decoder skips the rest
// of a record (city names in many languages, coordinates) without decoding.
type mmdbRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	// RegisteredCountry is where the network is registered; GeoLite2 has
	// only this for some anycast and satellite networks.
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	ASN uint32 `maxminddb:"autonomous_system_number"`
	// Region lets a database built for cdnpilot carry the steering region
	// itself; it overrides the region map.
	Region string `maxminddb:"cdnpilot_region"`
}

// OpenMMDB opens a country database (City or Country) and an ASN database;
// either path may be empty, not both. Each database may carry any of the
// fields: country.iso_code (or registered_country.iso_code),
// autonomous_system_number and cdnpilot_region. regions maps an ISO
// country code to a steering region; its keys and values are validated.
func OpenMMDB(countryPath, asnPath string, regions map[string]string) (*MMDB, error) {
	if countryPath == "" && asnPath == "" {
		return nil, errors.New("open mmdb: no database path given")
	}
	m := &MMDB{regions: make(map[string]string, len(regions))}
	for country, region := range regions {
		cc, err := normCountry(country)
		if err != nil {
			return nil, fmt.Errorf("open mmdb: region map key: %w", err)
		}
		if err := checkRegion(region); err != nil {
			return nil, fmt.Errorf("open mmdb: region map %s: %w", cc, err)
		}
		m.regions[cc] = region
	}
	for _, path := range []string{countryPath, asnPath} {
		if path == "" {
			continue
		}
		r, err := maxminddb.Open(path)
		if err != nil {
			_ = m.Close() // the open error is the one worth reporting
			return nil, fmt.Errorf("open mmdb %s: %w", path, err)
		}
		m.readers = append(m.readers, r)
	}
	return m, nil
}

// Close releases the databases.
func (m *MMDB) Close() error {
	var errs []error
	for _, r := range m.readers {
		if err := r.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	m.readers = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close mmdb: %w", err)
	}
	return nil
}

// Lookup merges the records of every database that knows addr: the first
// country, ASN and cdnpilot_region found win, in database order. It is a hit
// when a country or an ASN was found. Region comes from cdnpilot_region,
// else the region map, else stays empty. Prefix is the most specific of the
// networks the records came from: both contain addr, so the longer one is
// the set of addresses for which every field is known to be the same, the
// right ECS scope.
//
// A lookup error (a corrupt database) counts as a miss: the next source in
// a Chain, or steering's fallback, still answers the client.
func (m *MMDB) Lookup(addr netip.Addr) (Location, bool) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return Location{}, false
	}
	var loc Location
	for _, r := range m.readers {
		if addr.Is6() && r.Metadata.IPVersion == 4 {
			continue
		}
		res := r.Lookup(addr)
		if !res.Found() {
			continue
		}
		var rec mmdbRecord
		if err := res.Decode(&rec); err != nil {
			continue
		}
		cc := rec.Country.ISOCode
		if cc == "" {
			cc = rec.RegisteredCountry.ISOCode
		}
		if loc.Country == "" && cc != "" {
			if norm, err := normCountry(cc); err == nil {
				loc.Country = norm
			}
		}
		if loc.ASN == 0 {
			loc.ASN = rec.ASN
		}
		if loc.Region == "" && rec.Region != "" && checkRegion(rec.Region) == nil {
			loc.Region = rec.Region
		}
		if p := res.Prefix(); p.IsValid() && (!loc.Prefix.IsValid() || p.Bits() > loc.Prefix.Bits()) {
			loc.Prefix = p
		}
	}
	if loc.Country == "" && loc.ASN == 0 {
		return Location{}, false
	}
	if loc.Region == "" {
		loc.Region = m.regions[loc.Country]
	}
	return loc, true
}

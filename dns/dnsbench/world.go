package dnsbench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/steering"
)

// World is a steering world of many regions: a coverage file, a catalog,
// a table holding a fresh snapshot of every service, and the queries to
// send.
type World struct {
	Coverage *geo.Coverage
	Catalog  steering.Catalog
	Table    *steering.Table
	Regions  int
}

var cdns = []string{"cdn-a", "cdn-b", "cdn-c", "cdn-d", "cdn-e"}

// NewWorld has `regions` regions, each with four IPv4 /20s (two ASNs) and
// one IPv6 /48, and five CDNs. Every region and one ASN of each ranks the
// CDNs its own way: a leader with most of the weight, the others at the
// exploration share.
func NewWorld(regions int, now time.Time) (*World, error) {
	if regions < 1 || regions > 1000 {
		return nil, fmt.Errorf("regions %d is not in 1..1000", regions)
	}
	var csv bytes.Buffer
	csv.WriteString("cidr,country,region,asn\n")
	for r := range regions {
		country := string([]byte{'A' + byte(r/26%26), 'A' + byte(r%26)})
		for j := range 4 {
			k := r*4 + j
			fmt.Fprintf(&csv, "10.%d.%d.0/20,%s,%s,%d\n", k>>4, (k&15)<<4, country, regionName(r), asnOf(r, j%2))
		}
		fmt.Fprintf(&csv, "2001:db8:%x::/48,%s,%s,%d\n", r+1, country, regionName(r), asnOf(r, 0))
	}
	cov, err := geo.LoadCoverage(&csv)
	if err != nil {
		return nil, fmt.Errorf("coverage: %w", err)
	}
	cat := steering.Catalog{}
	for _, c := range cdns {
		cat.CDNs = append(cat.CDNs, steering.CDN{Name: c, Host: c + ".example.net"})
	}
	cat.Services = []steering.Service{{Name: "vod", CDNs: cdns}, {Name: "live", CDNs: []string{"cdn-b", "cdn-a", "cdn-c", "cdn-d", "cdn-e"}}}
	tab, err := steering.NewTable(cat, steering.DefaultPolicy().Stale, nil)
	if err != nil {
		return nil, err
	}
	for si, svc := range cat.Services {
		snap := &steering.Snapshot{Service: svc.Name, Version: 1, At: now, Rankings: []*steering.Ranking{
			ranking(steering.Scope{Service: svc.Name}, si),
		}}
		for r := range regions {
			snap.Rankings = append(snap.Rankings,
				ranking(steering.Scope{Service: svc.Name, Level: steering.LevelRegion, Region: regionName(r)}, si+r))
			if r%2 == 0 {
				snap.Rankings = append(snap.Rankings,
					ranking(steering.Scope{Service: svc.Name, Level: steering.LevelASN, Region: regionName(r), ASN: asnOf(r, 0)}, si+r+1))
			}
		}
		if err := tab.Store(snap); err != nil {
			return nil, err
		}
	}
	return &World{Coverage: cov, Catalog: cat, Table: tab, Regions: regions}, nil
}

func regionName(r int) string  { return fmt.Sprintf("region-%03d", r) }
func asnOf(r, j int) uint32    { return uint32(4200000000 + r*2 + j) }
func hostOf(cdn string) string { return cdn + ".example.net" }

// ranking leads with CDN lead%5; every CDN keeps an exploration share.
func ranking(sc steering.Scope, lead int) *steering.Ranking {
	r := &steering.Ranking{Scope: sc, Rule: steering.RuleMeasured}
	for i := range cdns {
		c := cdns[(lead+i)%len(cdns)]
		w := 0.02
		if i == 0 {
			w = 0.92
		}
		r.Choices = append(r.Choices, steering.Choice{CDN: c, Host: hostOf(c), Weight: w, Health: steering.HealthUp, Score: 90 - float64(i), FastScore: 90})
	}
	return r
}

// Queries are n queries in dnsperf's binary input format (-B: each
// message after its two-byte length): vod and live, A and AAAA, each with
// an ECS option for a /24 (IPv4) or /56 (IPv6) of a random region.
func (w *World) Queries(n int, seed uint64) ([]byte, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	entries := w.Coverage.Entries()
	var out bytes.Buffer
	for i := range n {
		svc := "vod"
		if rng.IntN(3) == 0 {
			svc = "live"
		}
		qt := mdns.TypeA
		if rng.IntN(5) == 0 {
			qt = mdns.TypeAAAA
		}
		e := entries[rng.IntN(len(entries))]
		bits := 24
		if e.Prefix.Addr().Is6() {
			bits = 56
		}
		p := netip.PrefixFrom(e.RandomAddr(rng), bits).Masked()
		m := new(mdns.Msg)
		m.SetQuestion(svc+".demo.cdnpilot.test.", qt)
		m.Id = uint16(i)
		m.RecursionDesired = false
		m.SetEdns0(1232, false)
		family := uint16(1)
		if p.Addr().Is6() {
			family = 2
		}
		m.IsEdns0().Option = []mdns.EDNS0{&mdns.EDNS0_SUBNET{
			Code: mdns.EDNS0SUBNET, Family: family, SourceNetmask: uint8(bits), Address: p.Addr().AsSlice(),
		}}
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("query %d: %w", i, err)
		}
		_ = binary.Write(&out, binary.BigEndian, uint16(len(b)))
		out.Write(b)
	}
	return out.Bytes(), nil
}

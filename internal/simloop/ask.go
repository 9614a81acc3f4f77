package simloop

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/steering"
	"github.com/cdnpilot/cdnpilot/steering/redirect"
)

// Timeouts of one steering request. Views are steered one after the
// other, so a lost reply holds the fleet this long.
const (
	dnsTimeout  = time.Second
	httpTimeout = 5 * time.Second
)

// dnsAsker queries the steering DNS as a resolver would on the viewer's
// behalf: UDP, EDNS Client Subnet with the viewer's /24 or /56, TCP after
// a truncated reply.
type dnsAsker struct {
	addr     string
	zone     string // fully qualified, lower case
	udp, tcp *mdns.Client
	// What the server answers for each CDN (see dns.targetOf): a CNAME
	// to its host, or its addresses. "" marks an answer two CDNs share.
	hosts map[string]string // fully qualified, lower case
	addrs map[netip.Addr]string
}

func newDNSAsker(addr, zone string, cat steering.Catalog) (*dnsAsker, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("dns server address %q is not host:port", addr)
	}
	if zone == "" {
		return nil, errors.New("no zone to ask in")
	}
	if err := cat.Validate(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	d := &dnsAsker{
		addr: addr, zone: strings.ToLower(mdns.Fqdn(zone)),
		udp:   &mdns.Client{Net: "udp", Timeout: dnsTimeout},
		tcp:   &mdns.Client{Net: "tcp", Timeout: dnsTimeout},
		hosts: map[string]string{}, addrs: map[netip.Addr]string{},
	}
	for _, c := range cat.CDNs {
		if len(c.Addrs) > 0 {
			for _, a := range c.Addrs {
				claim(d.addrs, a.Unmap(), c.Name)
			}
			continue
		}
		host := c.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if a, err := netip.ParseAddr(host); err == nil {
			claim(d.addrs, a.Unmap(), c.Name)
		} else if host != "" {
			claim(d.hosts, strings.ToLower(mdns.Fqdn(host)), c.Name)
		}
	}
	return d, nil
}

// claim maps an answer to a CDN, or to "" once a second CDN claims it.
func claim[K comparable](m map[K]string, k K, cdn string) {
	if old, ok := m[k]; ok && old != cdn {
		cdn = ""
	}
	m[k] = cdn
}

// ask resolves <service>.<zone> for a viewer: A for an IPv4 viewer,
// AAAA for an IPv6 one, and the other type when the first has no data
// (a CDN with addresses of one family only).
func (d *dnsAsker) ask(ctx context.Context, service string, client netip.Addr) (string, error) {
	name := strings.ToLower(service) + "." + d.zone
	client = client.Unmap()
	types := [2]uint16{mdns.TypeA, mdns.TypeAAAA}
	if client.Is6() {
		types[0], types[1] = types[1], types[0]
	}
	for _, qt := range types {
		r, err := d.exchange(ctx, d.query(name, qt, client))
		if err != nil {
			return "", fmt.Errorf("dns %s %s: %w", name, mdns.TypeToString[qt], err)
		}
		if r.Rcode != mdns.RcodeSuccess {
			return "", fmt.Errorf("dns %s %s: %s", name, mdns.TypeToString[qt], mdns.RcodeToString[r.Rcode])
		}
		if len(r.Answer) > 0 {
			cdn, err := d.cdnOf(r.Answer)
			if err != nil {
				return "", fmt.Errorf("dns %s %s: %w", name, mdns.TypeToString[qt], err)
			}
			return cdn, nil
		}
	}
	return "", fmt.Errorf("dns %s: no data for A or AAAA", name)
}

// query is what a resolver sends an authoritative server: no recursion
// desired, EDNS with the client's subnet.
func (d *dnsAsker) query(name string, qtype uint16, client netip.Addr) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	opt := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
	opt.SetUDPSize(1232)
	if client.IsValid() {
		family, bits := uint16(1), 24
		if client.Is6() {
			family, bits = 2, 56
		}
		p, _ := client.Prefix(bits)
		opt.Option = append(opt.Option, &mdns.EDNS0_SUBNET{
			Code: mdns.EDNS0SUBNET, Family: family, SourceNetmask: uint8(bits), Address: net.IP(p.Addr().AsSlice()),
		})
	}
	m.Extra = append(m.Extra, opt)
	return m
}

// exchange asks over UDP, and over TCP again when the reply comes back
// truncated (too big, or slipped by the server's rate limit).
func (d *dnsAsker) exchange(ctx context.Context, m *mdns.Msg) (*mdns.Msg, error) {
	r, _, err := d.udp.ExchangeContext(ctx, m, d.addr)
	if err == nil && r.Truncated {
		r, _, err = d.tcp.ExchangeContext(ctx, m, d.addr)
	}
	if err == nil && !r.Response {
		return nil, errNotResponse
	}
	return r, err
}

// errNotResponse: the client read back a message that is no response
// (QR clear). With nothing listening on the server's port, a UDP client
// the kernel gave that very port as its own sends the query to itself,
// and miekg/dns takes it, same ID, for the reply: NOERROR, no answer.
var errNotResponse = errors.New("the reply is the query itself, not a response: nothing listens on the server's port")

// cdnOf maps the first CNAME, A or AAAA of an answer to its CDN.
func (d *dnsAsker) cdnOf(answer []mdns.RR) (string, error) {
	for _, rr := range answer {
		var (
			what string
			cdn  string
			ok   bool
		)
		switch v := rr.(type) {
		case *mdns.CNAME:
			what = v.Target
			cdn, ok = d.hosts[strings.ToLower(v.Target)]
		case *mdns.A:
			a, _ := netip.AddrFromSlice(v.A)
			what = a.Unmap().String()
			cdn, ok = d.addrs[a.Unmap()]
		case *mdns.AAAA:
			a, _ := netip.AddrFromSlice(v.AAAA)
			what = a.Unmap().String()
			cdn, ok = d.addrs[a.Unmap()]
		default:
			continue
		}
		switch {
		case !ok:
			return "", fmt.Errorf("answer %s is no CDN's host or address", what)
		case cdn == "":
			return "", fmt.Errorf("answer %s is more than one CDN's: it tells them apart no more than a player could", what)
		}
		return cdn, nil
	}
	return "", errors.New("no CNAME, A or AAAA in the answer")
}

// httpAsker asks the redirector and the content steering server as
// players do, from behind a proxy that sets X-Forwarded-For (the viewer's
// address) on loopback; the server must trust loopback.
type httpAsker struct {
	base   string // without a trailing slash
	client *http.Client
	// bases are the CDNs' base URLs as the redirector builds a Location
	// on them ("<base>/"), longest first; cdn "" marks a shared one.
	bases    []cdnBase
	pathways map[string]bool     // CDN names: the pathway ids of steering manifests
	services map[string][]string // a service's CDNs in static order: its manifests' pathways
}

type cdnBase struct{ prefix, cdn string }

// playerThroughput is what a player reports before it has measured
// anything: hls.js's default estimate, in bit/s.
const playerThroughput = "500000"

func newHTTPAsker(base string, cat steering.Catalog) (*httpAsker, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("base URL %q is not an absolute http(s) URL without a query", base)
	}
	if err := cat.Validate(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	a := &httpAsker{
		base: strings.TrimSuffix(base, "/"),
		client: &http.Client{
			Timeout: httpTimeout,
			// A player's next request goes to the CDN; ours stops here.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 4,
				IdleConnTimeout:     time.Minute,
			},
		},
		pathways: map[string]bool{}, services: map[string][]string{},
	}
	byPrefix := map[string]string{}
	for _, c := range cat.CDNs {
		// As redirect.New: the base URL, else https://<host>.
		claim(byPrefix, strings.TrimSuffix(c.BaseURLOrDefault(), "/")+"/", c.Name)
		a.pathways[c.Name] = true
	}
	for p, cdn := range byPrefix {
		a.bases = append(a.bases, cdnBase{prefix: p, cdn: cdn})
	}
	slices.SortFunc(a.bases, func(x, y cdnBase) int {
		return cmp.Or(cmp.Compare(len(y.prefix), len(x.prefix)), strings.Compare(x.prefix, y.prefix))
	})
	for _, s := range cat.Services {
		a.services[s.Name] = s.CDNs
	}
	return a, nil
}

// redirect asks GET /r/{service}/master.m3u8 with the view named, so the
// pick is the view's sticky one, and maps the 302's Location to its CDN.
func (a *httpAsker) redirect(ctx context.Context, q steering.Query, client netip.Addr) (string, error) {
	target := a.base + "/r/" + url.PathEscape(q.Service) + "/master.m3u8"
	if q.ViewID != "" {
		target += "?cdnpilot_view=" + url.QueryEscape(q.ViewID)
	}
	resp, err := a.get(ctx, target, client)
	if err != nil {
		return "", fmt.Errorf("redirect: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("redirect: %s answered %s, not 302", target, resp.Status)
	}
	loc := resp.Header.Get("Location")
	for _, b := range a.bases {
		if strings.HasPrefix(loc, b.prefix) {
			if b.cdn == "" {
				return "", fmt.Errorf("redirect: Location %q is on a base URL more than one CDN has", loc)
			}
			return b.cdn, nil
		}
	}
	return "", fmt.Errorf("redirect: Location %q is on no CDN's base URL", loc)
}

// steer polls GET /steer/{service} as a player does at its start: HLS
// with the pathway it plays (the playlist's first, the service's first
// CDN) and its throughput estimate, DASH with every service location of
// the MPD and a throughput for each; the view as the CMCD session id.
// The CDN is the first pathway of the priority.
func (a *httpAsker) steer(ctx context.Context, p Path, q steering.Query, client netip.Addr) (string, error) {
	cdns := a.services[q.Service]
	v := url.Values{}
	if p == PathHLS {
		if len(cdns) > 0 {
			v.Set("_HLS_pathway", cdns[0])
		}
		v.Set("_HLS_throughput", playerThroughput)
	} else {
		v.Set("_DASH_pathway", `"`+strings.Join(cdns, ",")+`"`)
		v.Set("_DASH_throughput", strings.TrimSuffix(strings.Repeat(playerThroughput+",", max(1, len(cdns))), ","))
	}
	if q.ViewID != "" {
		v.Set("CMCD", `sid="`+q.ViewID+`"`)
	}
	target := a.base + "/steer/" + url.PathEscape(q.Service) + "?" + v.Encode()
	resp, err := a.get(ctx, target, client)
	if err != nil {
		return "", fmt.Errorf("%s steering: %w", p, err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s steering: %s answered %s", p, target, resp.Status)
	}
	var m struct {
		redirect.Manifest
		// The early DASH drafts' name, which video.js still reads.
		ServiceLocationPriority []string `json:"SERVICE-LOCATION-PRIORITY"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&m); err != nil {
		return "", fmt.Errorf("%s steering: manifest: %w", p, err)
	}
	prio := m.Priority
	if len(prio) == 0 {
		prio = m.ServiceLocationPriority
	}
	switch {
	case m.Version != 1:
		return "", fmt.Errorf("%s steering: manifest VERSION %d, which players refuse", p, m.Version)
	case len(prio) == 0:
		return "", fmt.Errorf("%s steering: manifest without PATHWAY-PRIORITY", p)
	case !a.pathways[prio[0]]:
		return "", fmt.Errorf("%s steering: first pathway %q is no CDN of the catalog", p, prio[0])
	}
	return prio[0], nil
}

// get sends a GET as if through a loopback proxy in front of the viewer.
func (a *httpAsker) get(ctx context.Context, target string, client netip.Addr) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	if client.IsValid() {
		req.Header.Set("X-Forwarded-For", client.Unmap().String())
	}
	return a.client.Do(req)
}

// drain reads what is left of a body so the connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

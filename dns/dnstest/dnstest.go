// Package dnstest helps test DNS handlers without sockets, like CoreDNS's
// plugin/pkg/dnstest: a ResponseWriter that records the reply as a client
// would read it off the wire, query builders, and a stable text form of a
// reply for golden files.
package dnstest

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// Update rewrites golden files instead of comparing with them:
// go test ./dns/ -update.
var Update = flag.Bool("update", false, "rewrite the golden files")

// Recorder is a ResponseWriter that keeps what was written. WriteMsg packs
// the reply as the server would (so an unpackable reply fails there) and
// keeps it as the client would unpack it.
type Recorder struct {
	Remote netip.AddrPort // where the query came from; default 127.0.0.1:53000
	TCP    bool

	Msg    *mdns.Msg // the last reply, unpacked from its wire form; nil if none
	Wire   []byte
	Writes int
	Err    error // the last pack or unpack failure
}

var _ mdns.ResponseWriter = (*Recorder)(nil)

// NewRecorder records replies to a query from remote over UDP ("udp") or
// TCP ("tcp").
func NewRecorder(remote string, proto string) *Recorder {
	return &Recorder{Remote: netip.MustParseAddrPort(remote), TCP: proto == "tcp"}
}

// WriteMsg packs m and records it.
func (r *Recorder) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		r.Err = fmt.Errorf("pack reply: %w", err)
		return r.Err
	}
	_, err = r.Write(b)
	return err
}

// Write records a packed reply.
func (r *Recorder) Write(b []byte) (int, error) {
	m := new(mdns.Msg)
	if err := m.Unpack(b); err != nil {
		r.Err = fmt.Errorf("unpack reply: %w", err)
		return 0, r.Err
	}
	r.Msg, r.Wire = m, append([]byte(nil), b...)
	r.Writes++
	return len(b), nil
}

// Rcode of the last reply, -1 if none.
func (r *Recorder) Rcode() int {
	if r.Msg == nil {
		return -1
	}
	return r.Msg.Rcode
}

// LocalAddr is the server's side.
func (r *Recorder) LocalAddr() net.Addr { return r.addr(netip.MustParseAddrPort("127.0.0.1:53")) }

// RemoteAddr is Remote, as the server's UDP or TCP address.
func (r *Recorder) RemoteAddr() net.Addr {
	if !r.Remote.IsValid() {
		r.Remote = netip.MustParseAddrPort("127.0.0.1:53000")
	}
	return r.addr(r.Remote)
}

func (r *Recorder) addr(a netip.AddrPort) net.Addr {
	if r.TCP {
		return net.TCPAddrFromAddrPort(a)
	}
	return net.UDPAddrFromAddrPort(a)
}

// Close, TsigStatus, TsigTimersOnly and Hijack do nothing.
func (r *Recorder) Close() error        { return nil }
func (r *Recorder) TsigStatus() error   { return nil }
func (r *Recorder) TsigTimersOnly(bool) {}
func (r *Recorder) Hijack()             {}

// Query is a question for name and type, as a stub resolver asks it.
func Query(name string, qtype uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4242 // stable, for golden files
	m.RecursionDesired = false
	return m
}

// EDNS adds an OPT record offering size bytes over UDP.
func EDNS(m *mdns.Msg, size uint16) *mdns.Msg {
	m.SetEdns0(size, false)
	return m
}

// ECS adds an EDNS Client Subnet option for p (masked), adding an OPT
// record of 1232 bytes first when m has none.
func ECS(m *mdns.Msg, p netip.Prefix) *mdns.Msg {
	e := &mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Masked().Addr().AsSlice())}
	e.Family = 2
	if p.Addr().Is4() {
		e.Family = 1
	}
	return Option(m, e)
}

// Option adds an EDNS option as given (valid or not), adding an OPT
// record of 1232 bytes first when m has none.
func Option(m *mdns.Msg, o mdns.EDNS0) *mdns.Msg {
	opt := m.IsEdns0()
	if opt == nil {
		EDNS(m, 1232)
		opt = m.IsEdns0()
	}
	opt.Option = append(opt.Option, o)
	return m
}

// Format is a reply in a stable text form for golden files: the header
// bits and rcode, each section's records one per line, and the OPT record
// with its ECS option.
func Format(m *mdns.Msg) string {
	if m == nil {
		return "no reply\n"
	}
	var b strings.Builder
	flags := []string{}
	for _, f := range []struct {
		on   bool
		name string
	}{{m.Response, "qr"}, {m.Authoritative, "aa"}, {m.Truncated, "tc"}, {m.RecursionDesired, "rd"}, {m.RecursionAvailable, "ra"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	rcode := mdns.RcodeToString[m.Rcode]
	if m.Rcode == mdns.RcodeBadVers {
		rcode = "BADVERS"
	}
	fmt.Fprintf(&b, "opcode %s, rcode %s, flags [%s]\n", mdns.OpcodeToString[m.Opcode], rcode, strings.Join(flags, " "))
	for _, q := range m.Question {
		fmt.Fprintf(&b, "question: %s\n", strings.TrimPrefix(q.String(), ";"))
	}
	section := func(name string, rrs []mdns.RR) {
		for _, rr := range rrs {
			if o, ok := rr.(*mdns.OPT); ok {
				fmt.Fprintf(&b, "%s: %s\n", name, formatOPT(o))
				continue
			}
			fmt.Fprintf(&b, "%s: %s\n", name, strings.ReplaceAll(rr.String(), "\t", " "))
		}
	}
	section("answer", m.Answer)
	section("authority", m.Ns)
	section("additional", m.Extra)
	return b.String()
}

func formatOPT(o *mdns.OPT) string {
	s := fmt.Sprintf("OPT version %d, udp %d, do %t", o.Version(), o.UDPSize(), o.Do())
	for _, op := range o.Option {
		if e, ok := op.(*mdns.EDNS0_SUBNET); ok {
			s += fmt.Sprintf(", ecs family %d source %d scope %d address %s", e.Family, e.SourceNetmask, e.SourceScope, e.Address)
			continue
		}
		s += fmt.Sprintf(", option %d", op.Option())
	}
	return s
}

// Golden compares got with testdata/golden/<name>.golden, or writes it
// with -update.
func Golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".golden")
	if *Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (run with -update to accept):\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

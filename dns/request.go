package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/steering"
)

// maxUDPSize caps the UDP payload of a reply whatever the client offers:
// 1232 bytes avoids IP fragmentation on every common path (DNS Flag Day
// 2020), and fragments are what gets lost or spoofed.
const maxUDPSize = 1232

// Request is what the steps learn about one query. The server makes one
// per query and puts it in the context; inner steps fill it in and outer
// steps (Metrics, Log) read it on the way back.
type Request struct {
	Start  time.Time
	TCP    bool
	Client netip.Addr // the packet's source: the resolver

	// Set by ClientInfo.
	OPT  *mdns.OPT          // the query's EDNS record, when it had a valid one
	ecs  *mdns.EDNS0_SUBNET // the query's ECS option, echoed in the reply
	ECS  netip.Prefix       // the ECS source prefix; invalid without ECS
	Loc  geo.Location       // where the client is; Located false: not found
	Size int                // the reply must fit in this many bytes
	// Located reports a geo hit; Scope is the ECS SCOPE PREFIX-LENGTH of
	// a steered answer: the matching coverage entry's length, or the
	// source prefix's when the lookup missed.
	Located bool
	Scope   uint8
	ViewID  string // what makes the pick stable for one resolver subnet

	// Set by Steer or the static fallback.
	zone     *zone
	Service  string
	Decision steering.Decision
	Decided  bool

	written bool
	rcode   int

	// The reply is built in these and the Request is reused (the
	// server's pool), so the hot path allocates little.
	msg   mdns.Msg
	qs    [1]mdns.Question
	rrs   [1]mdns.RR
	extra [2]mdns.RR
	opts  [1]mdns.EDNS0
	cname mdns.CNAME
	opt   mdns.OPT
	echo  mdns.EDNS0_SUBNET
	vbuf  [48]byte // the view id is formatted here
	buf   []byte
}

type requestKey struct{}

// RequestFrom is the query's Request; every step of a server's chain has
// one.
func RequestFrom(ctx context.Context) *Request {
	if q, ok := ctx.(*Request); ok {
		return q
	}
	q, _ := ctx.Value(requestKey{}).(*Request)
	return q
}

// A Request is also the context its chain runs with: no deadline, never
// cancelled (a query is answered in microseconds; nothing in the chain
// waits), and itself as the value under requestKey. That saves the
// context.WithValue allocation per query.
var _ context.Context = (*Request)(nil)

// Deadline, Done, Err and Value make a Request a context.Context.
func (q *Request) Deadline() (time.Time, bool) { return time.Time{}, false }
func (q *Request) Done() <-chan struct{}       { return nil }
func (q *Request) Err() error                  { return nil }
func (q *Request) Value(key any) any {
	if key == (requestKey{}) {
		return q
	}
	return nil
}

// reset readies a Request from the pool for the next query.
func (q *Request) reset(w mdns.ResponseWriter, now time.Time) {
	buf := q.buf
	*q = Request{Start: now, Size: mdns.MinMsgSize, buf: buf}
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		q.Client = addrOf(a.IP)
	case *net.TCPAddr:
		q.Client, q.TCP = addrOf(a.IP), true
		q.Size = mdns.MaxMsgSize
	}
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// reply starts the answer to r in the Request's own message: same id,
// question and RD/CD bits, authoritative, no recursion available.
func (q *Request) reply(r *mdns.Msg, rcode int) *mdns.Msg {
	m := &q.msg
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	m.Rcode = rcode
	m.Authoritative = true
	if len(r.Question) > 0 {
		q.qs[0] = r.Question[0]
		m.Question = q.qs[:1]
	}
	return m
}

// write finishes a reply and sends it: the OPT record for an EDNS query
// (echoing ECS with SCOPE PREFIX-LENGTH scope), then truncation to what
// the transport and the client allow, TC set when records had to go.
func (q *Request) write(w mdns.ResponseWriter, m *mdns.Msg, scope uint8) error {
	if q.OPT != nil {
		if m.Extra == nil {
			m.Extra = q.extra[:0]
		}
		m.Extra = append(m.Extra, q.replyOPT(scope))
	}
	q.written, q.rcode = true, m.Rcode
	// Pack once; only a reply that does not fit is truncated and packed
	// again (miekg's Truncate would measure every reply first).
	b, ok := packReply(q.buf, m)
	var err error
	if !ok {
		b, err = m.PackBuffer(q.buf[:cap(q.buf)])
	}
	if err == nil && len(b) > q.Size {
		m.Truncate(q.Size)
		b, err = m.PackBuffer(q.buf[:cap(q.buf)])
	}
	if err != nil {
		return fmt.Errorf("pack reply: %w", err)
	}
	if cap(b) <= maxKeptBuffer {
		q.buf = b[:0]
	}
	_, err = w.Write(b)
	return err
}

// maxKeptBuffer: a pooled Request keeps a pack buffer this big at most, so
// one huge TCP answer does not pin its memory.
const maxKeptBuffer = 4096

// replyOPT is the OPT record of a reply: version 0, our payload size, the
// query's DO bit (RFC 3225), and the ECS echo.
func (q *Request) replyOPT(scope uint8) *mdns.OPT {
	o := &q.opt
	*o = mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT, Class: maxUDPSize}}
	if q.OPT != nil && q.OPT.Do() {
		o.SetDo()
	}
	if e := q.ecs; e != nil {
		if e.Family == 0 {
			scope = 0 // nothing to scope: "do not tailor"
		}
		q.echo = mdns.EDNS0_SUBNET{
			Code: mdns.EDNS0SUBNET, Family: e.Family, SourceNetmask: e.SourceNetmask,
			SourceScope: scope, Address: e.Address,
		}
		q.opts[0] = &q.echo
		o.Option = q.opts[:1]
	}
	return o
}

// writeError sends the reply for an error rcode that a step returned
// without writing: no answer, not authoritative, the OPT record when the
// query's was valid.
func (q *Request) writeError(w mdns.ResponseWriter, r *mdns.Msg, rcode int) error {
	m := new(mdns.Msg)
	m.SetReply(r)
	if rcode == mdns.RcodeFormatError && len(r.Question) != 1 {
		m.Question = nil // which question would it be
	}
	m.Rcode = rcode
	return q.write(w, m, 0)
}

package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// UDP is served by a fixed set of goroutines that each take the queries
// waiting on the socket in one recvmmsg, answer them and send the replies
// in one sendmmsg, instead of miekg's server, which starts a goroutine per
// query and sets a read deadline before every read. On the 2-vCPU
// machines this runs on, that goroutine per query (its start, its stack
// growing under the chain, its wake-up) and the syscalls per query were
// most of the tail latency at half load (docs/BENCHMARKS.md). The chain
// and the messages are miekg's either way. TCP stays on miekg's server.

// udpReaders is how many goroutines read the one socket per CPU: the
// socket's read lock lets one read at a time, so one reads while the
// others answer. Under dnsperf on 2 vCPUs (measured reading a query at a
// time), 2 per CPU had the shortest tail at half load; 1 per CPU, 4 per
// CPU and one reader in all were longer, and a socket per CPU
// (SO_REUSEPORT) was no better than one.
const udpReaders = 2

// udpBufSize: queries are small; a bigger buffer only reads junk whole,
// so it is answered FORMERR rather than cut (as with miekg's UDPSize).
const udpBufSize = 4096

// serveUDP answers queries on conn until ctx is done, then lets the
// queries being answered finish.
func (s *Server) serveUDP(ctx context.Context, conn *net.UDPConn) error {
	// On a wildcard address the reply must leave from the address the
	// query came to, which only the packet's control message tells.
	session := false
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && la.IP.IsUnspecified() {
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		if err6 != nil && err4 != nil {
			return fmt.Errorf("dns udp: control messages: %w", err4)
		}
		session = true
	}
	n := udpReaders * runtime.GOMAXPROCS(0)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.readUDP(conn, session)
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs: // a reader failed: stop the rest
	}
	// A deadline in the past wakes every reader; each finishes the query
	// it holds and returns.
	_ = conn.SetReadDeadline(time.Unix(1, 0))
	wg.Wait()
	if cerr := conn.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("dns udp: %w", err)
	}
	return nil
}

// udpBatch is how many queries one recvmmsg takes at most.
const udpBatch = 16

// batchConn is ipv4's or ipv6's PacketConn: recvmmsg and sendmmsg.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// readUDP is one reader's loop: it takes every query waiting (up to
// udpBatch) in one recvmmsg, answers them, and sends the replies in one
// sendmmsg. It returns nil when the read deadline stops it, the error
// when the socket fails.
func (s *Server) readUDP(conn *net.UDPConn, session bool) error {
	var bc batchConn = ipv4.NewPacketConn(conn)
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil {
		bc = ipv6.NewPacketConn(conn)
	}
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, 0, udpBatch)
	replies := make([][]byte, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpBufSize)}
		if session {
			in[i].OOB = make([]byte, udpOOBSize)
		}
		replies[i] = make([]byte, 0, 512)
	}
	w := &udpWriter{local: conn.LocalAddr()}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				return nil // stopped
			}
			return err
		}
		out = out[:0]
		for i := range n {
			m := &in[i]
			from, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			w.set(from.AddrPort())
			w.reply = replies[i][:0]
			s.servePacket(w, m.Buffers[0][:m.N])
			if len(w.reply) == 0 {
				continue
			}
			replies[i] = w.reply[:0]
			o := ipv4.Message{Buffers: [][]byte{w.reply}, Addr: m.Addr}
			if m.NN > 0 {
				o.OOB = sourceOOB(m.OOB[:m.NN])
			}
			out = append(out, o)
		}
		for len(out) > 0 {
			k, err := bc.WriteBatch(out, 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return nil
				}
				s.log.Debug("udp write", "to", out[min(k, len(out)-1)].Addr, "err", err)
				k++ // the replies before k went; the one at k is lost
			}
			out = out[min(max(k, 1), len(out)):]
		}
	}
}

// servePacket answers one UDP packet as miekg's server does with accept:
// a message shorter than a header is dropped and counted, a response is
// ignored, one that does not unpack is counted and answered FORMERR with
// its header (any reply to junk could amplify, but a resolver needs the
// FORMERR to stop retrying), the rest goes through the chain.
func (s *Server) servePacket(w mdns.ResponseWriter, m []byte) {
	if len(m) < 12 {
		s.m.malformed.Inc()
		return
	}
	// accept reads only the flags; TCP's miekg server asks it the same.
	if accept(mdns.Header{Bits: uint16(m[2])<<8 | uint16(m[3])}) == mdns.MsgIgnore {
		return
	}
	r := new(mdns.Msg)
	if err := r.Unpack(m); err == nil {
		s.ServeDNS(w, r)
		return
	}
	// Unpack set the header before it failed on the rest.
	s.m.malformed.Inc()
	r.SetRcodeFormatError(r)
	r.Zero = false
	r.Ns, r.Answer, r.Extra = nil, nil, nil
	if len(r.Question) != 1 {
		r.Question = nil // which question would it be (and no echo of many)
	}
	_ = w.WriteMsg(r)
}

// udpOOBSize fits the IPv4 or the IPv6 control message with the
// destination address and interface, whichever is longer.
var udpOOBSize = max(
	len(ipv4.NewControlMessage(ipv4.FlagDst|ipv4.FlagInterface)),
	len(ipv6.NewControlMessage(ipv6.FlagDst|ipv6.FlagInterface)),
)

// udpWriter is the ResponseWriter of one reader: it answers the query
// that reader holds. Nothing keeps it past the query (the Request copies
// the client's address).
type udpWriter struct {
	local  net.Addr
	remote net.UDPAddr
	ip     [16]byte
	reply  []byte // kept for the batch's sendmmsg
}

func (w *udpWriter) set(from netip.AddrPort) {
	a := from.Addr()
	w.ip = a.As16()
	if a.Is4() || a.Is4In6() {
		w.remote.IP = w.ip[12:16]
	} else {
		w.remote.IP = w.ip[:]
	}
	w.remote.Port = int(from.Port())
	w.remote.Zone = a.Zone()
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.local }
func (w *udpWriter) RemoteAddr() net.Addr { return &w.remote }

func (w *udpWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return fmt.Errorf("pack reply: %w", err)
	}
	_, err = w.Write(b)
	return err
}

// Write keeps the reply; readUDP sends it with the batch's others.
func (w *udpWriter) Write(b []byte) (int, error) {
	w.reply = append(w.reply[:0], b...)
	return len(b), nil
}

// sourceOOB is the control message that sends a reply from the address
// the query was sent to (miekg's correctSource).
func sourceOOB(oob []byte) []byte {
	var dst net.IP
	if cm6 := new(ipv6.ControlMessage); cm6.Parse(oob) == nil && cm6.Dst != nil {
		dst = cm6.Dst
	} else if cm4 := new(ipv4.ControlMessage); cm4.Parse(oob) == nil && cm4.Dst != nil {
		dst = cm4.Dst
	} else {
		return nil
	}
	if dst.To4() == nil {
		return (&ipv6.ControlMessage{Src: dst}).Marshal()
	}
	return (&ipv4.ControlMessage{Src: dst}).Marshal()
}

func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}

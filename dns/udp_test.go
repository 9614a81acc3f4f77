package dns

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cdnpilot/cdnpilot/dns/dnstest"
)

// TestServePacket: raw UDP payloads get what miekg's server gives them
// (a header's worth or less and responses: nothing; bytes that do not
// unpack: FORMERR with the query's id, counted as malformed), and the rest
// reach the chain.
func TestServePacket(t *testing.T) {
	seeds := fuzzSeeds(t)
	tests := []struct {
		seed      string
		rcode     int // -1: no reply
		malformed bool
	}{
		{"valid ecs", mdns.RcodeSuccess, false},
		{"valid plain", mdns.RcodeSuccess, false},
		{"truncated header", -1, true},
		{"header only", mdns.RcodeFormatError, false}, // unpacks: QDCOUNT 1 with no question is the chain's FORMERR
		{"qr set", -1, false},
		{"opcode 3", mdns.RcodeNotImplemented, false},
		{"compression loop", mdns.RcodeFormatError, true},
		{"compression ping-pong", mdns.RcodeFormatError, true},
		{"opt rdlength long", mdns.RcodeFormatError, true},
		{"ecs family 3", mdns.RcodeFormatError, true},
		{"ecs v4 source 33", mdns.RcodeFormatError, true},
		{"truncated section", mdns.RcodeFormatError, true},
	}
	for _, tt := range tests {
		t.Run(tt.seed, func(t *testing.T) {
			s := testServer(t)
			raw, ok := seeds[tt.seed]
			if !ok {
				t.Fatalf("no seed %q", tt.seed)
			}
			w := dnstest.NewRecorder("100.64.1.7:5300", "udp")
			s.servePacket(w, raw)
			if w.Err != nil {
				t.Fatal(w.Err)
			}
			if got := w.Rcode(); got != tt.rcode {
				t.Fatalf("rcode %d, want %d (reply %v)", got, tt.rcode, w.Msg)
			}
			if w.Msg != nil && w.Msg.Id != uint16(raw[0])<<8|uint16(raw[1]) {
				t.Errorf("reply id %d, query id %x", w.Msg.Id, raw[:2])
			}
			if w.Msg != nil && tt.malformed && (!w.Msg.Response || len(w.Msg.Answer)+len(w.Msg.Ns)+len(w.Msg.Extra) != 0 || len(w.Msg.Question) > 1) {
				t.Errorf("FORMERR for junk: %v", w.Msg)
			}
			if got := testutil.ToFloat64(s.m.malformed) > 0; got != tt.malformed {
				t.Errorf("counted malformed: %v, want %v", got, tt.malformed)
			}
		})
	}
}

// TestUDPSocket runs the UDP loop on a real socket, on a loopback and on
// the wildcard address (where replies go out with the query's destination
// as their source): junk gets FORMERR and does not stop the server, many
// clients at once all get their own answers, and stopping waits for the
// readers.
func TestUDPSocket(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "0.0.0.0:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			s := testServer(t, func(o *Options) { o.Now = time.Now })
			if err := s.Listen(addr); err != nil {
				if addr == "[::1]:0" {
					t.Fatalf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			_, port, _ := net.SplitHostPort(s.Addr())
			host := "127.0.0.1"
			if addr == "[::1]:0" {
				host = "::1"
			}
			to := net.JoinHostPort(host, port)

			c, err := net.Dial("udp", to)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			junk := fuzzSeeds(t)["compression loop"]
			if _, err := c.Write(junk); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("no reply to junk: %v", err)
			}
			r := new(mdns.Msg)
			if err := r.Unpack(buf[:n]); err != nil || r.Rcode != mdns.RcodeFormatError || r.Id != 0x1092 {
				t.Fatalf("reply to junk: %v %v", r, err)
			}

			var wg sync.WaitGroup
			for i := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cl := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
					for range 20 {
						q := dnstest.Query("vod.demo.cdnpilot.test.", mdns.TypeA)
						q.Id = uint16(i)
						r, _, err := cl.Exchange(q, to)
						if err != nil {
							t.Errorf("client %d: %v", i, err)
							return
						}
						if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
							t.Errorf("client %d: %v", i, r)
							return
						}
					}
				}()
			}
			wg.Wait()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10 s of cancel")
			}
		})
	}
}

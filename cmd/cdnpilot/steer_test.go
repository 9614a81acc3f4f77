package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
	"github.com/cdnpilot/cdnpilot/internal/syncbuf"
)

// TestSteer runs `cdnpilot steer` against a broker as an operator would
// and asks its DNS server, whose address it logs, for a steered name.
func TestSteer(t *testing.T) {
	broker, err := kafkaio.StartEmbedded(0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	var stderr syncbuf.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"steer", "--kafka", strings.Join(broker.Addrs(), ","),
			"--http-addr", "127.0.0.1:0", "--dns-addr", "127.0.0.1:0"}, &syncbuf.Buffer{}, &stderr)
	}()
	re := regexp.MustCompile(`msg=serving .*dns=(127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		cancel()
		<-done
		t.Fatalf("steer logged no DNS address; stderr:\n%s", stderr.String())
	}
	q := new(mdns.Msg)
	q.SetQuestion("live.demo.cdnpilot.test.", mdns.TypeAAAA)
	r, err := mdns.Exchange(q, addr)
	if err != nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("DNS at %s: %v, %v", addr, r, err)
	} else if c, ok := r.Answer[0].(*mdns.CNAME); !ok || c.Target != "cdn-b.demo.cdnpilot.test." {
		t.Errorf("answer %v, want live's static first cdn-b", r.Answer[0])
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("steer exited with %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("steer did not stop within 30s of cancel")
	}
}

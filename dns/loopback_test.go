package dns

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// startServer runs a test server on a free loopback port (UDP and TCP)
// until the test ends, like httptest.Server.
func startServer(t *testing.T, mutate ...func(*Options)) (*Server, string) {
	t.Helper()
	s := testServer(t, append([]func(*Options){func(o *Options) { o.Now = time.Now }}, mutate...)...)
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, s.Addr()
}

// tool is the path of a DNS client binary. Missing is a failure, not a
// skip: make test installs them (.ci/deps).
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install Debian's %s (`make deps` or .ci/deps does)", name, pkg)
	}
	return p
}

// dig runs kdig or dig against addr ("127.0.0.1:port") and returns its
// output.
func dig(t *testing.T, bin, addr string, args ...string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	full := append([]string{"@" + host, "-p", port, "+time=2", "+retry=1"}, args...)
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(full, " "), err, out)
	}
	return string(out)
}

func mustMatch(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Errorf("output lacks %q:\n%s", p, out)
		}
	}
}

func mustNotMatch(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if regexp.MustCompile(p).MatchString(out) {
			t.Errorf("output has %q:\n%s", p, out)
		}
	}
}

// TestKdig drives a loopback server with Knot's kdig.
func TestKdig(t *testing.T) {
	kdig := tool(t, "kdig", "knot-dnsutils")
	_, addr := startServer(t)

	t.Run("cname", func(t *testing.T) {
		out := dig(t, kdig, addr, "vod.demo.cdnpilot.test", "A")
		mustMatch(t, out, `status: NOERROR`, `(?i)flags: qr aa rd;`, `(?m)^vod\.demo\.cdnpilot\.test\.\s+30\s+IN\s+CNAME\s+cdn-a\.example\.net\.$`)
		mustNotMatch(t, out, `(?i)flags:[^;]* ra`)
	})
	t.Run("ecs scope echo", func(t *testing.T) {
		out := dig(t, kdig, addr, "vod.demo.cdnpilot.test", "A", "+subnet=100.64.1.0/24")
		mustMatch(t, out, `CLIENT-SUBNET: 100\.64\.1\.0/24/16`, `CNAME\s+cdn-b\.example\.net\.`)
		out = dig(t, kdig, addr, "vod.demo.cdnpilot.test", "AAAA", "+subnet=2001:db8:1::/56")
		mustMatch(t, out, `CLIENT-SUBNET: 2001:db8:1::/56/48`, `CNAME\s+cdn-b\.example\.net\.`)
		out = dig(t, kdig, addr, "vod.demo.cdnpilot.test", "A", "+subnet=10.9.8.0/24") // not in the coverage
		mustMatch(t, out, `CLIENT-SUBNET: 10\.9\.8\.0/24/24`, `CNAME\s+cdn-a\.example\.net\.`)
	})
	t.Run("tc then tcp", func(t *testing.T) {
		out := dig(t, kdig, addr, "big.demo.cdnpilot.test", "AAAA", "+notcp", "+ignore")
		mustMatch(t, out, `(?i)flags: qr aa tc rd;`)
		if n := strings.Count(out, "\tAAAA\t"); n >= 60 {
			t.Errorf("%d AAAA records over UDP", n)
		}
		out = dig(t, kdig, addr, "big.demo.cdnpilot.test", "AAAA", "+tcp")
		mustMatch(t, out, `status: NOERROR`, `(?i)flags: qr aa rd;`, `TCP`)
		if n := len(regexp.MustCompile(`(?m)^big\.demo\.cdnpilot\.test\.\s+10\s+IN\s+AAAA\s`).FindAllString(out, -1)); n != 60 {
			t.Errorf("%d AAAA records over TCP, want 60:\n%s", n, out)
		}
		// Without +ignore kdig retries over TCP by itself.
		out = dig(t, kdig, addr, "big.demo.cdnpilot.test", "AAAA")
		if n := strings.Count(out, "AAAA\t2001:db8:ffff::"); n != 60 {
			t.Errorf("%d AAAA records after the automatic TCP retry, want 60:\n%s", n, out)
		}
	})
	t.Run("nxdomain with soa", func(t *testing.T) {
		out := dig(t, kdig, addr, "nope.demo.cdnpilot.test", "A")
		mustMatch(t, out, `status: NXDOMAIN`, `(?i)flags: qr aa rd;`, `AUTHORITY SECTION:`,
			`(?m)^demo\.cdnpilot\.test\.\s+60\s+IN\s+SOA\s+ns1\.demo\.cdnpilot\.test\. hostmaster\.demo\.cdnpilot\.test\. 2026112501 3600 600 604800 60$`)
	})
	t.Run("refused outside the zone", func(t *testing.T) {
		out := dig(t, kdig, addr, "www.example.com", "A")
		mustMatch(t, out, `status: REFUSED`)
		mustNotMatch(t, out, `(?i)flags:[^;]* aa`)
	})
	t.Run("badvers", func(t *testing.T) {
		out := dig(t, kdig, addr, "vod.demo.cdnpilot.test", "A", "+edns=1")
		mustMatch(t, out, `BADVERS`)
	})
}

// TestDig drives the same server with BIND's dig: the apex, ECS, and a
// TCP query.
func TestDig(t *testing.T) {
	bin := tool(t, "dig", "bind9-dnsutils")
	_, addr := startServer(t)
	out := dig(t, bin, addr, "demo.cdnpilot.test", "NS")
	mustMatch(t, out, `status: NOERROR`, `(?i)flags: qr aa rd;`, `(?m)^demo\.cdnpilot\.test\.\s+3600\s+IN\s+NS\s+ns1\.demo\.cdnpilot\.test\.$`,
		`(?m)^ns1\.demo\.cdnpilot\.test\.\s+3600\s+IN\s+A\s+127\.0\.0\.1$`)
	out = dig(t, bin, addr, "vod.demo.cdnpilot.test", "A", "+subnet=100.64.1.0/24")
	mustMatch(t, out, `CLIENT-SUBNET: 100\.64\.1\.0/24/16`, `CNAME\s+cdn-b\.example\.net\.`)
	out = dig(t, bin, addr, "live.demo.cdnpilot.test", "A", "+tcp")
	mustMatch(t, out, `status: NOERROR`, `(?m)^live\.demo\.cdnpilot\.test\.\s+10\s+IN\s+CNAME\s+cdn-b\.example\.net\.$`, `\(TCP\)`)
	out = dig(t, bin, addr, "vod.demo.cdnpilot.test", "ANY")
	mustMatch(t, out, `HINFO\s+"RFC8482" ""`)
}

// TestServerLifecycle: Run serves both transports until cancelled, and a
// client of the library sees the same answers as the tools.
func TestServerLifecycle(t *testing.T) {
	_, addr := startServer(t)
	for _, proto := range []string{"udp", "tcp"} {
		c := &mdns.Client{Net: proto, Timeout: 5 * time.Second}
		m := new(mdns.Msg)
		m.SetQuestion("vod.demo.cdnpilot.test.", mdns.TypeA)
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
			t.Fatalf("%s reply: %v", proto, r)
		}
	}
}

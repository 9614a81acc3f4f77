package clientip

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestFrom(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	cases := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"untrusted peer: its own address, XFF ignored", "203.0.113.9:1234", []string{"198.51.100.1"}, "203.0.113.9"},
		{"trusted peer: the right-most untrusted hop", "10.1.1.1:1234", []string{"192.0.2.66, 198.51.100.1, 10.2.2.2"}, "198.51.100.1"},
		{"hops over several headers", "10.1.1.1:1234", []string{"192.0.2.66", "198.51.100.7"}, "198.51.100.7"},
		{"garbled hop ends the chain", "10.1.1.1:1234", []string{"198.51.100.1, nonsense, 10.2.2.2"}, "10.2.2.2"},
		{"only trusted hops: the left-most", "10.1.1.1:1234", []string{"10.3.3.3"}, "10.3.3.3"},
		{"IPv4-mapped peer unmapped", "[::ffff:203.0.113.9]:1", nil, "203.0.113.9"},
		{"IPv6 trusted proxy", "[::1]:1", []string{"2001:db8::5"}, "2001:db8::5"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := From(r, trusted); got.String() != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "not an address"
	if got := From(r, trusted); got.IsValid() {
		t.Errorf("bad RemoteAddr gave %s", got)
	}
}

package redirect

import (
	"strings"
	"testing"
	"time"
)

// TestAkamai2Vector: the token for a fixed key, expiry and ACL matches one
// computed apart from this code (Python's hmac over the same fields, as
// Akamai's own EdgeAuth libraries do).
func TestAkamai2Vector(t *testing.T) {
	sg, err := NewAkamai2("000102030405060708090a0b0c0d0e0f", "hdnts", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	got := string(sg.Append(nil, "/media/v0/index.m3u8", time.Unix(1700000000, 0)))
	want := "hdnts=exp=1700003600~acl=/media/v0/*~hmac=4e53f1586fa145ec051cfc40ca9df340af895214d071786a2a88509f51209383"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestAkamai2Verify(t *testing.T) {
	now := time.Unix(1700000000, 0)
	lit, err := NewAkamai2(testKey, "", time.Minute, "/vod/*")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := NewAkamai2(testKey, "", time.Minute, "dir")
	if err != nil {
		t.Fatal(err)
	}
	token := func(s *Akamai2, path string) string {
		_, tok, _ := strings.Cut(string(s.Append(nil, path, now)), "=")
		return tok
	}
	cases := []struct {
		name, key, token, path string
		at                     time.Time
		ok                     bool
	}{
		{"dir acl covers a sibling segment", testKey, token(dir, "/m/v0/index.m3u8"), "/m/v0/seg-1.m4s", now, true},
		{"dir acl does not cover the parent", testKey, token(dir, "/m/v0/index.m3u8"), "/m/other.m3u8", now, false},
		{"literal acl", testKey, token(lit, "/vod/x.m3u8"), "/vod/deep/y.m4s", now, true},
		{"expired", testKey, token(dir, "/m/a.m3u8"), "/m/a.m3u8", now.Add(2 * time.Minute), false},
		{"wrong key", "ffffffffffffffffffffffffffffffff", token(dir, "/m/a.m3u8"), "/m/a.m3u8", now, false},
		{"tampered acl", testKey, strings.Replace(token(dir, "/m/a.m3u8"), "acl=/m/", "acl=/", 1), "/x", now, false},
		{"no hmac", testKey, "exp=1~acl=/*", "/x", now, false},
	}
	for _, c := range cases {
		err := VerifyAkamai2(c.key, c.token, c.path, c.at)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok %v", c.name, err, c.ok)
		}
	}
	for _, bad := range []struct{ key, acl string }{{"00", ""}, {"zz", ""}, {testKey, "vod/*"}} {
		if _, err := NewAkamai2(bad.key, "", 0, bad.acl); err == nil {
			t.Errorf("NewAkamai2(%q, acl %q) accepted", bad.key, bad.acl)
		}
	}
}

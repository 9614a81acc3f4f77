package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cdnpilot/cdnpilot/internal/syncbuf"
)

// checkRejected fails unless err wraps ErrBadCredentials, says reason
// and does not echo the token.
func checkRejected(t *testing.T, err error, token, reason string) {
	t.Helper()
	if !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("err = %v, want ErrBadCredentials", err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("err = %q, want it to say %q", err, reason)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) > 8 && strings.Contains(err.Error(), part) {
			t.Errorf("err = %q echoes the token", err)
		}
	}
}

func TestJWT(t *testing.T) {
	is := newTestIssuer(t, testKey{"k1", rsaKey1}, testKey{"ec1", ecKey})
	cfg := is.oidcConfig("RS256")
	cfg.Tokens = staticConfig().Tokens
	a := newAuth(t, cfg, Options{})

	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKey1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	unsigned := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rs := func(edit func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodRS256, rsaKey1, "k1", is.claims(edit))
	}
	valid := rs(nil)
	parts := strings.Split(valid, ".")
	// The claims segment of another valid token, making alice an admin.
	adminClaims := strings.Split(rs(func(c jwt.MapClaims) { c["cdnpilot_role"] = "admin" }), ".")[1]
	now := time.Now()

	tests := []struct {
		name   string
		token  string
		want   Principal // when reason is empty
		reason string
	}{
		{name: "valid", token: valid,
			want: Principal{Name: "alice", Role: RoleOperator, Services: []string{"live", "vod"}, Via: "jwt", Key: "jwt:" + is.srv.URL + "/u-123"}},
		{name: "services as a space-separated string", token: rs(func(c jwt.MapClaims) { c["cdnpilot_services"] = "live  vod" }),
			want: Principal{Name: "alice", Role: RoleOperator, Services: []string{"live", "vod"}, Via: "jwt", Key: "jwt:" + is.srv.URL + "/u-123"}},
		{name: "no services claim: all", token: rs(func(c jwt.MapClaims) { delete(c, "cdnpilot_services"); c["cdnpilot_role"] = "admin" }),
			want: Principal{Name: "alice", Role: RoleAdmin, Via: "jwt", Key: "jwt:" + is.srv.URL + "/u-123"}},
		{name: "name from email", token: rs(func(c jwt.MapClaims) {
			delete(c, "preferred_username")
			c["email"] = "a@example.com"
			c["cdnpilot_role"] = "viewer"
		}),
			want: Principal{Name: "a@example.com", Role: RoleViewer, Services: []string{"live", "vod"}, Via: "jwt", Key: "jwt:" + is.srv.URL + "/u-123"}},
		{name: "name from sub", token: rs(func(c jwt.MapClaims) { delete(c, "preferred_username") }),
			want: Principal{Name: "u-123", Role: RoleOperator, Services: []string{"live", "vod"}, Via: "jwt", Key: "jwt:" + is.srv.URL + "/u-123"}},
		{name: "audience list", token: rs(func(c jwt.MapClaims) { c["aud"] = []string{"other", "cdnpilot"} }),
			want: Principal{Name: "alice", Role: RoleOperator, Services: []string{"live", "vod"}, Via: "jwt", Key: "jwt:" + is.srv.URL + "/u-123"}},
		{name: "no kid: every key is tried", token: sign(t, jwt.SigningMethodRS256, rsaKey1, "", is.claims(nil)),
			want: Principal{Name: "alice", Role: RoleOperator, Services: []string{"live", "vod"}, Via: "jwt", Key: "jwt:" + is.srv.URL + "/u-123"}},
		{name: "expired within leeway", token: rs(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }),
			want: Principal{Name: "alice", Role: RoleOperator, Services: []string{"live", "vod"}, Via: "jwt", Key: "jwt:" + is.srv.URL + "/u-123"}},

		{name: "expired", token: rs(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), reason: "token expired"},
		{name: "not yet valid", token: rs(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }), reason: "not valid yet"},
		{name: "no exp", token: rs(func(c jwt.MapClaims) { delete(c, "exp") }), reason: "no exp claim"},
		{name: "exp of the wrong type", token: rs(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), reason: "wrong type"},
		{name: "wrong issuer", token: rs(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), reason: "wrong issuer"},
		{name: "no issuer", token: rs(func(c jwt.MapClaims) { delete(c, "iss") }), reason: "no iss claim"},
		{name: "wrong audience", token: rs(func(c jwt.MapClaims) { c["aud"] = "grafana" }), reason: "wrong audience"},
		{name: "no audience", token: rs(func(c jwt.MapClaims) { delete(c, "aud") }), reason: "no aud claim"},
		{name: "no sub", token: rs(func(c jwt.MapClaims) { delete(c, "sub") }), reason: "no sub claim"},
		{name: "missing role claim", token: rs(func(c jwt.MapClaims) { delete(c, "cdnpilot_role") }), reason: `no "cdnpilot_role" claim`},
		{name: "unknown role", token: rs(func(c jwt.MapClaims) { c["cdnpilot_role"] = "superuser" }), reason: `unknown role "superuser"`},
		{name: "role not a string", token: rs(func(c jwt.MapClaims) { c["cdnpilot_role"] = []string{"admin"} }), reason: "not a string"},
		{name: "services of numbers", token: rs(func(c jwt.MapClaims) { c["cdnpilot_services"] = []int{1} }), reason: "not a list of strings"},
		{name: "services an object", token: rs(func(c jwt.MapClaims) { c["cdnpilot_services"] = map[string]int{"a": 1} }), reason: "not a list of strings"},
		{name: "alg none", token: unsigned(is.claims(nil)), reason: "algorithm not accepted (want RS256)"},
		{name: "alg none, signature kept", token: unsigned(is.claims(nil)) + parts[2], reason: "algorithm not accepted"},
		{name: "HS256 with the RSA public key as secret", token: sign(t, jwt.SigningMethodHS256, pubPEM, "k1", is.claims(nil)), reason: "algorithm not accepted"},
		{name: "HS256 with the public key DER as secret", token: sign(t, jwt.SigningMethodHS256, pubDER, "k1", is.claims(nil)), reason: "algorithm not accepted"},
		{name: "PS256 with the right key", token: sign(t, jwt.SigningMethodPS256, rsaKey1, "k1", is.claims(nil)), reason: "algorithm not accepted"},
		{name: "unknown alg", token: headerWith(`{"alg":"XYZ","typ":"JWT"}`) + "." + parts[1] + "." + parts[2], reason: "algorithm not accepted"},
		{name: "no alg", token: headerWith(`{"typ":"JWT"}`) + "." + parts[1] + "." + parts[2], reason: "algorithm not accepted"},
		{name: "signed by another key", token: sign(t, jwt.SigningMethodRS256, rsaKey2, "k1", is.claims(nil)), reason: "bad JWT signature"},
		{name: "claims swapped", token: parts[0] + "." + adminClaims + "." + parts[2], reason: "bad JWT signature"},
		{name: "EC key's kid with RS256", token: sign(t, jwt.SigningMethodRS256, rsaKey1, "ec1", is.claims(nil)), reason: "bad JWT signature"},
		{name: "unknown kid", token: sign(t, jwt.SigningMethodRS256, rsaKey2, "nope", is.claims(nil)), reason: "no known JWT signing key matches"},
		{name: "garbage in JWT shape", token: "aaaa.bbbb.cccc", reason: "malformed JWT"},
		{name: "header not JSON", token: headerWith("not json") + "." + parts[1] + "." + parts[2], reason: "malformed JWT"},
		{name: "padding in signature", token: valid + "=", reason: "unknown token"},
		{name: "non-canonical signature encoding", token: parts[0] + "." + parts[1] + "." + flipLastBits(parts[2]), reason: "malformed JWT"},
		{name: "static token still works", token: "viewer-token-abcdef",
			want: Principal{Name: "grafana", Role: RoleViewer, Via: "token", Key: "token:grafana"}},
		{name: "garbage", token: "x", reason: "unknown token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(t.Context(), "Bearer "+tt.token)
			if tt.reason != "" {
				checkRejected(t, err, tt.token, tt.reason)
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !equalPrincipal(p, tt.want) {
				t.Errorf("principal = %+v, want %+v", p, tt.want)
			}
		})
	}
}

// headerWith is a JWT header segment holding json.
func headerWith(json string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(json))
}

// flipLastBits changes the unused low bits of a base64url segment's last
// character: the same bytes to a lenient decoder, a different string.
func flipLastBits(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[last^1])
}

func TestJWTPinnedES256(t *testing.T) {
	is := newTestIssuer(t, testKey{"k1", rsaKey1}, testKey{"ec1", ecKey})
	a := newAuth(t, is.oidcConfig("ES256"), Options{})
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"ES256", sign(t, jwt.SigningMethodES256, ecKey, "ec1", is.claims(nil)), ""},
		{"ES256 without kid", sign(t, jwt.SigningMethodES256, ecKey, "", is.claims(nil)), ""},
		{"RS256 with a published RSA key", sign(t, jwt.SigningMethodRS256, rsaKey1, "k1", is.claims(nil)), "algorithm not accepted (want ES256)"},
		{"ES256 naming the RSA key's kid", sign(t, jwt.SigningMethodES256, ecKey, "k1", is.claims(nil)), "bad JWT signature"},
		{"ES384", sign(t, jwt.SigningMethodES384, p384, "ec1", is.claims(nil)), "algorithm not accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(t.Context(), "Bearer "+tt.token)
			if tt.reason != "" {
				checkRejected(t, err, tt.token, tt.reason)
				return
			}
			if err != nil || p.Role != RoleOperator || p.Via != "jwt" {
				t.Fatalf("Authenticate = %+v, %v", p, err)
			}
		})
	}
}

func TestJWTKeyRotation(t *testing.T) {
	is := newTestIssuer(t, testKey{"k1", rsaKey1})
	a := newAuth(t, is.oidcConfig("RS256"), Options{})
	old := sign(t, jwt.SigningMethodRS256, rsaKey1, "k1", is.claims(nil))
	if _, err := a.Authenticate(t.Context(), "Bearer "+old); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	hits := is.jwksHits.Load()

	is.publish(testKey{"k2", rsaKey2})
	rotated := sign(t, jwt.SigningMethodRS256, rsaKey2, "k2", is.claims(nil))
	p, err := a.Authenticate(t.Context(), "Bearer "+rotated)
	if err != nil || p.Name != "alice" {
		t.Fatalf("new kid after rotation: %+v, %v", p, err)
	}
	if got := is.jwksHits.Load(); got != hits+1 {
		t.Errorf("JWKS fetched %d times for the new kid, want 1", got-hits)
	}
	// The refresh replaced the set: the withdrawn key no longer works.
	_, err = a.Authenticate(t.Context(), "Bearer "+old)
	checkRejected(t, err, old, "no known JWT signing key")

	// Unknown kids right after a refresh don't reach the issuer.
	for i := range 5 {
		tok := sign(t, jwt.SigningMethodRS256, rsaKey2, "made-up-"+string(rune('a'+i)), is.claims(nil))
		_, err := a.Authenticate(t.Context(), "Bearer "+tok)
		checkRejected(t, err, tok, "no known JWT signing key")
	}
	if got := is.jwksHits.Load(); got != hits+1 {
		t.Errorf("made-up kids fetched the JWKS %d more times", got-hits-1)
	}
}

func TestIssuerDownAtStart(t *testing.T) {
	is := newTestIssuer(t, testKey{"k1", rsaKey1})
	is.down.Store(true)
	cfg := is.oidcConfig("RS256")
	cfg.Tokens = staticConfig().Tokens
	var logs syncbuf.Buffer
	a := newAuth(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), retry: 10 * time.Millisecond})

	tok := sign(t, jwt.SigningMethodRS256, rsaKey1, "k1", is.claims(nil))
	_, err := a.Authenticate(t.Context(), "Bearer "+tok)
	checkRejected(t, err, tok, "signing keys are not loaded yet")
	if p, err := a.Authenticate(t.Context(), "Bearer viewer-token-abcdef"); err != nil || p.Name != "grafana" {
		t.Errorf("static token while the issuer is down: %+v, %v", p, err)
	}
	if l := logs.String(); !strings.Contains(l, "OIDC keys not loaded") || !strings.Contains(l, "status 503") {
		t.Errorf("log does not say why the keys did not load:\n%s", l)
	}

	is.down.Store(false)
	select {
	case <-a.oidc.ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("keys not loaded 10s after the issuer came up; log:\n%s", logs.String())
	}
	p, err := a.Authenticate(t.Context(), "Bearer "+tok)
	if err != nil || p.Via != "jwt" {
		t.Fatalf("after the issuer came up: %+v, %v", p, err)
	}
	if !strings.Contains(logs.String(), "OIDC keys loaded") {
		t.Errorf("log does not say the keys loaded:\n%s", logs.String())
	}
}

func TestIssuerUnreachableAtStart(t *testing.T) {
	is := newTestIssuer(t, testKey{"k1", rsaKey1})
	cfg := is.oidcConfig("RS256")
	is.srv.Close() // nothing listens on the issuer's port any more
	cfg.Token = envToken
	a := newAuth(t, cfg, Options{})
	tok := sign(t, jwt.SigningMethodRS256, rsaKey1, "k1", is.claims(nil))
	_, err := a.Authenticate(t.Context(), "Bearer "+tok)
	checkRejected(t, err, tok, "signing keys are not loaded yet")
	if p, err := a.Authenticate(t.Context(), "Bearer "+envToken); err != nil || p.Role != RoleAdmin {
		t.Errorf("env token while the issuer is unreachable: %+v, %v", p, err)
	}
}

func TestDiscovery(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(is *testIssuer, a *configEdit)
		loads   bool
		logSays string
	}{
		{name: "discovered", loads: true},
		{name: "issuer with trailing slash", setup: func(is *testIssuer, e *configEdit) {
			e.issuer = is.srv.URL + "/"
			is.docIssuer.Store(&e.issuer)
		}, loads: true},
		{name: "document for another issuer", setup: func(is *testIssuer, e *configEdit) {
			other := "https://evil.example"
			is.docIssuer.Store(&other)
		}, logSays: "the document is for issuer"},
		{name: "jwks_url configured, no discovery", setup: func(is *testIssuer, e *configEdit) {
			e.jwksURL = is.srv.URL + "/jwks"
			other := "https://evil.example" // would fail if discovery ran
			is.docIssuer.Store(&other)
		}, loads: true},
		{name: "jwks_url that 404s", setup: func(is *testIssuer, e *configEdit) {
			e.jwksURL = is.srv.URL + "/nope"
		}, logSays: "fetch JWKS"},
		{name: "no key for the algorithm", setup: func(is *testIssuer, e *configEdit) {
			is.publish(testKey{"ec1", ecKey})
		}, logSays: "none of its 1 keys is of type RSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := newTestIssuer(t, testKey{"k1", rsaKey1})
			e := configEdit{issuer: is.srv.URL}
			if tt.setup != nil {
				tt.setup(is, &e)
			}
			cfg := is.oidcConfig("RS256")
			cfg.OIDC.Issuer, cfg.OIDC.JWKSURL = e.issuer, e.jwksURL
			var logs syncbuf.Buffer
			a := newAuth(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			tok := sign(t, jwt.SigningMethodRS256, rsaKey1, "k1", is.claims(func(c jwt.MapClaims) { c["iss"] = e.issuer }))
			p, err := a.Authenticate(t.Context(), "Bearer "+tok)
			if tt.loads {
				if err != nil || p.Via != "jwt" {
					t.Fatalf("Authenticate = %+v, %v; log:\n%s", p, err, logs.String())
				}
				return
			}
			checkRejected(t, err, tok, "signing keys are not loaded yet")
			if !strings.Contains(logs.String(), tt.logSays) {
				t.Errorf("log does not say %q:\n%s", tt.logSays, logs.String())
			}
		})
	}
}

// configEdit is what a TestDiscovery case changes in the config.
type configEdit struct{ issuer, jwksURL string }

func TestCloseIsIdempotent(t *testing.T) {
	is := newTestIssuer(t, testKey{"k1", rsaKey1})
	a, err := New(t.Context(), is.oidcConfig("RS256"), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(t.Context(), staticConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

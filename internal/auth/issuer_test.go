package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/golang-jwt/jwt/v5"
)

// testIssuer is an OIDC issuer on a loopback port: discovery document and
// JWKS, with keys that can be rotated and an outage switch.
type testIssuer struct {
	srv *httptest.Server

	down      atomic.Bool // answer 503 to everything
	docIssuer atomic.Pointer[string]
	jwksHits  atomic.Int32

	mu   sync.Mutex
	keys []testKey // published in the JWKS
}

// testKey is a signing key with its kid.
type testKey struct {
	kid  string
	priv crypto.Signer
}

// Keys the tests sign with; generated once, RSA is slow.
var (
	rsaKey1 = mustRSA()
	rsaKey2 = mustRSA()
	ecKey   = mustEC()
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// newTestIssuer starts an issuer publishing keys; it stops with the test.
func newTestIssuer(t testing.TB, keys ...testKey) *testIssuer {
	t.Helper()
	is := &testIssuer{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss := is.srv.URL
		if p := is.docIssuer.Load(); p != nil {
			iss = *p
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": is.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		is.jwksHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(is.jwks())
	})
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(is.srv.Close)
	return is
}

// jwks is the public JWKS of the published keys.
func (is *testIssuer) jwks() []byte {
	is.mu.Lock()
	defer is.mu.Unlock()
	var set jwkset.JWKSMarshal
	for _, k := range is.keys {
		j, err := jwkset.NewJWKFromKey(k.priv.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, USE: jwkset.UseSig},
		})
		if err != nil {
			panic(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

// publish replaces the published keys: a key rotation.
func (is *testIssuer) publish(keys ...testKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = keys
}

// oidcConfig is the admin config accepting this issuer's tokens.
func (is *testIssuer) oidcConfig(alg string) config.Admin {
	return config.Admin{OIDC: config.OIDC{
		Issuer:        is.srv.URL,
		Audience:      "cdnpilot",
		Algorithm:     alg,
		RoleClaim:     "cdnpilot_role",
		ServicesClaim: "cdnpilot_services",
	}}
}

// claims are a valid token's claims for this issuer, with edits applied.
func (is *testIssuer) claims(edit func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss":                is.srv.URL,
		"aud":                "cdnpilot",
		"sub":                "u-123",
		"preferred_username": "alice",
		"iat":                now.Unix(),
		"nbf":                now.Add(-time.Minute).Unix(),
		"exp":                now.Add(time.Hour).Unix(),
		"cdnpilot_role":      "operator",
		"cdnpilot_services":  []string{"live", "vod"},
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// sign makes a JWT with method and key, kid in the header unless empty.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// newAuth builds an Authenticator that closes with the test.
func newAuth(t testing.TB, cfg config.Admin, opts Options) *Authenticator {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := New(t.Context(), cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

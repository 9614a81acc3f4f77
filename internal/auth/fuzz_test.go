package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzAuthorizationHeader: Authenticate never panics, fails only with
// the two sentinel errors, never echoes a token, and authenticates
// nothing but the exact known tokens (with the scheme in any case).
func FuzzAuthorizationHeader(f *testing.F) {
	is := newTestIssuer(f, testKey{"k1", rsaKey1})
	cfg := is.oidcConfig("RS256")
	cfg.Tokens, cfg.Token = staticConfig().Tokens, envToken
	a := newAuth(f, cfg, Options{})
	valid := sign(f, jwt.SigningMethodRS256, rsaKey1, "k1", is.claims(func(c jwt.MapClaims) {
		c["exp"] = c["iat"].(int64) + 7*24*3600 // outlives a long fuzz run
	}))
	known := map[string]bool{valid: true, envToken: true, "operator-token-abcdef": true, "viewer-token-abcdef": true}
	for tok := range known {
		f.Add("Bearer " + tok)
	}
	for _, h := range []string{
		"", "Bearer", "Bearer ", "bearer viewer-token-abcdef", "Bearer  viewer-token-abcdef",
		"Basic dXNlcjpwYXNz", "Bearer a.b.c", "Bearer a.b.", "Bearer ..", "Bearer " + valid + "x",
		"Bearer " + strings.Replace(valid, "k1", "k2", 1), "Bearer eyJhbGciOiJub25lIn0.e30.",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, header string) {
		p, err := a.Authenticate(t.Context(), header)
		if err == nil {
			scheme, tok, _ := strings.Cut(header, " ")
			if !strings.EqualFold(scheme, "Bearer") || !known[tok] {
				t.Fatalf("authenticated %q as %+v", header, p)
			}
			if !p.Can(RoleViewer) || p.Key == "" || p.Name == "" {
				t.Fatalf("authenticated %q as an incomplete principal %+v", header, p)
			}
			return
		}
		if (header == "") != errors.Is(err, ErrNoCredentials) || header != "" && !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("Authenticate(%q): unexpected error %v", header, err)
		}
		if _, tok, ok := strings.Cut(header, " "); ok && len(tok) >= 16 && strings.Contains(err.Error(), tok) {
			t.Fatalf("Authenticate(%q): error %q echoes the token", header, err)
		}
	})
}

package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cdnpilot/cdnpilot/internal/config"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRoles(t *testing.T) {
	if len(config.AdminRoles) != int(RoleAdmin) {
		t.Fatalf("config.AdminRoles has %d roles, auth has %d", len(config.AdminRoles), RoleAdmin)
	}
	for i, name := range config.AdminRoles {
		r, err := ParseRole(name)
		if err != nil || r != Role(i+1) {
			t.Errorf("ParseRole(%q) = %v, %v; want %v", name, r, err, Role(i+1))
		}
		if r.String() != name {
			t.Errorf("%d.String() = %q, want %q", int(r), r.String(), name)
		}
		b, err := json.Marshal(r)
		if err != nil || string(b) != `"`+name+`"` {
			t.Errorf("json.Marshal(%v) = %s, %v", r, b, err)
		}
	}
	if !(RoleViewer < RoleOperator && RoleOperator < RoleAdmin) {
		t.Error("roles are not ordered weakest first")
	}
	for _, s := range []string{"", "Admin", "root", " viewer"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) succeeded", s)
		}
	}
	if _, err := Role(0).MarshalText(); err == nil {
		t.Error("Role(0).MarshalText succeeded")
	}
	if got := Role(7).String(); got != "Role(7)" {
		t.Errorf("Role(7).String() = %q", got)
	}
}

func TestPrincipalCan(t *testing.T) {
	tests := []struct {
		name string
		p    Principal
		can  []Role
		svc  map[string]bool
	}{
		{"zero principal", Principal{}, nil, map[string]bool{"live": false}},
		{"viewer", Principal{Role: RoleViewer}, []Role{RoleViewer}, map[string]bool{"live": true}},
		{"scoped operator", Principal{Role: RoleOperator, Services: []string{"live"}},
			[]Role{RoleViewer, RoleOperator}, map[string]bool{"live": true, "vod": false}},
		{"operator, all services", Principal{Role: RoleOperator}, []Role{RoleViewer, RoleOperator}, map[string]bool{"vod": true}},
		{"admin ignores services", Principal{Role: RoleAdmin, Services: []string{"live"}},
			[]Role{RoleViewer, RoleOperator, RoleAdmin}, map[string]bool{"live": true, "vod": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []Role{RoleViewer, RoleOperator, RoleAdmin} {
				if got, want := tt.p.Can(r), slices.Contains(tt.can, r); got != want {
					t.Errorf("Can(%v) = %v, want %v", r, got, want)
				}
			}
			for svc, want := range tt.svc {
				if got := tt.p.CanService(svc); got != want {
					t.Errorf("CanService(%q) = %v, want %v", svc, got, want)
				}
			}
		})
	}
}

func TestHashAndGenerateToken(t *testing.T) {
	// sha256("abc"), FIPS 180-2 appendix B.1.
	if got := HashToken("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashToken(abc) = %s", got)
	}
	a, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateToken()
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 || len(a) != 43 {
		t.Errorf("GenerateToken() = %q: %d bytes, %v", a, len(raw), err)
	}
	if a == b {
		t.Error("two generated tokens are equal")
	}
	if looksLikeJWT(a) {
		t.Error("a generated token looks like a JWT")
	}
}

const envToken = "env-admin-token-0123456789"

// staticConfig has an operator limited to "live", a viewer and the
// CDNPILOT_ADMIN_TOKEN admin.
func staticConfig() config.Admin {
	return config.Admin{
		Tokens: []config.AdminToken{
			{Name: "deploy-bot", SHA256: HashToken("operator-token-abcdef"), Role: "operator", Services: []string{"live"}},
			{Name: "grafana", SHA256: HashToken("viewer-token-abcdef"), Role: "viewer"},
		},
		Token: envToken,
	}
}

func TestStaticTokens(t *testing.T) {
	a := newAuth(t, staticConfig(), Options{})
	tests := []struct {
		name   string
		header string
		want   Principal
		err    error
		reason string // in the error's text
	}{
		{name: "operator", header: "Bearer operator-token-abcdef",
			want: Principal{Name: "deploy-bot", Role: RoleOperator, Services: []string{"live"}, Via: "token", Key: "token:deploy-bot"}},
		{name: "viewer", header: "Bearer viewer-token-abcdef",
			want: Principal{Name: "grafana", Role: RoleViewer, Via: "token", Key: "token:grafana"}},
		{name: "env admin token", header: "Bearer " + envToken,
			want: Principal{Name: "admin", Role: RoleAdmin, Via: "token", Key: "token:admin"}},
		{name: "scheme lower case", header: "bearer viewer-token-abcdef",
			want: Principal{Name: "grafana", Role: RoleViewer, Via: "token", Key: "token:grafana"}},
		{name: "scheme upper case", header: "BEARER viewer-token-abcdef",
			want: Principal{Name: "grafana", Role: RoleViewer, Via: "token", Key: "token:grafana"}},
		{name: "wrong token", header: "Bearer operator-token-abcdeg", err: ErrBadCredentials, reason: "unknown token"},
		{name: "token case matters", header: "Bearer OPERATOR-TOKEN-ABCDEF", err: ErrBadCredentials, reason: "unknown token"},
		{name: "empty header", header: "", err: ErrNoCredentials},
		{name: "two spaces", header: "Bearer  viewer-token-abcdef", err: ErrBadCredentials, reason: "malformed"},
		{name: "trailing space", header: "Bearer viewer-token-abcdef ", err: ErrBadCredentials, reason: "malformed"},
		{name: "two tokens", header: "Bearer viewer-token-abcdef x", err: ErrBadCredentials, reason: "malformed"},
		{name: "tab", header: "Bearer\tviewer-token-abcdef", err: ErrBadCredentials, reason: "not Bearer"},
		{name: "scheme only", header: "Bearer", err: ErrBadCredentials, reason: "malformed"},
		{name: "scheme and space", header: "Bearer ", err: ErrBadCredentials, reason: "malformed"},
		{name: "basic", header: "Basic viewer-token-abcdef", err: ErrBadCredentials, reason: "not Bearer"},
		{name: "no scheme", header: "viewer-token-abcdef", err: ErrBadCredentials, reason: "not Bearer"},
		{name: "control character", header: "Bearer viewer-token\x00abcdef", err: ErrBadCredentials, reason: "malformed"},
		{name: "non-ASCII", header: "Bearer viewer-tökén", err: ErrBadCredentials, reason: "malformed"},
		{name: "over 8 KiB", header: "Bearer " + strings.Repeat("a", 8<<10), err: ErrBadCredentials, reason: "over 8 KiB"},
		{name: "JWT shape without OIDC", header: "Bearer aaa.bbb.ccc", err: ErrBadCredentials, reason: "no OIDC issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(t.Context(), tt.header)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if !strings.Contains(err.Error(), tt.reason) {
					t.Errorf("err = %q, want it to say %q", err, tt.reason)
				}
				if tok, ok := strings.CutPrefix(tt.header, "Bearer "); ok && len(tok) > 3 && strings.Contains(err.Error(), tok) {
					t.Errorf("err = %q echoes the token", err)
				}
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

	t.Run("services are a copy", func(t *testing.T) {
		p, _ := a.Authenticate(t.Context(), "Bearer operator-token-abcdef")
		p.Services[0] = "vod"
		p, _ = a.Authenticate(t.Context(), "Bearer operator-token-abcdef")
		if p.Services[0] != "live" {
			t.Errorf("a caller changed the configured services: %v", p.Services)
		}
	})
	t.Run("admin name option", func(t *testing.T) {
		a := newAuth(t, staticConfig(), Options{AdminName: "ops"})
		p, err := a.Authenticate(t.Context(), "Bearer "+envToken)
		if err != nil || p.Name != "ops" || p.Key != "token:ops" || p.Role != RoleAdmin {
			t.Errorf("Authenticate = %+v, %v", p, err)
		}
	})
}

func equalPrincipal(a, b Principal) bool {
	return a.Name == b.Name && a.Role == b.Role && slices.Equal(a.Services, b.Services) && a.Via == b.Via && a.Key == b.Key
}

func TestNewRejects(t *testing.T) {
	good := staticConfig().Tokens[0]
	tests := []struct {
		name string
		cfg  config.Admin
		opts Options
		want string
	}{
		{"bad role", config.Admin{Tokens: []config.AdminToken{{Name: "x", SHA256: good.SHA256, Role: "root"}}}, Options{}, "admin.tokens[0].role"},
		{"bad hash", config.Admin{Tokens: []config.AdminToken{{Name: "x", SHA256: "abc", Role: "viewer"}}}, Options{}, "admin.tokens[0].sha256"},
		{"same token twice", config.Admin{Tokens: []config.AdminToken{good, {Name: "y", SHA256: good.SHA256, Role: "viewer"}}}, Options{}, "the same token as"},
		{"env token also configured", config.Admin{Tokens: []config.AdminToken{{Name: "x", SHA256: HashToken(envToken), Role: "viewer"}}, Token: envToken}, Options{}, "CDNPILOT_ADMIN_TOKEN: the same token"},
		{"admin name taken", config.Admin{Tokens: []config.AdminToken{{Name: "admin", SHA256: good.SHA256, Role: "viewer"}}, Token: envToken}, Options{}, `name "admin" is also used`},
		{"oidc without audience", config.Admin{OIDC: config.OIDC{Issuer: "https://idp.example", Algorithm: "RS256", RoleClaim: "r"}}, Options{}, "audience"},
		{"oidc with HS256", config.Admin{OIDC: config.OIDC{Issuer: "https://idp.example", Audience: "a", Algorithm: "HS256", RoleClaim: "r"}}, Options{}, "algorithm"},
		{"oidc with none", config.Admin{OIDC: config.OIDC{Issuer: "https://idp.example", Audience: "a", Algorithm: "none", RoleClaim: "r"}}, Options{}, "algorithm"},
		{"oidc without role claim", config.Admin{OIDC: config.OIDC{Issuer: "https://idp.example", Audience: "a", Algorithm: "RS256"}}, Options{}, "role_claim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(t.Context(), tt.cfg, tt.opts)
			if err == nil {
				_ = a.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

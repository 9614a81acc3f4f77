// Package auth turns an admin API request's Authorization header into a Principal.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/config"
)

// Errors of Authenticate. Every ErrBadCredentials is wrapped with a reason
// that is safe to show the caller: it never contains the token.
var (
	ErrNoCredentials  = errors.New("no credentials: send Authorization: Bearer <token>")
	ErrBadCredentials = errors.New("bad credentials")
)

// maxHeader caps the Authorization header; a real JWT is a few KiB at most.
const maxHeader = 8 << 10

// badf wraps ErrBadCredentials with a reason for the caller.
func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadCredentials, fmt.Sprintf(format, args...))
}

// HashToken is what admin.tokens[].sha256 holds for token: its hex SHA-256.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// GenerateToken returns a new random bearer token: 32 bytes from
// crypto/rand, base64url without padding (43 characters).
func GenerateToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Options are the Authenticator's dependencies.
type Options struct {
	// Client fetches the OIDC discovery document and the JWKS; nil: a
	// client of its own with a 10s timeout.
	Client *http.Client
	// Logger gets the OIDC key loading problems; nil: slog.Default().
	Logger *slog.Logger
	// AdminName names the principal of CDNPILOT_ADMIN_TOKEN; "": "admin".
	AdminName string

	// retry is the first pause after a failed key load; 0: one second.
	// Only tests change it.
	retry time.Duration
}

// Authenticator checks bearer tokens: static ones from the config and,
// with an OIDC issuer, JWTs. Safe for concurrent use.
type Authenticator struct {
	// tokens maps the SHA-256 of each static token to its principal.
	tokens map[[sha256.Size]byte]Principal
	oidc   *verifier // nil: OIDC off

	closeOnce sync.Once
	stop      context.CancelFunc // nil without OIDC
	done      chan struct{}      // closed when the key loader has returned
	ownClient *http.Client       // the client New made, if it made one
}

// New builds the Authenticator from the admin config. With an OIDC issuer
// it loads the issuer's keys once before returning, within ctx and at
// most 10s; if that fails it logs why and returns anyway: static tokens
// work at once, JWTs are refused with a reason until a background retry
// loads the keys. The keys are reloaded hourly until Close.
func New(ctx context.Context, cfg config.Admin, opts Options) (*Authenticator, error) {
	tokens, err := staticTokens(cfg, opts.AdminName)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{tokens: tokens}
	if cfg.OIDC.Issuer == "" {
		return a, nil
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{
			Timeout:   10 * time.Second,
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
		}
		a.ownClient = client
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	v, err := newVerifier(cfg.OIDC, client, logger.With("component", "auth"), opts.retry)
	if err != nil {
		return nil, err
	}
	a.oidc = v
	first, cancel := context.WithTimeout(ctx, startTimeout)
	loaded := v.reload(first)
	cancel()
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stop, a.done = stop, make(chan struct{})
	go func() {
		defer close(a.done)
		v.run(loopCtx, loaded)
	}()
	return a, nil
}

// Close stops the background key loader and waits for it.
func (a *Authenticator) Close() error {
	a.closeOnce.Do(func() {
		if a.stop != nil {
			a.stop()
			<-a.done
		}
		if a.ownClient != nil {
			a.ownClient.CloseIdleConnections()
		}
	})
	return nil
}

// staticTokens indexes the configured tokens and the CDNPILOT_ADMIN_TOKEN
// one by hash. Two entries with one hash or one name are an error: the
// audit log and the rate limits could not tell them apart.
func staticTokens(cfg config.Admin, adminName string) (map[[sha256.Size]byte]Principal, error) {
	tokens := make(map[[sha256.Size]byte]Principal, len(cfg.Tokens)+1)
	names := make(map[string]string, len(cfg.Tokens)+1)
	add := func(where string, sum [sha256.Size]byte, p Principal) error {
		if prev, dup := tokens[sum]; dup {
			return fmt.Errorf("%s: the same token as %q", where, prev.Name)
		}
		if prev, dup := names[p.Name]; dup {
			return fmt.Errorf("%s: name %q is also used by %s", where, p.Name, prev)
		}
		tokens[sum], names[p.Name] = p, where
		return nil
	}
	for i, t := range cfg.Tokens {
		where := fmt.Sprintf("admin.tokens[%d]", i)
		role, err := ParseRole(t.Role)
		if err != nil {
			return nil, fmt.Errorf("%s.role: %w", where, err)
		}
		b, err := hex.DecodeString(t.SHA256)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s.sha256: not a hex SHA-256", where)
		}
		p := Principal{Name: t.Name, Role: role, Services: slices.Clone(t.Services), Via: "token", Key: "token:" + t.Name}
		if err := add(where, [sha256.Size]byte(b), p); err != nil {
			return nil, err
		}
	}
	if cfg.Token != "" {
		name := adminName
		if name == "" {
			name = "admin"
		}
		p := Principal{Name: name, Role: RoleAdmin, Via: "token", Key: "token:" + name}
		if err := add("CDNPILOT_ADMIN_TOKEN", sha256.Sum256([]byte(cfg.Token)), p); err != nil {
			return nil, err
		}
	}
	return tokens, nil
}

// Authenticate checks an Authorization header: "Bearer <token>", the
// scheme in any case, one space, one token. The token is a static one or,
// when it has the shape of a JWT and OIDC is on, a JWT from the issuer.
// ctx bounds a JWKS refresh for a key id not seen before.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Principal, error) {
	token, err := bearer(header)
	if err != nil {
		return Principal{}, err
	}
	// A map lookup by hash is not constant-time, but what it leaks is
	// where the SHA-256 of a guess sits, which does not help find a token.
	if p, ok := a.tokens[sha256.Sum256([]byte(token))]; ok {
		p.Services = slices.Clone(p.Services)
		return p, nil
	}
	if !looksLikeJWT(token) {
		return Principal{}, badf("unknown token")
	}
	if a.oidc == nil {
		return Principal{}, badf("JWTs are not accepted: no OIDC issuer is configured")
	}
	return a.oidc.verify(ctx, token)
}

// bearer returns the token of a "Bearer <token>" header.
func bearer(header string) (string, error) {
	if header == "" {
		return "", ErrNoCredentials
	}
	if len(header) > maxHeader {
		return "", badf("Authorization header over %d KiB", maxHeader>>10)
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", badf("authorization scheme is not Bearer")
	}
	if !ok || token == "" || !visibleASCII(token) {
		return "", badf(`malformed Authorization header: want "Bearer <token>" with one space and no other blanks`)
	}
	return token, nil
}

// visibleASCII reports whether s is printable ASCII without spaces, the
// most a bearer token may hold.
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// looksLikeJWT reports whether s is three base64url segments separated by
// dots, the first two non-empty (the signature is empty for alg "none",
// which is then refused with a reason rather than "unknown token").
// Generated tokens have no dots, so they never look like one.
func looksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

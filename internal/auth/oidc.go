package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

const (
	// startTimeout bounds New's first key load.
	startTimeout = 10 * time.Second
	// loadTimeout bounds each later load: discovery plus JWKS.
	loadTimeout = 30 * time.Second
	// reloadEvery reloads the keys even when every kid is known, so a key
	// the issuer withdrew stops working.
	reloadEvery = time.Hour
	// retryMax caps the pause between failed loads.
	retryMax = time.Minute
	// unknownKIDEvery is how often a JWT with a kid not in the JWKS may
	// make us fetch the JWKS again (the issuer rotated its key), and
	// unknownKIDWait how long such a request may wait for the fetch. A
	// flood of made-up kids costs the issuer one fetch a minute; the
	// other requests fail at once rather than queue.
	unknownKIDEvery = time.Minute
	unknownKIDWait  = 5 * time.Second
	// leeway is the clock skew allowed on exp and nbf.
	leeway = 30 * time.Second
	// maxDiscovery caps the discovery document.
	maxDiscovery = 1 << 20
)

// verifier checks JWTs from one OIDC issuer.
type verifier struct {
	cfg     config.OIDC
	parser  *jwt.Parser
	client  *http.Client
	log     *slog.Logger
	retry   time.Duration
	limiter *rate.Limiter // shared by every key set, so reloads don't reset it

	keys      atomic.Pointer[keySet] // nil until the first load succeeds
	ready     chan struct{}          // closed when keys is first set
	readyOnce sync.Once
}

// keySet is one loaded JWKS.
type keySet struct {
	url string
	kf  keyfunc.Keyfunc
}

func newVerifier(cfg config.OIDC, client *http.Client, log *slog.Logger, retry time.Duration) (*verifier, error) {
	// config.Validate checks these too; a verifier without them would
	// accept too much, so they are checked again here.
	switch {
	case cfg.Audience == "":
		return nil, errors.New("admin.oidc.audience: required with an issuer")
	case cfg.RoleClaim == "":
		return nil, errors.New("admin.oidc.role_claim: required with an issuer")
	case jwt.GetSigningMethod(cfg.Algorithm) == nil || strings.HasPrefix(cfg.Algorithm, "HS") || cfg.Algorithm == "none":
		return nil, fmt.Errorf("admin.oidc.algorithm: %q is not an asymmetric JWT algorithm", cfg.Algorithm)
	}
	if retry <= 0 {
		retry = time.Second
	}
	return &verifier{
		cfg: cfg,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{cfg.Algorithm}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(leeway),
			// One encoding per signature: a token altered in its padding
			// bits is a different token.
			jwt.WithStrictDecoding(),
		),
		client:  client,
		log:     log,
		retry:   retry,
		limiter: rate.NewLimiter(rate.Every(unknownKIDEvery), 1),
		ready:   make(chan struct{}),
	}, nil
}

// run reloads the keys until ctx ends: hourly once loaded, sooner with
// backoff after a failure. loaded says whether New's first load worked.
func (v *verifier) run(ctx context.Context, loaded bool) {
	wait, failures := reloadEvery, 0
	if !loaded {
		wait, failures = v.retry, 1
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		load, cancel := context.WithTimeout(ctx, loadTimeout)
		ok := v.reload(load)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if ok {
			failures = 0
			t.Reset(reloadEvery)
			continue
		}
		failures++
		t.Reset(min(v.retry<<min(failures-1, 16), retryMax))
	}
}

// reload loads the keys once and installs them; on failure it logs why
// and keeps the keys it had.
func (v *verifier) reload(ctx context.Context) bool {
	ks, n, err := v.load(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return false // shutting down
		}
		if v.keys.Load() == nil {
			v.log.Error("OIDC keys not loaded; JWTs are refused until they are, static tokens work", "issuer", v.cfg.Issuer, "err", err)
		} else {
			v.log.Warn("OIDC keys not reloaded; keeping the last ones", "issuer", v.cfg.Issuer, "err", err)
		}
		return false
	}
	if prev := v.keys.Swap(ks); prev == nil || prev.url != ks.url {
		v.log.Info("OIDC keys loaded", "issuer", v.cfg.Issuer, "jwks_url", ks.url, "keys", n)
	}
	v.readyOnce.Do(func() { close(v.ready) })
	return true
}

// load finds the JWKS (configured or discovered) and fetches it once.
// It starts no goroutine: a kid not in the set refreshes the set from the
// request's goroutine, rate-limited; run does the periodic reloads.
func (v *verifier) load(ctx context.Context) (*keySet, int, error) {
	u := v.cfg.JWKSURL
	if u == "" {
		var err error
		if u, err = v.discover(ctx); err != nil {
			return nil, 0, err
		}
	}
	store, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
		Client:      v.client,
		Ctx:         ctx,
		HTTPTimeout: loadTimeout,
		RefreshErrorHandler: func(ctx context.Context, err error) {
			v.log.WarnContext(ctx, "JWKS refresh for an unknown kid failed", "jwks_url", u, "err", err)
		},
	})
	if err != nil {
		return nil, 0, fmt.Errorf("fetch JWKS %s: %w", u, err)
	}
	all, err := store.KeyReadAll(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read JWKS %s: %w", u, err)
	}
	n := 0
	for _, k := range all {
		if kty := k.Marshal().KTY; kty == keyType(v.cfg.Algorithm) {
			n++
		}
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("JWKS %s: none of its %d keys is of type %s, which %s needs", u, len(all), keyType(v.cfg.Algorithm), v.cfg.Algorithm)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{u: store},
		RateLimitWaitMax:  unknownKIDWait,
		RefreshUnknownKID: v.limiter,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("JWKS %s: %w", u, err)
	}
	kf, err := keyfunc.New(keyfunc.Options{Storage: client})
	if err != nil {
		return nil, 0, fmt.Errorf("JWKS %s: %w", u, err)
	}
	return &keySet{url: u, kf: kf}, n, nil
}

// keyType is the JWK kty an algorithm's keys have.
func keyType(alg string) jwkset.KTY {
	switch {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		return jwkset.KtyRSA
	case strings.HasPrefix(alg, "ES"):
		return jwkset.KtyEC
	default:
		return jwkset.KtyOKP
	}
}

// discover reads the issuer's /.well-known/openid-configuration and
// returns its jwks_uri. The document must name the configured issuer
// exactly, as OpenID Connect Discovery 1.0 section 4.3 requires.
func (v *verifier) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(v.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("discovery %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery %s: status %d", u, resp.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDiscovery)).Decode(&doc); err != nil {
		return "", fmt.Errorf("discovery %s: %w", u, err)
	}
	if doc.Issuer != v.cfg.Issuer {
		return "", fmt.Errorf("discovery %s: the document is for issuer %q, not %q", u, doc.Issuer, v.cfg.Issuer)
	}
	j, err := url.Parse(doc.JWKSURI)
	if err != nil || j.Host == "" || j.Scheme != "https" && j.Scheme != "http" {
		return "", fmt.Errorf("discovery %s: jwks_uri %q is not an http(s) URL", u, doc.JWKSURI)
	}
	if is, _ := url.Parse(v.cfg.Issuer); is != nil && is.Scheme == "https" && j.Scheme != "https" {
		return "", fmt.Errorf("discovery %s: jwks_uri %q is not https like the issuer", u, doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// verify checks a JWT and turns its claims into a Principal.
func (v *verifier) verify(ctx context.Context, raw string) (Principal, error) {
	ks := v.keys.Load()
	if ks == nil {
		return Principal{}, badf("the OIDC issuer's signing keys are not loaded yet (the issuer is unreachable or misconfigured); try again later")
	}
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, claims, ks.kf.KeyfuncCtx(ctx))
	if err != nil {
		return Principal{}, v.reason(tok, claims, err)
	}
	return v.principal(claims)
}

// reason turns a jwt/v5 error into words for the caller. The library's
// own messages may quote the token's content, so they are not passed on.
func (v *verifier) reason(tok *jwt.Token, claims jwt.MapClaims, err error) error {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return badf("malformed JWT")
	}
	if tok != nil && (tok.Method == nil || tok.Method.Alg() != v.cfg.Algorithm) {
		return badf("JWT signing algorithm not accepted (want %s)", v.cfg.Algorithm)
	}
	for _, c := range []struct {
		err    error
		reason string
	}{
		// Unknown kid, a refresh refused by the rate limit, or a key
		// published for another algorithm.
		{keyfunc.ErrKeyfunc, "no known JWT signing key matches the token's kid"},
		{jwt.ErrTokenUnverifiable, "no JWT signing key to verify the token with"},
		{jwt.ErrTokenSignatureInvalid, "bad JWT signature"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{jwt.ErrTokenExpired, "token expired"},
		{jwt.ErrTokenNotValidYet, "token not valid yet (nbf)"},
	} {
		if errors.Is(err, c.err) {
			return badf("%s", c.reason)
		}
	}
	if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
		for _, c := range []string{"exp", "iss", "aud"} {
			if _, ok := claims[c]; !ok {
				return badf("token has no %s claim", c)
			}
		}
	}
	if errors.Is(err, jwt.ErrInvalidType) {
		return badf("a registered claim (exp, nbf, iat, iss, aud, sub) has the wrong type")
	}
	return badf("invalid JWT")
}

// principal reads the role, services and name claims of a verified token.
func (v *verifier) principal(claims jwt.MapClaims) (Principal, error) {
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return Principal{}, badf("token has no sub claim")
	}
	rc := v.cfg.RoleClaim
	rv, ok := claims[rc]
	if !ok {
		return Principal{}, badf("token has no %q claim (the role)", rc)
	}
	rs, ok := rv.(string)
	if !ok {
		return Principal{}, badf("token's %q claim is not a string", rc)
	}
	role, err := ParseRole(rs)
	if err != nil {
		return Principal{}, badf("token's %q claim: %s", rc, err)
	}
	var services []string
	if sc := v.cfg.ServicesClaim; sc != "" {
		switch s := claims[sc].(type) {
		case nil:
		case string:
			services = strings.Fields(s)
		case []any:
			for _, e := range s {
				es, ok := e.(string)
				if !ok {
					return Principal{}, badf("token's %q claim is not a list of strings", sc)
				}
				if es != "" {
					services = append(services, es)
				}
			}
		default:
			return Principal{}, badf("token's %q claim is not a list of strings", sc)
		}
	}
	name := sub
	for _, c := range []string{"preferred_username", "email"} {
		if s, _ := claims[c].(string); s != "" {
			name = s
			break
		}
	}
	return Principal{
		Name:     name,
		Role:     role,
		Services: services,
		Via:      "jwt",
		Key:      "jwt:" + v.cfg.Issuer + "/" + sub,
	}, nil
}

package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/auth"
	"github.com/cdnpilot/cdnpilot/internal/clientip"
)

const (
	keyPrincipal = "cdnpilot.principal"
	keyClient    = "cdnpilot.client"
)

func principal(c *gin.Context) auth.Principal {
	p, _ := c.Get(keyPrincipal)
	pr, _ := p.(auth.Principal)
	return pr
}

func client(c *gin.Context) netip.Addr {
	a, _ := c.Get(keyClient)
	ad, _ := a.(netip.Addr)
	return ad
}

// recover turns a panic into a 500 that says nothing of the internals and
// logs the rest.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in admin API handler", "path", c.Request.URL.Path, "panic", fmt.Sprint(v))
			apiError(c, http.StatusInternalServerError, "", "internal error; the server log has the details")
		}
	}()
	c.Next()
}

// cors allows the configured origins exactly: the origin is echoed, never
// "*". A preflight from any other origin is refused.
func (s *Server) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	allowed := origin != "" && slices.Contains(s.o.CORSOrigins, origin)
	if origin != "" {
		c.Writer.Header().Add("Vary", "Origin")
	}
	if allowed {
		h := c.Writer.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Expose-Headers", "Retry-After")
	}
	if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
		if !allowed {
			apiError(c, http.StatusForbidden, "", "origin "+fmt.Sprintf("%q", origin)+" is not in admin.cors_origins")
			return
		}
		h := c.Writer.Header()
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Next()
}

// clientLimit finds the real client address and limits it, before the
// token is even looked at: a token guesser is limited like anyone.
func (s *Server) clientLimit(c *gin.Context) {
	addr := clientip.From(c.Request, s.o.TrustedProxies)
	c.Set(keyClient, addr)
	if wait, ok := s.limits.allow("ip:"+addr.String(), s.limits.perClient); !ok {
		retryAfter(c, wait)
		apiError(c, http.StatusTooManyRequests, "", "rate limit: too many requests from "+addr.String()+"; slow down")
		return
	}
	c.Next()
}

// bodyLimit refuses a body over MaxBody: at once when Content-Length says
// so, and on reading otherwise (the decoder then answers 413).
func (s *Server) bodyLimit(c *gin.Context) {
	if c.Request.ContentLength > MaxBody {
		apiError(c, http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("body: %d bytes is over the limit of %d", c.Request.ContentLength, MaxBody))
		return
	}
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxBody)
	}
	c.Next()
}

// authenticate needs a valid bearer token; a missing or bad one is a 401,
// recorded in the audit trail.
func (s *Server) authenticate(c *gin.Context) {
	p, err := s.o.Auth.Authenticate(c.Request.Context(), c.GetHeader("Authorization"))
	if err != nil {
		msg := "authentication: " + err.Error()
		if errors.Is(err, auth.ErrNoCredentials) {
			msg = "authentication: no bearer token (Authorization: Bearer <token>)"
		}
		s.denied(c, auth.Principal{}, http.StatusUnauthorized, msg)
		c.Header("WWW-Authenticate", `Bearer realm="cdnpilot"`)
		apiError(c, http.StatusUnauthorized, "", msg)
		return
	}
	c.Set(keyPrincipal, p)
	c.Next()
}

func (s *Server) tokenLimit(c *gin.Context) {
	p := principal(c)
	if wait, ok := s.limits.allow(p.Key, s.limits.perToken); !ok {
		retryAfter(c, wait)
		apiError(c, http.StatusTooManyRequests, "", "rate limit: too many requests for "+p.Name+"; slow down")
		return
	}
	c.Next()
}

// authorize needs at least role; a weaker caller gets 403, audited.
func (s *Server) authorize(role auth.Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := principal(c)
		if !p.Can(role) {
			msg := fmt.Sprintf("forbidden: %s %s needs the %s role; %s has %s", c.Request.Method, c.FullPath(), role, p.Name, p.Role)
			s.denied(c, p, http.StatusForbidden, msg)
			apiError(c, http.StatusForbidden, "", msg)
			return
		}
		c.Next()
	}
}

// denied records a refused request. The refusal stands whether or not the
// record could be written; a failure to write it is logged.
func (s *Server) denied(c *gin.Context, p auth.Principal, status int, detail string) {
	rec := s.auditRecord(c, p, "auth.denied", "denied", status)
	rec.Detail = truncate(detail, 1024)
	if err := s.appendAudit(c.Request.Context(), rec); err != nil {
		s.log.Error("audit: a denied request could not be recorded", "path", c.Request.URL.Path, "source", rec.Source, "err", err)
	}
}

func (s *Server) auditRecord(c *gin.Context, p auth.Principal, action, outcome string, status int) analytics.AuditRecord {
	r := analytics.AuditRecord{
		At: s.o.Now(), Actor: p.Name, Auth: p.Via, Source: client(c).String(),
		Method: c.Request.Method, Path: truncate(c.Request.URL.Path, 512), Action: action, Outcome: outcome, Status: status,
	}
	if p.Name != "" {
		r.Role = p.Role.String()
	}
	return r
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// limiter holds token buckets by key (a token or a client address). Idle
// buckets are swept so a scan of addresses cannot grow it without bound.
type limiter struct {
	perToken, perClient rate.Limit
	burst               int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perToken, perClient float64, burst int) *limiter {
	return &limiter{perToken: rate.Limit(perToken), perClient: rate.Limit(perClient), burst: max(burst, 1), buckets: map[string]*bucket{}}
}

// allow takes one request from key's bucket; when it is empty it says how
// long until it is not. A zero limit is off.
func (l *limiter) allow(key string, limit rate.Limit) (time.Duration, bool) {
	if limit <= 0 {
		return 0, true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute && len(l.buckets) > 1024 {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(limit, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

package redirect

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

// viewParam is the query parameter that names the view to the redirector.
// It is ours, so it is not passed on to the CDN.
const viewParam = "cdnpilot_view"

// serveRedirect answers GET /r/{service}/{path...} with a 302 to the
// chosen CDN's base URL, the path and query kept (less our own view
// parameter), signed when the CDN wants a token. The pick is sticky per
// view: the same view id lands on the same CDN while the weights allow.
func (s *Server) serveRedirect(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	h := w.Header()
	svc := s.service(w, r, "http")
	if svc == nil {
		return
	}
	// The escaped path after /r/{service}/, as the client sent it, so
	// what the CDN sees is byte for byte what the player asked for.
	esc := r.URL.EscapedPath()
	rest := esc[min(len(esc), len("/r/")+len(svc.name)):]
	rest = strings.TrimPrefix(rest, "/")
	query, view := splitView(r.URL.RawQuery)
	if view == "" {
		if c, err := r.Cookie(s.o.ViewCookie); err == nil && viewIDOK(c.Value) {
			view = c.Value
		}
	}
	if view == "" {
		view = cmcdSID(r, queryParam(query, "CMCD"))
	}
	if view == "" {
		// A client that names no view gets one to keep. Lax: a same-site
		// player's next request brings it back; a cross-site one names
		// its view in the query or CMCD instead.
		view = s.newView()
		h["Set-Cookie"] = []string{s.o.ViewCookie + "=" + view + "; Path=/r/; Max-Age=14400; HttpOnly; SameSite=Lax"}
	}

	client, loc := s.place(r)
	d, err := s.o.Decider.Decide(steering.Query{
		Service:  svc.name,
		Location: steering.Location{Region: loc.Region, Country: loc.Country, ASN: loc.ASN},
		ViewID:   view,
	})
	cdn := d.CDN
	base, ok := s.bases[cdn]
	if err != nil || !ok {
		// A decision this node cannot follow (a scorer on a newer catalog
		// without a base URL here) falls back to the static order: a
		// player must always get somewhere.
		d = steering.Decision{Rule: steering.RuleFailOpen, Stale: d.Stale}
		cdn = svc.static[0]
		base = s.bases[cdn]
	}

	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], base...)
	b = append(b, '/')
	pathStart := len(b) - 1
	b = append(b, rest...)
	path := string(b[pathStart:]) // the path at the CDN, for the token's ACL
	sep := byte('?')
	if query != "" {
		b = append(b, '?')
		b = append(b, query...)
		sep = '&'
	}
	if sg := s.signers[cdn]; sg != nil {
		b = append(b, sep)
		b = sg.Append(b, basePath(base)+path, start)
	}
	h["Location"] = []string{string(b)}
	*bp = b
	bufPool.Put(bp)
	h["Content-Length"] = zero
	w.WriteHeader(http.StatusFound)

	s.m.response("http", cdn, loc.Region, http.StatusFound).Inc()
	s.m.observe("http", s.now().Sub(start))
	s.logDecision("http", svc.name, client, loc, &d, cdn, "302", start)
}

var zero = []string{"0"}

// splitView takes our view parameter out of a raw query, leaving the rest
// as it was.
func splitView(raw string) (query, view string) {
	if !strings.Contains(raw, viewParam) {
		return raw, ""
	}
	var kept []string
	for part := range strings.SplitSeq(raw, "&") {
		if v, ok := strings.CutPrefix(part, viewParam+"="); ok {
			if viewIDOK(v) {
				view = v
			} else if u, err := url.QueryUnescape(v); err == nil && viewIDOK(u) {
				view = u
			}
			continue
		}
		if part == viewParam {
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&"), view
}

// basePath is the path prefix of a base URL ("" for none), which the
// token's ACL must include: the CDN sees the whole path.
func basePath(base string) string {
	i := strings.Index(base, "://")
	if i < 0 {
		return ""
	}
	rest := base[i+3:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		return rest[j:]
	}
	return ""
}

// observe is split out so tests and handlers share one clock.
func (m *metrics) observe(protocol string, d time.Duration) {
	m.duration(protocol).Observe(d.Seconds())
}

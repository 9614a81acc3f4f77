package redirect

import (
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

// steerQuery is what a content steering request says, from the query the
// player (and the RELOAD-URI we gave it) put together. Every value is
// optional and a bad one counts as absent: players get the default
// priority, never a 4xx.
type steerQuery struct {
	state     viewState
	ladderMin float64 // lowest bitrate of the ladder, bit/s (from the manifest helper's SERVER-URI)
	protocol  string  // "hls" or "dash"
	hlsParams bool    // _HLS_pathway or _HLS_throughput came: an HLS player (hls.js always sends them)
	// HLS reports its current pathway and one throughput; DASH every
	// service location it knows with a throughput each.
	pathways    []string
	throughputs []float64
	cmcd        string // raw CMCD query argument
}

// parse reads a raw query. The lists are filled into pbuf and tbuf (the
// caller's arrays, so a poll parses without allocating), up to their
// capacity.
func parseSteerQuery(raw string, pbuf []string, tbuf []float64) (q steerQuery) {
	q.protocol = "hls"
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.IndexByte(v, '%') >= 0 || strings.IndexByte(v, '+') >= 0 {
			u, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			v = u
		}
		switch k {
		case "_ss":
			q.state, _ = decodeState(v)
		case "ladder_min":
			if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && f < 1e12 {
				q.ladderMin = f
			}
		case "_HLS_pathway":
			q.hlsParams = true
			q.pathways = append(pbuf[:0], strings.Trim(v, `"`))
		case "_HLS_throughput":
			q.hlsParams = true
			q.throughputs = parseThroughputs(v, tbuf[:0])
		case "_DASH_pathway":
			q.protocol = "dash"
			q.pathways = pbuf[:0]
			for p := range strings.SplitSeq(strings.Trim(v, `"`), ",") {
				if len(q.pathways) == cap(q.pathways) {
					break // more locations than a service may have
				}
				q.pathways = append(q.pathways, p)
			}
		case "_DASH_throughput":
			q.protocol = "dash"
			q.throughputs = parseThroughputs(strings.Trim(v, `"`), tbuf[:0])
		case "CMCD":
			q.cmcd = v
		}
	}
	return q
}

// parseThroughputs fills dst up to its capacity.
func parseThroughputs(v string, dst []float64) []float64 {
	for f := range strings.SplitSeq(v, ",") {
		if len(dst) == cap(dst) {
			break
		}
		t, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(t >= 0 && t < 1e13) {
			t = 0 // unknown: neither slow nor fast
		}
		dst = append(dst, t)
	}
	return dst
}

// Manifest is the steering manifest's wire form, for clients and tests
// that read it (the handler writes it by hand, without reflection).
type Manifest struct {
	Version  int      `json:"VERSION"`
	TTL      int      `json:"TTL"`
	Reload   string   `json:"RELOAD-URI"`
	Clones   []Clone  `json:"PATHWAY-CLONES,omitempty"`
	Priority []string `json:"PATHWAY-PRIORITY"`
}

// Clone is a pathway the manifests lack, made by the player from a
// pathway they have: its URIs with another host.
type Clone struct {
	BaseID         string         `json:"BASE-ID"`
	ID             string         `json:"ID"`
	URIReplacement URIReplacement `json:"URI-REPLACEMENT"`
}

// URIReplacement of a clone: only the host (steering.CloneHost).
type URIReplacement struct {
	Host string `json:"HOST"`
}

// viewState rides in the RELOAD-URI (`_ss`), so any node can answer a
// view's next poll: the view id (sticky pick), the pathway we put first
// (a player on another one has left it on its own, after media errors),
// and a pathway demoted for this view until a time.
type viewState struct {
	view     string
	expected string
	demoted  string
	until    int64 // unix seconds
}

// encode is base64url of "1|view|expected|demoted|until": opaque to the
// player, readable to an operator who decodes it.
func (v viewState) encode(dst []byte) []byte {
	var raw [160]byte
	b := append(raw[:0], "1|"...)
	b = append(b, v.view...)
	b = append(b, '|')
	b = append(b, v.expected...)
	b = append(b, '|')
	b = append(b, v.demoted...)
	b = append(b, '|')
	if v.demoted != "" {
		b = strconv.AppendInt(b, v.until, 10)
	}
	return base64.RawURLEncoding.AppendEncode(dst, b)
}

// decodeState reads a token; ok is false for anything we did not write.
func decodeState(s string) (viewState, bool) {
	if len(s) > 256 {
		return viewState{}, false
	}
	var raw [192]byte
	b, err := base64.RawURLEncoding.AppendDecode(raw[:0], []byte(s))
	if err != nil {
		return viewState{}, false
	}
	var f [5]string
	rest := string(b)
	for i := range 4 {
		var found bool
		if f[i], rest, found = strings.Cut(rest, "|"); !found {
			return viewState{}, false
		}
	}
	f[4] = rest
	if strings.IndexByte(rest, '|') >= 0 || f[0] != "1" || !viewIDOK(f[1]) || !pathwayOK(f[2]) || !pathwayOK(f[3]) {
		return viewState{}, false
	}
	v := viewState{view: f[1], expected: f[2], demoted: f[3]}
	if v.demoted != "" {
		if v.until, err = strconv.ParseInt(f[4], 10, 64); err != nil {
			return viewState{}, false
		}
	} else if f[4] != "" {
		return viewState{}, false
	}
	return v, true
}

// pathwayOK is the HLS pathway id charset (empty allowed: none).
func pathwayOK(p string) bool {
	if len(p) > 64 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// serveSteering answers GET /steer/{service} with a steering manifest
// (VERSION 1, TTL, RELOAD-URI, PATHWAY-CLONES when the service has
// clones, PATHWAY-PRIORITY) that one JSON body
// serves to HLS and DASH players alike. The priority is the engine's pick
// for this view first, then the rest of its ranking; a pathway this view
// reported as too slow for the ladder, or left on its own, goes last for
// a while.
func (s *Server) serveSteering(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	h := w.Header()
	svc := s.service(w, r, "steer")
	if svc == nil {
		return
	}
	var (
		pbuf [steering.MaxCDNs]string
		tbuf [steering.MaxCDNs]float64
	)
	q := parseSteerQuery(r.URL.RawQuery, pbuf[:0], tbuf[:0])
	st := q.state
	if st.view == "" {
		if st.view = cmcdSID(r, q.cmcd); st.view == "" {
			st.view = s.newView()
		}
	}
	now := start.Unix()
	if st.demoted != "" && (now >= st.until || !svc.pathways[st.demoted]) {
		st.demoted = ""
	}
	if p, reason := s.demote(svc, &q, &st); p != "" {
		st.demoted, st.until = p, now+int64(s.o.DemoteFor/time.Second)
		s.m.demotions.WithLabelValues(svc.name, reason).Inc()
	}

	client, loc := s.place(r)
	d, err := s.o.Decider.Decide(steering.Query{
		Service:  svc.name,
		Location: steering.Location{Region: loc.Region, Country: loc.Country, ASN: loc.ASN},
		ViewID:   st.view,
	})
	if err != nil {
		d = steering.Decision{Rule: steering.RuleFailOpen}
	}
	var prio [steering.MaxCDNs]string
	order := s.priority(svc, &d, st.demoted, prio[:0])
	st.expected = order[0]

	ttl := s.o.TTL
	if st.demoted != "" || d.Incident() {
		ttl = s.o.IncidentTTL
	}
	if s.o.ShedAboveRPS > 0 {
		if rps := s.shed.rate(start); rps > s.o.ShedAboveRPS {
			ttl = min(s.o.MaxTTL, time.Duration(float64(ttl)*rps/s.o.ShedAboveRPS))
		}
	}
	secs := int64(ttl / time.Second)
	if s.o.TTLJitter > 0 {
		secs -= int64(float64(secs) * s.o.TTLJitter * rand.Float64())
	}
	secs = max(secs, 1)

	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], `{"VERSION":1,"TTL":`...)
	b = strconv.AppendInt(b, secs, 10)
	b = append(b, `,"RELOAD-URI":"/steer/`...)
	b = append(b, svc.name...)
	b = append(b, '?')
	if q.ladderMin > 0 {
		b = append(b, "ladder_min="...)
		b = strconv.AppendFloat(b, q.ladderMin, 'f', -1, 64)
		b = append(b, '&')
	}
	b = append(b, "_ss="...)
	b = st.encode(b)
	b = append(b, '"')
	if q.hlsParams && q.protocol != "dash" {
		b = append(b, svc.hlsClones...)
	} else {
		b = append(b, svc.dashClones...)
	}
	b = append(b, `,"PATHWAY-PRIORITY":[`...)
	for i, p := range order {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, p...) // catalog names: no JSON escaping needed
		b = append(b, '"')
	}
	b = append(b, "]}\n"...)
	if q.protocol == "dash" {
		h["Content-Type"] = jsonType
	} else {
		h["Content-Type"] = steeringListType
	}
	// net/http sets Content-Length itself: the body is written in one go.
	_, _ = w.Write(b)
	*bp = b
	bufPool.Put(bp)

	s.m.ttl.Observe(float64(secs))
	s.m.response(q.protocol, order[0], loc.Region, http.StatusOK).Inc()
	s.m.observe(q.protocol, s.now().Sub(start))
	s.logDecision(q.protocol, svc.name, client, loc, &d, order[0], "200", start)
}

var (
	jsonType         = []string{"application/json"}
	steeringListType = []string{"application/vnd.apple.steering-list"}
)

// demote returns the pathway this poll shows to be bad for the view, and
// why: "slow" when the player measured it under DemoteFactor times the
// ladder's lowest rung (another pathway may do better for this client),
// "left" when an HLS player is not on the pathway we put first (it
// penalized it after media errors; hls.js keeps it out for 5 minutes
// whatever we say, so we had better stop offering it first). A client
// slow everywhere is limited by its own link: nothing is demoted then.
func (s *Server) demote(svc *service, q *steerQuery, st *viewState) (string, string) {
	limit := s.o.DemoteFactor * q.ladderMin
	switch q.protocol {
	case "hls":
		if len(q.pathways) != 1 {
			return "", ""
		}
		p := q.pathways[0]
		if !svc.pathways[p] {
			return "", ""
		}
		if limit > 0 && len(q.throughputs) == 1 && q.throughputs[0] > 0 && q.throughputs[0] < limit {
			if st.demoted != "" && st.demoted != p {
				return "", "" // slow on a second pathway too: the client's link
			}
			if st.demoted == p {
				return "", "" // already demoted; the player has not moved yet
			}
			return p, "slow"
		}
		if st.expected != "" && p != st.expected && svc.pathways[st.expected] && st.demoted != st.expected {
			return st.expected, "left"
		}
	case "dash":
		if limit <= 0 || len(q.throughputs) != len(q.pathways) {
			return "", ""
		}
		slowest, slowT, fast := "", 0.0, false
		for i, p := range q.pathways {
			t := q.throughputs[i]
			switch {
			case t <= 0 || !svc.pathways[p]:
			case t >= limit:
				fast = true
			case slowest == "" || t < slowT:
				slowest, slowT = p, t
			}
		}
		if slowest != "" && fast && slowest != st.demoted {
			return slowest, "slow"
		}
	}
	return "", ""
}

// priority orders the service's pathways for a view: the decision's pick,
// then the ranking's other CDNs that may take new views, then those that
// are down, evacuated or drained (still listed: hls.js fails over only
// with more than one entry, and a DASH priority that stops matching the
// MPD's locations ends playback), then any pathway the ranking lacks. A
// banned CDN is never offered unless nothing else is left. The demoted
// pathway goes last.
func (s *Server) priority(svc *service, d *steering.Decision, demoted string, out []string) []string {
	add := func(p string) {
		if !svc.pathways[p] {
			return
		}
		for _, q := range out {
			if q == p {
				return
			}
		}
		out = append(out, p)
	}
	var banned [steering.MaxCDNs]string
	nb := 0
	if d.Ranking != nil {
		if c := d.CDN; c != "" {
			add(c)
		}
		for pass := 0; pass < 2; pass++ {
			for i := range d.Ranking.Choices {
				c := &d.Ranking.Choices[i]
				switch {
				case c.Health == steering.HealthBanned:
					if pass == 0 && nb < len(banned) {
						banned[nb] = c.CDN
						nb++
					}
				case (pass == 0) == (c.Weight > 0 || c.Health == steering.HealthUp || c.Health == steering.HealthUnknown):
					add(c.CDN)
				}
			}
		}
	}
outer:
	for _, p := range svc.static {
		for _, b := range banned[:nb] {
			if b == p {
				continue outer
			}
		}
		add(p)
	}
	if len(out) == 0 {
		out = append(out, svc.static...)
	}
	if demoted != "" && len(out) > 1 {
		for i, p := range out {
			if p == demoted {
				copy(out[i:], out[i+1:])
				out[len(out)-1] = demoted
				break
			}
		}
	}
	return out
}

package api

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cdnpilot/cdnpilot/steering"
)

// requireService answers 400 without a service and 404 for one the
// catalog does not have.
func (s *Server) requireService(c *gin.Context, svc string) bool {
	switch {
	case svc == "":
		apiError(c, http.StatusBadRequest, "service", "service: required")
		return false
	case !s.hasService(svc):
		apiError(c, http.StatusNotFound, "service", "service: "+strconv.Quote(svc)+" is not a configured service")
		return false
	}
	return true
}

func (s *Server) hasService(name string) bool {
	_, found := serviceOf(s.o.Catalog, name)
	return found
}

type rankingsResponse struct {
	Service    string              `json:"service"`
	Version    uint64              `json:"version"`
	At         time.Time           `json:"at"`
	AgeSeconds float64             `json:"age_seconds"`
	Location   *steering.Location  `json:"location,omitempty"`
	Rankings   []*steering.Ranking `json:"rankings"`
}

var rankingsParams = []string{"service", "region", "country", "asn", "level", "stats"}

// get answers GET /api/v1/rankings?service=vod[&region=eu-west][&country=GB][&asn=64496]:
// without a location every scope's ranking (level=region: only the
// regions'); with one, the ranking that answers a client there (its most
// specific ranked scope).
func (s *Server) rankings(c *gin.Context) {
	q := c.Request.URL.Query()
	if !knownParams(c, q, rankingsParams...) {
		return
	}
	svc := q.Get("service")
	if !s.requireService(c, svc) {
		return
	}
	var level *steering.Level
	if v := q.Get("level"); q.Has("level") {
		var l steering.Level
		if err := l.UnmarshalText([]byte(v)); err != nil {
			apiError(c, http.StatusBadRequest, "level", "level: "+strconv.Quote(truncate(v, 64))+" is not one of global, country, region, asn")
			return
		}
		level = &l
	}
	stats := true
	if v := q.Get("stats"); q.Has("stats") {
		b, err := strconv.ParseBool(v)
		if err != nil {
			apiError(c, http.StatusBadRequest, "stats", "stats: "+strconv.Quote(truncate(v, 64))+" is not true or false")
			return
		}
		stats = b
	}
	var loc *steering.Location
	if q.Has("region") || q.Has("country") || q.Has("asn") {
		loc = &steering.Location{Region: q.Get("region"), Country: q.Get("country")}
		if v := q.Get("asn"); v != "" {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				apiError(c, http.StatusBadRequest, "asn", "asn: "+strconv.Quote(v)+" is not an AS number")
				return
			}
			loc.ASN = uint32(n)
		}
	}
	snap := s.o.Rankings.Snapshot(svc)
	if snap == nil {
		c.Header("Retry-After", "1")
		apiError(c, http.StatusServiceUnavailable, "", "no ranking snapshot for "+strconv.Quote(svc)+" yet; the scorer publishes one every second")
		return
	}
	age, _ := s.o.Rankings.Age(svc)
	resp := rankingsResponse{Service: svc, Version: snap.Version, At: snap.At, AgeSeconds: age.Seconds(), Location: loc, Rankings: snap.Rankings}
	switch {
	case loc != nil && level != nil:
		apiError(c, http.StatusBadRequest, "level", "level: not with a location (region, country, asn), which picks one ranking")
		return
	case loc != nil:
		resp.Rankings = []*steering.Ranking{snap.Lookup(*loc)}
	case level != nil:
		resp.Rankings = make([]*steering.Ranking, 0, len(snap.Rankings))
		for _, r := range snap.Rankings {
			if r.Scope.Level == *level {
				resp.Rankings = append(resp.Rankings, r)
			}
		}
	}
	if !stats {
		resp.Rankings = withoutStats(resp.Rankings)
	}
	ok(c, http.StatusOK, resp)
}

// withoutStats copies rankings leaving out each choice's window figures:
// most of a large snapshot's bytes, and nothing a matrix shows.
func withoutStats(rs []*steering.Ranking) []*steering.Ranking {
	out := make([]*steering.Ranking, len(rs))
	for i, r := range rs {
		if r == nil {
			continue
		}
		c := *r
		c.Choices = slices.Clone(r.Choices)
		for j := range c.Choices {
			c.Choices[j].Stats = nil
		}
		out[i] = &c
	}
	return out
}

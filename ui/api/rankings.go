// Package ui serves cdnpilot's HTTP API under /api/v1 (gin) and, later,
// the embedded web UI. This file holds the read-only rankings endpoint;
// the admin API (overrides, audit, tokens) joins it.
package ui

import (
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cdnpilot/cdnpilot/steering"
)

// Rankings is where the API reads ranking snapshots from (a steering
// node's Table).
type Rankings interface {
	Snapshot(service string) *steering.Snapshot
	Age(service string) (time.Duration, bool)
}

// Options configure the API.
type Options struct {
	Rankings Rankings
	Services []string
	Logger   *slog.Logger
}

// NewAPI returns the /api/v1 handler.
func NewAPI(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// Behind a proxy the HTTP server's own trusted-proxy logic applies;
	// gin must not believe X-Forwarded-For on its own.
	_ = r.SetTrustedProxies(nil)
	r.Use(gin.Recovery())
	r.HandleMethodNotAllowed = true
	r.NoRoute(func(c *gin.Context) { apiError(c, http.StatusNotFound, "", "no such endpoint: "+c.Request.URL.Path) })
	r.NoMethod(func(c *gin.Context) {
		apiError(c, http.StatusMethodNotAllowed, "", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	h := &rankingsHandler{src: o.Rankings, services: o.Services}
	r.GET("/api/v1/rankings", h.get)
	return r
}

// apiError is the one error shape of the API: what is wrong, and which
// field when one is to blame.
func apiError(c *gin.Context, status int, field, msg string) {
	body := gin.H{"error": msg}
	if field != "" {
		body["field"] = field
	}
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(status, body)
}

type rankingsHandler struct {
	src      Rankings
	services []string
}

type rankingsResponse struct {
	Service    string              `json:"service"`
	Version    uint64              `json:"version"`
	At         time.Time           `json:"at"`
	AgeSeconds float64             `json:"age_seconds"`
	Location   *steering.Location  `json:"location,omitempty"`
	Rankings   []*steering.Ranking `json:"rankings"`
}

var rankingsParams = []string{"service", "region", "country", "asn"}

// get answers GET /api/v1/rankings?service=vod[&region=eu-west][&country=GB][&asn=64496]:
// without a location every scope's ranking; with one, the ranking that
// answers a client there (its most specific ranked scope).
func (h *rankingsHandler) get(c *gin.Context) {
	q := c.Request.URL.Query()
	for k := range q {
		if !slices.Contains(rankingsParams, k) {
			apiError(c, http.StatusBadRequest, k, "unknown query parameter "+strconv.Quote(k)+"; expected service, region, country, asn")
			return
		}
	}
	svc := q.Get("service")
	switch {
	case svc == "":
		apiError(c, http.StatusBadRequest, "service", "service: required")
		return
	case !slices.Contains(h.services, svc):
		apiError(c, http.StatusNotFound, "service", "service: "+strconv.Quote(svc)+" is not a configured service")
		return
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
	snap := h.src.Snapshot(svc)
	if snap == nil {
		c.Header("Retry-After", "1")
		apiError(c, http.StatusServiceUnavailable, "", "no ranking snapshot for "+strconv.Quote(svc)+" yet; the scorer publishes one every second")
		return
	}
	age, _ := h.src.Age(svc)
	resp := rankingsResponse{Service: svc, Version: snap.Version, At: snap.At, AgeSeconds: age.Seconds(), Location: loc, Rankings: snap.Rankings}
	if loc != nil {
		resp.Rankings = []*steering.Ranking{snap.Lookup(*loc)}
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, resp)
}

package api

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/live"
)

// LiveSource is the live history of what the node serves
// (internal/live.Tracker).
type LiveSource interface {
	Subscribe(service string, backlog time.Duration) (live.History, <-chan live.Message, func(), error)
}

// DecisionCounter counts logged steering decisions (the decision log's
// store).
type DecisionCounter interface {
	DecisionCounts(ctx context.Context, f analytics.DecisionFilter) ([]analytics.DecisionCount, error)
}

const (
	defaultBacklog = 15 * time.Minute
	maxBacklog     = 24 * time.Hour
	// streamWriteTimeout bounds one write to a client that stopped
	// reading.
	streamWriteTimeout = 10 * time.Second
)

// stream answers GET /api/v1/stream?service=vod&backlog=900: server-sent
// events, a "hello" with the history, then a "tick" a second and an
// "event" when one happens. Browsers read it with fetch, which can send
// the Authorization header that EventSource cannot.
func (s *Server) stream(c *gin.Context) {
	q := c.Request.URL.Query()
	if !knownParams(c, q, "service", "backlog") {
		return
	}
	svc := q.Get("service")
	if !s.requireService(c, svc) {
		return
	}
	backlog := defaultBacklog
	if v := q.Get("backlog"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || time.Duration(n)*time.Second > maxBacklog {
			apiError(c, http.StatusBadRequest, "backlog", fmt.Sprintf("backlog: %q is not a number of seconds between 0 and %d", truncate(v, 64), int(maxBacklog.Seconds())))
			return
		}
		backlog = time.Duration(n) * time.Second
	}
	if s.o.Live == nil {
		apiError(c, http.StatusServiceUnavailable, "", "this node keeps no live history")
		return
	}
	hist, ch, cancel, err := s.o.Live.Subscribe(svc, backlog)
	if err != nil {
		apiError(c, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	defer cancel()

	w := c.Writer
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	// Proxies (nginx) must pass events through as they come.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(event string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			s.log.Error("stream: encode", "event", event, "err", err)
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	if !send("hello", hist) {
		return
	}
	end := time.NewTimer(s.o.StreamMax)
	defer end.Stop()
	for {
		select {
		case <-c.Request.Context().Done():
			return
		case <-end.C:
			send("bye", gin.H{"reason": "reconnect to go on"})
			return
		case m, open := <-ch:
			if !open {
				// Cut off (too slow) or shutting down: the client
				// reconnects and gets the history again.
				return
			}
			ok := false
			if m.Tick != nil {
				ok = send("tick", m.Tick)
			} else {
				ok = send("event", m.Event)
			}
			if !ok {
				return
			}
		}
	}
}

// RateJSON answers GET /api/v1/decisions/rate.
type RateJSON struct {
	From      time.Time      `json:"from"`
	To        time.Time      `json:"to"`
	Step      string         `json:"step"`
	Protocols []ProtocolRate `json:"protocols"`
}

// ProtocolRate is one actuator's decisions per second over time.
type ProtocolRate struct {
	Protocol string `json:"protocol"`
	// Sample is the share of its decisions the actuator logs: the rates
	// are the logged counts divided by it.
	Sample float64     `json:"sample"`
	Points []RatePoint `json:"points"`
}

// RatePoint is one bucket: its start, decisions per second and the
// decisions logged in it.
type RatePoint struct {
	T         time.Time `json:"t"`
	PerSecond float64   `json:"per_second"`
	N         uint64    `json:"n"`
}

// Protocols are the actuators, as the decision log names them.
var Protocols = []string{"dns", "http", "hls", "dash"}

// decisionRate answers GET /api/v1/decisions/rate?service=&from=&to=&step=:
// steering decisions per second per actuator, from the decision log.
func (s *Server) decisionRate(c *gin.Context) {
	q := c.Request.URL.Query()
	if !knownParams(c, q, "service", "from", "to", "step") {
		return
	}
	svc := q.Get("service")
	if svc != "" && !s.requireService(c, svc) {
		return
	}
	if s.o.Decisions == nil {
		apiError(c, http.StatusServiceUnavailable, "", "this node has no decision log store")
		return
	}
	now := s.o.Now()
	from, to, step := now.Add(-time.Hour).Truncate(time.Minute), now.Truncate(time.Minute).Add(time.Minute), time.Minute
	if !timeParams(c, q, "from", &from, "to", &to) {
		return
	}
	if v := q.Get("step"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute || d%time.Minute != 0 {
			apiError(c, http.StatusBadRequest, "step", "step: "+strconv.Quote(truncate(v, 64))+" is not a whole number of minutes like 1m or 5m")
			return
		}
		step = d
	}
	from = from.Truncate(time.Minute)
	if !to.After(from) {
		apiError(c, http.StatusBadRequest, "to", "to: must be after from")
		return
	}
	if n := to.Sub(from) / step; n > 10_000 {
		apiError(c, http.StatusBadRequest, "step", fmt.Sprintf("step: %v over this range makes %d buckets, more than 10000", step, n))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 30*time.Second)
	defer cancel()
	out := RateJSON{From: from, To: to, Step: step.String(), Protocols: []ProtocolRate{}}
	for _, p := range Protocols {
		sample := s.o.DecisionSample[p]
		if sample <= 0 {
			continue // not logged at all: no rate to tell
		}
		counts, err := s.o.Decisions.DecisionCounts(ctx, analytics.DecisionFilter{Service: svc, Protocol: p, From: from, To: to})
		if err != nil {
			s.log.Error("decision rate query failed", "err", err)
			apiError(c, http.StatusServiceUnavailable, "", "decision log store: "+err.Error())
			return
		}
		if len(counts) == 0 {
			continue
		}
		out.Protocols = append(out.Protocols, ProtocolRate{Protocol: p, Sample: sample, Points: ratePoints(counts, step, sample, now)})
	}
	ok(c, http.StatusOK, out)
}

// ratePoints sums per-minute counts into buckets of step aligned to the
// epoch. The bucket still filling is divided by the seconds it has had so
// far, not by step: a live chart must not show the current minute as a
// dip.
func ratePoints(counts []analytics.DecisionCount, step time.Duration, sample float64, now time.Time) []RatePoint {
	sums := map[int64]uint64{}
	for _, n := range counts {
		b := n.Minute.Unix() - floorMod(n.Minute.Unix(), int64(step.Seconds()))
		sums[b] += n.N
	}
	keys := make([]int64, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]RatePoint, 0, len(keys))
	for _, k := range keys {
		start := time.Unix(k, 0).UTC()
		secs := step.Seconds()
		if el := now.Sub(start).Seconds(); el > 0 && el < secs {
			secs = math.Max(el, 1)
		}
		out = append(out, RatePoint{T: start, PerSecond: round(float64(sums[k])/sample/secs, 3), N: sums[k]})
	}
	return out
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Package beacons is the ingest edge: it decodes player QoE beacons (JSON)
// and CMCD reports, treats every byte as hostile, enriches what it accepts
// with server-side facts (receive time, client address, location) and
// publishes it to Kafka before it answers.
package beacons

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/clientip"
	"github.com/cdnpilot/cdnpilot/internal/geo"
)

// Publisher takes accepted beacons to durable storage. A nil error means all
// of them are safe; a *PublishError lists those that are not.
type Publisher interface {
	Publish(ctx context.Context, batch []record.Beacon) error
}

// Locator maps a client address to a steering location.
type Locator interface {
	Lookup(addr netip.Addr) (geo.Location, bool)
}

// Options configure the ingest handler.
type Options struct {
	MaxBodyBytes      int64
	MaxBeaconsPerBody int
	RateLimitRPS      float64 // per client; 0 disables
	RateLimitBurst    int
	CORSOrigins       []string // "*" allows any origin
	TrustedProxies    []netip.Prefix
	MaxClockSkew      time.Duration
	Logger            *slog.Logger
	Registerer        prometheus.Registerer
	Now               func() time.Time // for tests; time.Now by default
}

// Handler serves POST /v1/beacons and /v1/cmcd.
type Handler struct {
	pub     Publisher
	loc     Locator
	o       Options
	limit   *limiter
	log     *slog.Logger
	now     func() time.Time
	anyOrig bool
	origins map[string]bool
	bufs    sync.Pool

	accepted *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

// NewHandler builds the ingest handler.
func NewHandler(pub Publisher, loc Locator, o Options) *Handler {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 64 << 10
	}
	if o.MaxBeaconsPerBody <= 0 {
		o.MaxBeaconsPerBody = 500
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{
		pub: pub, loc: loc, o: o,
		limit:   newLimiter(o.RateLimitRPS, o.RateLimitBurst),
		log:     o.Logger.With("component", "ingest"),
		now:     o.Now,
		origins: map[string]bool{},
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdnpilot_beacons_accepted_total",
			Help: "Beacons acknowledged by the broker and answered 202, by ingest path (beacon, cmcd).",
		}, []string{"source"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdnpilot_beacons_rejected_total",
			Help: "Beacons or requests refused, by reason.",
		}, []string{"reason"}),
	}
	for _, s := range []string{"beacon", "cmcd"} {
		h.accepted.WithLabelValues(s)
	}
	for _, r := range allReasons {
		h.rejected.WithLabelValues(r)
	}
	for _, orig := range o.CORSOrigins {
		if orig == "*" {
			h.anyOrig = true
		}
		h.origins[orig] = true
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(h.accepted, h.rejected)
	}
	return h
}

// Rejection reasons: a closed set, since they are metric label values.
const (
	reasonInvalid     = "invalid_field"
	reasonNotJSON     = "bad_body"
	reasonTooLarge    = "too_large"
	reasonMediaType   = "unsupported_media_type"
	reasonRateLimited = "rate_limited"
	reasonBroker      = "broker_unavailable"
	reasonMethod      = "method_not_allowed"
	reasonDuplicate   = "duplicate_in_body"
)

var allReasons = []string{reasonInvalid, reasonNotJSON, reasonTooLarge, reasonMediaType, reasonRateLimited, reasonBroker, reasonMethod, reasonDuplicate}

// Result is the 202 answer body (and the 4xx/503 one, with Error set).
type Result struct {
	Accepted int          `json:"accepted"`
	EventIDs []string     `json:"event_ids"` // in body order of the accepted items
	Rejected []FieldError `json:"rejected"`
	Error    string       `json:"error,omitempty"`
}

// Register mounts the ingest endpoints on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("/v1/beacons", h.ServeBeacons)
	mux.HandleFunc("/v1/cmcd", h.ServeCMCD)
}

// ServeBeacons handles POST /v1/beacons.
func (h *Handler) ServeBeacons(w http.ResponseWriter, r *http.Request) {
	if h.preflight(w, r, "POST, OPTIONS") {
		return
	}
	if r.Method != http.MethodPost {
		h.fail(w, http.StatusMethodNotAllowed, reasonMethod, "use POST", "Allow", "POST, OPTIONS")
		return
	}
	client, ok := h.admit(w, r)
	if !ok {
		return
	}
	switch mediaType(r) {
	case "", "application/json", "application/x-ndjson", "application/ndjson", "text/plain":
	default:
		h.fail(w, http.StatusUnsupportedMediaType, reasonMediaType,
			fmt.Sprintf("content type %q: send application/json, application/x-ndjson or text/plain", r.Header.Get("Content-Type")))
		return
	}
	bp, body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	defer h.bufs.Put(bp)

	now := h.now()
	loc := h.locate(client)
	var res Result
	batch := make([]record.Beacon, 0, 64)
	index := make([]int, 0, 64) // batch position -> body index
	items, err := DecodeBody(body, h.o.MaxBeaconsPerBody)
	for i := range items {
		if derr := items[i].Err; derr != nil {
			var fe *fieldErr
			if errors.As(derr, &fe) {
				res.Rejected = append(res.Rejected, FieldError{Index: i, Field: fe.field, Reason: fe.reason})
			} else {
				res.Rejected = append(res.Rejected, FieldError{Index: i, Field: "(item)", Reason: derr.Error()})
			}
			continue
		}
		b, fe := items[i].In.Validate(now, h.o.MaxClockSkew)
		if fe != nil {
			res.Rejected = append(res.Rejected, FieldError{Index: i, Field: fe.field, Reason: fe.reason})
			continue
		}
		h.enrich(&b, now, client, loc)
		batch = append(batch, b)
		index = append(index, i)
	}
	switch {
	case errors.Is(err, ErrTooMany):
		h.fail(w, http.StatusRequestEntityTooLarge, reasonTooLarge, err.Error())
		return
	case err != nil:
		h.fail(w, http.StatusBadRequest, reasonNotJSON, err.Error())
		return
	}
	h.publishAndAnswer(w, r, batch, index, res, "beacon")
}

// publishAndAnswer publishes the accepted items and writes the answer. Only
// beacons the broker acknowledged are reported as accepted.
func (h *Handler) publishAndAnswer(w http.ResponseWriter, r *http.Request, batch []record.Beacon, index []int, res Result, source string) {
	if n := len(res.Rejected); n > 0 {
		h.rejected.WithLabelValues(reasonInvalid).Add(float64(n))
	}
	failed := map[int]bool{}
	if len(batch) > 0 {
		if err := h.pub.Publish(r.Context(), batch); err != nil {
			var pe *PublishError
			if !errors.As(err, &pe) {
				pe = &PublishError{Err: err}
				for i := range batch {
					pe.Failed = append(pe.Failed, i)
				}
			}
			for _, i := range pe.Failed {
				failed[i] = true
				res.Rejected = append(res.Rejected, FieldError{Index: index[i], Field: "(item)", Reason: "the broker did not acknowledge it (it may or may not be stored): retry"})
			}
			h.rejected.WithLabelValues(reasonBroker).Add(float64(len(pe.Failed)))
			h.log.Warn("publish failed", "failed", len(pe.Failed), "of", len(batch), "err", err)
		}
	}
	res.EventIDs = make([]string, 0, len(batch)-len(failed))
	for i := range batch {
		if !failed[i] {
			res.EventIDs = append(res.EventIDs, batch[i].EventID)
		}
	}
	res.Accepted = len(res.EventIDs)
	h.accepted.WithLabelValues(source).Add(float64(res.Accepted))
	sortRejected(res.Rejected)
	if res.Rejected == nil {
		res.Rejected = []FieldError{} // a list in every answer, as fail writes it
	}
	status := http.StatusAccepted
	switch {
	case len(failed) > 0 && res.Accepted == 0:
		status = http.StatusServiceUnavailable
		res.Error = "the broker did not acknowledge the beacons; nothing was stored"
		w.Header().Set("Retry-After", "1")
	case res.Accepted == 0 && len(res.Rejected) > 0:
		status = http.StatusUnprocessableEntity
		res.Error = "no beacon was valid"
	case res.Accepted == 0:
		status = http.StatusBadRequest
		res.Error = "no beacons in body"
	}
	writeJSON(w, status, res)
}

func sortRejected(rs []FieldError) {
	// Few items; insertion sort keeps the body order stable and cheap.
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Index < rs[j-1].Index; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// enrich sets what only the server knows. A beacon without an event id gets
// a random one (record.NewEventID); CMCD reports arrive with the id derived
// from their sid and sn, so a re-sent report stays one beacon.
func (h *Handler) enrich(b *record.Beacon, now time.Time, client netip.Addr, loc geo.Location) {
	if b.EventID == "" {
		b.EventID = record.NewEventID()
	}
	b.ReceivedAt = now.UnixMilli()
	if client.IsValid() {
		b.ClientIP = client.String()
	}
	b.Country, b.Region, b.ASN = loc.Country, loc.Region, loc.ASN
}

func (h *Handler) locate(client netip.Addr) geo.Location {
	if h.loc != nil && client.IsValid() {
		if l, ok := h.loc.Lookup(client); ok {
			return l
		}
	}
	return geo.Location{Country: "ZZ", Region: UnknownRegion}
}

// UnknownRegion is the region of a client no coverage entry matches.
const UnknownRegion = "unknown"

// preflight writes CORS headers and answers OPTIONS. It reports whether the
// request is fully handled.
func (h *Handler) preflight(w http.ResponseWriter, r *http.Request, methods string) bool {
	origin := r.Header.Get("Origin")
	if origin != "" && (h.anyOrig || h.origins[origin]) {
		hd := w.Header()
		if h.anyOrig {
			hd.Set("Access-Control-Allow-Origin", "*")
		} else {
			hd.Set("Access-Control-Allow-Origin", origin)
			hd.Add("Vary", "Origin")
		}
		hd.Set("Access-Control-Allow-Methods", methods)
		hd.Set("Access-Control-Allow-Headers", "Content-Type, Content-Encoding, CMCD-Object, CMCD-Request, CMCD-Session, CMCD-Status")
		hd.Set("Access-Control-Max-Age", "86400")
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// admit finds the client and applies the rate limit.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) (netip.Addr, bool) {
	client := clientip.From(r, h.o.TrustedProxies)
	if ok, wait := h.limit.allow(client, h.now()); !ok {
		secs := int(wait/time.Second) + 1
		h.fail(w, http.StatusTooManyRequests, reasonRateLimited,
			fmt.Sprintf("rate limit of %g requests/s per client exceeded", h.o.RateLimitRPS),
			"Retry-After", strconv.Itoa(secs))
		return client, false
	}
	return client, true
}

// readBody reads the whole body within the size limit, gunzipping when
// asked; the limit applies to the decoded size too (no gzip bombs).
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (*bytes.Buffer, []byte, bool) {
	limit := h.o.MaxBodyBytes
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			h.fail(w, http.StatusBadRequest, reasonNotJSON, "body is not gzip: "+err.Error())
			return nil, nil, false
		}
		defer zr.Close()
		src = io.LimitReader(zr, limit+1)
	default:
		h.fail(w, http.StatusUnsupportedMediaType, reasonMediaType, fmt.Sprintf("content encoding %q: send gzip or none", enc))
		return nil, nil, false
	}
	bp, _ := h.bufs.Get().(*bytes.Buffer)
	if bp == nil {
		bp = new(bytes.Buffer)
	}
	bp.Reset()
	_, err := bp.ReadFrom(src)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || int64(bp.Len()) > limit:
		h.bufs.Put(bp)
		h.fail(w, http.StatusRequestEntityTooLarge, reasonTooLarge, fmt.Sprintf("body over %d bytes", limit))
		return nil, nil, false
	case err != nil:
		h.bufs.Put(bp)
		h.fail(w, http.StatusBadRequest, reasonNotJSON, "read body: "+err.Error())
		return nil, nil, false
	}
	return bp, bp.Bytes(), true
}

func (h *Handler) fail(w http.ResponseWriter, status int, reason, msg string, header ...string) {
	h.rejected.WithLabelValues(reason).Inc()
	for i := 0; i+1 < len(header); i += 2 {
		w.Header().Set(header[i], header[i+1])
	}
	writeJSON(w, status, Result{Error: msg, EventIDs: []string{}, Rejected: []FieldError{}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return mt
}

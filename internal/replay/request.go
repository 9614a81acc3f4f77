package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cdnpilot/cdnpilot/steering"
)

// Limits of a request. 2016 buckets is a week at the default step.
const (
	DefaultStep = 5 * time.Minute
	MinStep     = time.Minute
	MaxStep     = time.Hour
	MaxRange    = 7 * 24 * time.Hour
	MaxBuckets  = 2016
	// clockSkew is how far past the caller's now `to` may be: a client
	// that sends its own "now" as `to` is a little ahead now and then.
	clockSkew = time.Minute
	maxKeyLen = 256
)

// Request is the body of POST /api/v1/replay.
type Request struct {
	Service string    `json:"service"`
	Region  string    `json:"region,omitempty"` // only this region; empty: every region and the service as a whole
	From    time.Time `json:"from"`             // RFC 3339; truncated to the minute
	To      time.Time `json:"to"`               // RFC 3339; after from, at most 7 days later
	Step    string    `json:"step,omitempty"`   // "5m" by default; whole minutes, 1m..1h
	Policy  Candidate `json:"policy"`
}

// Candidate is the policy to replay. Absent fields keep the current
// policy's.
type Candidate struct {
	Weights Weights `json:"weights"`
	// MinSamples is the number of views a CDN needs in a scope and bucket
	// for the candidate to steer by its score. The engine's min_samples
	// counts decayed beacons; this counts views, so the current policy's
	// value is a stricter default than it looks.
	MinSamples *float64 `json:"min_samples,omitempty"`
	// HysteresisMargin is how many score points a challenger must beat the
	// previous bucket's leader by to take the lead.
	HysteresisMargin *float64 `json:"hysteresis_margin,omitempty"`
	// Exploration is the share the leader leaves to the other CDNs, 0..0.2.
	Exploration *float64 `json:"exploration,omitempty"`
}

// Weights are steering.Weights with absent fields left nil.
type Weights struct {
	StartupP50 *float64 `json:"startup_p50,omitempty"`
	StartupP90 *float64 `json:"startup_p90,omitempty"`
	Rebuffer   *float64 `json:"rebuffer,omitempty"`
	Failure    *float64 `json:"failure,omitempty"`
	EBVS       *float64 `json:"ebvs,omitempty"`
	Bitrate    *float64 `json:"bitrate,omitempty"`
	TTFB       *float64 `json:"ttfb,omitempty"`
	Throughput *float64 `json:"throughput,omitempty"`
}

// FieldError is a request error that names the field to blame ("body" for
// the body as a whole), for the API's {"error", "field"} answer. It wraps
// the cause, so an *http.MaxBytesError from the body reader stays visible
// to errors.As.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Decode reads one JSON request strictly: unknown fields, a second JSON
// value and malformed times are errors naming the field. Limiting the body
// size is the caller's job. Decode does not validate: call Validate.
func Decode(r io.Reader) (Request, error) {
	// wire takes from and to as raw JSON, so a malformed time names its
	// field (time.Time's own error does not say which field it was); the
	// shallower fields win over Request's.
	var w struct {
		Request
		From json.RawMessage `json:"from"`
		To   json.RawMessage `json:"to"`
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Request{}, decodeError(err)
	}
	if dec.More() {
		return Request{}, fieldErr("body", "more than one JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, fieldErr("body", "more than one JSON value")
	}
	req := w.Request
	var err error
	if req.From, err = parseTime("from", w.From); err != nil {
		return Request{}, err
	}
	if req.To, err = parseTime("to", w.To); err != nil {
		return Request{}, err
	}
	return req, nil
}

func parseTime(field string, raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil // Validate says it is required
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, fieldErr(field, "%s is not an RFC 3339 time string", raw)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fieldErr(field, "%q is not an RFC 3339 time", s)
	}
	return t, nil
}

// jsonKind names what a Go type takes in JSON.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		return "a JSON object"
	case reflect.String:
		return "a string"
	case reflect.Float64:
		return "a number"
	}
	return "a " + t.String()
}

func decodeError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return fieldErr("body", "empty; expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fieldErr("body", "truncated JSON")
	case errors.As(err, &syn):
		return &FieldError{Field: "body", Err: fmt.Errorf("invalid JSON at byte %d: %w", syn.Offset, err)}
	case errors.As(err, &typ):
		// The path runs through wire's embedded Request.
		field := strings.TrimPrefix(typ.Field, "Request.")
		if field == "" || field == "Request" {
			return fieldErr("body", "%s is not a JSON object", typ.Value)
		}
		return fieldErr(field, "%s is not %s", typ.Value, jsonKind(typ.Type))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f, uerr := strconv.Unquote(name)
		if uerr != nil {
			f = name
		}
		// encoding/json gives the name without its path.
		return fieldErr(f, "unknown field")
	}
	return &FieldError{Field: "body", Err: err}
}

// Validate checks every field against the limits; now is the caller's
// clock (`to` may not be in the future). The first error names its field.
// Whether the store still holds `from` (its retention) is the caller's
// problem: buckets past it come back empty, with a warning.
func (r *Request) Validate(now time.Time) error {
	if err := r.validate(); err != nil {
		return err
	}
	if r.To.After(now.Add(clockSkew)) {
		return fieldErr("to", "%s is in the future", r.To.Format(time.RFC3339))
	}
	return nil
}

// validate is Validate without the clock: Run checks this much itself.
func (r *Request) validate() error {
	switch {
	case r.Service == "":
		return fieldErr("service", "required")
	case len(r.Service) > maxKeyLen || !utf8.ValidString(r.Service):
		return fieldErr("service", "must be valid UTF-8 of at most %d bytes", maxKeyLen)
	case len(r.Region) > maxKeyLen || !utf8.ValidString(r.Region):
		return fieldErr("region", "must be valid UTF-8 of at most %d bytes", maxKeyLen)
	case r.From.IsZero():
		return fieldErr("from", "required")
	case r.To.IsZero():
		return fieldErr("to", "required")
	case !r.To.After(r.From):
		return fieldErr("to", "%s is not after from (%s)", r.To.Format(time.RFC3339), r.From.Format(time.RFC3339))
	case r.To.Sub(r.From) > MaxRange:
		return fieldErr("to", "the range of %s is over %s", r.To.Sub(r.From), MaxRange)
	}
	step, err := r.step()
	if err != nil {
		return err
	}
	if n := bucketCount(r.From, r.To, step); n > MaxBuckets {
		return fieldErr("step", "%s makes %d buckets over %s; at most %d", minutes(step), n, r.To.Sub(r.From), MaxBuckets)
	}
	w := r.Policy.Weights
	for _, f := range []struct {
		name string
		v    *float64
	}{
		{"startup_p50", w.StartupP50}, {"startup_p90", w.StartupP90}, {"rebuffer", w.Rebuffer}, {"failure", w.Failure},
		{"ebvs", w.EBVS}, {"bitrate", w.Bitrate}, {"ttfb", w.TTFB}, {"throughput", w.Throughput},
	} {
		if f.v != nil && !(*f.v >= 0 && !math.IsInf(*f.v, 0)) {
			return fieldErr("policy.weights."+f.name, "%v is not a finite, non-negative number", *f.v)
		}
	}
	p := r.Policy
	switch {
	case p.MinSamples != nil && !(*p.MinSamples >= 1 && !math.IsInf(*p.MinSamples, 0)):
		return fieldErr("policy.min_samples", "%v is not a finite number of at least 1", *p.MinSamples)
	case p.HysteresisMargin != nil && !(*p.HysteresisMargin >= 0 && *p.HysteresisMargin <= 100):
		return fieldErr("policy.hysteresis_margin", "%v is not in 0..100", *p.HysteresisMargin)
	case p.Exploration != nil && !(*p.Exploration >= 0 && *p.Exploration <= 0.2):
		return fieldErr("policy.exploration", "%v is not in 0..0.2", *p.Exploration)
	}
	return nil
}

// step is the bucket length: DefaultStep when empty.
func (r *Request) step() (time.Duration, error) {
	if r.Step == "" {
		return DefaultStep, nil
	}
	d, err := time.ParseDuration(r.Step)
	switch {
	case err != nil:
		return 0, fieldErr("step", "%q is not a duration like \"5m\"", r.Step)
	case d%time.Minute != 0:
		return 0, fieldErr("step", "%s is not a whole number of minutes", r.Step)
	case d < MinStep || d > MaxStep:
		return 0, fieldErr("step", "%s is not in %s..%s", r.Step, minutes(MinStep), minutes(MaxStep))
	}
	return d, nil
}

// from is the start of the first bucket: the store has minute resolution,
// so buckets start on whole minutes. The last bucket ends at To: shorter
// than the step when the range is not a multiple of it, up to a minute
// longer when From is not on a whole minute (the bucket count is that of
// the range as asked).
func (r *Request) from() time.Time { return r.From.UTC().Truncate(time.Minute) }

func bucketCount(from, to time.Time, step time.Duration) int {
	return int((to.Sub(from) + step - 1) / step)
}

// minutes formats a whole number of minutes the way a request spells it.
func minutes(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
}

// effective is the candidate with the current policy's values filled in.
type effective struct {
	weights                         steering.Weights
	minSamples, margin, exploration float64
}

func (c Candidate) merge(current steering.Policy) (effective, error) {
	e := effective{
		weights:     current.Weights,
		minSamples:  current.MinSamples,
		margin:      current.Hysteresis.Margin,
		exploration: current.Exploration,
	}
	w := c.Weights
	for _, f := range []struct {
		dst *float64
		v   *float64
	}{
		{&e.weights.StartupP50, w.StartupP50}, {&e.weights.StartupP90, w.StartupP90}, {&e.weights.Rebuffer, w.Rebuffer},
		{&e.weights.Failure, w.Failure}, {&e.weights.EBVS, w.EBVS}, {&e.weights.Bitrate, w.Bitrate},
		{&e.weights.TTFB, w.TTFB}, {&e.weights.Throughput, w.Throughput},
	} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	if c.MinSamples != nil {
		e.minSamples = *c.MinSamples
	}
	if c.HysteresisMargin != nil {
		e.margin = *c.HysteresisMargin
	}
	if c.Exploration != nil {
		e.exploration = *c.Exploration
	}
	if weightSum(e.weights) == 0 {
		return e, fieldErr("policy.weights", "all zero, with the current policy's weights for the fields left out")
	}
	// The current policy is validated where it is loaded; a zero value
	// here (a test, a wiring slip) would make every bucket unscorable.
	e.minSamples = max(e.minSamples, 1)
	return e, nil
}

func weightSum(w steering.Weights) float64 {
	return w.StartupP50 + w.StartupP90 + w.Rebuffer + w.Failure + w.EBVS + w.Bitrate + w.TTFB + w.Throughput
}

// candidate is e in its public shape, every field set.
func (e effective) candidate() Candidate {
	return Candidate{Weights: weightsOf(e.weights), MinSamples: ptr(e.minSamples), HysteresisMargin: ptr(e.margin), Exploration: ptr(e.exploration)}
}

func weightsOf(w steering.Weights) Weights {
	return Weights{
		StartupP50: ptr(w.StartupP50), StartupP90: ptr(w.StartupP90), Rebuffer: ptr(w.Rebuffer), Failure: ptr(w.Failure),
		EBVS: ptr(w.EBVS), Bitrate: ptr(w.Bitrate), TTFB: ptr(w.TTFB), Throughput: ptr(w.Throughput),
	}
}

func ptr(v float64) *float64 { return &v }

package beacons

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// Input is one beacon as a player sends it: the public JSON schema (see
// docs/BEACONS.md). Numbers are decoded as int64 so that a negative or huge
// value is reported against its field instead of as a type error.
type Input struct {
	Type           string `json:"type"`
	ViewID         string `json:"view_id"`
	SessionID      string `json:"session_id"`
	TS             int64  `json:"ts"`
	Seq            int64  `json:"seq"`
	Service        string `json:"service"`
	CDN            string `json:"cdn"`
	PrevCDN        string `json:"prev_cdn"`
	Host           string `json:"host"`
	ContentID      string `json:"content_id"`
	Player         string `json:"player"`
	PlayerVersion  string `json:"player_version"`
	Device         string `json:"device"`
	OS             string `json:"os"`
	StartupMS      int64  `json:"startup_ms"`
	RebufferMS     int64  `json:"rebuffer_ms"`
	RebufferCount  int64  `json:"rebuffer_count"`
	SeekRebufferMS int64  `json:"seek_rebuffer_ms"`
	Seek           bool   `json:"seek"`
	PlayedMS       int64  `json:"played_ms"`
	BitrateKbps    int64  `json:"bitrate_kbps"`
	ThroughputKbps int64  `json:"throughput_kbps"`
	TTFBMS         int64  `json:"ttfb_ms"`
	DroppedFrames  int64  `json:"dropped_frames"`
	ErrorCode      string `json:"error_code"`
	Fatal          bool   `json:"fatal"`
}

// FieldError is a rejected beacon: which item, which field, and why.
type FieldError struct {
	Index  int    `json:"index"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e FieldError) Error() string {
	return fmt.Sprintf("beacon %d: %s: %s", e.Index, e.Field, e.Reason)
}

// ErrNotJSON wraps every body-level syntax problem (answered 400).
var ErrNotJSON = errors.New("body is not JSON")

// ErrTooMany is returned when a body holds more beacons than allowed.
var ErrTooMany = errors.New("too many beacons in one body")

// Item is one decoded element of a body: the input, or why it could not be
// decoded (a type error naming the field).
type Item struct {
	In  Input
	Err error
}

// DecodeBody splits a body into items: one JSON object, a JSON array of
// objects, or NDJSON (which the object case covers: a stream of values).
// A syntax error anywhere rejects the whole body and returns no items, so a
// truncated upload is never half-accepted. Type errors are per item and do
// not stop the rest. Keys match the schema's names exactly (encoding/json's
// case-insensitive matching would make "TYPE" a synonym of "type").
func DecodeBody(body []byte, maxItems int) ([]Item, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrNotJSON)
	}
	if items, ok := decodeFast(trimmed, maxItems); ok {
		return items, nil
	}
	return decodeStd(trimmed, maxItems)
}

// decodeFast is the fast path (fastjson.go) for clean bodies. Invalid
// UTF-8 is left to encoding/json, which substitutes U+FFFD.
func decodeFast(body []byte, maxItems int) ([]Item, bool) {
	if !utf8.Valid(body) {
		return nil, false
	}
	return fastDecode(body, maxItems)
}

// decodeStd is the reference decoder: encoding/json, one item at a time,
// each key looked up exactly and decoded into its field on its own, so a
// type error names the field and does not hide the others.
func decodeStd(trimmed []byte, maxItems int) ([]Item, error) {
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	items := make([]Item, 0, 64)
	next := func() error {
		if len(items) >= maxItems {
			return fmt.Errorf("%w: more than %d", ErrTooMany, maxItems)
		}
		items = append(items, Item{})
		it := &items[len(items)-1]
		var obj map[string]json.RawMessage
		err := dec.Decode(&obj)
		if err != nil && !isItemError(err) {
			return notJSON(err)
		}
		if err != nil {
			it.Err = itemError(err)
			return nil
		}
		it.Err = it.In.setFields(obj)
		return nil
	}
	switch trimmed[0] {
	case '[':
		if _, err := dec.Token(); err != nil {
			return nil, notJSON(err)
		}
		for dec.More() {
			if err := next(); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, notJSON(err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: data after the array", ErrNotJSON)
		}
	case '{':
		for dec.More() {
			if err := next(); err != nil {
				return nil, err
			}
		}
		// More stops at a stray ']' or '}' too: only the end may follow.
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: data after the last object", ErrNotJSON)
		}
	default:
		return nil, fmt.Errorf("%w: want an object, an array of objects or NDJSON", ErrNotJSON)
	}
	return items, nil
}

func notJSON(err error) error {
	if errors.Is(err, ErrTooMany) || errors.Is(err, ErrNotJSON) {
		return err
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: %v at byte %d", ErrNotJSON, se, se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: unexpected end of body (truncated?)", ErrNotJSON)
	}
	return fmt.Errorf("%w: %v", ErrNotJSON, err)
}

// setFields decodes each known key of obj into its field, in the schema's
// order so the first bad field is reported. Unknown keys are ignored.
func (in *Input) setFields(obj map[string]json.RawMessage) error {
	for _, f := range in.fields() {
		raw, ok := obj[f.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, f.ptr); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				te.Field = f.name
				return itemError(te)
			}
			return &fieldErr{field: f.name, reason: err.Error()}
		}
	}
	return nil
}

type inputField struct {
	name string
	ptr  any
}

// fields lists the schema in declaration order, with where each value goes.
func (in *Input) fields() []inputField {
	return []inputField{
		{"type", &in.Type}, {"view_id", &in.ViewID}, {"session_id", &in.SessionID}, {"ts", &in.TS},
		{"seq", &in.Seq}, {"service", &in.Service}, {"cdn", &in.CDN}, {"prev_cdn", &in.PrevCDN},
		{"host", &in.Host}, {"content_id", &in.ContentID}, {"player", &in.Player},
		{"player_version", &in.PlayerVersion}, {"device", &in.Device}, {"os", &in.OS},
		{"startup_ms", &in.StartupMS}, {"rebuffer_ms", &in.RebufferMS}, {"rebuffer_count", &in.RebufferCount},
		{"seek_rebuffer_ms", &in.SeekRebufferMS}, {"seek", &in.Seek}, {"played_ms", &in.PlayedMS},
		{"bitrate_kbps", &in.BitrateKbps}, {"throughput_kbps", &in.ThroughputKbps}, {"ttfb_ms", &in.TTFBMS},
		{"dropped_frames", &in.DroppedFrames}, {"error_code", &in.ErrorCode}, {"fatal", &in.Fatal},
	}
}

func isItemError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}

func itemError(err error) error {
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return &fieldErr{field: "(item)", reason: fmt.Sprintf("want an object, got %s", te.Value)}
		}
		want := "a string"
		switch te.Type.Kind().String() {
		case "int64":
			want = "an integer"
		case "bool":
			want = "true or false"
		}
		return &fieldErr{field: field, reason: fmt.Sprintf("want %s, got %s", want, te.Value)}
	}
	return err
}

type fieldErr struct{ field, reason string }

func (e *fieldErr) Error() string { return e.field + ": " + e.reason }

// Limits bounds what a single beacon may claim. Anything beyond is a broken
// or hostile client, not a real measurement.
var limits = struct{ startup, rebuffer, played, bitrate, throughput, ttfb, frames, count int64 }{
	startup:    10 * 60 * 1000,
	rebuffer:   60 * 60 * 1000,
	played:     60 * 60 * 1000,
	bitrate:    1_000_000,
	throughput: 10_000_000,
	ttfb:       120_000,
	frames:     10_000_000,
	count:      100_000,
}

// Validate checks one item and converts it to a record. now and skew bound
// the client timestamp.
func (in *Input) Validate(now time.Time, skew time.Duration) (record.Beacon, *fieldErr) {
	var b record.Beacon
	t, ok := record.ParseType(in.Type)
	switch {
	case in.Type == "":
		return b, &fieldErr{"type", "required"}
	case !ok:
		return b, &fieldErr{"type", fmt.Sprintf("unknown event type %q", truncate(in.Type))}
	}
	if err := checkID("view_id", in.ViewID, true); err != nil {
		return b, err
	}
	if err := checkID("session_id", in.SessionID, false); err != nil {
		return b, err
	}
	if in.TS == 0 {
		return b, &fieldErr{"ts", "required (ms since epoch)"}
	}
	// Compare in ms, not as a Duration: Sub saturates at the Duration range
	// (about 292 years) and -minDuration overflows, so a ts far in the past
	// would pass a d > skew || -d > skew test.
	if in.TS < now.Add(-skew).UnixMilli() || in.TS > now.Add(skew).UnixMilli() {
		d := time.UnixMilli(in.TS).Sub(now)
		return b, &fieldErr{"ts", fmt.Sprintf("%s away from the server clock (max %s)", d.Round(time.Second), skew)}
	}
	if in.Seq < 0 || in.Seq > 1<<32-1 {
		return b, &fieldErr{"seq", "out of range"}
	}
	if err := checkName("service", in.Service, 32, true); err != nil {
		return b, err
	}
	if err := checkName("cdn", in.CDN, 64, true); err != nil {
		return b, err
	}
	if err := checkName("prev_cdn", in.PrevCDN, 64, false); err != nil {
		return b, err
	}
	if err := checkHost(in.Host); err != nil {
		return b, err
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"content_id", in.ContentID, 128}, {"player", in.Player, 64}, {"player_version", in.PlayerVersion, 32},
		{"device", in.Device, 64}, {"os", in.OS, 64}, {"error_code", in.ErrorCode, 64}} {
		if err := checkText(f.name, f.v, f.max); err != nil {
			return b, err
		}
	}
	if err := checkNumbers([numericFields]int64{in.StartupMS, in.RebufferMS, in.RebufferCount, in.SeekRebufferMS,
		in.PlayedMS, in.BitrateKbps, in.ThroughputKbps, in.TTFBMS, in.DroppedFrames}); err != nil {
		return b, err
	}
	switch t {
	case record.TypeError:
		if in.ErrorCode == "" {
			return b, &fieldErr{"error_code", "required for type error"}
		}
	case record.TypeCDNSwitch:
		if in.PrevCDN == "" {
			return b, &fieldErr{"prev_cdn", "required for type cdn_switch"}
		}
	}
	if in.Fatal && t != record.TypeError {
		return b, &fieldErr{"fatal", "only valid on type error"}
	}
	if in.Seek && t != record.TypeRebufferStart && t != record.TypeRebufferEnd {
		return b, &fieldErr{"seek", "only valid on rebuffer_start and rebuffer_end"}
	}
	b = record.Beacon{
		Type: t, ViewID: in.ViewID, SessionID: in.SessionID, TS: in.TS, Seq: uint32(in.Seq),
		Service: in.Service, CDN: in.CDN, PrevCDN: in.PrevCDN, Host: strings.ToLower(in.Host),
		ContentID: in.ContentID, Player: in.Player, PlayerVersion: in.PlayerVersion, Device: in.Device, OS: in.OS,
		StartupMS: uint32(in.StartupMS), RebufferMS: uint32(in.RebufferMS), RebufferCount: uint32(in.RebufferCount),
		SeekRebufferMS: uint32(in.SeekRebufferMS), Seek: in.Seek, PlayedMS: uint32(in.PlayedMS),
		BitrateKbps: uint32(in.BitrateKbps), ThroughputKbps: uint32(in.ThroughputKbps), TTFBMS: uint32(in.TTFBMS),
		DroppedFrames: uint32(in.DroppedFrames), ErrorCode: in.ErrorCode, Fatal: in.Fatal,
		Source: record.SourceBeacon,
	}
	return b, nil
}

// numericLimits names the metric fields in one order, with their limits;
// both ingest paths check through it.
var numericLimits = [...]struct {
	name string
	max  int64
}{{"startup_ms", limits.startup}, {"rebuffer_ms", limits.rebuffer}, {"rebuffer_count", limits.count},
	{"seek_rebuffer_ms", limits.rebuffer}, {"played_ms", limits.played}, {"bitrate_kbps", limits.bitrate},
	{"throughput_kbps", limits.throughput}, {"ttfb_ms", limits.ttfb}, {"dropped_frames", limits.frames}}

const numericFields = len(numericLimits)

// checkNumbers checks values given in numericLimits' order.
func checkNumbers(v [numericFields]int64) *fieldErr {
	for i, f := range numericLimits {
		if v[i] < 0 {
			return &fieldErr{f.name, fmt.Sprintf("%d is negative", v[i])}
		}
		if v[i] > f.max {
			return &fieldErr{f.name, fmt.Sprintf("%d is over the limit %d", v[i], f.max)}
		}
	}
	return nil
}

// checkRecordLimits applies the same limits to an already converted record,
// for paths (CMCD) whose numbers did not come through Input.
func checkRecordLimits(b *record.Beacon) *fieldErr {
	return checkNumbers([numericFields]int64{int64(b.StartupMS), int64(b.RebufferMS), int64(b.RebufferCount),
		int64(b.SeekRebufferMS), int64(b.PlayedMS), int64(b.BitrateKbps), int64(b.ThroughputKbps),
		int64(b.TTFBMS), int64(b.DroppedFrames)})
}

// checkID accepts opaque ids players generate (UUIDs, hex, base64url).
func checkID(field, v string, required bool) *fieldErr {
	if v == "" {
		if required {
			return &fieldErr{field, "required"}
		}
		return nil
	}
	if len(v) > 64 {
		return &fieldErr{field, fmt.Sprintf("%d bytes, max 64", len(v))}
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' || c == '=' || c == '+' || c == '/') {
			return &fieldErr{field, fmt.Sprintf("character %q not allowed (use letters, digits and -_.:=+/)", c)}
		}
	}
	return nil
}

// checkName accepts the identifiers that name services and CDNs: they
// become Kafka keys, metric labels and pathway ids, so the charset is the
// pathway-id one without '.' surprises at the start.
func checkName(field, v string, max int, required bool) *fieldErr {
	if v == "" {
		if required {
			return &fieldErr{field, "required"}
		}
		return nil
	}
	if len(v) > max {
		return &fieldErr{field, fmt.Sprintf("%d bytes, max %d", len(v), max)}
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return &fieldErr{field, fmt.Sprintf("character %q not allowed (use letters, digits and -_.)", c)}
		}
	}
	return nil
}

func checkHost(v string) *fieldErr {
	if v == "" {
		return nil
	}
	if len(v) > 253 {
		return &fieldErr{"host", fmt.Sprintf("%d bytes, max 253", len(v))}
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']') {
			return &fieldErr{"host", fmt.Sprintf("character %q not allowed in a host name", c)}
		}
	}
	return nil
}

// checkText bounds free text and keeps control characters out of logs.
func checkText(field, v string, max int) *fieldErr {
	if len(v) > max {
		return &fieldErr{field, fmt.Sprintf("%d bytes, max %d", len(v), max)}
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return &fieldErr{field, "control or invalid UTF-8 characters"}
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

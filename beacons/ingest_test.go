package beacons

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

const (
	metricAccepted = "cdnpilot_beacons_accepted_total"
	metricRejected = "cdnpilot_beacons_rejected_total"
)

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// viaProxy makes the handler see client as the address a trusted proxy on
// loopback forwarded: 100.64.0.0/16 is GB, eu-west, AS64496 in geo.Demo().
var viaProxy = Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

func TestIngestPublishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{opts: viaProxy})
	one := mustJSON(t, beacon(nil))
	three := []map[string]any{
		beacon(map[string]any{"type": "view_start", "seq": 0, "startup_ms": 1120}),
		beacon(map[string]any{"seq": 1}),
		beacon(map[string]any{"type": "view_end", "seq": 2}),
	}
	var ndjson strings.Builder
	for _, b := range three {
		ndjson.WriteString(mustJSON(t, b) + "\r\n")
	}
	tests := []struct {
		name   string
		header map[string]string
		body   []byte
		want   int
	}{
		{"single object", map[string]string{"Content-Type": "application/json"}, []byte(one), 1},
		{"object with charset", map[string]string{"Content-Type": "application/json; charset=utf-8"}, []byte(one), 1},
		{"array", map[string]string{"Content-Type": "application/json"}, []byte(mustJSON(t, three)), 3},
		{"ndjson", map[string]string{"Content-Type": "application/x-ndjson"}, []byte(ndjson.String()), 3},
		{"ndjson alias", map[string]string{"Content-Type": "application/ndjson"}, []byte(ndjson.String()), 3},
		{"sendBeacon text/plain", map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, []byte(mustJSON(t, three)), 3},
		{"no content type", nil, []byte(one), 1},
		{"gzip", map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzipped(t, []byte(mustJSON(t, three))), 3},
	}
	sent := map[string]int{} // event id -> expected seq
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"X-Forwarded-For": "100.64.7.9"}
			for k, v := range tt.header {
				h[k] = v
			}
			a := e.do(t, req{body: tt.body, header: h})
			if a.status != http.StatusAccepted {
				t.Fatalf("status %d, want 202: %s", a.status, a.raw)
			}
			if !strings.Contains(a.raw, `"rejected":[]`) {
				t.Errorf("answer %s: rejected must be an empty list", a.raw)
			}
			if a.res.Accepted != tt.want || len(a.res.EventIDs) != tt.want || len(a.res.Rejected) != 0 {
				t.Fatalf("answer %s, want %d accepted and none rejected", a.raw, tt.want)
			}
			if got := a.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q", got)
			}
			for i, id := range a.res.EventIDs {
				if len(id) != 36 || id[14] != '4' {
					t.Errorf("event id %q is not a UUIDv4", id)
				}
				if _, dup := sent[id]; dup {
					t.Errorf("event id %s answered twice", id)
				}
				sent[id] = i
			}
		})
	}

	got := e.readTopic(t)
	ids := eventIDs(got)
	if len(got) != len(sent) {
		t.Fatalf("%d records on the topic, %d event ids answered", len(got), len(sent))
	}
	wantPart := partitionOf("eu-west", 3)
	for _, p := range got {
		if ids[p.EventID] != 1 {
			t.Errorf("event id %s on the topic %d times", p.EventID, ids[p.EventID])
		}
		if _, ok := sent[p.EventID]; !ok {
			t.Errorf("event id %s on the topic was never answered", p.EventID)
		}
		if p.Key != "eu-west" || p.Partition != wantPart {
			t.Errorf("key %q partition %d, want eu-west on %d", p.Key, p.Partition, wantPart)
		}
		b := p.Beacon
		if b.ReceivedAt != testNow.UnixMilli() || b.ClientIP != "100.64.7.9" || b.Country != "GB" || b.Region != "eu-west" || b.ASN != 64496 {
			t.Errorf("server fields: received %d ip %q country %q region %q asn %d", b.ReceivedAt, b.ClientIP, b.Country, b.Region, b.ASN)
		}
		if b.Source != record.SourceBeacon || b.Service != "vod" || b.CDN != "cdn-a" || b.Host != "edge1.cdn-a.example" ||
			b.ViewID != "6f1f0d3c-7a21-4b0c-9a43-1e2ad9f65f8d" || b.TS != testNow.UnixMilli()-1500 || b.BitrateKbps != 6221 {
			t.Errorf("player fields not carried over: %+v", b)
		}
	}
	// Within a partition the topic keeps body order: the seq of the
	// three-beacon bodies must read 0, 1, 2 for each body.
	for i := 0; i+2 < len(got); i++ {
		if got[i].Type == record.TypeViewStart && (got[i+1].Seq != 1 || got[i+2].Seq != 2 || got[i+2].Type != record.TypeViewEnd) {
			t.Errorf("body order lost at %d: %+v", i, got[i:i+3])
		}
	}
	if n := counter(t, e.reg, metricAccepted, "source", "beacon"); int(n) != len(sent) {
		t.Errorf("%s{source=beacon} = %v, want %d", metricAccepted, n, len(sent))
	}
}

func TestIngestRejectsBodies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{opts: Options{MaxBeaconsPerBody: 5}})
	valid := mustJSON(t, beacon(nil))
	arr := func(n int) string {
		items := make([]map[string]any, n)
		for i := range items {
			items[i] = beacon(map[string]any{"seq": i})
		}
		return mustJSON(t, items)
	}
	// 8 MiB of JSON whitespace inside an array: 8 KiB on the wire.
	bomb := gzipped(t, append(append([]byte("["), bytes.Repeat([]byte(" "), 8<<20)...), ']'))
	// Random bytes do not compress: over the limit before decoding.
	noise := make([]byte, 70<<10)
	_, _ = rand.Read(noise)
	bigGzip := gzipped(t, noise)
	big := "[" + strings.Repeat(valid+",", (64<<10)/len(valid)+1) + valid + "]"
	json := map[string]string{"Content-Type": "application/json"}
	gz := map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}

	tests := []struct {
		name    string
		header  map[string]string
		body    []byte
		status  int
		reason  string
		errHas  string
		rejects int // per-item rejections in the answer
	}{
		{"gzip bomb", gz, bomb, http.StatusRequestEntityTooLarge, reasonTooLarge, "over 65536 bytes", 0},
		{"gzip over the wire limit", gz, bigGzip, http.StatusRequestEntityTooLarge, reasonTooLarge, "over 65536 bytes", 0},
		{"body over 64 KiB", json, []byte(big), http.StatusRequestEntityTooLarge, reasonTooLarge, "over 65536 bytes", 0},
		{"too many items in an array", json, []byte(arr(6)), http.StatusRequestEntityTooLarge, reasonTooLarge, "more than 5", 0},
		{"too many ndjson lines", map[string]string{"Content-Type": "application/x-ndjson"},
			[]byte(strings.Repeat(valid+"\n", 6)), http.StatusRequestEntityTooLarge, reasonTooLarge, "more than 5", 0},
		{"not JSON", json, []byte("type=heartbeat&cdn=a"), http.StatusBadRequest, reasonNotJSON, "not JSON", 0},
		{"truncated array", json, []byte(arr(3)[:len(arr(3))-20]), http.StatusBadRequest, reasonNotJSON, "truncated", 0},
		{"truncated ndjson", json, []byte(valid + "\n" + valid[:40]), http.StatusBadRequest, reasonNotJSON, "truncated", 0},
		{"garbage after array", json, []byte(arr(2) + " x"), http.StatusBadRequest, reasonNotJSON, "not JSON", 0},
		{"two arrays", json, []byte(arr(1) + arr(1)), http.StatusBadRequest, reasonNotJSON, "after the array", 0},
		{"top-level string", json, []byte(`"heartbeat"`), http.StatusBadRequest, reasonNotJSON, "want an object", 0},
		{"empty body", json, nil, http.StatusBadRequest, reasonNotJSON, "empty body", 0},
		{"empty array", json, []byte("[]"), http.StatusBadRequest, "", "no beacons", 0},
		{"gzip header, plain body", gz, []byte(valid), http.StatusBadRequest, reasonNotJSON, "not gzip", 0},
		{"xml", map[string]string{"Content-Type": "application/xml"}, []byte("<beacon/>"), http.StatusUnsupportedMediaType, reasonMediaType, "content type", 0},
		{"form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte(valid), http.StatusUnsupportedMediaType, reasonMediaType, "content type", 0},
		{"brotli", map[string]string{"Content-Type": "application/json", "Content-Encoding": "br"}, []byte(valid), http.StatusUnsupportedMediaType, reasonMediaType, "content encoding", 0},
		{"all invalid", json, []byte(`[{"type":"nope"},{"type":"heartbeat"}]`), http.StatusUnprocessableEntity, reasonInvalid, "no beacon was valid", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before float64
			if tt.reason != "" {
				before = counter(t, e.reg, metricRejected, "reason", tt.reason)
			}
			a := e.do(t, req{body: tt.body, header: tt.header})
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, a.raw)
			}
			if !strings.Contains(a.res.Error, tt.errHas) {
				t.Errorf("error %q does not contain %q", a.res.Error, tt.errHas)
			}
			if a.res.Accepted != 0 || len(a.res.EventIDs) != 0 || len(a.res.Rejected) != tt.rejects {
				t.Errorf("answer %s: want nothing accepted and %d rejected", a.raw, tt.rejects)
			}
			if a.res.EventIDs == nil || a.res.Rejected == nil {
				t.Errorf("answer %s: event_ids and rejected must be lists, not null", a.raw)
			}
			if tt.reason != "" {
				want := before + 1
				if tt.rejects > 0 {
					want = before + float64(tt.rejects)
				}
				if got := counter(t, e.reg, metricRejected, "reason", tt.reason); got != want {
					t.Errorf("%s{reason=%q} = %v, want %v", metricRejected, tt.reason, got, want)
				}
			}
		})
	}
	if got := e.readTopic(t); len(got) != 0 {
		t.Errorf("%d records published from rejected bodies: %+v", len(got), got)
	}
	if n := counter(t, e.reg, metricAccepted, "source", "beacon"); n != 0 {
		t.Errorf("%s = %v, want 0", metricAccepted, n)
	}
}

func TestIngestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	tests := []struct {
		method, path, allow string
	}{
		{http.MethodGet, "/v1/beacons", "POST, OPTIONS"},
		{http.MethodPut, "/v1/beacons", "POST, OPTIONS"},
		{http.MethodDelete, "/v1/beacons", "POST, OPTIONS"},
		{http.MethodPut, "/v1/cmcd?service=vod", "GET, POST, OPTIONS"},
		{http.MethodPatch, "/v1/cmcd?service=vod", "GET, POST, OPTIONS"},
	}
	for i, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			a := e.do(t, req{method: tt.method, path: tt.path, body: []byte(mustJSON(t, beacon(nil)))})
			if a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != tt.allow {
				t.Fatalf("status %d Allow %q, want 405 with %q", a.status, a.header.Get("Allow"), tt.allow)
			}
			if got := counter(t, e.reg, metricRejected, "reason", reasonMethod); got != float64(i+1) {
				t.Errorf("%s{reason=method_not_allowed} = %v, want %d", metricRejected, got, i+1)
			}
		})
	}
	if got := e.readTopic(t); len(got) != 0 {
		t.Errorf("%d records published", len(got))
	}
}

// validationRules has one item per rule of Input.Validate: the overrides
// that break it and the field the rejection must name.
var validationRules = []struct {
	name   string
	over   map[string]any
	field  string
	reason string
}{
	{"type missing", map[string]any{"type": nil}, "type", "required"},
	{"type unknown", map[string]any{"type": "play"}, "type", "unknown event type"},
	{"type wrong JSON type", map[string]any{"type": 3}, "type", "want a string"},
	{"view_id missing", map[string]any{"view_id": nil}, "view_id", "required"},
	{"view_id too long", map[string]any{"view_id": strings.Repeat("a", 65)}, "view_id", "max 64"},
	{"view_id bad char", map[string]any{"view_id": "abc def"}, "view_id", "not allowed"},
	{"session_id bad char", map[string]any{"session_id": "s<1>"}, "session_id", "not allowed"},
	{"ts missing", map[string]any{"ts": nil}, "ts", "required"},
	{"ts in the future", map[string]any{"ts": testNow.Add(25 * time.Hour).UnixMilli()}, "ts", "away from the server clock"},
	{"ts in the past", map[string]any{"ts": testNow.Add(-25 * time.Hour).UnixMilli()}, "ts", "away from the server clock"},
	{"ts in seconds", map[string]any{"ts": testNow.Unix()}, "ts", "away from the server clock"},
	{"ts far past (duration overflow)", map[string]any{"ts": int64(-1) << 62}, "ts", "away from the server clock"},
	{"ts min int64", map[string]any{"ts": json64(-1 << 63)}, "ts", "away from the server clock"},
	{"ts max int64", map[string]any{"ts": json64(1<<63 - 1)}, "ts", "away from the server clock"},
	{"ts as a string", map[string]any{"ts": "1764269148500"}, "ts", "want an integer"},
	{"ts as a float", map[string]any{"ts": 1764269148500.5}, "ts", "want an integer"},
	{"seq negative", map[string]any{"seq": -1}, "seq", "out of range"},
	{"seq over uint32", map[string]any{"seq": int64(1) << 32}, "seq", "out of range"},
	{"service missing", map[string]any{"service": nil}, "service", "required"},
	{"service too long", map[string]any{"service": strings.Repeat("s", 33)}, "service", "max 32"},
	{"service bad char", map[string]any{"service": "vod live"}, "service", "not allowed"},
	{"cdn missing", map[string]any{"cdn": ""}, "cdn", "required"},
	{"cdn too long", map[string]any{"cdn": strings.Repeat("c", 65)}, "cdn", "max 64"},
	{"cdn bad char", map[string]any{"cdn": "cdn/a"}, "cdn", "not allowed"},
	{"prev_cdn bad char", map[string]any{"prev_cdn": "cdn a"}, "prev_cdn", "not allowed"},
	{"host bad char", map[string]any{"host": "cdn.example/path"}, "host", "not allowed in a host name"},
	{"host too long", map[string]any{"host": strings.Repeat("h", 254)}, "host", "max 253"},
	{"content_id too long", map[string]any{"content_id": strings.Repeat("x", 129)}, "content_id", "max 128"},
	{"player control char", map[string]any{"player": "hls\x1b[31m.js"}, "player", "control"},
	{"player_version too long", map[string]any{"player_version": strings.Repeat("1", 33)}, "player_version", "max 32"},
	{"device DEL", map[string]any{"device": "tv\x7f"}, "device", "control"},
	{"os invalid UTF-8", map[string]any{"os": rawJSON(`"mac\ufffdOS"`)}, "os", "invalid UTF-8"},
	{"error_code too long", map[string]any{"type": "error", "error_code": strings.Repeat("e", 65)}, "error_code", "max 64"},
	{"startup_ms negative", map[string]any{"startup_ms": -5}, "startup_ms", "negative"},
	{"startup_ms over", map[string]any{"startup_ms": 10*60*1000 + 1}, "startup_ms", "over the limit"},
	{"rebuffer_ms over", map[string]any{"rebuffer_ms": 60*60*1000 + 1}, "rebuffer_ms", "over the limit"},
	{"rebuffer_count over", map[string]any{"rebuffer_count": 100_001}, "rebuffer_count", "over the limit"},
	{"seek_rebuffer_ms negative", map[string]any{"seek_rebuffer_ms": -1}, "seek_rebuffer_ms", "negative"},
	{"played_ms over", map[string]any{"played_ms": 60*60*1000 + 1}, "played_ms", "over the limit"},
	{"bitrate_kbps over", map[string]any{"bitrate_kbps": 1_000_001}, "bitrate_kbps", "over the limit"},
	{"throughput_kbps over", map[string]any{"throughput_kbps": 10_000_001}, "throughput_kbps", "over the limit"},
	{"ttfb_ms over", map[string]any{"ttfb_ms": 120_001}, "ttfb_ms", "over the limit"},
	{"dropped_frames over", map[string]any{"dropped_frames": 10_000_001}, "dropped_frames", "over the limit"},
	{"dropped_frames huge", map[string]any{"dropped_frames": rawJSON("1e30")}, "dropped_frames", "want an integer"},
	{"error without code", map[string]any{"type": "error"}, "error_code", "required for type error"},
	{"cdn_switch without prev_cdn", map[string]any{"type": "cdn_switch"}, "prev_cdn", "required for type cdn_switch"},
	{"fatal on heartbeat", map[string]any{"fatal": true}, "fatal", "only valid on type error"},
	{"fatal not a bool", map[string]any{"type": "error", "error_code": "E1", "fatal": "yes"}, "fatal", "want true or false"},
	{"seek on heartbeat", map[string]any{"seek": true}, "seek", "only valid on rebuffer_start and rebuffer_end"},
}

// json64 and rawJSON put numbers and strings into a body exactly as
// written, beyond what float64 or Go strings would round-trip.
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func json64(n int64) rawJSON { return rawJSON(strconv.FormatInt(n, 10)) }

// TestIngestValidation sends one body with an item per validation rule
// between valid ones: every rule is reported at its index and field, and
// the valid items are still published.
func TestIngestValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{opts: viaProxy})
	var items []map[string]any
	want := map[int]int{} // body index -> rule
	for i, r := range validationRules {
		items = append(items, beacon(map[string]any{"seq": 1000 + i}))
		want[len(items)] = i
		items = append(items, beacon(r.over))
	}
	valid := []map[string]any{
		beacon(map[string]any{"type": "error", "error_code": "fragLoadError", "fatal": true, "seq": 1}),
		beacon(map[string]any{"type": "cdn_switch", "prev_cdn": "cdn-b", "seq": 2}),
		beacon(map[string]any{"type": "rebuffer_start", "seek": true, "seq": 3}),
		beacon(map[string]any{"type": "rebuffer_end", "seek": true, "seek_rebuffer_ms": 900, "seq": 4}),
		beacon(map[string]any{"session_id": nil, "host": "[2001:db8::1]:443", "ts": testNow.Add(24 * time.Hour).UnixMilli(), "seq": 5}),
		beacon(map[string]any{"startup_ms": 10 * 60 * 1000, "dropped_frames": 10_000_000, "seq": json64(1<<32 - 1)}),
	}
	items = append(items, valid...)
	body := mustJSON(t, items)
	if len(body) > 64<<10 {
		t.Fatalf("test body is %d bytes, over the default limit", len(body))
	}
	a := e.postJSON(t, body, "X-Forwarded-For", "198.51.100.20")
	if a.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	wantAccepted := len(items) - len(validationRules)
	if a.res.Accepted != wantAccepted || len(a.res.EventIDs) != wantAccepted {
		t.Errorf("accepted %d (%d ids), want %d", a.res.Accepted, len(a.res.EventIDs), wantAccepted)
	}
	got := map[int]FieldError{}
	for _, fe := range a.res.Rejected {
		if _, dup := got[fe.Index]; dup {
			t.Errorf("index %d rejected twice", fe.Index)
		}
		got[fe.Index] = fe
	}
	if !slices.IsSortedFunc(a.res.Rejected, func(x, y FieldError) int { return x.Index - y.Index }) {
		t.Errorf("rejections not in body order: %+v", a.res.Rejected)
	}
	for idx, ri := range want {
		r := validationRules[ri]
		fe, ok := got[idx]
		switch {
		case !ok:
			t.Errorf("%s: item %d accepted", r.name, idx)
		case fe.Field != r.field || !strings.Contains(fe.Reason, r.reason):
			t.Errorf("%s: item %d rejected as %s: %q, want %s: %q", r.name, idx, fe.Field, fe.Reason, r.field, r.reason)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d rejections, want %d: %+v", len(got), len(want), a.res.Rejected)
	}

	pub := e.readTopic(t)
	if len(pub) != wantAccepted {
		t.Fatalf("%d records on the topic, want %d", len(pub), wantAccepted)
	}
	if onTopic := slicesOf(pub); !slices.Equal(onTopic, a.res.EventIDs) {
		t.Errorf("topic ids %v\nanswer ids %v", onTopic, a.res.EventIDs)
	}
	for _, p := range pub {
		if p.Key != "eu-central" || p.Country != "DE" || p.ASN != 64511 || p.ClientIP != "198.51.100.20" {
			t.Errorf("geo of %s: key %q %s %s %d", p.ClientIP, p.Key, p.Country, p.Region, p.ASN)
		}
	}
	if n := counter(t, e.reg, metricRejected, "reason", reasonInvalid); int(n) != len(validationRules) {
		t.Errorf("%s{reason=invalid_field} = %v, want %d", metricRejected, n, len(validationRules))
	}
	if n := counter(t, e.reg, metricAccepted, "source", "beacon"); int(n) != wantAccepted {
		t.Errorf("%s{source=beacon} = %v, want %d", metricAccepted, n, wantAccepted)
	}
}

func slicesOf(ps []published) []string {
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.EventID
	}
	return ids
}

func TestIngestCORS(t *testing.T) {
	t.Parallel()
	listed := newEnv(t, envConfig{opts: Options{CORSOrigins: []string{"https://player.example", "https://app.example"}}})
	anyOrigin := newEnv(t, envConfig{opts: Options{CORSOrigins: []string{"*"}}})
	tests := []struct {
		name       string
		e          *env
		method     string
		path       string
		origin     string
		status     int
		wantOrigin string // "" means no CORS headers at all
		methods    string
	}{
		{"preflight allowed", listed, http.MethodOptions, "/v1/beacons", "https://player.example", http.StatusNoContent, "https://player.example", "POST, OPTIONS"},
		{"preflight second origin", listed, http.MethodOptions, "/v1/beacons", "https://app.example", http.StatusNoContent, "https://app.example", "POST, OPTIONS"},
		{"preflight cmcd", listed, http.MethodOptions, "/v1/cmcd?service=vod", "https://player.example", http.StatusNoContent, "https://player.example", "GET, POST, OPTIONS"},
		{"preflight not allowed", listed, http.MethodOptions, "/v1/beacons", "https://evil.example", http.StatusNoContent, "", ""},
		{"preflight lookalike", listed, http.MethodOptions, "/v1/beacons", "https://player.example.evil", http.StatusNoContent, "", ""},
		{"preflight no origin", listed, http.MethodOptions, "/v1/beacons", "", http.StatusNoContent, "", ""},
		{"post allowed", listed, http.MethodPost, "/v1/beacons", "https://player.example", http.StatusAccepted, "https://player.example", "POST, OPTIONS"},
		{"post not allowed still served", listed, http.MethodPost, "/v1/beacons", "https://evil.example", http.StatusAccepted, "", ""},
		{"wildcard preflight", anyOrigin, http.MethodOptions, "/v1/beacons", "https://whoever.example", http.StatusNoContent, "*", "POST, OPTIONS"},
		{"wildcard post", anyOrigin, http.MethodPost, "/v1/beacons", "https://whoever.example", http.StatusAccepted, "*", "POST, OPTIONS"},
		{"error answers carry CORS", listed, http.MethodGet, "/v1/beacons", "https://player.example", http.StatusMethodNotAllowed, "https://player.example", "POST, OPTIONS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Content-Type": "text/plain"}
			if tt.origin != "" {
				h["Origin"] = tt.origin
			}
			if tt.method == http.MethodOptions {
				h["Access-Control-Request-Method"] = "POST"
				h["Access-Control-Request-Headers"] = "content-type, cmcd-request"
			}
			a := tt.e.do(t, req{method: tt.method, path: tt.path, body: []byte(mustJSON(t, beacon(nil))), header: h})
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, a.raw)
			}
			hd := a.header
			if got := hd.Get("Access-Control-Allow-Origin"); got != tt.wantOrigin {
				t.Errorf("Allow-Origin %q, want %q", got, tt.wantOrigin)
			}
			if tt.wantOrigin == "" {
				for _, k := range []string{"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"} {
					if hd.Get(k) != "" {
						t.Errorf("%s set for a refused origin: %q", k, hd.Get(k))
					}
				}
				return
			}
			if got := hd.Get("Access-Control-Allow-Methods"); got != tt.methods {
				t.Errorf("Allow-Methods %q, want %q", got, tt.methods)
			}
			allowH := strings.ToLower(hd.Get("Access-Control-Allow-Headers"))
			for _, want := range []string{"content-type", "content-encoding", "cmcd-request", "cmcd-object", "cmcd-session", "cmcd-status"} {
				if !strings.Contains(allowH, want) {
					t.Errorf("Allow-Headers %q lacks %s", allowH, want)
				}
			}
			if hd.Get("Access-Control-Max-Age") == "" {
				t.Error("no Access-Control-Max-Age: a preflight per beacon")
			}
			varyOrigin := slices.Contains(hd.Values("Vary"), "Origin")
			if wantVary := tt.wantOrigin != "*"; varyOrigin != wantVary {
				t.Errorf("Vary: Origin = %v, want %v", varyOrigin, wantVary)
			}
		})
	}
}

func TestIngestClientAddress(t *testing.T) {
	t.Parallel()
	trusting := newEnv(t, envConfig{opts: Options{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"),
	}}})
	direct := newEnv(t, envConfig{})
	tests := []struct {
		name    string
		e       *env
		xff     []string
		ip      string
		country string
		region  string
		asn     uint32
	}{
		{"no header", trusting, nil, "127.0.0.1", "ZZ", "local", 0},
		{"one hop", trusting, []string{"100.64.1.2"}, "100.64.1.2", "GB", "eu-west", 64496},
		{"right-most untrusted wins over spoofed left", trusting, []string{"203.0.113.9, 100.64.1.2"}, "100.64.1.2", "GB", "eu-west", 64496},
		{"trusted hops skipped", trusting, []string{"198.51.100.7, 10.1.2.3, 10.9.9.9"}, "198.51.100.7", "DE", "eu-central", 64511},
		{"several header lines", trusting, []string{"203.0.113.9", "198.51.100.7", "10.0.0.1"}, "198.51.100.7", "DE", "eu-central", 64511},
		{"garbled hop stops the walk", trusting, []string{"100.64.1.2, bogus, 10.0.0.1"}, "10.0.0.1", "ZZ", UnknownRegion, 0},
		{"hop with a port is garbled", trusting, []string{"100.64.1.2:5555"}, "127.0.0.1", "ZZ", "local", 0},
		{"all hops trusted", trusting, []string{"10.0.0.2, 10.0.0.1"}, "10.0.0.2", "ZZ", UnknownRegion, 0},
		{"ipv4-mapped", trusting, []string{"::ffff:100.64.1.2"}, "100.64.1.2", "GB", "eu-west", 64496},
		{"ipv6", trusting, []string{"2001:db8:10::1, fd00::1"}, "2001:db8:10::1", "DE", "eu-central", 64499},
		{"untrusted peer: header ignored", direct, []string{"100.64.1.2"}, "127.0.0.1", "ZZ", "local", 0},
	}
	want := map[string]int{} // event id -> case
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hr := req{body: []byte(mustJSON(t, beacon(nil))), header: map[string]string{"Content-Type": "application/json"}}
			a := tt.e.doXFF(t, hr, tt.xff)
			if a.status != http.StatusAccepted || len(a.res.EventIDs) != 1 {
				t.Fatalf("status %d: %s", a.status, a.raw)
			}
			want[a.res.EventIDs[0]] = i
		})
	}
	pub := append(trusting.readTopic(t), direct.readTopic(t)...)
	if len(pub) != len(tests) {
		t.Fatalf("%d records, want %d", len(pub), len(tests))
	}
	for _, p := range pub {
		tt := tests[want[p.EventID]]
		if p.ClientIP != tt.ip || p.Country != tt.country || p.Region != tt.region || p.ASN != tt.asn || p.Key != tt.region {
			t.Errorf("%s: got %s %s %s AS%d key %q, want %s %s %s AS%d", tt.name,
				p.ClientIP, p.Country, p.Region, p.ASN, p.Key, tt.ip, tt.country, tt.region, tt.asn)
		}
	}
}

// doXFF sends r with each X-Forwarded-For value as its own header line.
func (e *env) doXFF(t *testing.T, r req, xff []string) answer {
	t.Helper()
	hr, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/v1/beacons", bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	for _, v := range xff {
		hr.Header.Add("X-Forwarded-For", v)
	}
	return e.send(t, hr)
}

func TestIngestRateLimit(t *testing.T) {
	t.Parallel()
	o := viaProxy
	o.RateLimitRPS, o.RateLimitBurst = 2, 2
	e := newEnv(t, envConfig{opts: o})
	body := mustJSON(t, beacon(nil))
	post := func(t *testing.T, client string) answer {
		t.Helper()
		return e.postJSON(t, body, "X-Forwarded-For", client)
	}
	const a, b = "100.64.1.1", "100.64.1.2"
	steps := []struct {
		name    string
		advance time.Duration
		client  string
		status  int
	}{
		{"burst 1", 0, a, http.StatusAccepted},
		{"burst 2", 0, a, http.StatusAccepted},
		{"over the burst", 0, a, http.StatusTooManyRequests},
		{"still limited before a token is due", 400 * time.Millisecond, a, http.StatusTooManyRequests},
		{"another client has its own bucket", 0, b, http.StatusAccepted},
		{"one token after 500ms", 100 * time.Millisecond, a, http.StatusAccepted},
		{"and only one", 0, a, http.StatusTooManyRequests},
		{"same ipv6 /64 shares a bucket", 0, "2001:db8:10::1", http.StatusAccepted},
		{"same ipv6 /64 shares a bucket 2", 0, "2001:db8:10::ffff", http.StatusAccepted},
		{"same ipv6 /64 shares a bucket 3", 0, "2001:db8:10::abcd", http.StatusTooManyRequests},
		{"other /64 is another client", 0, "2001:db8:10:1::1", http.StatusAccepted},
		{"full bucket again after a long idle", time.Hour, a, http.StatusAccepted},
		{"full bucket again after a long idle 2", 0, a, http.StatusAccepted},
		{"full bucket again after a long idle 3", 0, a, http.StatusTooManyRequests},
	}
	limited := 0
	for _, s := range steps {
		e.clock.Advance(s.advance)
		got := post(t, s.client)
		if got.status != s.status {
			t.Fatalf("%s: status %d, want %d: %s", s.name, got.status, s.status, got.raw)
		}
		if s.status != http.StatusTooManyRequests {
			continue
		}
		limited++
		ra, err := strconv.Atoi(got.header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 2 {
			t.Errorf("%s: Retry-After %q, want 1 or 2 seconds", s.name, got.header.Get("Retry-After"))
		}
		if !strings.Contains(got.res.Error, "rate limit") {
			t.Errorf("%s: error %q", s.name, got.res.Error)
		}
	}
	// Waiting as long as Retry-After says is always enough.
	if got := post(t, a); got.status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", got.status)
	} else {
		ra, _ := strconv.Atoi(got.header.Get("Retry-After"))
		e.clock.Advance(time.Duration(ra) * time.Second)
		limited++
		if got := post(t, a); got.status != http.StatusAccepted {
			t.Errorf("after Retry-After %ds: status %d", ra, got.status)
		}
	}
	if n := counter(t, e.reg, metricRejected, "reason", reasonRateLimited); int(n) != limited {
		t.Errorf("%s{reason=rate_limited} = %v, want %d", metricRejected, n, limited)
	}
	if got := len(e.readTopic(t)); got != len(steps)-limited+2 {
		t.Errorf("%d records, want %d", got, len(steps)-limited+2)
	}
}

// produceFault fails every produce to topic with err until removed.
func produceFault(e *env, err *kerr.Error, count int, partitions ...int32) *kfake.FaultHandle {
	return broker.Cluster().Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Topic: e.topic, Partitions: partitions, Err: err, Count: count,
	})
}

func TestIngestBrokerUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{opts: viaProxy, retries: 2})
	items := []map[string]any{beacon(map[string]any{"seq": 1}), beacon(map[string]any{"type": "bogus"}), beacon(map[string]any{"seq": 3})}

	fault := produceFault(e, kerr.NotEnoughReplicas, -1)
	a := e.postJSON(t, mustJSON(t, items), "X-Forwarded-For", "100.64.1.2")
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "1" {
		t.Fatalf("status %d Retry-After %q, want 503 and 1: %s", a.status, a.header.Get("Retry-After"), a.raw)
	}
	if a.res.Accepted != 0 || len(a.res.EventIDs) != 0 || !strings.Contains(a.res.Error, "nothing was stored") {
		t.Errorf("answer %s", a.raw)
	}
	wantRej := []FieldError{{Index: 0, Field: "(item)"}, {Index: 1, Field: "type"}, {Index: 2, Field: "(item)"}}
	if len(a.res.Rejected) != len(wantRej) {
		t.Fatalf("rejected %+v", a.res.Rejected)
	}
	for i, w := range wantRej {
		if g := a.res.Rejected[i]; g.Index != w.Index || g.Field != w.Field {
			t.Errorf("rejected[%d] = %+v, want index %d field %s", i, g, w.Index, w.Field)
		}
	}
	if hits := fault.Hits(); hits < 3 {
		t.Errorf("fault hit %d times: the producer did not retry twice", hits)
	}
	fault.Remove()

	after := e.postJSON(t, mustJSON(t, beacon(nil)), "X-Forwarded-For", "100.64.1.2")
	if after.status != http.StatusAccepted {
		t.Fatalf("after the fault: status %d: %s", after.status, after.raw)
	}
	pub := e.readTopic(t)
	if ids := slicesOf(pub); !slices.Equal(ids, after.res.EventIDs) {
		t.Errorf("topic holds %v, want only %v: the refused request leaked", ids, after.res.EventIDs)
	}
	for name, want := range map[string]float64{reasonBroker: 2, reasonInvalid: 1} {
		if got := counter(t, e.reg, metricRejected, "reason", name); got != want {
			t.Errorf("%s{reason=%s} = %v, want %v", metricRejected, name, got, want)
		}
	}
	if got := counter(t, e.reg, metricAccepted, "source", "beacon"); got != 1 {
		t.Errorf("%s = %v, want 1", metricAccepted, got)
	}
}

// TestIngestPartialBrokerFailure makes the writer split one body into two
// produce requests (batch size 2) and fails only the first: the answer
// must name exactly the first two items, and only the last two are stored.
func TestIngestPartialBrokerFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{opts: viaProxy, batchSize: 2})
	items := make([]map[string]any, 4)
	for i := range items {
		items[i] = beacon(map[string]any{"seq": i})
	}
	fault := produceFault(e, kerr.NotEnoughReplicas, 1)
	a := e.postJSON(t, mustJSON(t, items), "X-Forwarded-For", "100.64.1.2")
	if a.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	if hits := fault.Hits(); hits != 1 {
		t.Fatalf("fault hit %d times", hits)
	}
	if a.res.Accepted != 2 || len(a.res.EventIDs) != 2 || len(a.res.Rejected) != 2 ||
		a.res.Rejected[0].Index != 0 || a.res.Rejected[1].Index != 1 || !strings.Contains(a.res.Rejected[0].Reason, "retry") {
		t.Fatalf("answer %s: want items 2 and 3 accepted, 0 and 1 refused", a.raw)
	}
	pub := e.readTopic(t)
	if ids := slicesOf(pub); !slices.Equal(ids, a.res.EventIDs) {
		t.Errorf("topic %v, answer %v", ids, a.res.EventIDs)
	}
	for i, p := range pub {
		if p.Seq != uint32(i+2) {
			t.Errorf("record %d has seq %d, want %d", i, p.Seq, i+2)
		}
	}
	if got := counter(t, e.reg, metricRejected, "reason", reasonBroker); got != 2 {
		t.Errorf("%s{reason=broker_unavailable} = %v, want 2", metricRejected, got)
	}
}

// TestIngestMetrics checks every child of both counters after a mix of
// answers, as the registry the handler was given exposes them.
func TestIngestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	e.postJSON(t, mustJSON(t, []any{beacon(nil), beacon(nil), beacon(map[string]any{"cdn": nil})}))
	e.do(t, req{body: []byte("{}"), header: map[string]string{"Content-Type": "application/xml"}})
	e.do(t, req{method: http.MethodGet})
	e.postJSON(t, "[{")
	e.do(t, req{path: "/v1/cmcd?service=vod&cdn=cdn-a", body: []byte(`e=t,sid="s1",sn=1,ts=1764269150000,v=2` + "\n" + `e=t,sid="s1",sn=1,ts=1764269150000,v=2`),
		header: map[string]string{"Content-Type": "application/cmcd"}})
	want := map[string]float64{
		metricAccepted + `{source="beacon"}`:                 2,
		metricAccepted + `{source="cmcd"}`:                   1,
		metricRejected + `{reason="bad_body"}`:               1,
		metricRejected + `{reason="broker_unavailable"}`:     0,
		metricRejected + `{reason="duplicate_in_body"}`:      1,
		metricRejected + `{reason="invalid_field"}`:          1,
		metricRejected + `{reason="method_not_allowed"}`:     1,
		metricRejected + `{reason="rate_limited"}`:           0,
		metricRejected + `{reason="too_large"}`:              0,
		metricRejected + `{reason="unsupported_media_type"}`: 1,
	}
	got := gatherCounters(t, e.reg, metricAccepted, metricRejected)
	if !maps.Equal(got, want) {
		t.Errorf("counters:\n got %v\nwant %v", got, want)
	}
}

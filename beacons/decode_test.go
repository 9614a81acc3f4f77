package beacons

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// item is what DecodeBody handed one visit.
type item struct {
	in    Input
	field string // of the item error, "" when none
}

func decodeAll(body string, max int) ([]item, error) {
	var items []item
	decoded, err := DecodeBody([]byte(body), max)
	for _, d := range decoded {
		it := item{in: d.In}
		if d.Err != nil {
			var fe *fieldErr
			if errors.As(d.Err, &fe) {
				it.field = fe.field
			} else {
				it.field = "?" + d.Err.Error()
			}
		}
		items = append(items, it)
	}
	return items, err
}

func TestDecodeBody(t *testing.T) {
	t.Parallel()
	obj := `{"type":"heartbeat","view_id":"v1","ts":1,"cdn":"a"}`
	tests := []struct {
		name    string
		body    string
		max     int
		wantErr error  // nil, ErrNotJSON or ErrTooMany
		errHas  string // in the error text
		fields  []string
	}{
		{"object", obj, 10, nil, "", []string{""}},
		{"object with surrounding space", " \r\n\t" + obj + "\n\n", 10, nil, "", []string{""}},
		{"array", "[" + obj + "," + obj + "]", 10, nil, "", []string{"", ""}},
		{"array with spaces", "[ " + obj + " ,\n" + obj + " ]\n", 10, nil, "", []string{"", ""}},
		{"ndjson", obj + "\n" + obj + "\r\n" + obj, 10, nil, "", []string{"", "", ""}},
		{"concatenated objects", obj + obj, 10, nil, "", []string{"", ""}},
		{"exactly max", "[" + obj + "," + obj + "]", 2, nil, "", []string{"", ""}},
		{"empty array", "[]", 10, nil, "", nil},
		{"unknown fields ignored", `{"type":"heartbeat","extra":{"deep":[1,2,3]}}`, 10, nil, "", []string{""}},
		{"null item in array", "[null," + obj + "]", 10, nil, "", []string{"", ""}},

		{"ts as string", `[{"ts":"1"},` + obj + `]`, 10, nil, "", []string{"ts", ""}},
		{"float for an integer", `{"startup_ms":1.5}`, 10, nil, "", []string{"startup_ms"}},
		{"huge number", `{"seq":123456789012345678901234567890}`, 10, nil, "", []string{"seq"}},
		{"number for a string", `{"cdn":42}`, 10, nil, "", []string{"cdn"}},
		{"object for a bool", `{"fatal":{"x":1}}`, 10, nil, "", []string{"fatal"}},
		{"number item in array", `[1,` + obj + `]`, 10, nil, "", []string{"(item)", ""}},
		{"array item in array", `[[` + obj + `]]`, 10, nil, "", []string{"(item)"}},
		{"array line in ndjson", obj + "\n[1]\n" + obj, 10, nil, "", []string{"", "(item)", ""}},

		{"empty", "", 10, ErrNotJSON, "empty body", nil},
		{"only whitespace", " \n\t ", 10, ErrNotJSON, "empty body", nil},
		{"top-level number", "42", 10, ErrNotJSON, "want an object", nil},
		{"top-level string", `"x"`, 10, ErrNotJSON, "want an object", nil},
		{"truncated object", obj[:20], 10, ErrNotJSON, "truncated", nil},
		{"truncated array", "[" + obj + "," + obj[:20], 10, ErrNotJSON, "truncated", nil},
		{"syntax error late", obj + "\n" + obj + "\n{\"type\":}", 10, ErrNotJSON, "at byte", nil},
		{"trailing comma", "[" + obj + ",]", 10, ErrNotJSON, "", nil},
		{"garbage after array", "[" + obj + "]x", 10, ErrNotJSON, "", nil},
		{"two arrays", "[" + obj + "][" + obj + "]", 10, ErrNotJSON, "after the array", nil},
		{"form data", "type=heartbeat", 10, ErrNotJSON, "", nil},
		{"BOM", "\ufeff" + obj, 10, ErrNotJSON, "", nil},
		{"too many in array", "[" + obj + "," + obj + "," + obj + "]", 2, ErrTooMany, "more than 2", nil},
		{"too many ndjson", obj + obj + obj, 2, ErrTooMany, "more than 2", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := decodeAll(tt.body, tt.max)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			case err != nil && !strings.Contains(err.Error(), tt.errHas):
				t.Errorf("error %q lacks %q", err, tt.errHas)
			}
			if errors.Is(err, ErrNotJSON) && len(items) > 0 {
				t.Errorf("a body with a syntax error visited %d items", len(items))
			}
			if tt.wantErr != nil {
				return
			}
			if len(items) != len(tt.fields) {
				t.Fatalf("%d items, want %d", len(items), len(tt.fields))
			}
			for i, it := range items {
				if it.field != tt.fields[i] {
					t.Errorf("item %d: error field %q, want %q", i, it.field, tt.fields[i])
				}
			}
		})
	}
}

// TestValidate runs each rule of validationRules (shared with the handler
// test) straight through Validate, plus the conversion of a valid item.
func TestValidate(t *testing.T) {
	t.Parallel()
	for _, r := range validationRules {
		t.Run(r.name, func(t *testing.T) {
			body := mustJSON(t, beacon(r.over))
			var got *fieldErr
			items, err := DecodeBody([]byte(body), 1)
			if err != nil {
				t.Fatal(err)
			}
			if items[0].Err != nil {
				errors.As(items[0].Err, &got)
			} else {
				_, got = items[0].In.Validate(testNow, 24*time.Hour)
			}
			if got == nil || got.field != r.field || !strings.Contains(got.reason, r.reason) {
				t.Errorf("got %v, want %s: %q", got, r.field, r.reason)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		in := Input{Type: "rebuffer_end", ViewID: "v-1", SessionID: "s:1", TS: testNow.UnixMilli(), Seq: 1<<32 - 1,
			Service: "vod", CDN: "cdn-a", Host: "EDGE.Example:443", Seek: true, SeekRebufferMS: 800, Player: "dash.js ✓"}
		b, fe := in.Validate(testNow, time.Minute)
		if fe != nil {
			t.Fatal(fe)
		}
		want := record.Beacon{Type: record.TypeRebufferEnd, ViewID: "v-1", SessionID: "s:1", TS: testNow.UnixMilli(),
			Seq: 1<<32 - 1, Service: "vod", CDN: "cdn-a", Host: "edge.example:443", Seek: true, SeekRebufferMS: 800,
			Player: "dash.js ✓", Source: record.SourceBeacon}
		if b != want {
			t.Errorf("got  %+v\nwant %+v", b, want)
		}
	})
	t.Run("skew bounds are inclusive", func(t *testing.T) {
		for _, ts := range []int64{testNow.Add(-time.Minute).UnixMilli(), testNow.Add(time.Minute).UnixMilli()} {
			in := Input{Type: "heartbeat", ViewID: "v", TS: ts, Service: "s", CDN: "c"}
			if _, fe := in.Validate(testNow, time.Minute); fe != nil {
				t.Errorf("ts %d: %v", ts, fe)
			}
			in.TS += 1
			if ts < testNow.UnixMilli() {
				in.TS -= 2
			}
			if _, fe := in.Validate(testNow, time.Minute); fe == nil || fe.field != "ts" {
				t.Errorf("ts %d: %v, want a ts rejection", in.TS, fe)
			}
		}
	})
}

// FuzzDecodeBody: whatever the bytes, DecodeBody and Validate do not
// panic, a body-level error is one of the two sentinels and comes before
// any visit when it is a syntax error, every rejected item names a field,
// and every accepted item is a record that stays within its limits.
func FuzzDecodeBody(f *testing.F) {
	f.Add([]byte(`{"type":"heartbeat","view_id":"v","ts":1764269148500,"service":"vod","cdn":"a"}`))
	f.Add([]byte(`[{"type":"error","error_code":"E","fatal":true}]`))
	const maxItems = 20
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := DecodeBody(body, maxItems)
		n := len(items)
		for i := range items {
			in, derr := &items[i].In, items[i].Err
			if derr != nil {
				var fe *fieldErr
				if !errors.As(derr, &fe) || fe.field == "" || fe.reason == "" {
					t.Fatalf("item %d: error %v names no field", i, derr)
				}
				continue
			}
			b, fe := in.Validate(testNow, 24*time.Hour)
			if fe != nil {
				if fe.field == "" || fe.reason == "" {
					t.Fatalf("item %d: rejection %+v names no field", i, fe)
				}
				if _, ok := inputFields[fe.field]; !ok {
					t.Fatalf("item %d: rejection names %q, not a field of the schema", i, fe.field)
				}
				continue
			}
			checkAccepted(t, b)
		}
		switch {
		case err == nil:
		case errors.Is(err, ErrNotJSON):
			if n > 0 {
				t.Fatalf("syntax error %v after %d visits", err, n)
			}
		case errors.Is(err, ErrTooMany):
			if n != 0 {
				t.Fatalf("too many, yet %d items returned", n)
			}
		default:
			t.Fatalf("error %v is neither ErrNotJSON nor ErrTooMany", err)
		}
	})
}

// inputFields are the JSON names of the public schema.
var inputFields = func() map[string]bool {
	var in Input
	b, _ := json.Marshal(in)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}()

func checkAccepted(t *testing.T, b record.Beacon) {
	t.Helper()
	if d := b.TS - testNow.UnixMilli(); d > (24*time.Hour).Milliseconds() || -d > (24*time.Hour).Milliseconds() {
		t.Fatalf("accepted ts %d, %dms from the clock", b.TS, d)
	}
	if b.Type == record.TypeUnknown || b.ViewID == "" || b.Service == "" || b.CDN == "" {
		t.Fatalf("accepted without a required field: %+v", b)
	}
	for _, s := range []string{b.ContentID, b.Player, b.PlayerVersion, b.Device, b.OS, b.ErrorCode, b.Host} {
		if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted text %q with control or invalid bytes", s)
		}
	}
	// Ingest sets these before publishing; the record demands them.
	b.EventID, b.ReceivedAt = "e", testNow.UnixMilli()
	enc, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back record.Beacon
	if err := back.UnmarshalBinary(enc); err != nil || back != b {
		t.Fatalf("record does not round-trip: %v\n%+v\n%+v", err, b, back)
	}
	_ = fmt.Sprint(b) // String methods of the enums must not panic either
}

// TestFieldsCoverSchema: the exact-key decoder must know every field of
// Input under its JSON name, or the two decode paths would disagree.
func TestFieldsCoverSchema(t *testing.T) {
	var in Input
	fs := in.fields()
	typ := reflect.TypeFor[Input]()
	if len(fs) != typ.NumField() {
		t.Fatalf("fields() lists %d, Input has %d", len(fs), typ.NumField())
	}
	for i, f := range fs {
		sf := typ.Field(i)
		if tag := sf.Tag.Get("json"); tag != f.name {
			t.Errorf("fields()[%d] = %q, struct field %s has tag %q", i, f.name, sf.Name, tag)
		}
		if reflect.ValueOf(f.ptr).Pointer() != reflect.ValueOf(&in).Elem().Field(i).Addr().Pointer() {
			t.Errorf("fields()[%d] %q points at the wrong field", i, f.name)
		}
	}
}

func TestKeysAreCaseSensitive(t *testing.T) {
	for _, body := range []string{`{"TYPE":"view_start","Ts":1}`, `[{"TYPE":"view_start","Ts":1}]`, `{"TYPE":"view_start","ts":"x"}`} {
		items, err := DecodeBody([]byte(body), 10)
		if err != nil {
			t.Fatal(err)
		}
		if items[0].In.Type != "" || items[0].In.TS != 0 {
			t.Errorf("%s: a key in other case was taken as a field: %+v", body, items[0].In)
		}
	}
}

// FuzzFastMatchesStd: whenever the goccy/go-json fast path accepts a body,
// the encoding/json path must accept it too and decode the same items, so
// the fast path changes speed and nothing else.
func FuzzFastMatchesStd(f *testing.F) {
	obj := `{"type":"heartbeat","view_id":"v","ts":1764269148500,"service":"vod","cdn":"a","played_ms":5000}`
	for _, s := range []string{obj, "[" + obj + "," + obj + "]", obj + "\n" + obj, `{"TYPE":"x","View_Id":"v"}`,
		`{"type":"a","type":"b"}`, `{"view_id":"\u00e9\ud800"}`, `{"ts":1e3}`, `{"ts":-0}`, `{"seq":null}`,
		`{"x":{"y":[1,2,{"z":null}]},"ts":5}`, "[]", "{}", `{"fatal":true,"seek":false}`, "{\"os\":\"\xff\"}",
		`[null]`, `[{"ts":9223372036854775808}]`, `{"ts":1.0}`, `{"type":"a\u0000b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if len(trimmed) == 0 {
			return
		}
		fast, ok := decodeFast(trimmed, 20)
		if !ok {
			return
		}
		std, err := decodeStd(trimmed, 20)
		if err != nil {
			t.Fatalf("fast path accepted a body encoding/json rejects: %v", err)
		}
		if len(std) != len(fast) {
			t.Fatalf("fast path decoded %d items, encoding/json %d", len(fast), len(std))
		}
		for i := range std {
			if std[i].Err != nil {
				t.Fatalf("item %d: fast path accepted what encoding/json rejects: %v", i, std[i].Err)
			}
			if std[i].In != fast[i].In {
				t.Fatalf("item %d differs:\nfast %+v\n std %+v", i, fast[i].In, std[i].In)
			}
		}
	})
}

package overrides

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/steering"
)

const goodJSON = `{"v":1,"id":"ovr_1","kind":"pin","service":"vod","region":"eu-west","cdn":"cdn-b",` +
	`"reason":"INC-1","author":"alice","created":"2026-03-01T12:00:00Z","expires":"2026-03-01T13:00:00Z",` +
	`"revision":1,"updated_at":"2026-03-01T12:00:00Z","updated_by":"alice"}`

func TestRecordJSONRoundTrip(t *testing.T) {
	split := record("ovr_split", 3)
	split.Kind, split.CDN, split.Split = steering.OverrideSplit, "", map[string]float64{"cdn-a": 30, "cdn-b": 70}
	split.ASN = 3320
	deleted := record("ovr_deleted", 2)
	deleted.DeletedAt, deleted.DeletedBy, deleted.DeleteReason = t0.Add(time.Minute), "bob", "fixed"
	never := record("ovr_never", 1)
	never.Expires = time.Time{}
	for _, r := range []Record{record("ovr_pin", 1), split, deleted, never} {
		t.Run(r.ID, func(t *testing.T) {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.HasPrefix(b, []byte(`{"v":1,`)) {
				t.Errorf("JSON does not start with the version: %s", b)
			}
			got, err := DecodeRecord([]byte(r.ID), b)
			if err != nil {
				t.Fatalf("DecodeRecord(%s): %v", b, err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
			}
		})
	}
}

func TestDecodeRecord(t *testing.T) {
	edit := func(from, to string) string {
		if !strings.Contains(goodJSON, from) {
			t.Fatalf("goodJSON has no %q", from)
		}
		return strings.Replace(goodJSON, from, to, 1)
	}
	tests := []struct {
		name  string
		key   string
		value string
		field string // the field the error names; "" for success
		want  string // a substring of the error
	}{
		{"good", "ovr_1", goodJSON, "", ""},
		{"no expiry", "ovr_1", edit(`"expires":"2026-03-01T13:00:00Z",`, ""), "", ""},
		{"key is not id", "ovr_2", goodJSON, "id", `"ovr_1" is not the message key "ovr_2"`},
		{"empty key", "", goodJSON, "id", "message key"},
		{"unknown field", "ovr_1", edit(`"v":1,`, `"v":1,"colour":"red",`), "", `unknown field "colour"`},
		{"missing id", "", edit(`"id":"ovr_1",`, ""), "id", "missing"},
		{"bad kind", "ovr_1", edit(`"kind":"pin"`, `"kind":"reroute"`), "kind", `"reroute" is not one of`},
		{"missing kind", "ovr_1", edit(`"kind":"pin",`, ""), "kind", "missing"},
		{"missing service", "ovr_1", edit(`"service":"vod",`, ""), "service", "missing"},
		{"missing revision", "ovr_1", edit(`"revision":1,`, ""), "revision", "missing"},
		{"missing created", "ovr_1", edit(`"created":"2026-03-01T12:00:00Z",`, ""), "created", "missing"},
		{"missing version", "ovr_1", edit(`"v":1,`, ""), "v", "missing"},
		{"future version", "ovr_1", edit(`"v":1,`, `"v":2,`), "v", "2 is not a supported format version"},
		{"id with a space", "ovr 1", edit(`"id":"ovr_1"`, `"id":"ovr 1"`), "id", "printable"},
		{"long id", strings.Repeat("x", 129), edit(`"id":"ovr_1"`, `"id":"`+strings.Repeat("x", 129)+`"`), "id", "longer than"},
		{"wrong type", "ovr_1", edit(`"revision":1`, `"revision":"1"`), "", "revision"},
		{"negative revision", "ovr_1", edit(`"revision":1`, `"revision":-1`), "", "revision"},
		{"trailing data", "ovr_1", goodJSON + `{}`, "", "after the JSON object"},
		{"two objects", "ovr_1", goodJSON + goodJSON, "", "after the JSON object"},
		{"not JSON", "ovr_1", "garbage", "", "invalid character"},
		{"null", "ovr_1", "null", "v", "missing"},
		{"empty", "ovr_1", "", "", "override record"},
		{"array", "ovr_1", "[]", "", "cannot unmarshal array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeRecord([]byte(tt.key), []byte(tt.value))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("DecodeRecord: %v", err)
				}
				if r.ID != tt.key || r.Revision != 1 || r.Kind != steering.OverridePin {
					t.Errorf("decoded %+v", r)
				}
				return
			}
			if err == nil {
				t.Fatalf("DecodeRecord = %+v, want an error naming %q", r, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			var fe *FieldError
			if tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, ErrInvalid)) {
				t.Errorf("error %q is not a FieldError for %q", err, tt.field)
			}
			if !reflect.DeepEqual(r, Record{}) {
				t.Errorf("a failed decode returned %+v", r)
			}
		})
	}
}

func TestRecordState(t *testing.T) {
	live := record("a", 1) // expires t0+1h
	never := record("b", 1)
	never.Expires = time.Time{}
	deleted := record("c", 2)
	deleted.DeletedAt = t0.Add(time.Minute)
	tests := []struct {
		name string
		r    Record
		now  time.Time
		want string
	}{
		{"before expiry", live, t0.Add(59 * time.Minute), StateActive},
		{"at expiry", live, t0.Add(time.Hour), StateExpired},
		{"after expiry", live, t0.Add(2 * time.Hour), StateExpired},
		{"no expiry", never, t0.Add(1000 * time.Hour), StateActive},
		{"deleted before expiry", deleted, t0.Add(2 * time.Minute), StateDeleted},
		{"deleted beats expired", deleted, t0.Add(2 * time.Hour), StateDeleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.State(tt.now); got != tt.want {
				t.Errorf("State = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte("ovr_1"), []byte(goodJSON))
	split, _ := json.Marshal(func() Record {
		r := record("ovr_s", 4)
		r.Kind, r.CDN, r.Split = steering.OverrideSplit, "", map[string]float64{"a": 50, "b": 50}
		r.DeletedAt, r.DeletedBy, r.DeleteReason = t0, "bob", "done"
		return r
	}())
	f.Add([]byte("ovr_s"), split)
	f.Add([]byte("ovr_1"), []byte(`{"v":1,"id":"ovr_1"}`))
	f.Add([]byte("k"), []byte(`{"v":1,"id":"k","kind":"ban","service":"s","revision":18446744073709551615,"created":"2026-03-01T12:00:00+02:00","split":{"x":1e308}}`))
	f.Add([]byte(""), []byte("null"))
	f.Add([]byte("x"), []byte("\xff\x00garbage"))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := DecodeRecord(key, value)
		if err != nil {
			return
		}
		if r.ID != string(key) {
			t.Fatalf("decoded id %q under key %q", r.ID, key)
		}
		if err := r.check(); err != nil {
			t.Fatalf("a decoded record fails its checks: %v", err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("Marshal of a decoded record: %v", err)
		}
		again, err := DecodeRecord(key, b)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		b2, err := json.Marshal(again)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("not stable: %s then %s (%v)", b, b2, err)
		}
	})
}

package cmcd

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

func TestBeaconType(t *testing.T) {
	tests := []struct {
		line  string
		want  record.Type
		fatal bool
	}{
		{`sid="s",br=200`, record.TypeHeartbeat, false},
		{`sid="s",msd=700,sta=p`, record.TypeViewStart, false}, // request mode
		{`sid="s",e=ps,sta=p,msd=812`, record.TypeViewStart, false},
		{`sid="s",e=ps,sta=p`, record.TypeHeartbeat, false}, // resume after pause or seek
		{`sid="s",e=ps,sta=p,bs,bsd=(1500)`, record.TypeRebufferEnd, false},
		{`sid="s",e=ps,sta=r,bs`, record.TypeRebufferStart, false},
		{`sid="s",e=ps,sta=e`, record.TypeViewEnd, false},
		{`sid="s",e=ps,sta=q`, record.TypeViewEnd, false},
		{`sid="s",e=ps,sta=f`, record.TypeError, true},
		{`sid="s",e=ps,sta=k`, record.TypeHeartbeat, false},
		{`sid="s",e=ps,sta=s`, record.TypeHeartbeat, false},
		{`sid="s",e=ps,sta=zz`, record.TypeHeartbeat, false},
		{`sid="s",e=e,ec=("X")`, record.TypeError, false},
		{`sid="s",e=e,sta=f`, record.TypeError, true},
		{`sid="s",e=t`, record.TypeHeartbeat, false},
		{`sid="s",e=rr,ttfb=180`, record.TypeHeartbeat, false},
		{`sid="s",e=bc,br=(3000)`, record.TypeBitrateChange, false},
		{`sid="s",e=sk`, record.TypeHeartbeat, false},
		{`sid="s",e=ce,cen="x"`, record.TypeHeartbeat, false},
		{`sid="s",e=t,sta=f`, record.TypeHeartbeat, false}, // fatal only on error type
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			b := mustBeacon(t, tt.line)
			if b.Type != tt.want || b.Fatal != tt.fatal {
				t.Errorf("type %v fatal %v, want %v %v", b.Type, b.Fatal, tt.want, tt.fatal)
			}
		})
	}
}

func TestBeaconErrors(t *testing.T) {
	tests := []struct{ line, key string }{
		{`br=200`, "sid"},
		{`sid="s",e=ps`, "sta"},
		{`sid="s",e=zz`, "e"},
	}
	for _, tt := range tests {
		r, err := Parse(tt.line)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Beacon()
		var e *Error
		if !errors.As(err, &e) || e.Key != tt.key {
			t.Errorf("%s: Beacon() error = %v, want key %q", tt.line, err, tt.key)
		}
	}
}

func TestBeaconFields(t *testing.T) {
	b := mustBeacon(t, `bl=(6000),br=(4200;v 256;a),bsd=(720;v 900;a),cdn="akamai",cid="c",dfa=32,`+
		`e=ps,ec=("A" "B"),h="example.com",msd=812,mtp=(87000;v 49000;a),sid="sess",sn=7,sta=p,ts=1764752430000,ttfb=99`)
	want := record.Beacon{
		Type:           record.TypeViewStart,
		ViewID:         "sess",
		SessionID:      "sess",
		TS:             1764752430000,
		Seq:            7,
		CDN:            "akamai",
		Host:           "example.com",
		ContentID:      "c",
		StartupMS:      812,
		RebufferMS:     900,
		BitrateKbps:    4200,
		ThroughputKbps: 87000,
		TTFBMS:         99,
		DroppedFrames:  32,
		ErrorCode:      "A,B",
	}
	if b != want {
		t.Errorf("Beacon() =\n%+v\nwant\n%+v", b, want)
	}
}

func TestBeaconBitratePreference(t *testing.T) {
	tests := []struct {
		line string
		want uint32
	}{
		{`sid="s",br=200`, 200},
		{`sid="s",br=(164;a 3000;v)`, 3000},
		{`sid="s",br=(164;a 3000;av)`, 3000},
		{`sid="s",br=(164;a 3000)`, 164},      // untagged: first entry
		{`sid="s",br=(3000),pb=(2000)`, 2000}, // playhead bitrate wins
		{`sid="s",br=99999999999`, 1<<32 - 1},
	}
	for _, tt := range tests {
		if got := mustBeacon(t, tt.line).BitrateKbps; got != tt.want {
			t.Errorf("%s: BitrateKbps = %d, want %d", tt.line, got, tt.want)
		}
	}
}

func TestBeaconErrorCodeTruncated(t *testing.T) {
	b := mustBeacon(t, `sid="s",e=e,ec=(`+strings.Repeat(`"`+strings.Repeat("x", 100)+`" `, 4)+`)`)
	if len(b.ErrorCode) != maxErrorCode {
		t.Errorf("len(ErrorCode) = %d, want %d", len(b.ErrorCode), maxErrorCode)
	}
}

func mustBeacon(t *testing.T, line string) record.Beacon {
	t.Helper()
	r, err := Parse(line)
	if err != nil {
		t.Fatalf("Parse(%q): %v", line, err)
	}
	b, err := r.Beacon()
	if err != nil {
		t.Fatalf("Beacon(%q): %v", line, err)
	}
	return b
}

func TestEventID(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a := EventID("session-id-123", 3, "t")
	if !uuid.MatchString(a) {
		t.Fatalf("EventID = %q, not a version 8 UUID", a)
	}
	// Pinned (computed independently with Python's hashlib from the layout
	// documented on EventID) so a change to the derivation, which would break
	// dedup across a deploy, fails here first.
	if want := "9c51f63d-0530-88d8-a124-83d68e6d1b00"; a != want {
		t.Errorf("EventID = %q, want %q", a, want)
	}
	if b := EventID("session-id-123", 3, "t"); a != b {
		t.Errorf("not deterministic: %q vs %q", a, b)
	}
	distinct := map[string]bool{a: true}
	for _, other := range []string{
		EventID("session-id-123", 4, "t"),
		EventID("session-id-124", 3, "t"),
		EventID("session-id-123", 3, "ps"),
		EventID("session-id-12", 33, "t"), // field boundaries matter
		EventID("", 3, "t"),
	} {
		if distinct[other] {
			t.Errorf("collision: %q", other)
		}
		distinct[other] = true
	}
}

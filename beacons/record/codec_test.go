package record

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unsafe"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sample() Beacon {
	return Beacon{
		EventID: "0b4e8f5c-9a57-4d3e-8d1f-3f0b7b2c6a11", ReceivedAt: 1764041400123,
		ClientIP: "100.64.1.7", Country: "GB", Region: "eu-west", ASN: 64501, Source: SourceBeacon,
		Type: TypeHeartbeat, ViewID: "v-1", SessionID: "s-1", TS: 1764041400000, Seq: 7,
		Service: "vod", CDN: "cdn-a", PrevCDN: "", Host: "a.example.net", ContentID: "movie-1",
		Player: "hls.js", PlayerVersion: "1.7.0", Device: "desktop", OS: "linux",
		StartupMS: 900, RebufferMS: 250, RebufferCount: 1, SeekRebufferMS: 40, Seek: true,
		PlayedMS: 30000, BitrateKbps: 4500, ThroughputKbps: 12000, TTFBMS: 45, DroppedFrames: 3,
		ErrorCode: "", Fatal: true,
	}
}

func TestRoundTrip(t *testing.T) {
	for _, b := range []Beacon{sample(), {EventID: "x", ReceivedAt: 1, Type: TypeViewEnd}, {EventID: "y", ReceivedAt: 5, Type: TypeError, Source: SourceCMCD, TS: -5}} {
		enc, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Beacon
		if err := got.UnmarshalBinary(enc); err != nil {
			t.Fatalf("decode %+v: %v", b, err)
		}
		if !reflect.DeepEqual(got, b) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
		}
	}
}

// The golden file pins the wire format: a change here breaks every consumer
// still running the old build, so it must come with a version bump.
func TestGoldenEncoding(t *testing.T) {
	b := sample()
	enc, _ := b.MarshalBinary()
	path := filepath.Join("testdata", "v1.bin")
	if *update {
		if err := os.WriteFile(path, enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, want) {
		t.Fatalf("encoding changed; bump Version and keep a decoder for v1")
	}
}

func TestDecodeErrorsNameField(t *testing.T) {
	good, _ := (&Beacon{EventID: "e", ReceivedAt: 1, Type: TypeHeartbeat, ViewID: "view"}).MarshalBinary()
	noID, _ := (&Beacon{ReceivedAt: 1, Type: TypeHeartbeat}).MarshalBinary()
	noTime, _ := (&Beacon{EventID: "e", Type: TypeHeartbeat}).MarshalBinary()
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "bad magic"},
		{"magic", []byte{0x00, 1}, "bad magic"},
		{"future version", []byte{Magic, Version + 1}, "unsupported version"},
		{"truncated event_id", []byte{Magic, Version, 10, 'a'}, "field event_id: truncated"},
		{"huge string", []byte{Magic, Version, 0xff, 0xff, 0x7f}, "field event_id: length"},
		{"truncated tail", good[:len(good)-1], "field error_code"},
		{"trailing", append(append([]byte{}, good...), 0), "trailing bytes"},
		{"no event id", noID, "field event_id: empty"},
		{"no receive time", noTime, "field received_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Beacon
			err := b.UnmarshalBinary(tt.in)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestTypeNames(t *testing.T) {
	for ty := TypeViewStart; ty < typeCount; ty++ {
		got, ok := ParseType(ty.String())
		if !ok || got != ty {
			t.Fatalf("ParseType(%q) = %v, %v", ty.String(), got, ok)
		}
	}
	if _, ok := ParseType("unknown"); ok {
		t.Fatal("unknown must not parse")
	}
}

func FuzzUnmarshal(f *testing.F) {
	s := sample()
	enc, _ := s.MarshalBinary()
	f.Add(enc)
	f.Add([]byte{Magic, Version})
	f.Add([]byte{Magic, Version, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Beacon
		if err := b.UnmarshalBinary(data); err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes: the format has
		// one encoding per record, which is what lets dedup trust event_id.
		again, _ := b.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatalf("non-canonical encoding accepted: %x -> %x", data, again)
		}
	})
}

func BenchmarkAppendBinary(b *testing.B) {
	s := sample()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = s.AppendBinary(buf[:0])
	}
}

func BenchmarkUnmarshalBinary(b *testing.B) {
	s := sample()
	enc, _ := s.MarshalBinary()
	b.ReportAllocs()
	for b.Loop() {
		var got Beacon
		if err := got.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeWithInterner(t *testing.T) {
	s := sample()
	enc, _ := s.MarshalBinary()
	var in Interner
	var a, b Beacon
	if err := a.Decode(enc, &in); err != nil {
		t.Fatal(err)
	}
	if err := b.Decode(enc, &in); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, s) || !reflect.DeepEqual(b, s) {
		t.Fatalf("interned decode differs:\n%+v\n%+v", a, s)
	}
	if unsafe.StringData(a.Region) != unsafe.StringData(b.Region) {
		t.Error("region not shared between records")
	}
	if unsafe.StringData(a.EventID) == unsafe.StringData(b.EventID) {
		t.Error("event ids must not be interned")
	}
}

func BenchmarkDecodeInterned(b *testing.B) {
	s := sample()
	enc, _ := s.MarshalBinary()
	var in Interner
	b.ReportAllocs()
	for b.Loop() {
		var got Beacon
		if err := got.Decode(enc, &in); err != nil {
			b.Fatal(err)
		}
	}
}

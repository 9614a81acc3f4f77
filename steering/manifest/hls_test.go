package manifest

import (
	"os"
	"strings"
	"testing"
)

func TestManifestHLSErrors(t *testing.T) {
	const v = "#EXT-X-STREAM-INF:BANDWIDTH=800000\nv0.m3u8\n"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "line 1: not an HLS playlist"},
		{"no header", "#EXT-X-VERSION:3\n" + v, "line 1: not an HLS playlist"},
		{"media playlist", "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\nseg0.ts\n", "line 2: #EXT-X-TARGETDURATION: this is a media playlist"},
		{"extinf", "#EXTM3U\n#EXTINF:6,\nseg0.ts\n", "line 2: #EXTINF: this is a media playlist"},
		{"no variants", "#EXTM3U\n#EXT-X-VERSION:3\n", "no #EXT-X-STREAM-INF variant"},
		{"steering already", "#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"/s\"\n" + v, "line 2: the playlist already has #EXT-X-CONTENT-STEERING"},
		{"pathway already", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,PATHWAY-ID=\"a\"\nv0.m3u8\n", "line 2: #EXT-X-STREAM-INF already has a PATHWAY-ID"},
		{"no uri", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "line 2: #EXT-X-STREAM-INF has no URI line"},
		{"tag instead of uri", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-STREAM-INF:BANDWIDTH=2\nv.m3u8\n", "line 2: #EXT-X-STREAM-INF has no URI line after it (line 3 is a tag)"},
		{"stray uri", "#EXTM3U\nv0.m3u8\n" + v, `line 2: URI "v0.m3u8" without a preceding`},
		{"no bandwidth", "#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\nv.m3u8\n", "line 2: #EXT-X-STREAM-INF: no BANDWIDTH"},
		{"bad bandwidth", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=fast\nv.m3u8\n", "BANDWIDTH=fast is not a positive integer"},
		{"bad attrs", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1\nv.m3u8\n", "line 2: #EXT-X-STREAM-INF: attribute CODECS: unterminated"},
		{"iframe without uri", "#EXTM3U\n" + v + "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1\n", "line 4: #EXT-X-I-FRAME-STREAM-INF has no URI"},
		{"media without group", "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,NAME=\"x\",URI=\"a.m3u8\"\n" + v, "line 2: #EXT-X-MEDIA has no GROUP-ID"},
		{"data uri", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ndata:application/x-mpegurl,x\n", `line 3: URI "data:application/x-mpegurl,x": scheme "data"`},
		{"unquoted uri", "#EXTM3U\n" + v + "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=i.m3u8\n", "line 4: #EXT-X-I-FRAME-STREAM-INF: URI=i.m3u8 is not a quoted-string"},
		{"stray quote", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,X=a\"b\nv.m3u8\n", `line 2: #EXT-X-STREAM-INF: attribute X: stray '"'`},
		{"undefined group", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"aac\"\nv.m3u8\n", `line 2: AUDIO="aac" names no #EXT-X-MEDIA group of TYPE=AUDIO`},
		{"group taken", "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"x\",URI=\"a.m3u8\"\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a-cdn-b\",NAME=\"y\"\n" + v,
			`AUDIO group "a": the copy for pathway cdn-b would be named "a-cdn-b", which is taken`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := HLS([]byte(tt.in), local)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestManifestHLSLayout covers what the golden files do not: CRLF line
// endings survive, a variant's label comments go with each copy, shared
// groups (no URI) keep their name, and an audio-only ladder sets ladder_min.
func TestManifestHLSLayout(t *testing.T) {
	in := "#EXTM3U\r\n" +
		"#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"muxed\",NAME=\"en\",DEFAULT=YES\r\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS=\"mp4a.40.2\",AUDIO=\"muxed\"\r\n" +
		"\r\n" +
		"a/96.m3u8\r\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"mp4a.40.5\",AUDIO=\"muxed\"\r\n" +
		"/a/64.m3u8\r\n"
	got, err := HLS([]byte(in), local)
	if err != nil {
		t.Fatal(err)
	}
	want := "#EXTM3U\r\n" +
		"#EXT-X-CONTENT-STEERING:SERVER-URI=\"http://127.0.0.1:8080/steer/vod?ladder_min=64000\",PATHWAY-ID=\"cdn-a\"\r\n" +
		"#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"muxed\",NAME=\"en\",DEFAULT=YES\r\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS=\"mp4a.40.2\",AUDIO=\"muxed\",PATHWAY-ID=\"cdn-a\"\r\n" +
		"\r\n" +
		"http://127.0.0.1:9001/media/a/96.m3u8\r\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"mp4a.40.5\",AUDIO=\"muxed\",PATHWAY-ID=\"cdn-a\"\r\n" +
		"http://127.0.0.1:9001/a/64.m3u8\r\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS=\"mp4a.40.2\",AUDIO=\"muxed\",PATHWAY-ID=\"cdn-b\"\r\n" +
		"\r\n" +
		"http://127.0.0.1:9002/media/a/96.m3u8\r\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"mp4a.40.5\",AUDIO=\"muxed\",PATHWAY-ID=\"cdn-b\"\r\n" +
		"http://127.0.0.1:9002/a/64.m3u8\r\n"
	if string(got) != want {
		t.Errorf("got:\n%q\nwant:\n%q", got, want)
	}
	if err := checkHLS(got, local); err != nil {
		t.Error(err)
	}
}

func FuzzHLS(f *testing.F) {
	for _, name := range []string{"testdata/hls-audio-iframes.m3u8", "testdata/hls-absolute.m3u8"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8"))
	f.Add([]byte("#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",URI=\"//h/a.m3u8\"\r\n#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\r\n# c\r\nv.m3u8\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := HLS(in, local)
		if err != nil {
			return
		}
		if err := checkHLS(out, local); err != nil {
			t.Fatalf("output does not check: %v\ninput:\n%q\noutput:\n%q", err, in, out)
		}
	})
}

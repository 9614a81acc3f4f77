package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManifest runs `cdnpilot manifest` on files, with the format given and
// detected, and checks the flag errors name the flag and the value.
func TestManifest(t *testing.T) {
	dir := t.TempDir()
	hls := filepath.Join(dir, "master.m3u8")
	if err := os.WriteFile(hls, []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nv0/index.m3u8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mpd := filepath.Join(dir, "manifest.mpd")
	if err := os.WriteFile(mpd, []byte(`<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011">
  <Period><AdaptationSet contentType="video"><Representation id="v0" bandwidth="800000"/></AdaptationSet></Period>
</MPD>
`), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"-steering", "http://127.0.0.1:8080", "-service", "vod",
		"-pathway", "cdn-a=http://127.0.0.1:9001/media/", "-pathway", "cdn-b=http://127.0.0.1:9002/media/"}
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "hls", args: []string{"-in", hls}, wantOut: `#EXT-X-CONTENT-STEERING:SERVER-URI="http://127.0.0.1:8080/steer/vod?ladder_min=800000",PATHWAY-ID="cdn-a"` + "\n" +
			`#EXT-X-STREAM-INF:BANDWIDTH=800000,PATHWAY-ID="cdn-a"` + "\nhttp://127.0.0.1:9001/media/v0/index.m3u8\n"},
		{name: "dash detected", args: []string{"-in", mpd}, wantOut: `<BaseURL serviceLocation="cdn-b">http://127.0.0.1:9002/media/</BaseURL>`},
		{name: "dash given", args: []string{"-in", mpd, "-format", "dash"}, wantOut: `<ContentSteering defaultServiceLocation="cdn-a" queryBeforeStart="true">`},
		{name: "wrong format", args: []string{"-in", mpd, "-format", "hls"}, wantErr: "manifest: hls " + mpd + ": line 1: not an HLS playlist"},
		{name: "bad format", args: []string{"-in", hls, "-format", "smooth"}, wantErr: `-format "smooth" is neither hls nor dash`},
		{name: "missing in", args: []string{"-in", filepath.Join(dir, "nope.m3u8")}, wantErr: "-in " + filepath.Join(dir, "nope.m3u8")},
		{name: "bad pathway flag", args: []string{"-in", hls, "-pathway", "cdn-c"}, wantErr: `invalid value "cdn-c" for flag -pathway: "cdn-c" is not ID=BASE-URL`},
		{name: "bad pathway id", args: []string{"-in", hls, "-pathway", "cdn c=http://c/"}, wantErr: `pathway id "cdn c"`},
		{name: "bad base", args: []string{"-in", hls, "-pathway", "cdn-c=c.example/"}, wantErr: `pathway cdn-c base URL: "c.example/" is not an absolute http(s) URL`},
		{name: "bad steering", args: []string{"-in", hls, "-steering", "localhost:8080"}, wantErr: `steering base: "localhost:8080"`},
		{name: "extra argument", args: []string{"-in", hls, "extra"}, wantErr: `manifest: unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Later flags win, so a test's -steering replaces the common
			// one; -pathway appends.
			args := append([]string{"manifest"}, common...)
			args = append(args, tt.args...)
			var out, errOut bytes.Buffer
			err := run(t.Context(), args, &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}

// TestManifestRequiredFlags: each of -steering, -service and -pathway is
// named when missing, and -out writes the file.
func TestManifestRequiredFlags(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "master.m3u8")
	if err := os.WriteFile(in, []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-service", "vod", "-pathway", "a=http://a/"}, "-steering is required"},
		{[]string{"-steering", "http://s", "-pathway", "a=http://a/"}, "-service is required"},
		{[]string{"-steering", "http://s", "-service", "vod"}, "-pathway ID=BASE-URL is required"},
	} {
		err := run(t.Context(), append([]string{"manifest", "-in", in}, tt.args...), &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
	out := filepath.Join(dir, "steered.m3u8")
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"manifest", "-in", in, "-out", out, "-steering", "http://s", "-service", "vod", "-pathway", "a=http://a/"}, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `PATHWAY-ID="a"`) || stdout.Len() != 0 {
		t.Errorf("-out file:\n%s\nstdout: %q", b, stdout.String())
	}
}

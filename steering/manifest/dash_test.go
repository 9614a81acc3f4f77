package manifest

import (
	"os"
	"strings"
	"testing"
)

func TestManifestDASHErrors(t *testing.T) {
	const period = `<Period><AdaptationSet mimeType="video/mp4"><Representation id="v" bandwidth="1000"/></AdaptationSet></Period>`
	mpd := func(inner string) string {
		return `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011">` + inner + `</MPD>`
	}
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "no <MPD> element"},
		{"not xml", "#EXTM3U\n", "no <MPD> element"},
		{"broken xml", `<MPD><Period></MPD>`, "not well-formed XML"},
		{"other root", `<html><body/></html>`, "root element is <html>, not <MPD>"},
		{"two roots", mpd(period) + `<MPD/>`, "second root element <MPD>"},
		{"steering already", mpd(`<ContentSteering>http://s/</ContentSteering>` + period), "already has a ContentSteering element"},
		{"service location", mpd(`<BaseURL serviceLocation="a">http://a/</BaseURL>` + period), `<BaseURL serviceLocation="a">: the MPD already names service locations`},
		{"no representation", mpd(`<BaseURL>http://a/</BaseURL><Period/>`), "no Representation with @bandwidth"},
		{"no period", mpd(`<AdaptationSet><Representation bandwidth="1"/></AdaptationSet>`), "the MPD has no Period"},
		{"bad bandwidth", mpd(`<Period><AdaptationSet><Representation bandwidth="lots"/></AdaptationSet></Period>`), `representation bandwidth="lots" is not a positive integer`},
		{"absolute template", mpd(`<Period><AdaptationSet><SegmentTemplate media="https://origin/$Number$.m4s"/><Representation bandwidth="1"/></AdaptationSet></Period>`),
			`<SegmentTemplate media="https://origin/$Number$.m4s"> is an absolute URL`},
		{"absolute deep base", mpd(`<Period><BaseURL> https://origin/p0/ </BaseURL><AdaptationSet><Representation bandwidth="1"/></AdaptationSet></Period>`),
			"<BaseURL>https://origin/p0/</BaseURL> below the MPD level is an absolute URL"},
		{"different paths", mpd(`<BaseURL>http://a/x/</BaseURL><BaseURL>http://b/y/</BaseURL>` + period), `MPD-level BaseURLs "http://a/x/" and "http://b/y/" have different paths`},
		{"bad base scheme", mpd(`<BaseURL>ftp://a/x/</BaseURL>` + period), `MPD-level BaseURL: URI "ftp://a/x/": scheme "ftp"`},
		{"latin1", `<?xml version="1.0" encoding="ISO-8859-1"?>` + mpd(period), "not well-formed XML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DASH([]byte(tt.in), local)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestManifestDASHLayout covers what the golden files do not: a prefixed
// MPD namespace, minified XML, several MPD-level BaseURLs of one tree
// collapsing into the pathway BaseURLs with their other attributes kept,
// escaping, and ladder_min from all Representations when none is marked.
func TestManifestDASHLayout(t *testing.T) {
	in := `<m:MPD xmlns:m="urn:mpeg:dash:schema:mpd:2011" xmlns:dvb="urn:dvb:dash:dash-extensions:2014-1">` +
		`<m:BaseURL dvb:priority="1" availabilityTimeOffset="2">http://o1/live/</m:BaseURL>` +
		`<m:BaseURL dvb:priority="2">http://o2/live/</m:BaseURL>` +
		`<m:Location>http://o1/live/a.mpd</m:Location>` +
		`<m:Period><m:AdaptationSet><m:Representation bandwidth="300000"/><m:Representation bandwidth="200000"/></m:AdaptationSet></m:Period>` +
		`</m:MPD>`
	o := local
	o.SteeringBase = "http://127.0.0.1:8080/x&y"
	got, err := DASH([]byte(in), o)
	if err != nil {
		t.Fatal(err)
	}
	want := `<m:MPD xmlns:m="urn:mpeg:dash:schema:mpd:2011" xmlns:dvb="urn:dvb:dash:dash-extensions:2014-1">` +
		`<m:BaseURL dvb:priority="1" availabilityTimeOffset="2" serviceLocation="cdn-a">http://127.0.0.1:9001/live/</m:BaseURL>` +
		`<m:BaseURL dvb:priority="1" availabilityTimeOffset="2" serviceLocation="cdn-b">http://127.0.0.1:9002/live/</m:BaseURL>` +
		`<m:Location>http://o1/live/a.mpd</m:Location>` +
		`<m:ContentSteering defaultServiceLocation="cdn-a" queryBeforeStart="true">http://127.0.0.1:8080/x&amp;y/steer/vod?ladder_min=200000</m:ContentSteering>` +
		`<m:Period><m:AdaptationSet><m:Representation bandwidth="300000"/><m:Representation bandwidth="200000"/></m:AdaptationSet></m:Period>` +
		`</m:MPD>`
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if err := checkDASH(got, local); err != nil {
		t.Error(err)
	}
}

func FuzzDASH(f *testing.F) {
	for _, name := range []string{"testdata/mpd-no-baseurl.mpd", "testdata/mpd-baseurl.mpd", "testdata/mpd-segmenttemplate.mpd"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`<MPD><BaseURL>a/</BaseURL><BaseURL/><Period><Representation bandwidth="1"/></Period></MPD>`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := DASH(in, local)
		if err != nil {
			return
		}
		if err := checkDASH(out, local); err != nil {
			t.Fatalf("output does not check: %v\ninput:\n%q\noutput:\n%q", err, in, out)
		}
	})
}

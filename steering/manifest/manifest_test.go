package manifest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// local is the loopback world of the tests and the demo: the steering
// server on :8080 and two CDNs in front of the origin.
var local = Options{
	SteeringBase: "http://127.0.0.1:8080",
	Service:      "vod",
	Pathways: []Pathway{
		{ID: "cdn-a", BaseURL: "http://127.0.0.1:9001/media/"},
		{ID: "cdn-b", BaseURL: "http://127.0.0.1:9002/media/"},
	},
}

// rootBases are CDNs that mirror the origin's tree from the root.
var rootBases = Options{
	SteeringBase: "http://127.0.0.1:8080/",
	Service:      "vod",
	Pathways: []Pathway{
		{ID: "cdn-a", BaseURL: "http://127.0.0.1:9001/"},
		{ID: "cdn-b", BaseURL: "https://b.example.net"},
		{ID: "cdn.c_3", BaseURL: "https://c.example.org:8443/"},
	},
}

func TestManifestGolden(t *testing.T) {
	tests := []struct {
		in string
		o  Options
	}{
		{"hls-audio-iframes.m3u8", local},
		{"hls-absolute.m3u8", local},
		{"mpd-no-baseurl.mpd", local},
		{"mpd-baseurl.mpd", rootBases},
		{"mpd-segmenttemplate.mpd", local},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tt.in))
			if err != nil {
				t.Fatal(err)
			}
			rewrite, check := HLS, checkHLS
			if strings.HasSuffix(tt.in, ".mpd") {
				rewrite, check = DASH, checkDASH
			}
			got, err := rewrite(in, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if err := check(got, tt.o); err != nil {
				t.Errorf("output does not check: %v\n%s", err, got)
			}
			ext := filepath.Ext(tt.in)
			golden := filepath.Join("testdata", strings.TrimSuffix(tt.in, ext)+".golden"+ext)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs; run with -update if the change is intended\ngot:\n%s", golden, got)
			}
		})
	}
}

func TestManifestOptionErrors(t *testing.T) {
	with := func(f func(*Options)) Options {
		o := local
		o.Pathways = append([]Pathway(nil), local.Pathways...)
		f(&o)
		return o
	}
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no pathways", with(func(o *Options) { o.Pathways = nil }), "no pathways"},
		{"bad id", with(func(o *Options) { o.Pathways[0].ID = "cdn a" }), `pathway id "cdn a"`},
		{"empty id", with(func(o *Options) { o.Pathways[0].ID = "" }), `pathway id ""`},
		{"quote in id", with(func(o *Options) { o.Pathways[1].ID = `b"` }), `pathway id "b\""`},
		{"repeated id", with(func(o *Options) { o.Pathways[1].ID = "cdn-a" }), `pathway id "cdn-a" is repeated`},
		{"relative base", with(func(o *Options) { o.Pathways[1].BaseURL = "/media/" }), `pathway cdn-b base URL: "/media/" is not an absolute http(s) URL`},
		{"ftp base", with(func(o *Options) { o.Pathways[1].BaseURL = "ftp://b/media/" }), `"ftp://b/media/" is not an absolute http(s) URL`},
		{"base no slash", with(func(o *Options) { o.Pathways[0].BaseURL = "http://a/media" }), `"http://a/media": the path must end in /`},
		{"base query", with(func(o *Options) { o.Pathways[0].BaseURL = "http://a/?x=1" }), "must not have a query"},
		{"base no host", with(func(o *Options) { o.Pathways[0].BaseURL = "http:///x/" }), "has no host"},
		{"steering", with(func(o *Options) { o.SteeringBase = "127.0.0.1:8080" }), "steering base"},
		{"service", with(func(o *Options) { o.Service = "v/od" }), `service "v/od"`},
		{"no service", with(func(o *Options) { o.Service = "" }), `service ""`},
		{"quote in steering", with(func(o *Options) { o.SteeringBase = `http://h/a"b` }), `cannot hold '"'`},
	}
	in, err := os.ReadFile("testdata/hls-audio-iframes.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := HLS(in, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// checkHLS parses a rewritten playlist the way a player would and checks
// the steering invariants: one EXT-X-CONTENT-STEERING before the variants,
// every variant on a known pathway with a URI, every pathway with the same
// number of variants, and every group a variant names defined.
func checkHLS(b []byte, o Options) error {
	ids := map[string]bool{}
	for _, p := range o.Pathways {
		ids[p.ID] = true
	}
	lines := splitLines(b)
	if len(lines) == 0 || strings.TrimRight(lines[0].text, " \t") != "#EXTM3U" {
		return errors.New("no #EXTM3U")
	}
	steering := 0
	perPathway := map[string]int{}
	iframes := map[string]int{}
	groups := map[string]bool{}
	type ref struct {
		line       int
		typ, group string
	}
	var refs []ref
	for i := 0; i < len(lines); i++ {
		name, rest, _ := strings.Cut(lines[i].text, ":")
		switch name {
		case tagSteering:
			steering++
			if len(perPathway) > 0 {
				return fmt.Errorf("line %d: %s after a variant", i+1, name)
			}
			a, err := parseAttrs(rest)
			if err != nil {
				return fmt.Errorf("line %d: %w", i+1, err)
			}
			if v, _ := get(a, "PATHWAY-ID"); unquote(v) != o.Pathways[0].ID {
				return fmt.Errorf("line %d: initial pathway %s, want %s", i+1, v, o.Pathways[0].ID)
			}
			if v, ok := get(a, "SERVER-URI"); !ok || !strings.Contains(v, "/steer/"+o.Service+"?ladder_min=") {
				return fmt.Errorf("line %d: SERVER-URI %s", i+1, v)
			}
		case tagMedia:
			a, err := parseAttrs(rest)
			if err != nil {
				return fmt.Errorf("line %d: %w", i+1, err)
			}
			typ, _ := get(a, "TYPE")
			g, _ := get(a, "GROUP-ID")
			groups[typ+"/"+unquote(g)] = true
		case tagStreamInf, tagIFrameInf:
			a, err := parseAttrs(rest)
			if err != nil {
				return fmt.Errorf("line %d: %w", i+1, err)
			}
			p, ok := get(a, "PATHWAY-ID")
			if !ok || !ids[unquote(p)] {
				return fmt.Errorf("line %d: PATHWAY-ID %q is not one of the pathways", i+1, p)
			}
			for _, typ := range []string{"AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS"} {
				if g, ok := get(a, typ); ok && g != "NONE" {
					refs = append(refs, ref{i + 1, typ, unquote(g)})
				}
			}
			if name == tagIFrameInf {
				iframes[unquote(p)]++
				continue
			}
			perPathway[unquote(p)]++
			j := i + 1
			for j < len(lines) && (strings.TrimSpace(lines[j].text) == "" || strings.HasPrefix(lines[j].text, "#") && !strings.HasPrefix(lines[j].text, "#EXT")) {
				j++
			}
			if j == len(lines) || strings.HasPrefix(lines[j].text, "#") {
				return fmt.Errorf("line %d: variant without a URI", i+1)
			}
			i = j
		}
	}
	if steering != 1 {
		return fmt.Errorf("%d EXT-X-CONTENT-STEERING tags, want 1", steering)
	}
	for _, p := range o.Pathways {
		if perPathway[p.ID] == 0 || perPathway[p.ID] != perPathway[o.Pathways[0].ID] || iframes[p.ID] != iframes[o.Pathways[0].ID] {
			return fmt.Errorf("variants per pathway %v, I-frame variants %v: want the same non-zero count for each", perPathway, iframes)
		}
	}
	for _, r := range refs {
		if !groups[r.typ+"/"+r.group] {
			return fmt.Errorf("line %d: %s group %q is not defined", r.line, r.typ, r.group)
		}
	}
	return nil
}

// checkDASH decodes a rewritten MPD fully and checks that ContentSteering
// and the pathway BaseURLs are MPD children in schema order: BaseURLs (one
// per pathway, in order) before ContentSteering, ContentSteering before the
// first Period.
func checkDASH(b []byte, o Options) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	var children []string
	var locations []string
	steering := 0
	depth := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not well-formed: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 && t.Name.Local != "MPD" {
				return fmt.Errorf("root %s", t.Name.Local)
			}
			if t.Name.Local == "ContentSteering" {
				steering++
				if depth != 2 {
					return errors.New("ContentSteering is not a child of MPD")
				}
				var cs struct {
					Default string `xml:"defaultServiceLocation,attr"`
					Query   string `xml:"queryBeforeStart,attr"`
					URI     string `xml:",chardata"`
				}
				if err := d.DecodeElement(&cs, &t); err != nil {
					return err
				}
				depth--
				if cs.Default != o.Pathways[0].ID || cs.Query != "true" || !strings.Contains(cs.URI, "/steer/"+o.Service+"?ladder_min=") {
					return fmt.Errorf("ContentSteering %+v", cs)
				}
			}
			for _, a := range t.Attr {
				if a.Name.Local == "serviceLocation" {
					if t.Name.Local != "BaseURL" || depth != 2 {
						return fmt.Errorf("serviceLocation on %s at depth %d", t.Name.Local, depth)
					}
					locations = append(locations, a.Value)
				}
			}
			if depth == 2 {
				children = append(children, t.Name.Local)
			}
		case xml.EndElement:
			depth--
		}
	}
	if steering != 1 {
		return fmt.Errorf("%d ContentSteering elements, want 1", steering)
	}
	var want []string
	for _, p := range o.Pathways {
		want = append(want, p.ID)
	}
	if strings.Join(locations, " ") != strings.Join(want, " ") {
		return fmt.Errorf("service locations %v, want %v", locations, want)
	}
	order := map[string]int{"ProgramInformation": 1, "BaseURL": 2, "Location": 3, "PatchLocation": 4,
		"ServiceDescription": 5, "InitializationSet": 6, "InitializationGroup": 7,
		"InitializationPresentation": 8, "ContentProtection": 9, "ContentSteering": 10, "Period": 11,
		"Metrics": 12, "EssentialProperty": 13, "SupplementalProperty": 14, "UTCTiming": 15, "LeapSecondInformation": 16}
	last := 0
	for _, c := range children {
		if order[c] == 0 {
			continue // not in the schema's list: anywhere
		}
		if order[c] < last {
			return fmt.Errorf("MPD children out of schema order: %v", children)
		}
		last = order[c]
	}
	return nil
}

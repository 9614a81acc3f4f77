package manifest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// MPD children in schema order (ISO/IEC 23009-1 5th edition). BaseURL goes
// after ProgramInformation, so before the first of afterBaseURL;
// ContentSteering goes right before the first of afterSteering.
var (
	afterBaseURL = []string{"Location", "PatchLocation", "ServiceDescription", "InitializationSet",
		"InitializationGroup", "InitializationPresentation", "ContentProtection", "Period",
		"Metrics", "EssentialProperty", "SupplementalProperty", "UTCTiming", "LeapSecondInformation"}
	afterSteering = []string{"Period", "Metrics", "EssentialProperty", "SupplementalProperty",
		"UTCTiming", "LeapSecondInformation"}
)

// element is an MPD child as found in the text.
type element struct {
	name       string // local name, "" for an element in another namespace
	start, end int64  // the element's bytes, start tag to end tag
	wsStart    int64  // start of the whitespace before it (== start if none)
	attrs      []xml.Attr
	text       string
}

// edit replaces doc[from:to] with text.
type edit struct {
	from, to int64
	text     string
}

// DASH rewrites an MPD for content steering: it adds ContentSteering and one
// MPD-level BaseURL per pathway, replacing the MPD-level BaseURL if there is
// one. Everything else is left byte for byte as it was. See README.md.
func DASH(mpd []byte, o Options) ([]byte, error) {
	ps, err := o.validate()
	if err != nil {
		return nil, err
	}
	// A full, namespace-aware pass first: the splicing below relies on the
	// document being well-formed.
	if err := wellFormed(mpd); err != nil {
		return nil, fmt.Errorf("not well-formed XML: %w", err)
	}
	d := xml.NewDecoder(bytes.NewReader(mpd))
	var (
		depth        int
		prefix       string // the MPD element's namespace prefix
		mpdStartEnd  int64  // just after <MPD ...>
		children     []element
		cur          = -1             // index in children of the MPD child being read
		deepBase     *strings.Builder // the text of a BaseURL below the MPD level
		lastWS       int64            = -1
		lastWSEnd    int64            = -1
		video, other int64            = -1, -1
		// contentType/mimeType of the enclosing AdaptationSet.
		setVideo bool
	)
	for {
		start := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not well-formed XML: %w", err)
		}
		end := d.InputOffset()
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 {
				if mpdStartEnd != 0 {
					return nil, fmt.Errorf("second root element <%s> after the MPD", t.Name.Local)
				}
				if t.Name.Local != "MPD" {
					return nil, fmt.Errorf("root element is <%s>, not <MPD>: not a DASH MPD", t.Name.Local)
				}
				prefix, mpdStartEnd = t.Name.Space, end
				break
			}
			if err := checkElement(t, depth); err != nil {
				return nil, err
			}
			if depth == 2 {
				e := element{start: start, wsStart: start, attrs: t.Attr}
				if t.Name.Space == prefix {
					e.name = t.Name.Local
				}
				if lastWSEnd == start {
					e.wsStart = lastWS
				}
				children = append(children, e)
				cur = len(children) - 1
			}
			switch t.Name.Local {
			case "BaseURL":
				if depth > 2 {
					deepBase = new(strings.Builder)
				}
			case "AdaptationSet":
				setVideo = isVideo(t.Attr)
			case "Representation":
				bw, ok, err := repBandwidth(t.Attr)
				if err != nil {
					return nil, err
				}
				if ok {
					if setVideo || isVideo(t.Attr) {
						video = minBW(video, bw)
					} else {
						other = minBW(other, bw)
					}
				}
			}
		case xml.EndElement:
			if depth == 2 && cur >= 0 {
				children[cur].end = end
				cur = -1
			}
			if deepBase != nil && t.Name.Local == "BaseURL" {
				if u := strings.TrimSpace(deepBase.String()); isAbsolute(u) {
					return nil, fmt.Errorf("<BaseURL>%s</BaseURL> below the MPD level is an absolute URL, which steering cannot move between CDNs; make it relative", u)
				}
				deepBase = nil
			}
			if t.Name.Local == "AdaptationSet" {
				setVideo = false
			}
			depth--
		case xml.CharData:
			if depth == 2 && cur >= 0 {
				children[cur].text += string(t)
			}
			if deepBase != nil {
				deepBase.Write(t)
			}
			if depth == 1 && len(bytes.TrimSpace(t)) == 0 {
				lastWS, lastWSEnd = start, end
			}
		}
	}
	if mpdStartEnd == 0 {
		return nil, errors.New("no <MPD> element: not a DASH MPD")
	}
	ladderMin := video
	if ladderMin < 0 {
		// No Representation is marked as video: use them all.
		ladderMin = other
	}
	if ladderMin < 0 {
		return nil, errors.New("no Representation with @bandwidth: cannot work out the lowest rung of the ladder")
	}
	firstAfter := func(names []string) *element {
		for i := range children {
			if slices.Contains(names, children[i].name) {
				return &children[i]
			}
		}
		return nil
	}
	period := firstAfter(afterSteering)
	if period == nil || firstAfter([]string{"Period"}) == nil {
		return nil, errors.New("the MPD has no Period")
	}
	// The indent of MPD children, to lay out the new ones like the rest.
	indent := ""
	for _, c := range children {
		if c.wsStart < c.start {
			indent = string(mpd[c.wsStart:c.start])
			break
		}
	}
	var bases []element
	for _, c := range children {
		if c.name == "BaseURL" {
			bases = append(bases, c)
		}
	}
	// One path for all pathways: the MPD-level BaseURLs of a multi-CDN
	// MPD differ by host only, or the CDNs do not serve the same tree.
	ref := ""
	var keepAttrs []xml.Attr
	for i, b := range bases {
		r := strings.TrimSpace(b.text)
		if i == 0 {
			ref, keepAttrs = r, b.attrs
			continue
		}
		p0, err0 := onPathway(ref, ps[0])
		pi, erri := onPathway(r, ps[0])
		if err0 == nil && erri == nil && p0 != pi {
			return nil, fmt.Errorf("MPD-level BaseURLs %q and %q have different paths: keep the one the CDNs serve", ref, r)
		}
	}
	var nb strings.Builder
	for i, p := range ps {
		u := p.base.String()
		if ref != "" {
			if u, err = onPathway(ref, p); err != nil {
				return nil, fmt.Errorf("MPD-level BaseURL: %w", err)
			}
		}
		if i > 0 {
			nb.WriteString(indent)
		}
		fmt.Fprintf(&nb, "<%s", qname(prefix, "BaseURL"))
		for _, a := range keepAttrs {
			fmt.Fprintf(&nb, ` %s="%s"`, qname(a.Name.Space, a.Name.Local), escape(a.Value))
		}
		fmt.Fprintf(&nb, ` serviceLocation="%s">%s</%s>`, escape(p.id), escape(u), qname(prefix, "BaseURL"))
	}
	var edits []edit
	if len(bases) > 0 {
		edits = append(edits, edit{bases[0].start, bases[0].end, nb.String()})
		for _, b := range bases[1:] {
			edits = append(edits, edit{b.wsStart, b.end, ""})
		}
	} else {
		at := firstAfter(afterBaseURL)
		edits = append(edits, edit{at.start, at.start, nb.String() + string(mpd[at.wsStart:at.start])})
	}
	cs := fmt.Sprintf(`<%s defaultServiceLocation="%s" queryBeforeStart="true">%s</%s>`,
		qname(prefix, "ContentSteering"), escape(ps[0].id), escape(o.steeringURI(ladderMin)), qname(prefix, "ContentSteering"))
	edits = append(edits, edit{period.start, period.start, cs + string(mpd[period.wsStart:period.start])})

	sort.SliceStable(edits, func(i, j int) bool { return edits[i].from < edits[j].from })
	var out bytes.Buffer
	var at int64
	for _, e := range edits {
		out.Write(mpd[at:e.from])
		out.WriteString(e.text)
		at = e.to
	}
	out.Write(mpd[at:])
	return out.Bytes(), nil
}

// checkElement refuses what steering cannot work with: an MPD that already
// steers, and absolute URLs below the MPD level, which players would fetch
// from that host whatever the steering server says.
func checkElement(t xml.StartElement, depth int) error {
	if t.Name.Local == "ContentSteering" {
		return errors.New("the MPD already has a ContentSteering element")
	}
	for _, a := range t.Attr {
		switch a.Name.Local {
		case "serviceLocation":
			return fmt.Errorf("<%s serviceLocation=%q>: the MPD already names service locations", t.Name.Local, a.Value)
		case "media", "initialization", "index", "sourceURL":
			if isAbsolute(a.Value) {
				return fmt.Errorf("<%s %s=%q> is an absolute URL, which steering cannot move between CDNs; make it relative", t.Name.Local, a.Name.Local, a.Value)
			}
		}
	}
	return nil
}

// isAbsolute reports whether a URL or URL template names a host.
func isAbsolute(s string) bool {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "//") {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme != ""
}

func isVideo(attrs []xml.Attr) bool {
	for _, a := range attrs {
		switch a.Name.Local {
		case "contentType":
			if a.Value == "video" {
				return true
			}
		case "mimeType":
			if strings.HasPrefix(a.Value, "video/") {
				return true
			}
		}
	}
	return false
}

func repBandwidth(attrs []xml.Attr) (int64, bool, error) {
	for _, a := range attrs {
		if a.Name.Local == "bandwidth" && a.Name.Space == "" {
			bw, err := strconv.ParseInt(strings.TrimSpace(a.Value), 10, 64)
			if err != nil || bw <= 0 {
				return 0, false, fmt.Errorf("representation bandwidth=%q is not a positive integer", a.Value)
			}
			return bw, true, nil
		}
	}
	return 0, false, nil
}

// wellFormed decodes the whole document, namespaces included.
func wellFormed(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func qname(prefix, local string) string {
	if prefix == "" {
		return local
	}
	return prefix + ":" + local
}

func escape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Tags this rewrite reads. Every other line is copied unchanged.
const (
	tagHeader    = "#EXTM3U"
	tagVersion   = "#EXT-X-VERSION"
	tagSteering  = "#EXT-X-CONTENT-STEERING"
	tagStreamInf = "#EXT-X-STREAM-INF"
	tagIFrameInf = "#EXT-X-I-FRAME-STREAM-INF"
	tagMedia     = "#EXT-X-MEDIA"
)

// line is one playlist line: its text without the line ending, and the
// ending as it was ("\n", "\r\n" or "" for a last line without one).
type line struct {
	text, end string
}

// entry kinds: the lines copied once per pathway.
const (
	kindNone = iota
	kindMedia
	kindStream
	kindIFrame
)

// entry is a rendition, variant or I-frame variant: its tag line, for a
// variant the lines up to and including the URI line, and the blank or
// comment lines before the next entry of its run.
type entry struct {
	kind  int
	tag   int // index of the tag line
	uri   int // index of the URI line of a variant, else -1
	last  int // index of the last line of the entry
	attrs []attr
}

// HLS rewrites a multivariant playlist for content steering: it adds
// EXT-X-CONTENT-STEERING and, for every pathway, a copy of each variant,
// I-frame variant and rendition group with URIs on that pathway. See
// README.md for the exact rules.
func HLS(playlist []byte, o Options) ([]byte, error) {
	ps, err := o.validate()
	if err != nil {
		return nil, err
	}
	lines := splitLines(playlist)
	if len(lines) == 0 || strings.TrimRight(lines[0].text, " \t") != tagHeader {
		return nil, errors.New("line 1: not an HLS playlist (it must start with #EXTM3U)")
	}
	nl := "\n"
	if lines[0].end == "\r\n" {
		nl = "\r\n"
	}

	// First pass: find the entries and check this is a plain multivariant
	// playlist.
	var entries []entry
	var ladderMin, audioMin int64 = -1, -1
	// groups with a rendition that has a URI are copied per pathway; groups
	// without (muxed audio, closed captions) stay shared.
	perPathway := map[string]bool{} // TYPE + "/" + GROUP-ID
	allGroups := map[string]bool{}
	versionAt := 0
	for i := 0; i < len(lines); i++ {
		t := lines[i].text
		n := i + 1
		if !strings.HasPrefix(t, "#EXT") {
			if strings.TrimSpace(t) != "" && !strings.HasPrefix(t, "#") {
				return nil, fmt.Errorf("line %d: URI %q without a preceding #EXT-X-STREAM-INF", n, t)
			}
			continue
		}
		name, rest, _ := strings.Cut(t, ":")
		switch name {
		case "#EXTINF", "#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE", "#EXT-X-PLAYLIST-TYPE", "#EXT-X-ENDLIST":
			return nil, fmt.Errorf("line %d: %s: this is a media playlist; give the multivariant playlist that lists the variants", n, name)
		case tagSteering:
			return nil, fmt.Errorf("line %d: the playlist already has %s", n, tagSteering)
		case tagVersion:
			if len(entries) == 0 {
				versionAt = i
			}
		case tagMedia, tagStreamInf, tagIFrameInf:
			attrs, err := parseAttrs(rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", n, name, err)
			}
			// The values this rewrite changes are quoted-strings in RFC 8216.
			for _, q := range []string{"URI", "GROUP-ID", "AUDIO", "VIDEO", "SUBTITLES"} {
				if v, ok := get(attrs, q); ok && !strings.HasPrefix(v, `"`) {
					return nil, fmt.Errorf("line %d: %s: %s=%s is not a quoted-string", n, name, q, v)
				}
			}
			if _, ok := get(attrs, "PATHWAY-ID"); ok {
				return nil, fmt.Errorf("line %d: %s already has a PATHWAY-ID", n, name)
			}
			e := entry{tag: i, uri: -1, last: i, attrs: attrs}
			switch name {
			case tagMedia:
				e.kind = kindMedia
				typ, _ := get(attrs, "TYPE")
				g, ok := get(attrs, "GROUP-ID")
				if !ok {
					return nil, fmt.Errorf("line %d: %s has no GROUP-ID", n, name)
				}
				key := typ + "/" + unquote(g)
				allGroups[key] = true
				if _, ok := get(attrs, "URI"); ok {
					perPathway[key] = true
				}
			case tagIFrameInf:
				e.kind = kindIFrame
				if _, ok := get(attrs, "URI"); !ok {
					return nil, fmt.Errorf("line %d: %s has no URI", n, name)
				}
			case tagStreamInf:
				e.kind = kindStream
				bw, err := bandwidth(attrs)
				if err != nil {
					return nil, fmt.Errorf("line %d: %s: %w", n, name, err)
				}
				if isAudioOnly(attrs) {
					audioMin = minBW(audioMin, bw)
				} else {
					ladderMin = minBW(ladderMin, bw)
				}
				// The URI is the next line that is not blank or a comment.
				for j := i + 1; ; j++ {
					if j == len(lines) {
						return nil, fmt.Errorf("line %d: %s has no URI line after it", n, name)
					}
					u := lines[j].text
					if strings.TrimSpace(u) == "" || (strings.HasPrefix(u, "#") && !strings.HasPrefix(u, "#EXT")) {
						continue
					}
					if strings.HasPrefix(u, "#") {
						return nil, fmt.Errorf("line %d: %s has no URI line after it (line %d is a tag)", n, name, j+1)
					}
					e.uri, e.last = j, j
					break
				}
				i = e.last
			}
			entries = append(entries, e)
		}
	}
	if ladderMin < 0 {
		// Audio-only playlists have an audio ladder.
		ladderMin = audioMin
	}
	if ladderMin < 0 {
		return nil, errors.New("no #EXT-X-STREAM-INF variant: not a multivariant playlist")
	}
	serverURI := o.steeringURI(ladderMin)
	if strings.ContainsAny(serverURI, "\"\r\n") {
		return nil, fmt.Errorf("steering URI %q: a quoted-string cannot hold '\"' or a line break", serverURI)
	}
	// Entries of one media group are copied per pathway together with the
	// rest of their group.
	kept := entries[:0]
	for _, e := range entries {
		if e.kind == kindMedia {
			typ, _ := get(e.attrs, "TYPE")
			g, _ := get(e.attrs, "GROUP-ID")
			if !perPathway[typ+"/"+unquote(g)] {
				continue
			}
		}
		kept = append(kept, e)
	}
	entries = kept
	// A variant naming a group no rendition defines is broken already; after
	// renaming, nobody could tell which copy it should have named.
	for _, e := range entries {
		if e.kind == kindMedia {
			continue
		}
		for _, typ := range []string{"AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS"} {
			if g, ok := get(e.attrs, typ); ok && g != "NONE" && !allGroups[typ+"/"+unquote(g)] {
				return nil, fmt.Errorf("line %d: %s=%s names no #EXT-X-MEDIA group of TYPE=%s", e.tag+1, typ, g, typ)
			}
		}
	}
	for key := range perPathway {
		for _, p := range ps {
			if allGroups[key+"-"+p.id] {
				typ, g, _ := strings.Cut(key, "/")
				return nil, fmt.Errorf("%s group %q: the copy for pathway %s would be named %q, which is taken", typ, g, p.id, g+"-"+p.id)
			}
		}
	}

	// Second pass: write. A run is entries of one kind separated only by
	// blank lines and comments; each run is written once per pathway, so a
	// pathway's variants stay together as in Apple's examples. Comments
	// right above a run (a "# 720p" label) go with every copy.
	var runs [][]entry
	for k := 0; k < len(entries); {
		run := []entry{entries[k]}
		for k+len(run) < len(entries) {
			cand := entries[k+len(run)]
			if cand.kind != run[0].kind || !onlyFiller(lines[run[len(run)-1].last+1:cand.tag]) {
				break
			}
			run = append(run, cand)
		}
		runs = append(runs, run)
		k += len(run)
	}
	var out []line
	steer := line{text: fmt.Sprintf(`%s:SERVER-URI="%s",PATHWAY-ID="%s"`, tagSteering, serverURI, ps[0].id), end: nl}
	emit := func(ls ...line) {
		for _, l := range ls {
			if l.end == "" {
				l.end = nl
			}
			out = append(out, l)
		}
	}
	i := 0
	for _, run := range runs {
		lead := run[0].tag
		for lead-1 > versionAt && lead-1 >= i && isComment(lines[lead-1].text) {
			lead--
		}
		for ; i < lead; i++ {
			emit(lines[i])
			if i == versionAt {
				emit(steer)
			}
		}
		for _, p := range ps {
			emit(lines[lead:run[0].tag]...)
			for k, e := range run {
				copied, err := rewriteEntry(lines, e, p, perPathway)
				if err != nil {
					return nil, err
				}
				emit(copied...)
				if k < len(run)-1 {
					emit(lines[e.last+1 : run[k+1].tag]...)
				}
			}
		}
		i = run[len(run)-1].last + 1
	}
	for ; i < len(lines); i++ {
		emit(lines[i])
		if i == versionAt {
			emit(steer)
		}
	}
	var b bytes.Buffer
	for k, l := range out {
		b.WriteString(l.text)
		if k < len(out)-1 || lines[len(lines)-1].end != "" {
			b.WriteString(l.end)
		}
	}
	return b.Bytes(), nil
}

// rewriteEntry returns the lines of e as they are on pathway p.
func rewriteEntry(lines []line, e entry, p pathway, perPathway map[string]bool) ([]line, error) {
	attrs := append([]attr(nil), e.attrs...)
	name, _, _ := strings.Cut(lines[e.tag].text, ":")
	n := e.tag + 1
	// Renditions are grouped per pathway (a variant's AUDIO group must
	// hold renditions of its own pathway), so group ids get the pathway as
	// a suffix, in the renditions and in the variants that use them.
	renameGroup := func(key, typ string) {
		if v, ok := get(attrs, key); ok && perPathway[typ+"/"+unquote(v)] {
			set(attrs, key, `"`+unquote(v)+"-"+p.id+`"`)
		}
	}
	switch e.kind {
	case kindMedia:
		typ, _ := get(attrs, "TYPE")
		renameGroup("GROUP-ID", typ)
	default:
		renameGroup("AUDIO", "AUDIO")
		renameGroup("VIDEO", "VIDEO")
		renameGroup("SUBTITLES", "SUBTITLES")
	}
	if e.kind == kindMedia || e.kind == kindIFrame {
		if v, ok := get(attrs, "URI"); ok {
			u, err := onPathway(unquote(v), p)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", n, name, err)
			}
			set(attrs, "URI", `"`+u+`"`)
		}
	}
	if e.kind != kindMedia {
		attrs = append(attrs, attr{"PATHWAY-ID", `"` + p.id + `"`})
	}
	out := []line{{text: name + ":" + formatAttrs(attrs), end: lines[e.tag].end}}
	if e.uri >= 0 {
		out = append(out, lines[e.tag+1:e.uri]...)
		u, err := onPathway(strings.TrimSpace(lines[e.uri].text), p)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", e.uri+1, err)
		}
		out = append(out, line{text: u, end: lines[e.uri].end})
	}
	return out, nil
}

// isComment reports whether t is a comment line (not a tag).
func isComment(t string) bool {
	return strings.HasPrefix(t, "#") && !strings.HasPrefix(t, "#EXT")
}

// onlyFiller reports whether ls are all blank lines or comments.
func onlyFiller(ls []line) bool {
	for _, l := range ls {
		if strings.TrimSpace(l.text) != "" && (!strings.HasPrefix(l.text, "#") || strings.HasPrefix(l.text, "#EXT")) {
			return false
		}
	}
	return true
}

// splitLines splits b into lines, keeping each line's ending.
func splitLines(b []byte) []line {
	var ls []line
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			ls = append(ls, line{text: string(b)})
			break
		}
		t, end := string(b[:i]), "\n"
		if strings.HasSuffix(t, "\r") {
			t, end = t[:len(t)-1], "\r\n"
		}
		ls = append(ls, line{text: t, end: end})
		b = b[i+1:]
	}
	return ls
}

func bandwidth(attrs []attr) (int64, error) {
	v, ok := get(attrs, "BANDWIDTH")
	if !ok {
		return 0, errors.New("no BANDWIDTH")
	}
	bw, err := strconv.ParseInt(v, 10, 64)
	if err != nil || bw <= 0 {
		return 0, fmt.Errorf("BANDWIDTH=%s is not a positive integer", v)
	}
	return bw, nil
}

func minBW(cur, bw int64) int64 {
	if cur < 0 || bw < cur {
		return bw
	}
	return cur
}

// videoCodecs are the sample entry prefixes of video codecs in CODECS.
var videoCodecs = []string{"avc1", "avc3", "hvc1", "hev1", "dvh1", "dvhe", "dva1", "dvav", "av01", "vp08", "vp09", "vp8", "vp9", "mp4v", "vvc1", "vvi1"}

// isAudioOnly reports whether a variant certainly has no video: the audio
// only variant Apple asks for must not set the ladder's lowest video rung.
func isAudioOnly(attrs []attr) bool {
	if _, ok := get(attrs, "RESOLUTION"); ok {
		return false
	}
	codecs, ok := get(attrs, "CODECS")
	if !ok {
		return false
	}
	for c := range strings.SplitSeq(unquote(codecs), ",") {
		c = strings.TrimSpace(c)
		for _, v := range videoCodecs {
			if strings.HasPrefix(c, v) {
				return false
			}
		}
	}
	return true
}

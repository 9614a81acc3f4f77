package beacons

// A strict, allocation-light decoder for the one shape ingest sees all day:
// flat beacon objects in an array or NDJSON. It accepts only what it is sure
// of and says "not mine" for everything else (escapes in strings, numbers
// out of range, type mismatches, any syntax error), which then goes through
// encoding/json: that path defines the semantics and the error messages.
// FuzzFastMatchesStd holds the two to the same answers.

// fastDecode decodes body (already trimmed of leading whitespace) or
// reports ok=false.
func fastDecode(body []byte, maxItems int) (items []Item, ok bool) {
	p := fastParser{b: body}
	items = make([]Item, 0, 64)
	element := func() bool {
		if len(items) == maxItems {
			return false
		}
		items = append(items, Item{})
		return p.object(&items[len(items)-1].In)
	}
	switch p.b[0] {
	case '[':
		p.i++
		p.ws()
		if p.peek() == ']' {
			p.i++
		} else {
			for {
				p.ws()
				if !element() {
					return nil, false
				}
				p.ws()
				c := p.next()
				if c == ']' {
					break
				}
				if c != ',' {
					return nil, false
				}
			}
		}
		p.ws()
		return items, p.i == len(p.b)
	case '{':
		for {
			p.ws()
			if p.i == len(p.b) {
				return items, true
			}
			if !element() {
				return nil, false
			}
		}
	}
	return nil, false
}

type fastParser struct {
	b []byte
	i int
	// seen shares repeated values of low-cardinality fields (type, service,
	// cdn, player, ...) across the items of one body: one allocation per
	// distinct value instead of one per item.
	seen map[string]string
}

func (p *fastParser) shared(v []byte) string {
	if s, ok := p.seen[string(v)]; ok {
		return s
	}
	if p.seen == nil {
		p.seen = make(map[string]string, 16)
	}
	s := string(v)
	p.seen[s] = s
	return s
}

func (p *fastParser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *fastParser) next() byte {
	c := p.peek()
	p.i++
	return c
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// object decodes one object (or null, which leaves in zero, as
// encoding/json does) into in.
func (p *fastParser) object(in *Input) bool {
	if p.lit("null") {
		return true
	}
	if p.next() != '{' {
		return false
	}
	p.ws()
	if p.peek() == '}' {
		p.i++
		return true
	}
	for {
		p.ws()
		key, ok := p.str()
		if !ok {
			return false
		}
		p.ws()
		if p.next() != ':' {
			return false
		}
		p.ws()
		if !p.field(in, key) {
			return false
		}
		p.ws()
		switch p.next() {
		case ',':
		case '}':
			return true
		default:
			return false
		}
	}
}

// field decodes the value of key into its field, or skips (and checks) the
// value of an unknown key. null leaves any field as it is.
func (p *fastParser) field(in *Input, key []byte) bool {
	if p.lit("null") {
		return true
	}
	var (
		s      *string
		n      *int64
		t      *bool
		shared = true // low-cardinality: worth sharing
	)
	switch string(key) { // no allocation: the compiler matches in place
	case "type":
		s = &in.Type
	case "view_id":
		s, shared = &in.ViewID, false
	case "session_id":
		s, shared = &in.SessionID, false
	case "ts":
		n = &in.TS
	case "seq":
		n = &in.Seq
	case "service":
		s = &in.Service
	case "cdn":
		s = &in.CDN
	case "prev_cdn":
		s = &in.PrevCDN
	case "host":
		s = &in.Host
	case "content_id":
		s, shared = &in.ContentID, false
	case "player":
		s = &in.Player
	case "player_version":
		s = &in.PlayerVersion
	case "device":
		s = &in.Device
	case "os":
		s = &in.OS
	case "startup_ms":
		n = &in.StartupMS
	case "rebuffer_ms":
		n = &in.RebufferMS
	case "rebuffer_count":
		n = &in.RebufferCount
	case "seek_rebuffer_ms":
		n = &in.SeekRebufferMS
	case "seek":
		t = &in.Seek
	case "played_ms":
		n = &in.PlayedMS
	case "bitrate_kbps":
		n = &in.BitrateKbps
	case "throughput_kbps":
		n = &in.ThroughputKbps
	case "ttfb_ms":
		n = &in.TTFBMS
	case "dropped_frames":
		n = &in.DroppedFrames
	case "error_code":
		s = &in.ErrorCode
	case "fatal":
		t = &in.Fatal
	default:
		return p.skip(0)
	}
	switch {
	case s != nil:
		v, ok := p.str()
		if !ok {
			return false
		}
		if shared {
			*s = p.shared(v)
		} else {
			*s = string(v)
		}
		return true
	case n != nil:
		v, ok := p.int()
		*n = v
		return ok
	default:
		switch {
		case p.lit("true"):
			*t = true
		case p.lit("false"):
			*t = false
		default:
			return false
		}
		return true
	}
}

// str reads a string without escapes (those go the slow way) and returns
// its bytes, valid until the body buffer is reused.
func (p *fastParser) str() ([]byte, bool) {
	if p.next() != '"' {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			v := p.b[start:p.i]
			p.i++
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// int reads an integer that surely fits int64: at most 18 digits, no
// fraction or exponent (encoding/json rejects those for an int64 field).
func (p *fastParser) int() (int64, bool) {
	neg := p.peek() == '-'
	if neg {
		p.i++
	}
	start := p.i
	var v int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		v = v*10 + int64(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 18 || digits > 1 && p.b[start] == '0' {
		return 0, false
	}
	if c := p.peek(); c == '.' || c == 'e' || c == 'E' {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

// skip checks and skips any JSON value, to a bounded depth.
func (p *fastParser) skip(depth int) bool {
	if depth > 32 {
		return false
	}
	switch c := p.peek(); {
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '{' || c == '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		p.i++
		p.ws()
		if p.peek() == close {
			p.i++
			return true
		}
		for {
			p.ws()
			if c == '{' {
				if _, ok := p.str(); !ok {
					return false
				}
				p.ws()
				if p.next() != ':' {
					return false
				}
				p.ws()
			}
			if !p.skip(depth + 1) {
				return false
			}
			p.ws()
			switch p.next() {
			case ',':
			case close:
				return true
			default:
				return false
			}
		}
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		return p.lit("null")
	default:
		return p.number()
	}
}

// number checks the full JSON number grammar.
func (p *fastParser) number() bool {
	if p.peek() == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	start := p.i
	n := digits()
	if n == 0 || n > 1 && p.b[start] == '0' {
		return false
	}
	if p.peek() == '.' {
		p.i++
		if digits() == 0 {
			return false
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// Package cmcd decodes CMCD (CTA-5004, v1 and v2) reports from query, header
// and event-body transmissions into typed Reports and maps them onto beacons.
package cmcd

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Error is a rejected CMCD input. Key is the CMCD key (or transport field,
// such as "CMCD" or "CMCD-Request") the problem is attached to; it is empty
// only for whole-input problems such as an oversized or empty dictionary.
type Error struct {
	Key    string
	Reason string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "cmcd: " + e.Reason
	}
	return fmt.Sprintf("cmcd key %q: %s", e.Key, e.Reason)
}

// Length limits for string values, from CTA-5004-B (CML
// CMCD_STRING_LENGTH_LIMITS). Keys without a spec limit get maxString so one
// key cannot use the whole 8 KiB line.
const (
	maxSID       = 64
	maxCID       = 128
	maxCDN       = 128
	maxHost      = 128
	maxCEN       = 64
	maxCustomVal = 64
	maxString    = 1024
	maxToken     = 8  // the longest spec token is 3 bytes ("abs"); room for new ones
	maxCustom    = 32 // custom and unknown keys kept per report
	maxListItems = 16 // ec, nor and ot-list entries kept per key
)

// Measure is one entry of a numeric key that CMCD v2 sends as an inner list
// (`br=(3000;v 164;a)`). OT is the object-type parameter that tags the entry
// ("v", "a", ...), empty when untagged; v1 scalars become one untagged entry.
type Measure struct {
	Value int64  `json:"value"`
	OT    string `json:"ot,omitempty"`
}

// Report is one decoded CMCD report. Numeric fields are in CMCD units (kbps,
// ms). Zero or nil means "not sent", except for the pointer fields, where 0
// is a real value (sn starts at 0, pt=0 at start, rc=0 means no response,
// pr=0 when ended).
type Report struct {
	// v1 keys.
	BR  []Measure `json:"br,omitempty"`  // encoded bitrate, kbps
	BL  []Measure `json:"bl,omitempty"`  // buffer length, ms
	BS  bool      `json:"bs,omitempty"`  // buffer starvation since last report
	CID string    `json:"cid,omitempty"` // content id
	D   int64     `json:"d,omitempty"`   // object duration, ms
	DL  int64     `json:"dl,omitempty"`  // deadline, ms
	MTP []Measure `json:"mtp,omitempty"` // measured throughput, kbps
	NOR []string  `json:"nor,omitempty"` // next object request(s), relative URLs
	NRR string    `json:"nrr,omitempty"` // next range request "start-end"
	OT  string    `json:"ot,omitempty"`  // object type token
	PR  *float64  `json:"pr,omitempty"`  // playback rate
	RTP int64     `json:"rtp,omitempty"` // requested max throughput, kbps
	SF  string    `json:"sf,omitempty"`  // streaming format token
	SID string    `json:"sid,omitempty"` // session id
	ST  string    `json:"st,omitempty"`  // stream type token
	SU  bool      `json:"su,omitempty"`  // startup or urgent
	TB  []Measure `json:"tb,omitempty"`  // top bitrate, kbps
	V   int64     `json:"v,omitempty"`   // version; absent means 1

	// v2 request and event keys.
	AB   []Measure `json:"ab,omitempty"`   // aggregate bitrate, kbps
	BG   bool      `json:"bg,omitempty"`   // backgrounded
	BSA  []Measure `json:"bsa,omitempty"`  // starvation count, absolute
	BSD  []Measure `json:"bsd,omitempty"`  // starvation duration since last report, ms
	BSDA []Measure `json:"bsda,omitempty"` // starvation duration, absolute, ms
	CDN  string    `json:"cdn,omitempty"`  // CDN id
	CS   string    `json:"cs,omitempty"`   // content signature
	DFA  int64     `json:"dfa,omitempty"`  // dropped frames, absolute
	EC   []string  `json:"ec,omitempty"`   // player error codes
	LAB  []Measure `json:"lab,omitempty"`  // lowest aggregate bitrate, kbps
	LB   []Measure `json:"lb,omitempty"`   // lowest bitrate, kbps
	LTC  int64     `json:"ltc,omitempty"`  // live latency, ms
	MSD  int64     `json:"msd,omitempty"`  // media start delay, ms
	NR   bool      `json:"nr,omitempty"`   // non-rendered
	PB   []Measure `json:"pb,omitempty"`   // playhead bitrate, kbps
	PT   *int64    `json:"pt,omitempty"`   // playhead time, ms
	SN   *int64    `json:"sn,omitempty"`   // sequence number
	STA  string    `json:"sta,omitempty"`  // player state token
	TAB  []Measure `json:"tab,omitempty"`  // top aggregate bitrate, kbps
	TBL  []Measure `json:"tbl,omitempty"`  // target buffer length, ms
	TPB  []Measure `json:"tpb,omitempty"`  // top playable bitrate, kbps

	// v2 event-mode keys.
	E   string `json:"e,omitempty"`   // event type token
	TS  int64  `json:"ts,omitempty"`  // client timestamp, ms since epoch
	H   string `json:"h,omitempty"`   // hostname
	CEN string `json:"cen,omitempty"` // custom event name

	// v2 keys of the rr (response received) event.
	RC    *int64 `json:"rc,omitempty"`    // response code, 0 = no response
	TTFB  int64  `json:"ttfb,omitempty"`  // time to first byte, ms
	TTFBB int64  `json:"ttfbb,omitempty"` // time to first body byte, ms
	TTLB  int64  `json:"ttlb,omitempty"`  // time to last byte, ms
	URL   string `json:"url,omitempty"`   // requested URL

	// Custom holds custom `<reverse-dns>-<name>` keys and keys this package
	// does not model (later spec keys such as cmsds), as text: strings and
	// tokens unquoted, booleans "true"/"false", anything else as sent.
	// Unknown keys are truncated to 64 bytes and never rejected, so a newer
	// player does not lose its whole report.
	Custom map[string]string `json:"custom,omitempty"`
	// DroppedCustom counts custom and unknown keys beyond the per-report cap.
	DroppedCustom int `json:"dropped_custom,omitempty"`
}

// Parse decodes one CMCD dictionary: a decoded query value, one event line,
// or the comma-joined header shards.
func Parse(line string) (Report, error) {
	members, err := parseDict(line)
	if err != nil {
		return Report{}, err
	}
	return fromMembers(members)
}

func fromMembers(members []member) (Report, error) {
	var r Report
	for i := range members {
		if err := r.set(members[i].key, members[i].val); err != nil {
			return Report{}, err
		}
	}
	return r, nil
}

// set decodes one member into r. Each known key has exactly one accepted
// shape; anything else is a wrong-type error naming the key, because a
// misplaced value (say a string bitrate) is either a broken player or a probe.
func (r *Report) set(key string, v value) error {
	var err error
	switch key {
	case "br":
		r.BR, err = measures(key, v)
	case "bl":
		r.BL, err = measures(key, v)
	case "bs":
		r.BS, err = boolean(key, v)
	case "cid":
		r.CID, err = str(key, v, maxCID)
	case "d":
		r.D, err = integer(key, v)
	case "dl":
		r.DL, err = integer(key, v)
	case "mtp":
		r.MTP, err = measures(key, v)
	case "nor":
		r.NOR, err = strList(key, v, maxString, false)
	case "nrr":
		r.NRR, err = str(key, v, maxString)
	case "ot":
		r.OT, err = token(key, v)
	case "pr":
		var f float64
		if f, err = number(key, v); err == nil {
			r.PR = &f
		}
	case "rtp":
		r.RTP, err = integer(key, v)
	case "sf":
		r.SF, err = token(key, v)
	case "sid":
		r.SID, err = str(key, v, maxSID)
	case "st":
		r.ST, err = token(key, v)
	case "su":
		r.SU, err = boolean(key, v)
	case "tb":
		r.TB, err = measures(key, v)
	case "v":
		r.V, err = integer(key, v)
	case "ab":
		r.AB, err = measures(key, v)
	case "bg":
		r.BG, err = boolean(key, v)
	case "bsa":
		r.BSA, err = measures(key, v)
	case "bsd":
		r.BSD, err = measures(key, v)
	case "bsda":
		r.BSDA, err = measures(key, v)
	case "cdn":
		r.CDN, err = str(key, v, maxCDN)
	case "cs":
		r.CS, err = str(key, v, maxString)
	case "dfa":
		r.DFA, err = integer(key, v)
	case "ec":
		// dash.js 5 sends the numeric error code as an integer (ec=500), not
		// the string list of the spec; accepting it keeps those reports.
		r.EC, err = strList(key, v, maxString, true)
	case "lab":
		r.LAB, err = measures(key, v)
	case "lb":
		r.LB, err = measures(key, v)
	case "ltc":
		r.LTC, err = integer(key, v)
	case "msd":
		r.MSD, err = integer(key, v)
	case "nr":
		r.NR, err = boolean(key, v)
	case "pb":
		r.PB, err = measures(key, v)
	case "pt":
		r.PT, err = optInteger(key, v)
	case "sn":
		r.SN, err = optInteger(key, v)
	case "sta":
		r.STA, err = token(key, v)
	case "tab":
		r.TAB, err = measures(key, v)
	case "tbl":
		r.TBL, err = measures(key, v)
	case "tpb":
		r.TPB, err = measures(key, v)
	case "e":
		r.E, err = token(key, v)
	case "ts":
		r.TS, err = integer(key, v)
	case "h":
		r.H, err = str(key, v, maxHost)
	case "cen":
		r.CEN, err = str(key, v, maxCEN)
	case "rc":
		r.RC, err = optInteger(key, v)
	case "ttfb":
		r.TTFB, err = integer(key, v)
	case "ttfbb":
		r.TTFBB, err = integer(key, v)
	case "ttlb":
		r.TTLB, err = integer(key, v)
	case "url":
		r.URL, err = str(key, v, maxString)
	default:
		return r.setCustom(key, v)
	}
	return err
}

// isCustomKey reports whether key has the `<reverse-dns>-<name>` shape of
// CTA-5004 custom keys: a dot before the first hyphen, something after it.
func isCustomKey(key string) bool {
	dash := strings.IndexByte(key, '-')
	return dash > 0 && dash < len(key)-1 && strings.IndexByte(key[:dash], '.') > 0
}

func (r *Report) setCustom(key string, v value) error {
	text := customText(v)
	if len(text) > maxCustomVal {
		if isCustomKey(key) {
			// The spec caps custom values; only unknown spec keys are truncated.
			return &Error{Key: key, Reason: "custom value longer than " + strconv.Itoa(maxCustomVal) + " bytes"}
		}
		text = text[:maxCustomVal]
	}
	if len(r.Custom) == maxCustom {
		r.DroppedCustom++
		return nil
	}
	if r.Custom == nil {
		r.Custom = make(map[string]string)
	}
	r.Custom[key] = text
	return nil
}

func customText(v value) string {
	switch v.kind {
	case kindString, kindToken:
		return v.s
	case kindBool:
		if v.i == 1 {
			return "true"
		}
		return "false"
	}
	// Numbers, byte sequences and inner lists as sent, parameters included.
	return v.raw
}

// scalar unwraps the v2 single-element inner-list form (`bl=(5000)`), so
// every scalar key accepts both encodings.
func scalar(key string, v value) (item, error) {
	if v.kind != kindList {
		return v.item, nil
	}
	if len(v.list) != 1 {
		return item{}, &Error{Key: key, Reason: "want one value, got inner list of " + strconv.Itoa(len(v.list))}
	}
	return v.list[0], nil
}

func wrongType(key string, got kind, want string) error {
	return &Error{Key: key, Reason: "wrong type: got " + got.String() + ", want " + want}
}

func integer(key string, v value) (int64, error) {
	it, err := scalar(key, v)
	if err != nil {
		return 0, err
	}
	if it.kind != kindInt {
		return 0, wrongType(key, it.kind, "integer")
	}
	// Every integer CMCD key is a count, a duration or a rate.
	if it.i < 0 {
		return 0, &Error{Key: key, Reason: "negative value"}
	}
	return it.i, nil
}

func optInteger(key string, v value) (*int64, error) {
	n, err := integer(key, v)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

func number(key string, v value) (float64, error) {
	it, err := scalar(key, v)
	if err != nil {
		return 0, err
	}
	var f float64
	switch it.kind {
	case kindDec:
		f = it.f
	case kindInt:
		// Encoders print whole rates without a fraction (pr=2, pr=0).
		f = float64(it.i)
	default:
		return 0, wrongType(key, it.kind, "decimal")
	}
	if f < 0 || math.IsNaN(f) {
		return 0, &Error{Key: key, Reason: "negative value"}
	}
	return f, nil
}

func boolean(key string, v value) (bool, error) {
	if v.kind != kindBool {
		return false, wrongType(key, v.kind, "boolean")
	}
	return v.i == 1, nil
}

func str(key string, v value, limit int) (string, error) {
	it, err := scalar(key, v)
	if err != nil {
		return "", err
	}
	if it.kind != kindString {
		return "", wrongType(key, it.kind, "string")
	}
	if len(it.s) > limit {
		return "", &Error{Key: key, Reason: "longer than " + strconv.Itoa(limit) + " bytes"}
	}
	return it.s, nil
}

// token accepts any syntactically valid short token rather than only the
// values CTA-5004-B lists: a new state or object type from a newer player
// should not cost us the rest of the report. Beacon decides what it means.
func token(key string, v value) (string, error) {
	it, err := scalar(key, v)
	if err != nil {
		return "", err
	}
	if it.kind != kindToken {
		return "", wrongType(key, it.kind, "token")
	}
	if len(it.s) > maxToken {
		return "", &Error{Key: key, Reason: "token longer than " + strconv.Itoa(maxToken) + " bytes"}
	}
	return it.s, nil
}

// measures decodes the "ot-list" keys: a v1 integer or a v2 inner list of
// integers, each optionally tagged with an object type.
func measures(key string, v value) ([]Measure, error) {
	items := v.list
	if v.kind != kindList {
		items = []item{v.item}
	}
	if len(items) > maxListItems {
		return nil, &Error{Key: key, Reason: "more than " + strconv.Itoa(maxListItems) + " entries"}
	}
	out := make([]Measure, 0, len(items))
	for _, it := range items {
		if it.kind != kindInt {
			return nil, wrongType(key, it.kind, "integer or inner list of integers")
		}
		if it.i < 0 {
			return nil, &Error{Key: key, Reason: "negative value"}
		}
		if len(it.tag) > maxToken {
			return nil, &Error{Key: key, Reason: "object type parameter longer than " + strconv.Itoa(maxToken) + " bytes"}
		}
		out = append(out, Measure{Value: it.i, OT: it.tag})
	}
	return out, nil
}

// strList decodes nor and ec: a v1 string or a v2 inner list of strings.
func strList(key string, v value, limit int, allowInt bool) ([]string, error) {
	items := v.list
	if v.kind != kindList {
		items = []item{v.item}
	}
	if len(items) > maxListItems {
		return nil, &Error{Key: key, Reason: "more than " + strconv.Itoa(maxListItems) + " entries"}
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var s string
		switch {
		case it.kind == kindString:
			s = it.s
		case allowInt && it.kind == kindInt:
			s = strconv.FormatInt(it.i, 10)
		default:
			return nil, wrongType(key, it.kind, "string or inner list of strings")
		}
		if len(s) > limit {
			return nil, &Error{Key: key, Reason: "entry longer than " + strconv.Itoa(limit) + " bytes"}
		}
		out = append(out, s)
	}
	return out, nil
}

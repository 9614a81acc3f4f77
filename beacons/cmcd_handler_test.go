package beacons

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons/cmcd"
	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// fixture reads a player capture from the cmcd package's golden inputs,
// without its comment lines.
func fixture(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open("cmcd/testdata/golden/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "#") {
			lines = append(lines, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

const hlsSID = "1e2ad9f6-5f8d-4b0c-9a43-6f1f0d3c7a21"

func TestCMCDEventBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{opts: viaProxy})
	// The hls.js 1.7 batch (11 lines, one blank), with a wrong-type value
	// and a report without sid slipped in.
	lines := fixture(t, "event_hlsjs17_session.txt")
	lines = slices.Insert(lines, 2, `br="6221",e=bc,sid="`+hlsSID+`",sn=99,ts=1764269150500,v=2`)
	lines = append(lines, `e=t,sn=10,ts=1764269211000,v=2`)
	body := []byte(strings.Join(lines, "\r\n") + "\r\n")
	wantRejected := []FieldError{{Index: 2, Field: "br"}, {Index: len(lines) - 1, Field: "sid"}}
	type want struct {
		sn      uint32
		e       string
		typ     record.Type
		check   func(record.Beacon) bool
		explain string
	}
	wants := []want{
		{0, "ps", record.TypeHeartbeat, nil, ""},
		{1, "ps", record.TypeViewStart, func(b record.Beacon) bool { return b.StartupMS == 1120 }, "startup 1120"},
		{2, "bc", record.TypeBitrateChange, func(b record.Beacon) bool { return b.BitrateKbps == 6221 }, "bitrate 6221"},
		{3, "rr", record.TypeHeartbeat, func(b record.Beacon) bool { return b.TTFBMS == 180 }, "ttfb 180"},
		{4, "ps", record.TypeRebufferStart, nil, ""},
		{5, "ps", record.TypeRebufferEnd, func(b record.Beacon) bool { return b.RebufferMS == 1500 }, "rebuffer 1500"},
		{6, "ps", record.TypeHeartbeat, nil, ""},
		{7, "t", record.TypeHeartbeat, func(b record.Beacon) bool { return b.ThroughputKbps == 12300 }, "throughput 12300"},
		{8, "ps", record.TypeError, func(b record.Beacon) bool { return b.Fatal }, "fatal"},
		{9, "e", record.TypeError, func(b record.Beacon) bool { return b.Fatal && b.ErrorCode == "fragLoadError" }, "fatal fragLoadError"},
	}
	wantIDs := make([]string, len(wants))
	for i, w := range wants {
		wantIDs[i] = cmcd.EventID(hlsSID, w.sn, w.e)
	}

	post := func(t *testing.T) answer {
		t.Helper()
		return e.do(t, req{path: "/v1/cmcd?service=vod&cdn=cdn-a", body: body, header: map[string]string{
			"Content-Type": "application/cmcd", "X-Forwarded-For": "203.0.113.50",
		}})
	}
	first := post(t)
	if first.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", first.status, first.raw)
	}
	if !slices.Equal(first.res.EventIDs, wantIDs) || first.res.Accepted != len(wants) {
		t.Errorf("event ids %v\nwant (sid, sn, e)-derived %v", first.res.EventIDs, wantIDs)
	}
	if len(first.res.Rejected) != len(wantRejected) {
		t.Fatalf("rejected %+v, want %+v", first.res.Rejected, wantRejected)
	}
	for i, w := range wantRejected {
		if g := first.res.Rejected[i]; g.Index != w.Index || g.Field != w.Field || g.Reason == "" {
			t.Errorf("rejected[%d] = %+v, want line index %d key %s", i, g, w.Index, w.Field)
		}
	}

	// A player re-sends the batch after a 5xx: the same beacons, the same ids.
	again := post(t)
	if again.status != http.StatusAccepted || !slices.Equal(again.res.EventIDs, first.res.EventIDs) {
		t.Errorf("re-sent body: status %d ids %v, want the first answer's %v", again.status, again.res.EventIDs, first.res.EventIDs)
	}

	pub := e.readTopic(t)
	if got, want := slicesOf(pub), append(slices.Clone(wantIDs), wantIDs...); !slices.Equal(got, want) {
		t.Fatalf("topic ids %v\nwant each report twice (dedup is downstream): %v", got, want)
	}
	for i, p := range pub[:len(wants)] {
		w := wants[i]
		b := p.Beacon
		if b.Source != record.SourceCMCD || b.Service != "vod" || b.CDN != "cdn-a" || b.ViewID != hlsSID || b.SessionID != hlsSID || b.Seq != w.sn {
			t.Errorf("sn=%d: source %v service %q cdn %q view %q seq %d", w.sn, b.Source, b.Service, b.CDN, b.ViewID, b.Seq)
		}
		if b.Type != w.typ || (w.check != nil && !w.check(b)) {
			t.Errorf("sn=%d: type %v, want %v (%s): %+v", w.sn, b.Type, w.typ, w.explain, b)
		}
		if b.ClientIP != "203.0.113.50" || b.Country != "JP" || b.Region != "ap-northeast" || b.ASN != 64523 || p.Key != "ap-northeast" {
			t.Errorf("sn=%d: geo %s %s %s AS%d key %s", w.sn, b.ClientIP, b.Country, b.Region, b.ASN, p.Key)
		}
		if b.ReceivedAt != testNow.UnixMilli() || b.TS == b.ReceivedAt {
			t.Errorf("sn=%d: received %d ts %d: the client ts must be kept", w.sn, b.ReceivedAt, b.TS)
		}
	}
	if got := counter(t, e.reg, metricAccepted, "source", "cmcd"); got != float64(2*len(wants)) {
		t.Errorf("%s{source=cmcd} = %v", metricAccepted, got)
	}
	if got := counter(t, e.reg, metricRejected, "reason", reasonInvalid); got != 4 {
		t.Errorf("%s{reason=invalid_field} = %v, want 4", metricRejected, got)
	}
}

func TestCMCDRequestMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{opts: viaProxy})
	headers := func(t *testing.T, name string) map[string]string {
		h := map[string]string{}
		for _, l := range fixture(t, name) {
			k, v, ok := strings.Cut(l, ": ")
			if ok {
				h[k] = v
			}
		}
		return h
	}
	query := func(t *testing.T, name string) string { return fixture(t, name)[0] }
	dashNow := time.UnixMilli(1731500000000)
	tests := []struct {
		name    string
		now     time.Time
		method  string
		query   string // after ?service=vod&
		header  map[string]string
		typ     record.Type
		cdn     string
		bitrate uint32
		tput    uint32
		ts      int64 // 0: the receive time
		eventID string
	}{
		{"hls.js v1 fragment query", testNow, http.MethodGet, "cdn=cdn-a&" + query(t, "query_hlsjs17_v1_fragment.txt"), nil,
			record.TypeHeartbeat, "cdn-a", 2149, 12300, 0, ""},
		{"hls.js v1 manifest query after the URL's own args", testNow, http.MethodGet, "cdn=cdn-b&" + query(t, "query_hlsjs17_v1_manifest.txt"), nil,
			record.TypeHeartbeat, "cdn-b", 0, 500, 0, ""},
		{"hls.js v2 fragment query", testNow, http.MethodGet, "cdn=cdn-a&" + query(t, "query_hlsjs17_v2_fragment.txt"), nil,
			record.TypeHeartbeat, "cdn-a", 2149, 12300, 0, ""},
		{"dash.js 5 segment query with ts", dashNow, http.MethodGet, "cdn=cdn-a&" + query(t, "query_dashjs5_v1_segment.txt"), nil,
			record.TypeHeartbeat, "cdn-a", 2500, 48700, 1731500004567, ""},
		{"cml v2: cdn key beats missing ?cdn=, sn gives a stable id", testNow, http.MethodPost, query(t, "query_cml_v2_all_keys.txt"), nil,
			record.TypeViewStart, "cdn-provider", 1000, 10000, 0, cmcd.EventID("session-id", 1, "")},
		{"dash.js reference headers", testNow, http.MethodGet, "cdn=cdn-a", headers(t, "headers_dashjs_reference_capture.txt"),
			record.TypeHeartbeat, "cdn-a", 67, 10600, 0, ""},
		{"hls.js v1 headers", testNow, http.MethodGet, "cdn=cdn-a", headers(t, "headers_hlsjs17_v1.txt"),
			record.TypeHeartbeat, "cdn-a", 2149, 12300, 0, ""},
		{"dash.js 5 headers on a text/plain POST", dashNow, http.MethodPost, "cdn=cdn-a",
			with(headers(t, "headers_dashjs5_v1_seek.txt"), "Content-Type", "text/plain"),
			record.TypeHeartbeat, "cdn-a", 1014, 35600, 1731500000123, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Set(tt.now)
			h := with(tt.header, "X-Forwarded-For", "100.64.3.3")
			a := e.do(t, req{method: tt.method, path: "/v1/cmcd?service=vod&" + tt.query, header: h})
			if a.status != http.StatusAccepted || a.res.Accepted != 1 || len(a.res.EventIDs) != 1 {
				t.Fatalf("status %d: %s", a.status, a.raw)
			}
			if tt.eventID != "" && a.res.EventIDs[0] != tt.eventID {
				t.Errorf("event id %s, want %s from (sid, sn)", a.res.EventIDs[0], tt.eventID)
			}
			var got *published
			for _, p := range e.readTopic(t) {
				if p.EventID == a.res.EventIDs[0] {
					got = &p
				}
			}
			if got == nil {
				t.Fatalf("event %s not on the topic", a.res.EventIDs[0])
			}
			b := got.Beacon
			wantTS := tt.ts
			if wantTS == 0 {
				wantTS = tt.now.UnixMilli()
			}
			if b.Type != tt.typ || b.CDN != tt.cdn || b.Service != "vod" || b.BitrateKbps != tt.bitrate ||
				b.ThroughputKbps != tt.tput || b.TS != wantTS || b.ReceivedAt != tt.now.UnixMilli() || b.Source != record.SourceCMCD {
				t.Errorf("record %+v\nwant type %v cdn %s bitrate %d throughput %d ts %d", b, tt.typ, tt.cdn, tt.bitrate, tt.tput, wantTS)
			}
			if b.Region != "eu-west" || got.Key != "eu-west" {
				t.Errorf("region %q key %q", b.Region, got.Key)
			}
		})
	}
}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestCMCDRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	v1 := fixture(t, "query_hlsjs17_v1_fragment.txt")[0]
	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   string
		status int
		field  string // of the one rejected item; "" when the request fails whole
		errHas string
	}{
		{"missing service", http.MethodGet, "/v1/cmcd?cdn=cdn-a&" + v1, nil, "", http.StatusUnprocessableEntity, "service", "?service="},
		{"bad service", http.MethodGet, "/v1/cmcd?service=v%20o&cdn=cdn-a&" + v1, nil, "", http.StatusUnprocessableEntity, "service", "not allowed"},
		{"missing cdn", http.MethodGet, "/v1/cmcd?service=vod&" + v1, nil, "", http.StatusUnprocessableEntity, "cdn", "?cdn="},
		{"missing cdn in an event body", http.MethodPost, "/v1/cmcd?service=vod",
			map[string]string{"Content-Type": "application/cmcd"}, `e=t,sid="s1",sn=1,ts=1764269150000,v=2`, http.StatusUnprocessableEntity, "cdn", "?cdn="},
		{"missing sid", http.MethodGet, "/v1/cmcd?service=vod&cdn=a&CMCD=br%3D3000%2Cot%3Dv", nil, "", http.StatusUnprocessableEntity, "sid", "session"},
		{"ts a day off", http.MethodPost, "/v1/cmcd?service=vod&cdn=a",
			map[string]string{"Content-Type": "application/cmcd"}, `e=t,sid="s1",sn=1,ts=1731500000000,v=2`, http.StatusUnprocessableEntity, "ts", "server clock"},
		{"host not a host", http.MethodPost, "/v1/cmcd?service=vod&cdn=a",
			map[string]string{"Content-Type": "application/cmcd"}, `e=t,h="a b",sid="s1",sn=1,ts=1764269150000,v=2`, http.StatusUnprocessableEntity, "h", "host"},
		{"startup over the limit", http.MethodPost, "/v1/cmcd?service=vod&cdn=a",
			map[string]string{"Content-Type": "application/cmcd"}, `e=ps,msd=900000,sid="s1",sn=1,sta=p,ts=1764269150000,v=2`, http.StatusUnprocessableEntity, "msd", "over the limit"},
		{"only bad lines", http.MethodPost, "/v1/cmcd?service=vod&cdn=a",
			map[string]string{"Content-Type": "application/cmcd"}, "e=zz,sid=\"s\"\n", http.StatusUnprocessableEntity, "e", "unknown event"},
		{"bad query dictionary", http.MethodGet, "/v1/cmcd?service=vod&cdn=a&CMCD=br%3D%22x%22", nil, "", http.StatusBadRequest, "", "CMCD"},
		{"no CMCD at all", http.MethodGet, "/v1/cmcd?service=vod&cdn=a", nil, "", http.StatusBadRequest, "", "CMCD"},
		{"json is not cmcd", http.MethodPost, "/v1/cmcd?service=vod&cdn=a",
			map[string]string{"Content-Type": "application/json"}, "{}", http.StatusUnsupportedMediaType, "", "application/cmcd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.do(t, req{method: tt.method, path: tt.path, header: tt.header, body: []byte(tt.body)})
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, a.raw)
			}
			if tt.field == "" {
				if !strings.Contains(a.res.Error, tt.errHas) {
					t.Errorf("error %q lacks %q", a.res.Error, tt.errHas)
				}
				return
			}
			if len(a.res.Rejected) != 1 || a.res.Rejected[0].Field != tt.field || !strings.Contains(a.res.Rejected[0].Reason, tt.errHas) {
				t.Errorf("rejected %+v, want one naming %s with %q", a.res.Rejected, tt.field, tt.errHas)
			}
		})
	}
	if got := e.readTopic(t); len(got) != 0 {
		t.Errorf("%d records published from rejected reports", len(got))
	}
}

// TestCMCDRejectionIndexes: every rejection of an event body is indexed by
// its 0-based line, whether the line did not parse or its report was
// refused later, also past the cap on listed bad lines.
func TestCMCDRejectionIndexes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	const good, noSID = `e=t,sid="s1",sn=%d,ts=1764269150000,v=2`, `e=t,sn=1,ts=1764269150000,v=2`
	tests := []struct {
		name  string
		lines []string
		want  []int // indexes of the rejections, in order
	}{
		{"bad line then refused report", []string{fmtLine(good, 1), "BAD", noSID}, []int{1, 2}},
		{"blank lines count", []string{"", fmtLine(good, 1), "", noSID, "   "}, []int{3}},
		{"past the listed-line cap", append(append(slices.Repeat([]string{"BAD"}, 105), fmtLine(good, 1)), noSID), nil},
	}
	tests[2].want = make([]int, 0, 102)
	for i := range 100 {
		tests[2].want = append(tests[2].want, i)
	}
	tests[2].want = append(tests[2].want, 100, 106) // the "and 4 later" summary, then the refused report
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.do(t, req{path: "/v1/cmcd?service=vod&cdn=a", body: []byte(strings.Join(tt.lines, "\n")),
				header: map[string]string{"Content-Type": "application/cmcd"}})
			if a.status != http.StatusAccepted || a.res.Accepted != 1 {
				t.Fatalf("status %d: %s", a.status, a.raw)
			}
			got := make([]int, len(a.res.Rejected))
			for i, r := range a.res.Rejected {
				got[i] = r.Index
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("rejection indexes %v, want %v", got, tt.want)
			}
			if last := a.res.Rejected[len(a.res.Rejected)-1]; last.Field != "sid" {
				t.Errorf("last rejection %+v, want the sid-less report", last)
			}
		})
	}
}

func fmtLine(f string, sn int) string { return fmt.Sprintf(f, sn) }

package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/cdnpilot/cdnpilot/internal/live"
	"github.com/cdnpilot/cdnpilot/steering"
)

// sse is one server-sent event.
type sse struct{ event, data string }

// readEvents parses an event stream until it ends or want events came.
func readEvents(t *testing.T, sc *bufio.Scanner, want int) []sse {
	t.Helper()
	var out []sse
	var cur sse
	for len(out) < want && sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" || cur.data != "" {
				out = append(out, cur)
			}
			cur = sse{}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry: "):
		case strings.HasPrefix(line, "event: "):
			cur.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data += strings.TrimPrefix(line, "data: ")
		default:
			t.Fatalf("not an event stream line: %q", line)
		}
	}
	return out
}

// checkSchema validates one JSON document against a named schema of
// openapi.json.
func checkSchema(t *testing.T, doc *openapi3.T, schema, data string) {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("%s: %v: %s", schema, err, data)
	}
	if err := doc.Components.Schemas[schema].Value.VisitJSON(v); err != nil {
		t.Errorf("%s does not match openapi.json: %v\n%s", schema, err, data)
	}
}

// TestStream: over real HTTP, a stream starts with the history, then a
// tick per sample and an event per change, each as openapi.json says; it
// ends after StreamMax with "bye".
func TestStream(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newEnv(t, func(o *Options) { o.StreamMax = 30 * time.Second })
	e.live.Sample()
	e.clk.Add(time.Second)
	e.live.Sample()
	srv := httptest.NewServer(e.srv)
	defer srv.Close()

	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/api/v1/stream?service=vod&backlog=60", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokens["viewer"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)

	hello := readEvents(t, sc, 1)
	if len(hello) != 1 || hello[0].event != "hello" {
		t.Fatalf("first event %+v, want hello", hello)
	}
	checkSchema(t, doc, "History", hello[0].data)
	var h live.History
	if err := json.Unmarshal([]byte(hello[0].data), &h); err != nil {
		t.Fatal(err)
	}
	if h.Service != "vod" || len(h.Ticks) != 2 || h.Ticks[1].Version == 0 || len(h.Ticks[1].CDNs) == 0 {
		t.Fatalf("history %+v", h)
	}

	// An override through the API is an event on the stream, before the
	// tick of the same sample.
	o := e.create(t, "operator", e.pinB())
	if err := e.follower.WaitRevision(t.Context(), o.ID, o.Revision); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Second)
	e.live.Sample()
	got := readEvents(t, sc, 3)
	if len(got) != 3 || got[0].event != "event" || got[1].event != "event" || got[2].event != "tick" {
		t.Fatalf("after an override: %+v", got)
	}
	for _, ev := range got {
		if ev.event == "tick" {
			checkSchema(t, doc, "Tick", ev.data)
			continue
		}
		checkSchema(t, doc, "Event", ev.data)
	}
	var created, moved live.Event
	if err := json.Unmarshal([]byte(got[0].data), &created); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(got[1].data), &moved); err != nil {
		t.Fatal(err)
	}
	if created.Kind != live.KindOverrideCreated || created.Scope != "vod/eu-west" || !strings.Contains(created.Detail, o.ID) {
		t.Errorf("override event %+v", created)
	}
	if moved.Kind != live.KindLeaderChange || moved.CDN != "cdn-b" || moved.Scope != "vod/eu-west" {
		t.Errorf("leader change %+v", moved)
	}
}

func TestStreamEnds(t *testing.T) {
	e := newEnv(t) // StreamMax 50ms
	code, body, hdr := e.do(t, "viewer", "GET", "/api/v1/stream?service=live&backlog=0", nil)
	if code != 200 || hdr.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", code, body)
	}
	evs := readEvents(t, bufio.NewScanner(strings.NewReader(string(body))), 10)
	if len(evs) != 2 || evs[0].event != "hello" || evs[1].event != "bye" {
		t.Fatalf("events %+v, want hello then bye", evs)
	}
}

func TestDecisionRate(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newEnv(t)
	now := e.clk.Now() // 12:01:01
	var recs []steering.DecisionRecord
	add := func(n int, proto, svc string, at time.Time) {
		for range n {
			recs = append(recs, steering.DecisionRecord{At: at, Protocol: proto, Service: svc, CDN: "cdn-a", Result: "NOERROR"})
		}
	}
	m0 := now.Truncate(time.Minute) // the minute still filling, 1 s old
	add(30, "dns", "vod", m0.Add(-time.Minute))
	add(6, "http", "vod", m0.Add(-time.Minute))
	add(3, "http", "vod", m0)
	add(12, "hls", "vod", m0.Add(-2*time.Minute))
	add(5, "dash", "vod", m0) // dash logs nothing (sample 0): ignored
	add(7, "http", "live", m0)
	if err := e.dec.InsertDecisions(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	url := "/api/v1/decisions/rate?service=vod&from=" + m0.Add(-10*time.Minute).Format(time.RFC3339) + "&to=" + m0.Add(time.Minute).Format(time.RFC3339)
	code, body, hdr := e.do(t, "viewer", "GET", url, nil)
	validateResponse(t, doc, "GET", url, code, hdr, body)
	var got RateJSON
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	type pt struct {
		proto string
		rate  float64
		n     uint64
	}
	var pts []pt
	for _, p := range got.Protocols {
		for _, x := range p.Points {
			pts = append(pts, pt{p.Protocol, x.PerSecond, x.N})
		}
	}
	want := []pt{
		{"dns", 1, 30},   // 30 logged at a sample of 0.5 over 60 s
		{"http", 0.1, 6}, // a whole minute
		{"http", 3, 3},   // the current minute has had 1 s
		{"hls", 0.2, 12}, // two minutes ago
	}
	if len(pts) != len(want) {
		t.Fatalf("points %+v, want %+v", pts, want)
	}
	for i := range want {
		if pts[i] != want[i] {
			t.Errorf("point %d: %+v, want %+v", i, pts[i], want[i])
		}
	}

	for _, tc := range []struct{ url, field string }{
		{"/api/v1/decisions/rate?service=vod&step=90s", "step"},
		{"/api/v1/decisions/rate?service=vod&step=0m", "step"},
		{"/api/v1/decisions/rate?service=vod&from=yesterday", "from"},
		{"/api/v1/decisions/rate?service=vod&from=2026-11-25T12:00:00Z&to=2026-11-25T11:00:00Z", "to"},
		{"/api/v1/decisions/rate?service=vod&from=2000-01-01T00:00:00Z&to=2026-11-25T11:00:00Z", "step"},
		{"/api/v1/decisions/rate?service=vod&cdn=a", "cdn"},
		{"/api/v1/stream?service=vod&backlog=86401", "backlog"},
		{"/api/v1/stream?service=vod&backlog=-1", "backlog"},
		{"/api/v1/stream", "service"},
		{"/api/v1/stream?service=vod&since=1", "since"},
	} {
		code, body, _ := e.do(t, "viewer", "GET", tc.url, nil)
		var er struct{ Error, Field string }
		_ = json.Unmarshal(body, &er)
		if code != 400 || er.Field != tc.field {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.url, code, body, tc.field)
		}
	}
	for _, url := range []string{"/api/v1/stream?service=nope", "/api/v1/decisions/rate?service=nope"} {
		if code, body, _ := e.do(t, "viewer", "GET", url, nil); code != 404 {
			t.Errorf("%s: %d %s, want 404", url, code, body)
		}
	}
}

// TestBadTimeParams: a time parameter that is not RFC 3339 is a 400
// naming it, on every route that takes one.
func TestBadTimeParams(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ url, field string }{
		{"/api/v1/qoe/series?metric=views&from=yesterday", "from"},
		{"/api/v1/qoe/series?metric=views&to=2026-13-01T00:00:00Z", "to"},
		{"/api/v1/decisions/rate?to=noon", "to"},
		{"/api/v1/audit?since=last+week", "since"},
		{"/api/v1/audit?until=1764000000", "until"},
	} {
		code, body, _ := e.do(t, "admin", "GET", tc.url, nil)
		var er struct{ Error, Field string }
		_ = json.Unmarshal(body, &er)
		if code != 400 || er.Field != tc.field || !strings.Contains(er.Error, "RFC 3339") {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.url, code, body, tc.field)
		}
	}
}

package replay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/beacons/record"
	"github.com/cdnpilot/cdnpilot/internal/replay"
	"github.com/cdnpilot/cdnpilot/steering"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// profile is what every view of one traffic line reports.
type profile struct {
	startupMS           uint32
	playedMS, stallMS   uint32 // per heartbeat (every 10 s) and on view_end
	bitrate, tput, ttfb uint32 // kbit/s, kbit/s, ms
}

// good plays well; stalling is good with 8 % of its time stalled.
var (
	good     = profile{startupMS: 900, playedMS: 10_000, stallMS: 20, bitrate: 4000, tput: 12_000, ttfb: 80}
	stalling = profile{startupMS: 900, playedMS: 10_000, stallMS: 800, bitrate: 4000, tput: 12_000, ttfb: 80}
)

// traffic is perMinute views of one (service, cdn, region, country, asn)
// from minute lo up to hi (hi 0: to the end).
type traffic struct {
	service, cdn, region, country string
	asn                           uint32
	perMinute                     int
	lo, hi                        int
	p                             profile
}

// fill records minutes of traffic starting at t0: each view sends
// view_start, three heartbeats with play and stall deltas, and view_end,
// within its minute, as the SDK does for a short clip.
func fill(t *testing.T, minutes int, lines ...traffic) *analytics.Memory {
	t.Helper()
	m := analytics.NewMemory(analytics.MemoryOptions{})
	t.Cleanup(func() { _ = m.Close() })
	var rows []record.Beacon
	for minute := range minutes {
		for li, l := range lines {
			if minute < l.lo || l.hi > 0 && minute >= l.hi {
				continue
			}
			for v := range l.perMinute {
				view := fmt.Sprintf("%s-%s-%s-%d-%d-%d", l.service, l.cdn, l.country, li, minute, v)
				at := t0.Add(time.Duration(minute)*time.Minute + time.Duration(v)*time.Second)
				base := record.Beacon{
					Region: l.region, Country: l.country, ASN: l.asn, Source: record.SourceBeacon,
					ViewID: view, SessionID: "s-" + view, Service: l.service, CDN: l.cdn, Host: l.cdn + ".example.net",
					Player: "hls.js", PlayerVersion: "1.7.0", ContentID: "movie-1",
				}
				add := func(seq int, typ record.Type, offset time.Duration, set func(*record.Beacon)) {
					b := base
					b.EventID = fmt.Sprintf("%s-%d", view, seq)
					b.Type = typ
					b.Seq = uint32(seq)
					b.ReceivedAt = at.Add(offset).UnixMilli()
					b.TS = b.ReceivedAt - 40
					set(&b)
					rows = append(rows, b)
				}
				add(0, record.TypeViewStart, 2*time.Second, func(b *record.Beacon) {
					b.StartupMS, b.TTFBMS, b.BitrateKbps = l.p.startupMS, l.p.ttfb, l.p.bitrate
				})
				for h := 1; h <= 3; h++ {
					add(h, record.TypeHeartbeat, time.Duration(2+10*h)*time.Second, func(b *record.Beacon) {
						b.PlayedMS, b.RebufferMS = l.p.playedMS, l.p.stallMS
						if l.p.stallMS > 0 {
							b.RebufferCount = 1
						}
						b.BitrateKbps, b.ThroughputKbps, b.TTFBMS = l.p.bitrate, l.p.tput, l.p.ttfb
					})
				}
				add(4, record.TypeViewEnd, 42*time.Second, func(b *record.Beacon) {
					b.StartupMS, b.PlayedMS, b.RebufferMS = l.p.startupMS, l.p.playedMS, l.p.stallMS
				})
			}
		}
	}
	if err := m.Insert(t.Context(), rows); err != nil {
		t.Fatalf("insert: %v", err)
	}
	return m
}

// vod is the main scenario, 30 minutes of service "vod":
//   - eu-west (GB and FR): cdn-b carries 60 % and stalls 8 % of the time;
//     cdn-a plays well.
//   - us-east: cdn-c wins on rebuffering alone (it never stalls, but starts
//     slower, at a lower bitrate, with a slower TTFB); cdn-a stalls 3 %.
//   - a few views from BR, a country without a region, on cdn-a.
func vod(t *testing.T) *analytics.Memory {
	t.Helper()
	usA := profile{startupMS: 800, playedMS: 10_000, stallMS: 300, bitrate: 4500, tput: 12_000, ttfb: 80}
	usC := profile{startupMS: 1400, playedMS: 10_000, stallMS: 0, bitrate: 3500, tput: 12_000, ttfb: 120}
	goodFR := good
	goodFR.ttfb = 95
	return fill(t, 30,
		traffic{service: "vod", cdn: "cdn-a", region: "eu-west", country: "GB", asn: 2856, perMinute: 2, p: good},
		traffic{service: "vod", cdn: "cdn-a", region: "eu-west", country: "FR", asn: 3215, perMinute: 2, p: goodFR},
		traffic{service: "vod", cdn: "cdn-b", region: "eu-west", country: "GB", asn: 2856, perMinute: 3, p: stalling},
		traffic{service: "vod", cdn: "cdn-b", region: "eu-west", country: "FR", asn: 3215, perMinute: 3, p: stalling},
		traffic{service: "vod", cdn: "cdn-a", region: "us-east", country: "US", asn: 7922, perMinute: 4, p: usA},
		traffic{service: "vod", cdn: "cdn-c", region: "us-east", country: "US", asn: 7922, perMinute: 4, p: usC},
		traffic{service: "vod", cdn: "cdn-a", country: "BR", asn: 28573, perMinute: 1, p: good},
	)
}

func request(c replay.Candidate) replay.Request {
	return replay.Request{Service: "vod", From: t0, To: t0.Add(30 * time.Minute), Step: "5m", Policy: c}
}

func run(t *testing.T, src replay.Source, req replay.Request) replay.Result {
	t.Helper()
	res, err := replay.Run(t.Context(), src, steering.DefaultPolicy(), req)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res
}

func scopeOf(t *testing.T, res replay.Result, name string) replay.ScopeResult {
	t.Helper()
	for _, s := range res.Scopes {
		if s.Scope == name {
			return s
		}
	}
	t.Fatalf("no scope %q in %+v", name, res.Scopes)
	return replay.ScopeResult{}
}

func cdnOf(t *testing.T, s replay.ScopeResult, cdn string) replay.CDNResult {
	t.Helper()
	for _, c := range s.CDNs {
		if c.CDN == cdn {
			return c
		}
	}
	t.Fatalf("no cdn %q in scope %s", cdn, s.Scope)
	return replay.CDNResult{}
}

func f(v float64) *float64 { return &v }

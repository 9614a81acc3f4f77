package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/internal/ledgertest"
	"github.com/cdnpilot/cdnpilot/steering"
	"github.com/cdnpilot/cdnpilot/steering/manifest"
)

// linkBPS is every CDN stub's capacity: 4 Mbit/s carries the 700 kbit/s
// top rendition with room, and gives players throughput figures that mean
// something (loopback would report hundreds of Mbit/s).
const linkBPS = 4_000_000

// stack is one test world: media, two CDNs, the app (ingest, consume,
// steer) on a free port, and the player origin serving the page, the
// players' JavaScript and the steered manifests.
type stack struct {
	media  Media
	cdns   map[string]*CDN
	app    *app.App
	appURL string
	origin *httptest.Server
	node   string

	mu        sync.Mutex
	manifests map[string][]byte // path on the origin -> body
}

// stackOption changes the stack and its config before its app starts.
type stackOption func(t *testing.T, s *stack, cfg *config.Config)

func startStack(t *testing.T, opts ...stackOption) *stack {
	t.Helper()
	node := requireBrowser(t)
	requireTool(t, "ffmpeg")
	m, err := GenerateMedia(t.Context(), DefaultMedia)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{media: m, cdns: map[string]*CDN{}, node: node, manifests: map[string][]byte{}}
	for _, name := range []string{"cdn-a", "cdn-b"} {
		c, err := StartCDN(name, m.Dir, linkBPS)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := c.Close(); err != nil {
				t.Error(err)
			}
		})
		s.cdns[name] = c
	}

	cfg := config.Default()
	cfg.HTTPAddr, cfg.DNSAddr = "127.0.0.1:0", ""
	cfg.Ingest.RateLimit.PerClientRPS = 0
	cfg.Consume.BatchInterval = config.Duration(100 * time.Millisecond)
	cfg.Services = []config.Service{{Name: "vod", CDNs: []string{"cdn-a", "cdn-b"}}, {Name: "live", CDNs: []string{"cdn-b", "cdn-a"}}}
	for _, o := range opts {
		o(t, s, &cfg)
	}
	for i := range cfg.CDNs {
		if c := s.cdns[cfg.CDNs[i].Name]; c != nil {
			cfg.CDNs[i].BaseURL = c.URL()
		}
	}
	// Frequent polls, so a steering change shows within a couple of
	// segments.
	cfg.HTTPSteering.TTL = config.Duration(2 * time.Second)
	cfg.HTTPSteering.IncidentTTL = config.Duration(2 * time.Second)
	cfg.HTTPSteering.TTLJitter = 0
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := app.New(t.Context(), cfg, app.Roles{Ingest: true, Consume: true, Steer: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app Run: %v", err)
		}
	})
	s.app, s.appURL = a, "http://"+a.HTTPAddr()

	mux := http.NewServeMux()
	mux.Handle("GET /node_modules/", http.StripPrefix("/node_modules/", http.FileServer(http.Dir(filepath.Join("js", "node_modules")))))
	mux.HandleFunc("GET /player.html", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join("testdata", "player.html"))
	})
	mux.HandleFunc("GET /steered/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b, ok := s.manifests[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		ct := "application/vnd.apple.mpegurl"
		if strings.HasSuffix(r.URL.Path, ".mpd") {
			ct = "application/dash+xml"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
	s.origin = httptest.NewServer(mux)
	t.Cleanup(s.origin.Close)
	return s
}

// rank makes first the steering table's choice for vod, second the backup.
func (s *stack) rank(t *testing.T, version uint64, first, second string) {
	t.Helper()
	err := s.app.Table().Store(&steering.Snapshot{
		Service: "vod", Version: version, At: time.Now(),
		Rankings: []*steering.Ranking{{
			Scope: steering.Scope{Service: "vod"}, Rule: steering.RuleMeasured,
			Choices: []steering.Choice{
				{CDN: first, Weight: 1, Score: 90, Confidence: 1, Health: steering.HealthUp, Leader: true},
				{CDN: second, Weight: 0, Score: 80, Confidence: 1, Health: steering.HealthUp},
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// steer writes the steered HLS playlist and MPD (pathways cdn-a, cdn-b)
// on the player origin and returns their URLs.
func (s *stack) steer(t *testing.T) (hlsURL, dashURL string) {
	t.Helper()
	o := manifest.Options{SteeringBase: s.appURL, Service: "vod", Pathways: []manifest.Pathway{
		{ID: "cdn-a", BaseURL: s.cdns["cdn-a"].URL()}, {ID: "cdn-b", BaseURL: s.cdns["cdn-b"].URL()},
	}}
	for _, f := range []struct {
		name    string
		rewrite func([]byte, manifest.Options) ([]byte, error)
	}{{s.media.HLS, manifest.HLS}, {s.media.DASH, manifest.DASH}} {
		src, err := os.ReadFile(filepath.Join(s.media.Dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		out, err := f.rewrite(src, o)
		if err != nil {
			t.Fatalf("steer %s: %v", f.name, err)
		}
		s.mu.Lock()
		s.manifests["/steered/"+f.name] = out
		s.mu.Unlock()
	}
	return s.origin.URL + "/steered/" + s.media.HLS, s.origin.URL + "/steered/" + s.media.DASH
}

// pageURL builds the player page's URL.
func (s *stack) pageURL(player, src, view string, extra url.Values) string {
	q := url.Values{"player": {player}, "src": {src}, "app": {s.appURL}, "view": {view}}
	if testing.Verbose() {
		q.Set("debug", "1") // the player's own log goes to play.mjs's stderr
	}
	for k, v := range extra {
		q[k] = v
	}
	return s.origin.URL + "/player.html?" + q.Encode()
}

// playResult is what js/play.mjs prints.
type playResult struct {
	Error        string           `json:"error"`
	Events       []map[string]any `json:"events"`
	Beacons      []map[string]any `json:"beacons"`
	CurrentTime  float64          `json:"currentTime"`
	CDN          string           `json:"cdn"`
	FirstFrameMS int              `json:"firstFrameMs"`
	MaxStallMS   int              `json:"maxStallMs"`
	Stalls       int              `json:"stalls"`
	Frags        []struct {
		T       int    `json:"t"`
		Pathway string `json:"pathway"`
		Host    string `json:"host"`
	} `json:"frags"`
	Steering []struct {
		T        int      `json:"t"`
		Priority []string `json:"priority"`
	} `json:"steering"`
	Errors        []map[string]any `json:"errors"`
	Console       []string         `json:"console"`
	IngestRejects []map[string]any `json:"ingestRejects"`
}

// play runs the page in chromium for the given time. It returns at once;
// wait() blocks until the browser is done and returns its result.
func (s *stack) play(t *testing.T, page string, d time.Duration) (wait func() playResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d+60*time.Second)
	args := []string{filepath.Join("js", "play.mjs"), "--url", page, "--seconds", fmt.Sprint(int(d.Seconds()))}
	if testing.Verbose() {
		args = append(args, "--verbose")
	}
	cmd := exec.CommandContext(ctx, s.node, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if testing.Verbose() {
		cmd.Stderr = t.Output()
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start node: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	var once sync.Once
	var res playResult
	wait = func() playResult {
		once.Do(func() {
			defer cancel()
			<-exited
			if waitErr != nil {
				t.Fatalf("play.mjs: %v\n%s", waitErr, stderr.Bytes())
			}
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("play.mjs output: %v\n%s", err, out.Bytes())
			}
			if res.Error != "" {
				t.Fatalf("play.mjs: %s", res.Error)
			}
		})
		return res
	}
	// Never leave a browser behind, whatever the test does.
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	return wait
}

// poll calls cond until it is true or the deadline passes.
func poll(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	pollExplain(t, within, what, func() string { return "" }, cond)
}

// pollPlaying is poll for a condition on a playing view: when it does not
// come, the failure shows what the player did (its errors and last events).
func pollPlaying(t *testing.T, within time.Duration, what string, wait func() playResult, cond func() bool) {
	t.Helper()
	pollExplain(t, within, what, func() string {
		res := wait()
		ev := res.Events
		if len(ev) > 15 {
			ev = ev[len(ev)-15:]
		}
		return fmt.Sprintf("\nplayer errors: %v\nlast events: %v", res.Errors, ev)
	}, cond)
}

func pollExplain(t *testing.T, within time.Duration, what string, explain func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s%s", within, what, explain())
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// windower is the query side of the analytics store.
type windower interface {
	Window(ctx context.Context, q analytics.WindowQuery) ([]analytics.Aggregate, error)
}

// TestPluginBeaconsReachStore: a real player with the plugin attached
// plays from one CDN; its beacons reach the analytics store under that
// CDN's name (the page maps hosts to names with cdnOf), and the CMCD v2
// event reports reach /v1/cmcd.
func TestPluginBeaconsReachStore(t *testing.T) {
	for _, player := range []string{"hls", "dash"} {
		t.Run(player, func(t *testing.T) {
			s := startStack(t)
			cdn := s.cdns["cdn-a"]
			src := cdn.URL() + s.media.HLS
			if player == "dash" {
				src = cdn.URL() + s.media.DASH
			}
			view := "e2e-" + player + "-" + fmt.Sprint(time.Now().UnixNano())
			extra := url.Values{"cmcd": {"1"}, "cdn": {"cdn-a"}, "cdnmap": {cdn.Addr() + "=cdn-a"}}
			res := s.play(t, s.pageURL(player, src, view, extra), 10*time.Second)()
			for _, r := range res.IngestRejects {
				t.Errorf("ingest refused: %v", r)
			}
			if res.FirstFrameMS < 0 || res.CurrentTime < 3 {
				t.Fatalf("did not play: currentTime %.1f, events %v, console %v", res.CurrentTime, res.Events, res.Console)
			}
			types := map[string]int{}
			for _, b := range res.Beacons {
				types[fmt.Sprint(b["type"])]++
				if b["cdn"] != "cdn-a" || b["view_id"] != view {
					t.Errorf("beacon %v: want cdn-a and view %s", b, view)
				}
			}
			if types["view_start"] != 1 || types["heartbeat"] < 2 || types["view_end"] != 1 {
				t.Errorf("beacon types %v: want one view_start, heartbeats, one view_end", types)
			}

			store, ok := s.app.Store().(windower)
			if !ok {
				t.Fatalf("store %T has no Window query", s.app.Store())
			}
			var aggs []analytics.Aggregate
			poll(t, 20*time.Second, "the view's beacons in the store", func() bool {
				var err error
				aggs, err = store.Window(t.Context(), analytics.WindowQuery{
					Filter: analytics.Filter{Service: "vod"},
					From:   time.Now().Add(-10 * time.Minute), To: time.Now().Add(2 * time.Minute),
				})
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range aggs {
					if a.CDN == "cdn-a" && a.Values[analytics.MetricStartupP50].N > 0 && a.Values[analytics.MetricViews].V >= 1 {
						return true
					}
				}
				return false
			})
			poll(t, 20*time.Second, "CMCD event reports accepted on /v1/cmcd", func() bool {
				return counter(t, s.app, "cdnpilot_beacons_accepted_total", "cmcd") > 0
			})
			// Everything accepted (beacons and CMCD reports) is in the store
			// once the consumer has handled as many records; then every row
			// of it, the CMCD ones included, must be under cdn-a.
			poll(t, 20*time.Second, "every accepted record stored", func() bool {
				accepted := counter(t, s.app, "cdnpilot_beacons_accepted_total", "cmcd") + counter(t, s.app, "cdnpilot_beacons_accepted_total", "beacon")
				return ledgertest.Counter(t, s.app.Registry(), "cdnpilot_consumer_records_total") >= accepted
			})
			aggs, err := store.Window(t.Context(), analytics.WindowQuery{
				Filter: analytics.Filter{Service: "vod"},
				From:   time.Now().Add(-10 * time.Minute), To: time.Now().Add(2 * time.Minute),
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range aggs {
				if a.CDN != "cdn-a" {
					t.Errorf("beacons or CMCD reports stored under CDN %q, want only cdn-a: %+v", a.CDN, a)
				}
			}
		})
	}
}

// counter sums a counter's series that carry label value lv.
func counter(t *testing.T, a *app.App, name, lv string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == lv {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// withCloneC adds cdn-c to vod as a clone of cdn-a's pathway: the steered
// manifests name only cdn-a and cdn-b, and players learn cdn-c from the
// steering manifest's PATHWAY-CLONES. Its stub listens on cdn-a's port on
// another loopback address, since a clone changes only the host name.
func withCloneC(t *testing.T, s *stack, cfg *config.Config) {
	_, port, err := net.SplitHostPort(s.cdns["cdn-a"].Addr())
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCDNOn("cdn-c", s.media.Dir, linkBPS, net.JoinHostPort("127.0.0.3", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	s.cdns["cdn-c"] = c
	cfg.Services[0] = config.Service{Name: "vod", CDNs: []string{"cdn-a", "cdn-b", "cdn-c"}, Clones: map[string]string{"cdn-c": "cdn-a"}}
}

// startSteered starts the stack with cdn-a ranked first and a player of
// the given kind on the steered manifest; wait returns its result.
func startSteered(t *testing.T, player, view string) (s *stack, a, b *CDN, wait func() playResult) {
	t.Helper()
	s = startStack(t)
	s.rank(t, 1, "cdn-a", "cdn-b")
	hlsURL, dashURL := s.steer(t)
	src := map[string]string{"hls": hlsURL, "dash": dashURL}[player]
	wait = s.play(t, s.pageURL(player, src, view, nil), 22*time.Second)
	return s, s.cdns["cdn-a"], s.cdns["cdn-b"], wait
}

// segmentsSince counts the media segments a CDN started serving at or
// after t.
func segmentsSince(c *CDN, t time.Time) int {
	n := 0
	for _, r := range c.Requests() {
		if strings.HasPrefix(r.Path, "/seg-") && !r.At.Before(t) {
			n++
		}
	}
	return n
}

// TestContentSteering drives hls.js and dash.js through the steering
// endpoint (/steer/vod) with steered manifests on two CDNs:
//   - start: the player polls /steer/vod and fetches segments from the
//     first pathway of PATHWAY-PRIORITY;
//   - switch: a new snapshot ranks the other CDN first, and the segments
//     move at the next poll;
//   - failover: the CDN in use is killed (connection refused) and the
//     player goes on from the other one without a stall over 2 s.
func TestContentSteering(t *testing.T) {
	for _, player := range []string{"hls", "dash"} {
		t.Run(player+"/switch", func(t *testing.T) {
			s, a, b, wait := startSteered(t, player, "e2e-switch-"+player)

			poll(t, 25*time.Second, "cdn-a serves 3 segments", func() bool { return len(a.Segments()) >= 3 })
			if n := len(b.Segments()); n != 0 {
				t.Errorf("cdn-b served %d segments while ranked second", n)
			}
			switched := time.Now()
			s.rank(t, 2, "cdn-b", "cdn-a")
			// TTL 2 s: the next poll comes within 2 s, and the player
			// moves at the next segment it fetches.
			poll(t, 10*time.Second, "segments move to cdn-b after the ranking changed", func() bool {
				return segmentsSince(b, switched) >= 2
			})
			moved := time.Since(switched)
			res := wait()
			if len(res.Steering) < 2 {
				t.Errorf("player loaded %d steering manifests, want a poll every TTL: %+v", len(res.Steering), res.Steering)
			}
			last := res.Frags[len(res.Frags)-1]
			if last.Pathway != "cdn-b" && last.Host != b.Addr() {
				t.Errorf("last fragment from %+v, want cdn-b", last)
			}
			if res.CDN != "cdn-b" {
				t.Errorf("plugin reports cdn %q at the end, want cdn-b", res.CDN)
			}
			if !hasBeacon(res, "cdn_switch", "cdn-b", "cdn-a") {
				t.Errorf("no cdn_switch cdn-a -> cdn-b beacon: %v", res.Beacons)
			}
			if res.MaxStallMS > 2000 {
				t.Errorf("stalled %d ms during a planned switch", res.MaxStallMS)
			}
			t.Logf("%s moved to cdn-b %v after the new ranking; steering polls %d; max stall %d ms",
				player, moved.Round(100*time.Millisecond), len(res.Steering), res.MaxStallMS)
		})
		t.Run(player+"/clone", func(t *testing.T) {
			// cdn-c, ranked first from the start, is in no manifest: the
			// player meets it in the first steering answer (dash.js asks
			// before it has fetched anything, so before it can name a
			// location), then leaves it for cdn-a when the ranking says so.
			s := startStack(t, withCloneC)
			a, c := s.cdns["cdn-a"], s.cdns["cdn-c"]
			s.rank(t, 1, "cdn-c", "cdn-a")
			hlsURL, dashURL := s.steer(t)
			src := map[string]string{"hls": hlsURL, "dash": dashURL}[player]
			wait := s.play(t, s.pageURL(player, src, "e2e-clone-"+player, nil), 22*time.Second)

			poll(t, 25*time.Second, "the clone cdn-c serves 3 segments", func() bool { return len(c.Segments()) >= 3 })
			switched := time.Now()
			s.rank(t, 2, "cdn-a", "cdn-c")
			poll(t, 10*time.Second, "segments move from the clone to cdn-a after the ranking changed", func() bool {
				return segmentsSince(a, switched) >= 2
			})
			res := wait()
			if len(res.Steering) == 0 || len(res.Steering[0].Priority) == 0 || res.Steering[0].Priority[0] != "cdn-c" {
				t.Errorf("first steering manifest %+v, want cdn-c first", res.Steering)
			}
			if !hasBeacon(res, "cdn_switch", "cdn-a", "cdn-c") {
				t.Errorf("no cdn_switch cdn-c -> cdn-a beacon: %v", res.Beacons)
			}
			// A clone on a wrong port shows as failed requests to its
			// host before the player finds its way (dash.js named the
			// URL in its error when the first answer left the port out).
			for _, e := range res.Errors {
				if strings.Contains(fmt.Sprint(e), "127.0.0.3") {
					t.Errorf("player error on the clone's host: %v", e)
				}
			}
			if res.MaxStallMS > 2000 {
				t.Errorf("stalled %d ms", res.MaxStallMS)
			}
			t.Logf("%s played %d segments from the clone cdn-c (%s), then moved to cdn-a; max stall %d ms", player, len(c.Segments()), c.Addr(), res.MaxStallMS)
		})
		t.Run(player+"/failover", func(t *testing.T) {
			_, a, b, wait := startSteered(t, player, "e2e-kill-"+player)

			poll(t, 25*time.Second, "cdn-a serves 4 segments", func() bool { return len(a.Segments()) >= 4 })
			killed := time.Now()
			a.Kill()
			pollPlaying(t, 15*time.Second, "segments come from cdn-b after cdn-a died", wait, func() bool {
				return segmentsSince(b, killed) >= 2
			})
			res := wait()
			if res.MaxStallMS > 2000 {
				t.Errorf("longest stall %d ms after the CDN died, want ≤ 2000 (events %v)", res.MaxStallMS, res.Events)
			}
			if res.CurrentTime < 15 {
				t.Errorf("playback reached %.1f s of 22, want it to go on", res.CurrentTime)
			}
			resumed := 0
			for _, e := range res.Errors {
				switch {
				case e["type"] == "video_error":
					t.Errorf("media element error after failover: %v", e)
				case e["fatal"] == true && hasErrorBeacon(res, e["code"], false):
					// hls.js blamed the new pathway for a fragment that
					// failed on the dead CDN; the plugin resumed loading.
					resumed++
				case e["fatal"] == true:
					t.Errorf("fatal error after failover: %v", e)
				}
			}
			if res.CDN != "cdn-b" {
				t.Errorf("plugin reports cdn %q at the end, want cdn-b", res.CDN)
			}
			t.Logf("%s fetched its first cdn-b segment %v after cdn-a died; max stall %d ms; %d stalls; %d fatal errors resumed by the plugin", player,
				firstSegmentSince(b, killed).Sub(killed).Round(100*time.Millisecond), res.MaxStallMS, res.Stalls, resumed)
		})
	}
}

// firstSegmentSince is when a CDN got its first segment request at or
// after t.
func firstSegmentSince(c *CDN, t time.Time) time.Time {
	for _, r := range c.Requests() {
		if strings.HasPrefix(r.Path, "/seg-") && !r.At.Before(t) {
			return r.At
		}
	}
	return time.Time{}
}

// hasErrorBeacon tells whether the plugin sent an error beacon with this
// code and fatal flag.
func hasErrorBeacon(res playResult, code any, fatal bool) bool {
	for _, b := range res.Beacons {
		if b["type"] == "error" && b["error_code"] == code && b["fatal"] == fatal {
			return true
		}
	}
	return false
}

func hasBeacon(res playResult, typ, cdn, prev string) bool {
	for _, b := range res.Beacons {
		if b["type"] == typ && b["cdn"] == cdn && b["prev_cdn"] == prev {
			return true
		}
	}
	return false
}

package redirect

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdnpilot/cdnpilot/internal/geo"
	"github.com/cdnpilot/cdnpilot/steering"
)

// nopWriter is the cheapest ResponseWriter: what the handler costs, not
// what a recorder does.
type nopWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *nopWriter) Header() http.Header { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK // as net/http does
	}
	w.n += len(b)
	return len(b), nil
}
func (w *nopWriter) WriteHeader(code int) { w.code = code }

type nopLog struct{}

func (nopLog) LogDecision(steering.DecisionRecord) {}

// benchMux is the server as `cdnpilot steer` runs it (jittered TTLs,
// every decision logged, metrics) over snap, mounted on a mux.
func benchMux(b *testing.B, snap *steering.Snapshot) *http.ServeMux {
	b.Helper()
	tab, err := steering.NewTable(testCatalog(), steering.Stale{Freeze: 30 * time.Second, Static: 5 * time.Minute}, func() time.Time { return testNow })
	if err != nil {
		b.Fatal(err)
	}
	if err := tab.Store(snap); err != nil {
		b.Fatal(err)
	}
	sg, err := NewAkamai2(testKey, "", time.Hour, "")
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{
		Catalog: testCatalog(), Decider: tab, Geo: geo.Demo(),
		Signers: map[string]Signer{"cdn-b": sg}, TTLJitter: 0.1, DemoteFactor: 1.2,
		DecisionLog: nopLog{}, LogSample: 1, Registerer: prometheus.NewRegistry(),
		Now: func() time.Time { return testNow },
	})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

func serveLoop(b *testing.B, mux *http.ServeMux, target string, code int) {
	b.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = "100.64.1.2:40000" // GB, eu-west in the demo coverage
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		w.code = 0
		mux.ServeHTTP(w, req)
	}
	if w.code != code {
		b.Fatalf("status %d, want %d", w.code, code)
	}
}

// BenchmarkRedirect is GET /r/vod/... through the mux: unsigned (cdn-a)
// and signed (cdn-b, Akamai2).
func BenchmarkRedirect(b *testing.B) {
	for _, c := range []struct {
		name string
		lead string
	}{{"unsigned", "cdn-a"}, {"signed", "cdn-b"}} {
		b.Run(c.name, func(b *testing.B) {
			var others []steering.Choice
			for _, n := range []string{"cdn-a", "cdn-b", "cdn-c"} {
				if n != c.lead {
					others = append(others, choice(n, 0, steering.HealthUp))
				}
			}
			mux := benchMux(b, ranking(steering.RuleMeasured, 0, append([]steering.Choice{choice(c.lead, 1, steering.HealthUp)}, others...)...))
			serveLoop(b, mux, "/r/vod/movies/1/master.m3u8?lang=en&cdnpilot_view=v-42", http.StatusFound)
		})
	}
}

// BenchmarkSteering is GET /steer/vod through the mux: a first poll
// (a new view id) and a later one carrying its state.
func BenchmarkSteering(b *testing.B) {
	mux := benchMux(b, ranking(steering.RuleMeasured, 0, choice("cdn-a", 0.9, steering.HealthUp), choice("cdn-b", 0.08, steering.HealthUp), choice("cdn-c", 0.02, steering.HealthUp)))
	state := string(viewState{view: "v-42", expected: "cdn-a"}.encode(nil))
	for _, c := range []struct{ name, target string }{
		{"first_poll", "/steer/vod?ladder_min=300000&_HLS_pathway=cdn-a&_HLS_throughput=5000000"},
		{"with_state", "/steer/vod?ladder_min=300000&_ss=" + state + "&_HLS_pathway=cdn-a&_HLS_throughput=5000000"},
	} {
		b.Run(c.name, func(b *testing.B) { serveLoop(b, mux, c.target, http.StatusOK) })
	}
}

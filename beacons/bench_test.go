package beacons

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkIngest measures the whole path of a 50-beacon JSON array:
// HTTP, decode, validate, enrich, encode and a synchronous produce with
// acks from the embedded broker. Rate limiting is off.
func BenchmarkIngest(b *testing.B) {
	const perBody = 50
	e := newEnv(b, envConfig{opts: viaProxy})
	items := make([]map[string]any, perBody)
	for i := range items {
		items[i] = beacon(map[string]any{"seq": i})
	}
	body := []byte(mustJSON(b, items))
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	url := e.srv.URL + "/v1/beacons"

	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Forwarded-For", "100.64.9.9")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*perBody)/time.Since(start).Seconds(), "beacons/s")
}

// BenchmarkIngestStage is the ingest stage alone, as the pipeline issue
// defines it: decode, validate, enrich and a synchronous, acknowledged
// produce to the embedded broker, without an HTTP client on the same CPUs.
// Many requests are in flight at once, as on a real ingest node, and they
// come from clients in several regions (so several partitions).
func BenchmarkIngestStage(b *testing.B) {
	const perBody = 50
	e := newEnv(b, envConfig{opts: viaProxy, partitions: 6, batchSize: 2000})
	clients := []string{"100.64.9.9", "100.65.1.1", "100.80.3.3", "100.96.2.2", "100.112.7.7", "198.18.4.4"}
	items := make([]map[string]any, perBody)
	for i := range items {
		items[i] = beacon(map[string]any{"seq": i})
	}
	body := []byte(mustJSON(b, items))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.SetParallelism(64)
	var n atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1))
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/v1/beacons", bytes.NewReader(body))
			req.RemoteAddr = "127.0.0.1:40000"
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Forwarded-For", clients[i%len(clients)])
			i++
			w := httptest.NewRecorder()
			e.h.ServeBeacons(w, req)
			if w.Code != http.StatusAccepted {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*perBody)/time.Since(start).Seconds(), "beacons/s")
}

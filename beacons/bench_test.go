package beacons

import (
	"bytes"
	"io"
	"net/http"
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

package simloop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/cdnpilot/cdnpilot/beacons"
)

// poster posts simulated players' beacons to an ingest in the background,
// as if from behind a trusted proxy that sets X-Forwarded-For. Both loops
// use it; wait ends a step.
type poster struct {
	url    string // ingest base URL
	client *http.Client

	sem      chan struct{}
	wg       sync.WaitGroup
	accepted atomic.Int64
	mu       sync.Mutex
	err      error // the last failure since wait
}

func newPoster(url string, client *http.Client, inFlight int) *poster {
	return &poster{url: url, client: client, sem: make(chan struct{}, inFlight)}
}

func (p *poster) send(ctx context.Context, client netip.Addr, batch []beacons.Input) error {
	body, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("encode beacons: %w", err)
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.wg.Go(func() {
		defer func() { <-p.sem }()
		if err := p.post(ctx, client, body, len(batch)); err != nil && ctx.Err() == nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
		}
	})
	return nil
}

// post sends one body. The simulator's beacons are well-formed, so a
// rejection is a bug on one side or the other and is reported.
func (p *poster) post(ctx context.Context, client netip.Addr, body []byte, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/v1/beacons", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", client.String())
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("post beacons: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var r struct {
		Accepted int `json:"accepted"`
	}
	_ = json.Unmarshal(data, &r)
	p.accepted.Add(int64(r.Accepted))
	if resp.StatusCode != http.StatusAccepted || r.Accepted != n {
		return fmt.Errorf("ingest answered %d accepting %d of %d: %s", resp.StatusCode, r.Accepted, n, bytes.TrimSpace(data))
	}
	return nil
}

// wait returns once every post sent so far has been answered, with the
// last failure among them (and forgets it).
func (p *poster) wait() error {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.err
	p.err = nil
	return err
}

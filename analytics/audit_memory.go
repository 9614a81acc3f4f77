package analytics

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

const defaultAuditRingSize = 100_000

// AuditMemory is the audit trail of the embedded default: the last size
// records in memory, append-only; once full, each append evicts the oldest
// appended and Dropped counts it. It is safe for concurrent use.
type AuditMemory struct {
	mu      sync.RWMutex
	buf     []AuditRecord // grows to size, then wraps
	next    int           // where the next record goes once buf is full
	size    int
	dropped uint64
}

// NewAuditMemory returns an empty trail holding up to size records (100,000
// when size <= 0).
func NewAuditMemory(size int) *AuditMemory {
	if size <= 0 {
		size = defaultAuditRingSize
	}
	return &AuditMemory{size: size}
}

// AppendAudit validates r and stores it before returning; on error nothing
// is stored. An empty ID is replaced by a fresh one.
func (m *AuditMemory) AppendAudit(ctx context.Context, r AuditRecord) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	r, err := prepareAudit(r)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.buf) < m.size {
		m.buf = append(m.buf, r)
		return nil
	}
	m.buf[m.next] = r
	m.next = (m.next + 1) % m.size
	m.dropped++
	return nil
}

// Audit returns one page of the records matching q, newest first.
func (m *AuditMemory) Audit(ctx context.Context, q AuditQuery) (AuditPage, error) {
	s, err := q.scan()
	if err != nil {
		return AuditPage{}, fmt.Errorf("audit query: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return AuditPage{}, fmt.Errorf("audit: %w", err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	// Pointers, not copies: before and after may be large, and only a page
	// of them is copied out.
	var hits []*AuditRecord
	for i := range m.buf {
		if s.match(&m.buf[i]) {
			hits = append(hits, &m.buf[i])
		}
	}
	slices.SortFunc(hits, compareAuditNewestFirst)
	out := make([]AuditRecord, 0, min(len(hits), s.limit+1))
	for _, r := range hits[:min(len(hits), s.limit+1)] {
		out = append(out, *r)
	}
	return s.page(out), nil
}

// Len is the number of records held.
func (m *AuditMemory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.buf)
}

// Dropped is the number of records evicted to make room since the trail
// was made.
func (m *AuditMemory) Dropped() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.dropped
}

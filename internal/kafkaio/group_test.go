package kafkaio

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// stuck is a reader that has stopped fetching and says nothing, as
// kafka-go readers do after some rebalances.
type stuck struct{ closed chan struct{} }

func (s *stuck) FetchMessage(ctx context.Context) (kafka.Message, error) {
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}
func (s *stuck) CommitMessages(context.Context, ...kafka.Message) error { return nil }
func (s *stuck) Stats() kafka.ReaderStats                               { return kafka.ReaderStats{} }
func (s *stuck) Close() error                                           { close(s.closed); return nil }

func TestGroupReaderReplacesStalledReader(t *testing.T) {
	e := startBroker(t, "", Topic{Name: "beacons", Partitions: 2})
	produce(t, e.Addrs(), "beacons", []int{3, 2})
	o := ReaderOptions{Brokers: e.Addrs(), Topic: "beacons", GroupID: "g", ClientID: "test"}
	g := NewGroupReader(o, 300*time.Millisecond)
	defer g.Close()
	// The first reader is stuck; the ones after are real.
	first := &stuck{closed: make(chan struct{})}
	_ = g.r.Close()
	g.r = first

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var got []kafka.Message
	for range 5 {
		m, err := g.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("FetchMessage after %d: %v", len(got), err)
		}
		got = append(got, m)
	}
	if n := g.Restarts(); n != 1 {
		t.Errorf("Restarts = %d, want 1", n)
	}
	select {
	case <-first.closed:
	case <-ctx.Done():
		t.Fatal("the stalled reader was not closed")
	}
	if err := g.CommitMessages(ctx, got...); err != nil {
		t.Fatalf("CommitMessages: %v", err)
	}
	if lag, err := GroupLag(ctx, e.Addrs(), "g", "beacons"); err != nil || lag != 0 {
		t.Errorf("after commit: GroupLag = %d, %v; want 0", lag, err)
	}
}

func TestGroupReaderKeepsIdleReader(t *testing.T) {
	// Nothing to read is not a stall: the reader stays, and the caller's
	// deadline ends the fetch.
	e := startBroker(t, "", Topic{Name: "beacons", Partitions: 1})
	g := NewGroupReader(ReaderOptions{Brokers: e.Addrs(), Topic: "beacons", GroupID: "g", ClientID: "test"}, 200*time.Millisecond)
	defer g.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	if _, err := g.FetchMessage(ctx); err != context.DeadlineExceeded {
		t.Fatalf("FetchMessage = %v, want %v", err, context.DeadlineExceeded)
	}
	if n := g.Restarts(); n != 0 {
		t.Errorf("Restarts = %d, want 0", n)
	}
}

package beacons

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cdnpilot/cdnpilot/beacons/record"
)

var regions = []string{"eu-west", "eu-central", "us-east", "us-west", "ap-south", "ap-northeast", "sa-east", "local", UnknownRegion}

// regionBatch is one beacon per region, three times over, with event ids
// that say where each one is in the batch.
func regionBatch(t *testing.T) []record.Beacon {
	t.Helper()
	var batch []record.Beacon
	for round := range 3 {
		for _, r := range regions {
			batch = append(batch, record.Beacon{
				EventID: record.NewEventID(), Region: r, Type: record.TypeHeartbeat, ViewID: "v", TS: testNow.UnixMilli(), ReceivedAt: testNow.UnixMilli(),
				Seq: uint32(round), Service: "vod", CDN: "cdn-a", Source: record.SourceBeacon,
			})
		}
	}
	return batch
}

// faultyPartition picks a partition that some but not all of batch hash to.
func faultyPartition(t *testing.T, batch []record.Beacon, partitions int) (int32, []int) {
	t.Helper()
	for p := range partitions {
		var on []int
		for i, b := range batch {
			if partitionOf(b.Region, partitions) == p {
				on = append(on, i)
			}
		}
		if len(on) > 0 && len(on) < len(batch) {
			return int32(p), on
		}
	}
	t.Fatal("every region hashes to one partition")
	return 0, nil
}

func TestProducer(t *testing.T) {
	t.Parallel()
	const partitions = 3
	tests := []struct {
		name     string
		retries  int
		count    int // fault count on the chosen partition; -1 until removed
		wantFail bool
	}{
		// The first produce to the partition fails and the retry resends
		// only its messages: every beacon ends up on the topic exactly once.
		{"retry resends only the failed partition", 2, 1, false},
		// Retries run out: the error names exactly the beacons of the
		// failed partition, and the rest are stored once.
		{"gives up naming the failed beacons", 1, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			topic := newTopic(t, partitions)
			p := NewProducer(newWriter(t, topic, 0), ProducerOptions{Retries: tt.retries, Timeout: 10 * time.Second})
			batch := regionBatch(t)
			part, onPart := faultyPartition(t, batch, partitions)

			c := testBroker(t).Cluster()
			seen := make([]*kfake.FaultHandle, partitions)
			for i := range partitions {
				seen[i] = c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{int32(i)}, Observe: true, Count: -1})
			}
			fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{part}, Err: kerr.NotEnoughReplicas, Count: tt.count})
			err := p.Publish(t.Context(), batch)
			fault.Remove()
			for _, h := range seen {
				h.Remove()
			}

			var pe *PublishError
			switch {
			case !tt.wantFail && err != nil:
				t.Fatalf("publish: %v", err)
			case tt.wantFail && !errors.As(err, &pe):
				t.Fatalf("publish: %v, want a *PublishError", err)
			case tt.wantFail && !slices.Equal(pe.Failed, onPart):
				t.Errorf("failed %v, want exactly the beacons of partition %d: %v", pe.Failed, part, onPart)
			}
			// Each partition's messages go in one produce request per
			// attempt: the faulty one saw every attempt, the others one.
			for i, h := range seen {
				want := 1
				if int32(i) == part {
					want = 1 + min(tt.retries, 1)
					if tt.wantFail {
						want = 1 + tt.retries
					}
				}
				if partitionHasData(batch, i, partitions) && h.Hits() != want {
					t.Errorf("partition %d got %d produce requests, want %d", i, h.Hits(), want)
				}
			}

			ids := eventIDs(readTopic(t, topic))
			for i, b := range batch {
				want := 1
				if tt.wantFail && slices.Contains(onPart, i) {
					want = 0
				}
				if ids[b.EventID] != want {
					t.Errorf("beacon %d (%s) on the topic %d times, want %d", i, b.Region, ids[b.EventID], want)
				}
			}
			if len(ids) > len(batch) {
				t.Errorf("%d distinct ids on the topic for %d beacons", len(ids), len(batch))
			}
		})
	}
}

func partitionHasData(batch []record.Beacon, p, n int) bool {
	return slices.ContainsFunc(batch, func(b record.Beacon) bool { return partitionOf(b.Region, n) == p })
}

func TestProducerEdges(t *testing.T) {
	t.Parallel()
	topic := newTopic(t, 1)
	p := NewProducer(newWriter(t, topic, 0), ProducerOptions{Retries: 3, Timeout: 10 * time.Second})
	if err := p.Publish(t.Context(), nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	batch := regionBatch(t)[:3]
	err := p.Publish(ctx, batch)
	var pe *PublishError
	if !errors.As(err, &pe) || !slices.Equal(pe.Failed, []int{0, 1, 2}) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled publish: %v, want every beacon failed and context.Canceled", err)
	}
	if got := readTopic(t, topic); len(got) != 0 {
		t.Errorf("%d records from a cancelled publish", len(got))
	}
}

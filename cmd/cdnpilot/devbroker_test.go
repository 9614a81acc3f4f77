package main

import (
	"bufio"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cdnpilot/cdnpilot/internal/config"
	"github.com/cdnpilot/cdnpilot/internal/syncbuf"
)

// startDevbroker runs `cdnpilot devbroker` with args and returns its
// address and a stop function that waits for it to exit.
func startDevbroker(t *testing.T, args ...string) (addr string, stop func()) {
	t.Helper()
	pr, pw := io.Pipe()
	var stderr syncbuf.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"devbroker", "--port", "0"}, args...), pw, &stderr)
		pw.Close()
	}()
	re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if addr == "" {
		cancel()
		t.Fatalf("devbroker printed no address: %v %s", <-done, stderr.String())
	}
	return addr, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("devbroker: %v", err)
		}
	}
}

// TestDevbroker: the standalone broker has the topics the roles expect,
// speaks Kafka to kafka-go, and with --data-dir keeps its log across a
// restart.
func TestDevbroker(t *testing.T) {
	dir := t.TempDir()
	addr, stop := startDevbroker(t, "--data-dir", dir)

	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions()
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, p := range parts {
		got[p.Topic]++
	}
	k := config.Default().Kafka
	for topic, n := range map[string]int{k.BeaconsTopic: k.Partitions, k.DeadLetterTopic: 1, k.RankingsTopic: 1, k.OverridesTopic: 1} {
		if got[topic] != n {
			t.Errorf("topic %s: %d partitions, want %d (all: %v)", topic, got[topic], n, got)
		}
	}

	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: k.OverridesTopic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(t.Context(), kafka.Message{Key: []byte("ovr_1"), Value: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	stop()

	// Restarted on the same directory (a new port): the message is there.
	addr, stop = startDevbroker(t, "--data-dir", dir)
	defer stop()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: k.OverridesTopic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	if err != nil || string(m.Key) != "ovr_1" || string(m.Value) != "kept" {
		t.Fatalf("after a restart: %q=%q, %v", m.Key, m.Value, err)
	}
}

func TestDevbrokerBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"devbroker", "--port", "70000"}, "--port 70000"},
		{[]string{"devbroker", "--port", "x"}, "invalid value"},
		{[]string{"devbroker", "extra"}, `unexpected argument "extra"`},
		{[]string{"devbroker", "--config", "/nonexistent.yaml"}, "nonexistent.yaml"},
	} {
		var out, errOut strings.Builder
		err := run(t.Context(), tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error()+errOut.String(), tc.want) {
			t.Errorf("%v: %v %s, want an error naming %s", tc.args, err, errOut.String(), tc.want)
		}
	}
}

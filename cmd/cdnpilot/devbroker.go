package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/kafkaio"
)

// runDevbroker serves the demo's in-process Kafka-protocol broker (kfake)
// as a process of its own, so the roles can run apart on one machine
// without installing Kafka: `cdnpilot devbroker`, then each role with
// `--kafka 127.0.0.1:9092`. It is a development and test tool: one broker,
// loopback only, no replication; production runs real Kafka.
func runDevbroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devbroker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 9092, "loopback port to listen on (0 picks a free one)")
	dataDir := fs.String("data-dir", "", "directory to keep the log in across restarts (default: memory only)")
	configPath := fs.String("config", "", "YAML config file whose kafka section names the topics and partitions (default: the built-in example)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("devbroker: --port %d is not a port (0-65535)", *port)
	}
	cf := commonFlags{configPath: *configPath}
	cfg, err := cf.load()
	if err != nil {
		return fmt.Errorf("devbroker: %w", err)
	}
	// The topics every role expects, created up front as the roles would
	// on a real cluster (kafkaio.EnsureTopics): the compacted ones must be
	// compacted from the start.
	topics := app.Topics(cfg)
	b, err := kafkaio.StartEmbedded(*port, *dataDir, topics...)
	if err != nil {
		return fmt.Errorf("devbroker: %w", err)
	}
	defer b.Close()
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = fmt.Sprintf("%s (%d)", t.Name, t.Partitions)
	}
	store := "in memory: lost at exit"
	if *dataDir != "" {
		store = "kept in " + *dataDir
	}
	fmt.Fprintf(stdout, "cdnpilot devbroker listening on %s (log %s)\n  topics: %s\n  roles:  cdnpilot <role> --kafka %s\n",
		strings.Join(b.Addrs(), ","), store, strings.Join(names, ", "), strings.Join(b.Addrs(), ","))
	<-ctx.Done()
	return nil
}

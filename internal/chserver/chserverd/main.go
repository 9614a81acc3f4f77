// Command chserverd runs one ClickHouse server for a whole test run: it
// starts it, writes its native address to -addr-file once it is ready, and
// stops it on SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cdnpilot/cdnpilot/internal/chserver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chserverd:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "work directory for config, data and logs (temp dir if empty)")
	addrFile := flag.String("addr-file", "", "write host:port here once the server is ready")
	binary := flag.String("binary", chserver.DefaultBinary, "clickhouse-server binary")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	srv, err := chserver.Start(ctx, chserver.Options{Dir: *dir, Binary: *binary, Logger: logger})
	if err != nil {
		return err
	}
	if *addrFile != "" {
		// Write then rename, so a reader polling for the file never sees half.
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(srv.Addr()+"\n"), 0o644); err != nil {
			_ = srv.Stop()
			return fmt.Errorf("write addr file: %w", err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			_ = srv.Stop()
			return fmt.Errorf("write addr file: %w", err)
		}
	}
	logger.Info("clickhouse running", "addr", srv.Addr(), "dir", srv.Dir())
	<-ctx.Done()
	logger.Info("stopping clickhouse")
	return srv.Stop()
}

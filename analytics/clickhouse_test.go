package analytics_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/chserver"
)

// testDatabase returns a database name of its own for one test and drops it
// when the test ends, so tests can share one server.
func testDatabase(t *testing.T, addr string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "cdnpilot_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
		if err != nil {
			return
		}
		defer conn.Close()
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	return name
}

func openClickHouse(t *testing.T, addr string, opts analytics.ClickHouseOptions) *analytics.ClickHouse {
	t.Helper()
	opts.Addr = addr
	if opts.Database == "" {
		opts.Database = testDatabase(t, addr)
	}
	c, err := analytics.OpenClickHouse(t.Context(), opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open clickhouse: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestClickHouseContract(t *testing.T) {
	addr := chserver.ForTest(t)
	t.Run("raw", func(t *testing.T) {
		contract(t, func(t *testing.T) store { return openClickHouse(t, addr, analytics.ClickHouseOptions{}) }, true)
	})
	// The same cases through the per-minute rollups and the materialized view.
	t.Run("rollup", func(t *testing.T) {
		contract(t, func(t *testing.T) store {
			return openClickHouse(t, addr, analytics.ClickHouseOptions{ExactRange: -1})
		}, false)
	})
}

func TestClickHouseMigrateIdempotent(t *testing.T) {
	addr := chserver.ForTest(t)
	db := testDatabase(t, addr)
	first := openClickHouse(t, addr, analytics.ClickHouseOptions{Database: db})
	if err := first.Migrate(t.Context()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	openClickHouse(t, addr, analytics.ClickHouseOptions{Database: db}) // a restart

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rows, versions uint64
	if err := conn.QueryRow(t.Context(), "SELECT count(), uniqExact(version) FROM `"+db+"`.schema_migrations").Scan(&rows, &versions); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	migs, err := analytics.Migrations(mustParams(t, db, false))
	if err != nil {
		t.Fatal(err)
	}
	if rows != uint64(len(migs)) || versions != uint64(len(migs)) {
		t.Fatalf("schema_migrations has %d rows / %d versions, want %d each", rows, versions, len(migs))
	}
}

func TestClickHouseOptionsValidation(t *testing.T) {
	ctx := t.Context()
	if _, err := analytics.OpenClickHouse(ctx, analytics.ClickHouseOptions{}, nil); err == nil {
		t.Fatal("empty addr accepted")
	}
	if _, err := analytics.OpenClickHouse(ctx, analytics.ClickHouseOptions{Addr: "127.0.0.1:1", Database: "x; DROP"}, nil); err == nil {
		t.Fatal("bad database name accepted")
	}
	// Nothing listens on port 1: the dial timeout, not the driver's 30 s
	// default, bounds the failure.
	start := time.Now()
	if _, err := analytics.OpenClickHouse(ctx, analytics.ClickHouseOptions{Addr: "127.0.0.1:1", DialTimeout: 500 * time.Millisecond}, nil); err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("open of a closed port took %s", d)
	}
}

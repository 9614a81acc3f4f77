package chserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/goleak"

	"github.com/cdnpilot/cdnpilot/internal/chserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func connect(t *testing.T, addr string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Protocol:    clickhouse.Native,
		DialTimeout: 2 * time.Second,
		ReadTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func count(ctx context.Context, t *testing.T, conn driver.Conn) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM harness_test.t").Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

func TestForTestSelectOne(t *testing.T) {
	conn := connect(t, chserver.ForTest(t))
	var one uint8
	if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("select 1: %v", err)
	}
	if one != 1 {
		t.Fatalf("SELECT 1 = %d", one)
	}
}

func TestKillRestartKeepsData(t *testing.T) {
	ctx := t.Context()
	srv := chserver.ForTestServer(t)
	addr := srv.Addr()

	conn := connect(t, addr)
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS harness_test",
		"CREATE TABLE harness_test.t (k UInt32) ENGINE = MergeTree ORDER BY k",
		// INSERT ... SELECT: 18.16 waits for client data blocks after an
		// INSERT ... VALUES sent as plain query text over the native protocol.
		"INSERT INTO harness_test.t (k) SELECT toUInt32(number + 1) FROM system.numbers LIMIT 3",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if n := count(ctx, t, conn); n != 3 {
		t.Fatalf("count before kill = %d, want 3", n)
	}

	if err := srv.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := connect(t, addr).Ping(pctx)
	cancel()
	if err == nil {
		t.Fatal("ping succeeded after Kill")
	}

	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if srv.Addr() != addr {
		t.Fatalf("restart moved the server from %s to %s", addr, srv.Addr())
	}
	// A fresh connection: the old pool's sockets died with the server.
	if n := count(ctx, t, connect(t, addr)); n != 3 {
		t.Fatalf("count after restart = %d, want 3", n)
	}

	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("restart after stop: %v", err)
	}
	if n := count(ctx, t, connect(t, addr)); n != 3 {
		t.Fatalf("count after stop+restart = %d, want 3", n)
	}
}

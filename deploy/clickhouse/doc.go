// Package clickhouse holds cdnpilot's ClickHouse cluster schema (the NNNN_*.sql files here) and the tests that keep it equal to the single-node schema of analytics/migrations.
package clickhouse

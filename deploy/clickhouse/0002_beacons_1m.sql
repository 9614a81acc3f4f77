-- Per-minute rollups (analytics/migrations/0002_beacons_1m.sql).
--
-- The materialized view hangs off the LOCAL raw table and writes into the
-- LOCAL rollup table, on every host: an insert through the Distributed
-- beacons table reaches one replica of one shard, that replica's view
-- aggregates the block, and replication copies the resulting rollup part
-- (a view never fires on a fetched part). Each shard thus holds rollups of
-- its own beacons; readers merge them across shards with the -Merge
-- combinators through the Distributed beacons_1m, which is what they do on
-- one node anyway.
--
-- The view must keep the name beacons_1m_mv: cdnpilot's own Migrate runs
-- CREATE MATERIALIZED VIEW IF NOT EXISTS beacons_1m_mv ... FROM beacons, and
-- a view of that name on the Distributed beacons table would count every
-- beacon a second time.
CREATE TABLE IF NOT EXISTS cdnpilot.beacons_1m_local ON CLUSTER '{cluster}'
(
    minute        DateTime,
    service       LowCardinality(String),
    cdn           LowCardinality(String),
    region        LowCardinality(String),
    country       LowCardinality(String),
    asn           UInt32,
    beacons       AggregateFunction(count),
    views         AggregateFunction(uniqExactIf, String, UInt8),
    fatal_views   AggregateFunction(uniqExactIf, String, UInt8),
    ebvs_views    AggregateFunction(uniqExactIf, String, UInt8),
    startup_q     AggregateFunction(quantilesIf(0.5, 0.9), Float64, UInt8),
    startup_n     AggregateFunction(countIf, UInt8),
    played        AggregateFunction(sumIf, UInt64, UInt8),
    rebuffer      AggregateFunction(sumIf, UInt64, UInt8),
    rebuffer_n    AggregateFunction(countIf, UInt8),
    throughput_q  AggregateFunction(quantileIf(0.5), Float64, UInt8),
    throughput_n  AggregateFunction(countIf, UInt8),
    bitrate_sum   AggregateFunction(sumIf, UInt64, UInt8),
    bitrate_n     AggregateFunction(countIf, UInt8),
    ttfb_q        AggregateFunction(quantileIf(0.5), Float64, UInt8),
    ttfb_n        AggregateFunction(countIf, UInt8)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMMDD(minute)
ORDER BY (service, region, cdn, country, asn, minute)
TTL minute + INTERVAL 400 DAY;

-- Read-only: only the view writes rollups, into beacons_1m_local. No
-- sharding key, so an INSERT into it fails on a cluster of several shards.
CREATE TABLE IF NOT EXISTS cdnpilot.beacons_1m ON CLUSTER '{cluster}' AS cdnpilot.beacons_1m_local
ENGINE = Distributed('{cluster}', cdnpilot, beacons_1m_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS cdnpilot.beacons_1m_mv ON CLUSTER '{cluster}' TO cdnpilot.beacons_1m_local AS
SELECT
    toStartOfMinute(received_at) AS minute,
    service,
    cdn,
    region,
    country,
    asn,
    countState() AS beacons,
    uniqExactIfState(view_id, type IN (1, 8) OR (type = 6 AND fatal = 1)) AS views,
    uniqExactIfState(view_id, type = 6 AND fatal = 1) AS fatal_views,
    uniqExactIfState(view_id, type = 8 AND startup_ms = 0 AND source = 0) AS ebvs_views,
    quantilesIfState(0.5, 0.9)(toFloat64(startup_ms), type = 1 AND startup_ms > 0) AS startup_q,
    countIfState(type = 1 AND startup_ms > 0) AS startup_n,
    sumIfState(toUInt64(played_ms), type IN (2, 8) AND source = 0) AS played,
    sumIfState(toUInt64(rebuffer_ms), type IN (2, 8) AND source = 0) AS rebuffer,
    countIfState(type IN (2, 8) AND source = 0) AS rebuffer_n,
    quantileIfState(0.5)(toFloat64(throughput_kbps), throughput_kbps > 0) AS throughput_q,
    countIfState(throughput_kbps > 0) AS throughput_n,
    sumIfState(toUInt64(bitrate_kbps), bitrate_kbps > 0) AS bitrate_sum,
    countIfState(bitrate_kbps > 0) AS bitrate_n,
    quantileIfState(0.5)(toFloat64(ttfb_ms), ttfb_ms > 0) AS ttfb_q,
    countIfState(ttfb_ms > 0) AS ttfb_n
FROM cdnpilot.beacons_local
GROUP BY minute, service, cdn, region, country, asn;

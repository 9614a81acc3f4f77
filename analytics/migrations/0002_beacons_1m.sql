-- Per-minute rollups. The materialized view sees each inserted block once, so
-- a redelivered beacon is counted again here (at-least-once); queries that
-- must be exact read the raw table instead; the distinct-view columns stay
-- exact either way. The -State expressions must stay the same as the
-- raw-table expressions in clickhouse.go (TestAggregatesMatchRollup).
-- Types: 1 view_start, 2 heartbeat, 6 error, 8 view_end; source 0 = beacon.
CREATE TABLE IF NOT EXISTS {{.DB}}.beacons_1m
(
    minute        DateTime,
    service       {{.Str}},
    cdn           {{.Str}},
    region        {{.Str}},
    country       {{.Str}},
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
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (service, region, cdn, country, asn, minute)
{{- if .Modern}}
TTL minute + INTERVAL {{.RollupTTLDays}} DAY
{{- end}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.beacons_1m_mv TO {{.DB}}.beacons_1m AS
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
FROM {{.DB}}.beacons
GROUP BY minute, service, cdn, region, country, asn;

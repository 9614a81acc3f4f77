-- migration 0001 beacons
CREATE TABLE IF NOT EXISTS `cdnpilot`.beacons
(
    event_id         String,
    received_at      DateTime,
    received_at_ms   Int64,
    client_ip        String,
    country          String,
    region           String,
    asn              UInt32,
    source           UInt8,
    type             UInt8,
    view_id          String,
    session_id       String,
    ts               DateTime,
    ts_ms            Int64,
    seq              UInt32,
    service          String,
    cdn              String,
    prev_cdn         String,
    host             String,
    content_id       String,
    player           String,
    player_version   String,
    device           String,
    os               String,
    startup_ms       UInt32,
    rebuffer_ms      UInt32,
    rebuffer_count   UInt32,
    seek_rebuffer_ms UInt32,
    seek             UInt8,
    played_ms        UInt32,
    bitrate_kbps     UInt32,
    throughput_kbps  UInt32,
    ttfb_ms          UInt32,
    dropped_frames   UInt32,
    error_code       String,
    fatal            UInt8
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (service, region, cdn, event_id);

-- migration 0002 beacons_1m
CREATE TABLE IF NOT EXISTS `cdnpilot`.beacons_1m
(
    minute        DateTime,
    service       String,
    cdn           String,
    region        String,
    country       String,
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
ORDER BY (service, region, cdn, country, asn, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS `cdnpilot`.beacons_1m_mv TO `cdnpilot`.beacons_1m AS
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
FROM `cdnpilot`.beacons
GROUP BY minute, service, cdn, region, country, asn;

-- migration 0003 decisions
CREATE TABLE IF NOT EXISTS `cdnpilot`.decisions
(
    at            DateTime,
    at_us         Int64,
    protocol      String,
    service       String,
    client        String,
    ecs           String,
    region        String,
    country       String,
    asn           UInt32,
    scope_level   String,
    scope_region  String,
    scope_country String,
    scope_asn     UInt32,
    cdn           String,
    rule          String,
    stale         UInt8,
    version       UInt64,
    result        String,
    latency_us    UInt32
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(at)
ORDER BY (service, protocol, at);

-- migration 0004 audit_log
CREATE TABLE IF NOT EXISTS `cdnpilot`.audit_log
(
    at          DateTime,
    at_ms       UInt64,
    id          String,
    actor       String,
    role        String,
    auth        String,
    source      String,
    method      String,
    path        String,
    action      String,
    outcome     String,
    status      UInt16,
    service     String,
    override_id String,
    reason      String,
    before_json String,
    after_json  String,
    detail      String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, id);


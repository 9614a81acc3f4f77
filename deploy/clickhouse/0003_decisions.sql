-- The steering decision log (analytics/migrations/0003_decisions.sql):
-- telemetry, no dedup, so any spread over the shards will do.
CREATE TABLE IF NOT EXISTS cdnpilot.decisions_local ON CLUSTER '{cluster}'
(
    at            DateTime,
    at_us         Int64,
    protocol      LowCardinality(String),
    service       LowCardinality(String),
    client        String,
    ecs           String,
    region        LowCardinality(String),
    country       LowCardinality(String),
    asn           UInt32,
    scope_level   LowCardinality(String),
    scope_region  LowCardinality(String),
    scope_country LowCardinality(String),
    scope_asn     UInt32,
    cdn           LowCardinality(String),
    rule          LowCardinality(String),
    stale         UInt8,
    version       UInt64,
    result        LowCardinality(String),
    latency_us    UInt32
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMMDD(at)
ORDER BY (service, protocol, at)
TTL at + INTERVAL 7 DAY;

CREATE TABLE IF NOT EXISTS cdnpilot.decisions ON CLUSTER '{cluster}' AS cdnpilot.decisions_local
ENGINE = Distributed('{cluster}', cdnpilot, decisions_local, rand());

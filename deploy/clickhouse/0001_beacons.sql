-- Raw beacons (analytics/migrations/0001_beacons.sql), one row per accepted
-- beacon, in their Modern form (LowCardinality dimensions, TTL).
--
-- ReplacingMergeTree removes copies with the same sorting key only within a
-- shard, and FINAL only merges within a shard. The Distributed table is
-- therefore sharded by event_id, which is in the sorting key: a Kafka
-- redelivery or a re-sent CMCD report lands on the shard that holds its first
-- copy, and `FROM beacons FINAL` stays exact on any number of shards.
CREATE TABLE IF NOT EXISTS cdnpilot.beacons_local ON CLUSTER '{cluster}'
(
    event_id         String,
    received_at      DateTime,
    received_at_ms   Int64,
    client_ip        String,
    country          LowCardinality(String),
    region           LowCardinality(String),
    asn              UInt32,
    source           UInt8,
    type             UInt8,
    view_id          String,
    session_id       String,
    ts               DateTime,
    ts_ms            Int64,
    seq              UInt32,
    service          LowCardinality(String),
    cdn              LowCardinality(String),
    prev_cdn         LowCardinality(String),
    host             LowCardinality(String),
    content_id       String,
    player           LowCardinality(String),
    player_version   LowCardinality(String),
    device           LowCardinality(String),
    os               LowCardinality(String),
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
    error_code       LowCardinality(String),
    fatal            UInt8
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (service, region, cdn, event_id)
TTL received_at + INTERVAL 30 DAY;

-- What the consumer inserts into and the store reads (with FINAL).
CREATE TABLE IF NOT EXISTS cdnpilot.beacons ON CLUSTER '{cluster}' AS cdnpilot.beacons_local
ENGINE = Distributed('{cluster}', cdnpilot, beacons_local, sipHash64(event_id));

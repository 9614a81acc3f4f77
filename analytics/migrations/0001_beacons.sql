-- Raw beacons, one row per accepted beacon. ReplacingMergeTree drops rows
-- with the same sorting key (a Kafka redelivery, or a re-sent CMCD report
-- with its derived event id) at merge time; exact queries read it with
-- FINAL. received_at stays out of the sorting key so that a re-sent report,
-- received later, still collapses with the first.
CREATE TABLE IF NOT EXISTS {{.DB}}.beacons
(
    event_id         String,
    received_at      DateTime,
    received_at_ms   Int64,
    client_ip        String,
    country          {{.Str}},
    region           {{.Str}},
    asn              UInt32,
    source           UInt8,
    type             UInt8,
    view_id          String,
    session_id       String,
    ts               DateTime,
    ts_ms            Int64,
    seq              UInt32,
    service          {{.Str}},
    cdn              {{.Str}},
    prev_cdn         {{.Str}},
    host             {{.Str}},
    content_id       String,
    player           {{.Str}},
    player_version   {{.Str}},
    device           {{.Str}},
    os               {{.Str}},
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
    error_code       {{.Str}},
    fatal            UInt8
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (service, region, cdn, event_id)
{{- if .Modern}}
TTL received_at + INTERVAL {{.RawTTLDays}} DAY
{{- end}};

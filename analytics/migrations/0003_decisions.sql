-- The steering decision log: one row per answer the decision log kept (DNS,
-- HTTP 302, HLS/DASH content steering), sampled, in the shape of Traffic
-- Router's access log, so an operator can ask why a client got a CDN. It is
-- telemetry, not a ledger: plain MergeTree without dedup, and a batch the
-- writer gave up on is lost (and counted). at is the second and prunes
-- partitions and the index; at_us is the exact time that filters and order
-- use. client and ecs are text (IPv6 is no type on 18.16): an address as
-- netip prints it, v4-mapped addresses unmapped, and a masked prefix, "" for
-- none.
CREATE TABLE IF NOT EXISTS {{.DB}}.decisions
(
    at            DateTime,
    at_us         Int64,
    protocol      {{.Str}},
    service       {{.Str}},
    client        String,
    ecs           String,
    region        {{.Str}},
    country       {{.Str}},
    asn           UInt32,
    scope_level   {{.Str}},
    scope_region  {{.Str}},
    scope_country {{.Str}},
    scope_asn     UInt32,
    cdn           {{.Str}},
    rule          {{.Str}},
    stale         UInt8,
    version       UInt64,
    result        {{.Str}},
    latency_us    UInt32
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(at)
ORDER BY (service, protocol, at)
{{- if .Modern}}
TTL at + INTERVAL {{.DecisionTTLDays}} DAY
{{- end}};

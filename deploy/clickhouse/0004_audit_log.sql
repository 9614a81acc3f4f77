-- The admin API's audit trail (analytics/migrations/0004_audit_log.sql): a
-- ledger, so no TTL here either; drop old months by hand on every host:
--   ALTER TABLE cdnpilot.audit_log_local ON CLUSTER '{cluster}' DROP PARTITION 202601
--
-- AppendAudit must not return before the row is stored: insert through the
-- Distributed table only with insert_distributed_sync = 1 (README.md), or
-- an acknowledged audit record may sit in a local send queue instead.
-- Sharded by id, so a retried record lands next to its first copy.
CREATE TABLE IF NOT EXISTS cdnpilot.audit_log_local ON CLUSTER '{cluster}'
(
    at          DateTime,
    at_ms       UInt64,
    id          String,
    actor       String,
    role        LowCardinality(String),
    auth        LowCardinality(String),
    source      String,
    method      LowCardinality(String),
    path        String,
    action      LowCardinality(String),
    outcome     LowCardinality(String),
    status      UInt16,
    service     LowCardinality(String),
    override_id String,
    reason      String,
    before_json String,
    after_json  String,
    detail      String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(at)
ORDER BY (at, id);

CREATE TABLE IF NOT EXISTS cdnpilot.audit_log ON CLUSTER '{cluster}' AS cdnpilot.audit_log_local
ENGINE = Distributed('{cluster}', cdnpilot, audit_log_local, sipHash64(id));

-- The admin API's audit trail: one row per mutation, dry run, replay or
-- denied attempt, written synchronously before the change is made (a failed
-- insert fails the request). A ledger, not telemetry: no TTL on any server
-- generation; retention is the operator's call (ALTER TABLE ... DROP
-- PARTITION by month). at is the second and prunes partitions and the
-- index; at_ms (milliseconds since the epoch) is the exact time that
-- filters, order and page cursors use. DateTime64 is not on 18.16.
-- before_json and after_json are the override as JSON text, "" for none.
CREATE TABLE IF NOT EXISTS {{.DB}}.audit_log
(
    at          DateTime,
    at_ms       UInt64,
    id          String,
    actor       String,
    role        {{.Str}},
    auth        {{.Str}},
    source      String,
    method      {{.Str}},
    path        String,
    action      {{.Str}},
    outcome     {{.Str}},
    status      UInt16,
    service     {{.Str}},
    override_id String,
    reason      String,
    before_json String,
    after_json  String,
    detail      String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, id);

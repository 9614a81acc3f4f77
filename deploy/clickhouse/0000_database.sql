-- cdnpilot on a ClickHouse cluster (23.8 or newer): the database and the
-- migration ledger. Apply every NNNN_*.sql file of this directory in name
-- order, before any cdnpilot role starts (README.md). Every statement is
-- CREATE ... IF NOT EXISTS ... ON CLUSTER '{cluster}': re-applying a file is
-- harmless, and every host of the cluster gets the same objects.
--
-- The files mirror analytics/migrations: NNNN_name.sql here creates the
-- cluster form of what migration NNNN creates on a single node. This one
-- (0000) has no migration: the database and schema_migrations are made by
-- Migrate itself (analytics/schema.go).
CREATE DATABASE IF NOT EXISTS cdnpilot ON CLUSTER '{cluster}';

-- Migrate records the versions it applied here. Every role runs Migrate at
-- start-up; through the Distributed table each one sees what any other
-- recorded, on whichever host it is connected to.
CREATE TABLE IF NOT EXISTS cdnpilot.schema_migrations_local ON CLUSTER '{cluster}'
(
    version    UInt32,
    name       String,
    applied_at DateTime
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY version;

CREATE TABLE IF NOT EXISTS cdnpilot.schema_migrations ON CLUSTER '{cluster}' AS cdnpilot.schema_migrations_local
ENGINE = Distributed('{cluster}', cdnpilot, schema_migrations_local, version);

-- The tables as the managers created them before there were migrations (bun's CREATE
-- TABLE IF NOT EXISTS from the models in schema.go), so that such a database counts as
-- migrated to here: these statements change nothing in it.
CREATE TABLE IF NOT EXISTS "topics" ("name" VARCHAR NOT NULL, "replication" BIGINT NOT NULL, "partitions" BIGINT NOT NULL, PRIMARY KEY ("name"));
CREATE TABLE IF NOT EXISTS "partitions" ("topic" VARCHAR NOT NULL, "partition" BIGINT NOT NULL, "leader" VARCHAR NOT NULL, PRIMARY KEY ("topic", "partition"));
CREATE TABLE IF NOT EXISTS "replicas" ("topic" VARCHAR NOT NULL, "partition" BIGINT NOT NULL, "broker_id" VARCHAR NOT NULL, PRIMARY KEY ("topic", "partition", "broker_id"));
CREATE TABLE IF NOT EXISTS "brokers" ("id" VARCHAR NOT NULL, "addr" VARCHAR NOT NULL, "raft_addr" VARCHAR NOT NULL, "state" VARCHAR NOT NULL, PRIMARY KEY ("id"));
CREATE TABLE IF NOT EXISTS "producers" ("id" BIGSERIAL NOT NULL, "topic" VARCHAR NOT NULL, PRIMARY KEY ("id"));
CREATE TABLE IF NOT EXISTS "consumers" ("id" BIGSERIAL NOT NULL, "topic" VARCHAR NOT NULL, "partition" BIGINT, PRIMARY KEY ("id"));
CREATE TABLE IF NOT EXISTS "raft_state" ("id" BIGSERIAL NOT NULL, "applied_index" BIGINT NOT NULL, "next_producer_id" BIGINT NOT NULL, "next_consumer_id" BIGINT NOT NULL, PRIMARY KEY ("id"));
CREATE TABLE IF NOT EXISTS "idempotency_keys" ("key" VARCHAR NOT NULL, "at_ms" BIGINT NOT NULL, "sum" VARCHAR NOT NULL, "result" VARCHAR NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE IF NOT EXISTS "consumer_next" ("consumer_id" BIGSERIAL NOT NULL, "partition" BIGINT NOT NULL, "next_offset" BIGINT NOT NULL, PRIMARY KEY ("consumer_id", "partition"));
CREATE TABLE IF NOT EXISTS "consumer_last" ("consumer_id" BIGSERIAL NOT NULL, "seq" BIGINT NOT NULL, "partition" BIGINT NOT NULL, "first_offset" BIGINT NOT NULL, "count" BIGINT NOT NULL, PRIMARY KEY ("consumer_id"));
INSERT INTO "raft_state" ("id", "applied_index", "next_producer_id", "next_consumer_id") VALUES (1, 0, 1, 1) ON CONFLICT (id) DO NOTHING;

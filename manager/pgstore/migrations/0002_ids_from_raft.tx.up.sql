-- Every id in these tables comes from the Raft log (the metadata's counters), never from
-- the database: the BIGSERIAL defaults bun gave the first tables could only hand out ids
-- the metadata never assigned. And raft_state is one row. Written to run again safely
-- (bun marks a migration applied only after its transaction commits).
ALTER TABLE "producers" ALTER COLUMN "id" DROP DEFAULT;
ALTER TABLE "consumers" ALTER COLUMN "id" DROP DEFAULT;
ALTER TABLE "raft_state" ALTER COLUMN "id" DROP DEFAULT;
ALTER TABLE "consumer_next" ALTER COLUMN "consumer_id" DROP DEFAULT;
ALTER TABLE "consumer_last" ALTER COLUMN "consumer_id" DROP DEFAULT;
DROP SEQUENCE IF EXISTS "producers_id_seq", "consumers_id_seq", "raft_state_id_seq", "consumer_next_consumer_id_seq", "consumer_last_consumer_id_seq";
ALTER TABLE "raft_state" DROP CONSTRAINT IF EXISTS "raft_state_one_row";
ALTER TABLE "raft_state" ADD CONSTRAINT "raft_state_one_row" CHECK ("id" = 1);

-- A topic's retention (issue 15): 0 is no limit, which is what every topic made
-- before had.
ALTER TABLE "topics" ADD COLUMN IF NOT EXISTS "retention_ms" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "topics" ADD COLUMN IF NOT EXISTS "retention_bytes" BIGINT NOT NULL DEFAULT 0;

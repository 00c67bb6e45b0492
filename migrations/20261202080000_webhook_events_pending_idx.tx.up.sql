-- The stored webhook events are the processing queue: event processors claim the oldest
-- unprocessed ones (WHERE processed_at IS NULL ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED),
-- and check for unprocessed events below their batch (id < max). This partial index holds
-- only the unprocessed events, in id order. It replaces the index on received_at used by the
-- old sweep, which re-enqueued tasks for unprocessed events (the sweep's backlog count reads
-- this one too). Forward-only: never edit this file once applied.
CREATE INDEX webhook_events_pending_idx ON webhook_events (id) WHERE processed_at IS NULL;

--bun:split

DROP INDEX IF EXISTS webhook_events_unprocessed_idx;

-- The telegram sweep pages through outbound messages that are queued or sending (a worker
-- died mid-send) by id; this partial index keeps that from scanning delivered messages.
CREATE INDEX messages_outbox_idx ON messages (id) WHERE status IN ('queued', 'sending');

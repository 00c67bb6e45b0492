-- broadcast:sweep finds recipients claimed by a worker that died ("sending" for more than
-- 5 minutes) across all broadcasts; this small partial index keeps that from scanning
-- every recipient row.
CREATE INDEX broadcast_recipients_sending_idx ON broadcast_recipients (claimed_at)
    WHERE status = 'sending';

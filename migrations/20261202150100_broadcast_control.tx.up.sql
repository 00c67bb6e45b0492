-- Broadcast lifecycle (issue 7, "Control and visibility"):
--   draft -> scheduled -> running <-> paused -> completed | cancelled | failed.
-- "queued" (a broadcast waiting for its worker) becomes "scheduled" (waiting for send_at or
-- for a worker). Recipient statuses are unchanged (a recipient is still "queued").
UPDATE broadcasts SET status = 'scheduled' WHERE status = 'queued';
ALTER TABLE broadcasts ALTER COLUMN status SET DEFAULT 'scheduled';

-- Every ADD COLUMN below has a constant default or none: metadata-only, no table rewrite.
ALTER TABLE broadcasts
    -- send_at: not sent before this time; NULL = at once.
    ADD COLUMN send_at timestamptz,
    -- pause_reason: why the broadcast is paused ('' when not paused, or paused by the API);
    -- paused_at: when it was paused.
    ADD COLUMN pause_reason text NOT NULL DEFAULT '',
    ADD COLUMN paused_at timestamptz,
    -- Auto-pause: after max_consecutive_errors consecutive failed recipients with the same
    -- bot-wide error (error_streak_kind, e.g. '401 Unauthorized'), the broadcast is paused.
    -- The counter lives here so that every run and worker adds to the same one.
    ADD COLUMN max_consecutive_errors integer NOT NULL DEFAULT 50,
    ADD COLUMN error_streak integer NOT NULL DEFAULT 0,
    ADD COLUMN error_streak_kind text NOT NULL DEFAULT '',
    -- cycle: 1, plus one per POST /broadcast/{id}/retry-failed.
    ADD COLUMN cycle integer NOT NULL DEFAULT 1,
    -- The send rate: recipients sent in the current 60 s window (started at rate_at) and in
    -- the window before it; written once per result batch of a run, never per recipient.
    ADD COLUMN rate_at timestamptz,
    ADD COLUMN rate_sent integer NOT NULL DEFAULT 0,
    ADD COLUMN rate_prev integer NOT NULL DEFAULT 0;

ALTER TABLE broadcast_recipients
    -- cycle: the attempt cycle of the recipient's current status (see broadcasts.cycle).
    ADD COLUMN cycle integer NOT NULL DEFAULT 1,
    -- history: the earlier cycles of a recipient retried by retry-failed, oldest first:
    -- [{"cycle":1,"status":"failed","attempts":4,"error":"...","at":"..."}]; NULL when none.
    ADD COLUMN history jsonb;

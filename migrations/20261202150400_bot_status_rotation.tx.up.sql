-- Bot token rotation and lifecycle (issue 8, "Token and lifecycle").
--
-- status: active (sends and processes updates), disabled (set by the tenant), invalid_token
-- (Telegram answered 401 to getMe or a send: the token was revoked). A bot that is not
-- active sends nothing and its stored webhook events wait unprocessed; nothing is dropped.
--
-- webhook_secret_next_hash: SHA-256 of a webhook secret_token being registered with
-- setWebhook (token rotation, webhook repair). It is stored before setWebhook is called and
-- accepted by the webhook next to webhook_secret_hash, so that updates Telegram signs with
-- the new secret are never refused while the switch is under way; it becomes
-- webhook_secret_hash when the switch is stored, and is cleared when Telegram refuses it.
--
-- token_rotated_at: when the token was last rotated (NULL: never).
-- Forward-only: never edit this file once applied.
ALTER TABLE bots
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CONSTRAINT bots_status_check CHECK (status IN ('active', 'disabled', 'invalid_token')),
    ADD COLUMN webhook_secret_next_hash bytea,
    ADD COLUMN token_rotated_at timestamptz;

--bun:split

-- The event processors skip the events of bots that are not active
-- (bot_id NOT IN (SELECT id FROM bots WHERE status <> 'active' AND deleted_at IS NULL)):
-- this partial index holds only those few bots.
CREATE INDEX bots_not_active_idx ON bots (id) WHERE status <> 'active' AND deleted_at IS NULL;

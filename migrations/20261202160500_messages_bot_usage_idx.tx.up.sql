-- A bot's usage per UTC day (telegram.Service.Usage, GET /telegram/v1/bots/{id}/usage/):
-- inbound messages (status 'received') and failed outbound messages by created_at, read
-- per bot without scanning the tenant's other bots. Partial: sent messages (most rows) are
-- counted through messages_bot_sent_idx. Forward-only: never edit this file once applied.
CREATE INDEX messages_bot_usage_idx ON messages (bot_id, created_at)
    WHERE status IN ('received', 'failed');

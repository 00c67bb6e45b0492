-- A bot's sends of one UTC day (telegram.Service.DailySent), counted when Redis lost the
-- bot's daily counter.
CREATE INDEX messages_bot_sent_idx ON messages (bot_id, sent_at)
    WHERE direction = 'outbound' AND status = 'sent';

-- Broadcast timing (issue 7, "Timing"): an expiry (recipients not sent by expires_at become
-- "expired"), an optional send window ({"from":"09:00","to":"20:00","time_zone":"Europe/Berlin"};
-- "window" is an SQL keyword, hence send_window) and Telegram's paid broadcasts
-- (allow_paid_broadcast, core.telegram.org/bots/api#sendmessage).
-- Contacts get opted_out, set by /stop and cleared by /start, apart from blocked (the user
-- blocked the bot, or Telegram answered 403): a broadcast records the two as different
-- skip reasons. ADD COLUMN with a constant default is metadata-only (no table rewrite).
ALTER TABLE broadcasts ADD COLUMN expires_at timestamptz;
ALTER TABLE broadcasts ADD COLUMN send_window jsonb;
ALTER TABLE broadcasts ADD COLUMN allow_paid_broadcast boolean NOT NULL DEFAULT false;
ALTER TABLE contacts ADD COLUMN opted_out boolean NOT NULL DEFAULT false;
ALTER TABLE contacts ADD COLUMN opted_out_at timestamptz;

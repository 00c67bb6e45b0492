-- Inbox mode per bot and the editor of bot changes (issue 8, "Inbox mode per bot" and
-- "Who is acting").
--
-- bots.inbox_mode: which inbound messages are flagged for the inbox (messages.inbox):
--   all      every inbound message (the default, and what every existing bot keeps);
--   keywords only messages whose text or caption contains one of inbox_keywords
--            (case-insensitive substring; telegram.InboxFlag);
--   off      none.
-- bots.inbox_keywords: 0-100 keywords of 1-64 characters, stored lowercased and
-- deduplicated (telegram.ValidateInboxKeywords).
-- bots.updated_by: the name of the API key of the last PUT /telegram/v1/bots/{id}/ that
--   changed the bot ('' until then; changes made by the platform itself, e.g. a bot marked
--   invalid_token, leave it).
-- bots.token_rotated_by: the name of the API key that last rotated the token ('' never).
--
-- ADD COLUMN with a constant default is metadata-only on PostgreSQL 11+ (no rewrite).
-- Forward-only: never edit this file once applied.
ALTER TABLE bots
    ADD COLUMN inbox_mode text NOT NULL DEFAULT 'all'
        CONSTRAINT bots_inbox_mode_check CHECK (inbox_mode IN ('all', 'keywords', 'off')),
    ADD COLUMN inbox_keywords text[] NOT NULL DEFAULT '{}',
    ADD COLUMN updated_by text NOT NULL DEFAULT '',
    ADD COLUMN token_rotated_by text NOT NULL DEFAULT '';

--bun:split

-- messages.inbox: the inbound message is flagged for the inbox (set by the event processor
-- from the bot's inbox_mode when the message is stored); always false for outbound
-- messages. Inbound messages stored before this migration were stored under the implicit
-- mode "all", so they are flagged. The UPDATE rewrites the inbound rows once (it holds
-- their row locks until the migration commits).
ALTER TABLE messages ADD COLUMN inbox boolean NOT NULL DEFAULT false;
UPDATE messages SET inbox = true WHERE direction = 'inbound';

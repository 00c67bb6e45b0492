-- One person across bots (issue 9): a contact is a person of the tenant, and its Telegram
-- identity attaches to it per bot in contact_bots. Until now a contact was one chat of one
-- bot (unique on bot_id, telegram_chat_id); the same Telegram user writing to two bots of
-- one tenant was two contacts. This migration merges them into one.
--
-- The person key is (tenant_id, telegram_chat_id): a private chat's id is the user's id
-- (Telegram: "for private chats, the id is the same as the user's id",
-- core.telegram.org/bots/api#chat), so for people this is the Telegram user; a group
-- chat that two bots of a tenant are in is one contact too.
--
-- contacts keeps bot_id and telegram_chat_id: the bot the person first wrote to (as
-- Jina Connect's API has them on the contact). blocked, blocked_at, opted_out and
-- opted_out_at move to contact_bots: they are per bot.
--
-- Merge rules (contacts of one tenant with the same telegram_chat_id):
--   - the survivor is the oldest (created_at, then id); its id stays, the others' ids go;
--   - every message, broadcast recipient, verification code, topic unsubscription and
--     conversation of a merged contact moves to the survivor (nothing is deleted but the
--     duplicate conversation rows: the one with the latest activity is kept);
--   - each merged row becomes a contact_bots link of the survivor, with its blocked and
--     opted_out flags, started_at = its created_at and last_inbound_at = its latest
--     inbound message;
--   - identity (user id, username, names, language) comes from the row seen last;
--     last_seen_at is the latest, created_at the earliest; tags are united (at most 50,
--     contacts.MaxTags); attributes are merged (on a key in both, the survivor's value
--     wins); external_id, email and phone are the survivor's, else the first other row's
--     that has one.
-- Forward-only: never edit this file once applied.

CREATE TABLE contact_bots (
    contact_id       uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- bot_id: the bot (bot_app_id); telegram_chat_id: the chat with the person at that bot.
    bot_id           uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    telegram_chat_id bigint NOT NULL,
    -- started_at: the first update of the chat at this bot.
    started_at       timestamptz NOT NULL DEFAULT now(),
    -- last_inbound_at: the latest inbound message at this bot (NULL: none yet).
    last_inbound_at  timestamptz,
    -- blocked: the user blocked this bot (my_chat_member kicked, or a 403 on a send).
    blocked          boolean NOT NULL DEFAULT false,
    blocked_at       timestamptz,
    -- opted_out: the user sent /stop to this bot (/start clears it).
    opted_out        boolean NOT NULL DEFAULT false,
    opted_out_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, bot_id),
    CONSTRAINT contact_bots_bot_chat_uq UNIQUE (bot_id, telegram_chat_id)
);

CREATE TEMP TABLE contact_merge ON COMMIT DROP AS
SELECT id, tenant_id, telegram_chat_id,
       first_value(id) OVER (PARTITION BY tenant_id, telegram_chat_id ORDER BY created_at, id) AS survivor,
       row_number() OVER (PARTITION BY tenant_id, telegram_chat_id ORDER BY created_at, id) AS rank
FROM contacts;
CREATE INDEX ON contact_merge (id);
CREATE INDEX ON contact_merge (survivor);
ANALYZE contact_merge;

-- Links: one per old contact row.
INSERT INTO contact_bots (contact_id, tenant_id, bot_id, telegram_chat_id, started_at, last_inbound_at,
                          blocked, blocked_at, opted_out, opted_out_at, created_at, updated_at)
SELECT m.survivor, c.tenant_id, c.bot_id, c.telegram_chat_id, c.created_at,
       (SELECT max(ms.created_at) FROM messages ms WHERE ms.contact_id = c.id AND ms.direction = 'inbound'),
       c.blocked, c.blocked_at, c.opted_out, c.opted_out_at, c.created_at, c.updated_at
FROM contacts c JOIN contact_merge m ON m.id = c.id;

-- The merged person of each group with more than one row, computed before any row goes.
CREATE TEMP TABLE contact_merged ON COMMIT DROP AS
SELECT m.survivor AS id,
       (SELECT COALESCE((array_agg(DISTINCT t ORDER BY t))[1:50], '{}')
          FROM contact_merge m2 JOIN contacts o ON o.id = m2.id, unnest(o.tags) t
         WHERE m2.survivor = m.survivor) AS tags,
       (SELECT COALESCE(jsonb_object_agg(k, v), '{}')
          FROM (SELECT DISTINCT ON (e.key) e.key AS k, e.value AS v
                  FROM contact_merge m2 JOIN contacts o ON o.id = m2.id, jsonb_each(o.attributes) e
                 WHERE m2.survivor = m.survivor
                 ORDER BY e.key, m2.rank) x) AS attributes,
       (SELECT o.external_id FROM contact_merge m2 JOIN contacts o ON o.id = m2.id
         WHERE m2.survivor = m.survivor AND o.external_id IS NOT NULL ORDER BY m2.rank LIMIT 1) AS external_id,
       (SELECT o.email FROM contact_merge m2 JOIN contacts o ON o.id = m2.id
         WHERE m2.survivor = m.survivor AND o.email <> '' ORDER BY m2.rank LIMIT 1) AS email,
       (SELECT o.phone FROM contact_merge m2 JOIN contacts o ON o.id = m2.id
         WHERE m2.survivor = m.survivor AND o.phone <> '' ORDER BY m2.rank LIMIT 1) AS phone,
       (SELECT o.id FROM contact_merge m2 JOIN contacts o ON o.id = m2.id
         WHERE m2.survivor = m.survivor ORDER BY o.last_seen_at DESC, m2.rank LIMIT 1) AS latest,
       (SELECT max(o.last_seen_at) FROM contact_merge m2 JOIN contacts o ON o.id = m2.id
         WHERE m2.survivor = m.survivor) AS last_seen_at
FROM contact_merge m
WHERE m.rank = 1 AND EXISTS (SELECT 1 FROM contact_merge d WHERE d.survivor = m.survivor AND d.rank > 1);

-- Everything that points at a merged-away contact moves to its survivor.
UPDATE messages ms SET contact_id = m.survivor
FROM contact_merge m WHERE ms.contact_id = m.id AND m.rank > 1;
UPDATE broadcast_recipients r SET contact_id = m.survivor
FROM contact_merge m WHERE r.contact_id = m.id AND m.rank > 1;
UPDATE verification_codes v SET contact_id = m.survivor
FROM contact_merge m WHERE v.contact_id = m.id AND m.rank > 1;
UPDATE link_tokens l SET used_by_contact_id = m.survivor
FROM contact_merge m WHERE l.used_by_contact_id = m.id AND m.rank > 1;
INSERT INTO contact_topic_unsubscriptions (contact_id, topic_id, created_at)
SELECT m.survivor, u.topic_id, u.created_at
FROM contact_topic_unsubscriptions u JOIN contact_merge m ON m.id = u.contact_id AND m.rank > 1
ON CONFLICT DO NOTHING;
-- Conversations: keep the one with the latest activity of each person.
DELETE FROM conversations cv USING (
    SELECT cv2.contact_id,
           row_number() OVER (PARTITION BY m.survivor ORDER BY cv2.last_message_at DESC, m.rank) AS n
    FROM conversations cv2 JOIN contact_merge m ON m.id = cv2.contact_id
) ranked
WHERE cv.contact_id = ranked.contact_id AND ranked.n > 1;
UPDATE conversations cv SET contact_id = m.survivor
FROM contact_merge m WHERE cv.contact_id = m.id AND m.rank > 1;

-- The survivors take the merged person's fields; then the others go (their remaining
-- dependent rows, topic unsubscriptions already copied, cascade).
UPDATE contacts c SET external_id = NULL
FROM contact_merge m WHERE c.id = m.id AND m.rank > 1 AND c.external_id IS NOT NULL;
UPDATE contacts c SET
    tags = g.tags,
    attributes = g.attributes,
    external_id = g.external_id,
    email = COALESCE(g.email, ''),
    phone = COALESCE(g.phone, ''),
    telegram_user_id = l.telegram_user_id,
    telegram_username = l.telegram_username,
    first_name = l.first_name,
    last_name = l.last_name,
    language_code = l.language_code,
    last_seen_at = g.last_seen_at,
    updated_at = now()
FROM contact_merged g JOIN contacts l ON l.id = g.latest
WHERE c.id = g.id;
DELETE FROM contacts c USING contact_merge m WHERE c.id = m.id AND m.rank > 1;

ALTER TABLE contacts DROP CONSTRAINT contacts_bot_id_telegram_chat_id_key;
ALTER TABLE contacts ADD CONSTRAINT contacts_tenant_chat_uq UNIQUE (tenant_id, telegram_chat_id);
ALTER TABLE contacts DROP COLUMN blocked, DROP COLUMN blocked_at, DROP COLUMN opted_out, DROP COLUMN opted_out_at;

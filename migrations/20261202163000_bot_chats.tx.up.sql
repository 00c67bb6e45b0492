-- bot_chats: the groups, supergroups and channels a bot belongs to (or belonged to), from
-- my_chat_member updates (core.telegram.org/bots/api#chatmemberupdated). One row per bot
-- and chat; status is the bot's own status in the chat and rights the fields of its
-- ChatMemberAdministrator / ChatMemberRestricted object. changed_at is the date of the
-- update that set the row (an older update arriving late does not overwrite it).
CREATE TABLE bot_chats (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id      uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    chat_id     bigint NOT NULL,
    type        text NOT NULL,
    title       text NOT NULL DEFAULT '',
    username    text NOT NULL DEFAULT '',
    is_forum    boolean NOT NULL DEFAULT false,
    status      text NOT NULL,
    rights      jsonb NOT NULL DEFAULT '{}',
    changed_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bot_id, chat_id)
);
CREATE INDEX bot_chats_bot_idx ON bot_chats (bot_id, created_at DESC, id DESC);

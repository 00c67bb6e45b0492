-- Team inbox (issue 9 "Inbox").

-- messages.sent_by: who sent an outbound message of kind "message": the name of the API key
-- of the request (POST /messages/, POST /contacts/{id}/messages/); '' for inbound messages,
-- automatic replies (kind "reply", shown as sent_by {type: "bot"}) and rows from before.
ALTER TABLE messages ADD COLUMN sent_by text NOT NULL DEFAULT '';

-- messages.media: typed metadata of the media of an inbound message (telegram/media.go:
-- {"type": "photo"|"document"|"voice"|"video"|"video_note"|"audio"|"sticker"|"location"|
-- "contact", "file_id", "file_unique_id", "file_size", "mime_type", "width", "height",
-- "duration", "file_name", "latitude", "longitude", "phone_number", ...}); never the bytes.
-- NULL for a text message and for outbound messages.
ALTER TABLE messages ADD COLUMN media jsonb;

-- Broadcast sends of a contact, newest first (GET /contacts/{id}/messages/ lists them with
-- the contact's messages).
CREATE INDEX broadcast_recipients_contact_idx ON broadcast_recipients (contact_id, updated_at DESC)
    WHERE status IN ('sent', 'failed');

-- conversations: one row per contact that has inbox activity (GET /conversations/).
CREATE TABLE conversations (
    -- contact_id: the contact (one conversation per person, across the tenant's bots).
    contact_id       uuid PRIMARY KEY REFERENCES contacts (id) ON DELETE CASCADE,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- bot_id: the bot of the latest activity (filter bot_app_id).
    bot_id           uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    -- last_message_at: the latest inbox-flagged inbound message or agent reply (sort key).
    last_message_at  timestamptz NOT NULL,
    -- last_inbound_at: the latest inbox-flagged inbound message (reopens a closed conversation).
    last_inbound_at  timestamptz,
    -- last_read_at: messages up to this time are read (POST /conversations/{id}/read/); NULL: none.
    last_read_at     timestamptz,
    -- assigned_to: the name of one of the tenant's API keys (an agent); NULL: unassigned.
    assigned_to      text,
    -- closed_at: set by POST /conversations/{id}/close/; the conversation is closed while
    -- closed_at is not NULL (a new inbox-flagged inbound message clears it: reopened).
    closed_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_tenant_activity_idx ON conversations (tenant_id, last_message_at DESC, contact_id DESC);

-- Unread counts use messages_contact_idx (contact_id, created_at DESC): the range after
-- last_read_at of one contact. No extra index on messages: inbound inserts are the hot path.

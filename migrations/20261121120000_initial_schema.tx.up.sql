-- botfleet initial schema. Forward-only: never edit this file once applied.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- api_keys holds only the SHA-256 of each key; the key itself is shown once.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash    bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

-- bots: id is the public bot_app_id. token_sealed is AES-256-GCM(nonce||ciphertext);
-- webhook_secret_hash is SHA-256 of the secret_token given to setWebhook.
CREATE TABLE bots (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    telegram_bot_id      bigint NOT NULL,
    username             text NOT NULL,
    token_sealed         bytea NOT NULL,
    webhook_secret_hash  bytea NOT NULL,
    webhook_url          text NOT NULL DEFAULT '',
    webhook_status       text NOT NULL DEFAULT 'pending',
    webhook_error        text NOT NULL DEFAULT '',
    daily_limit          integer NOT NULL DEFAULT 0 CHECK (daily_limit >= 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz
);
CREATE UNIQUE INDEX bots_telegram_bot_id_active_uq ON bots (telegram_bot_id) WHERE deleted_at IS NULL;
CREATE INDEX bots_tenant_idx ON bots (tenant_id, created_at);

-- webhook_events: every update received, stored once per (bot, update_id).
CREATE TABLE webhook_events (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id        uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    update_id     bigint NOT NULL,
    update_type   text NOT NULL DEFAULT '',
    payload       jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    process_error text NOT NULL DEFAULT '',
    UNIQUE (bot_id, update_id)
);
CREATE INDEX webhook_events_tenant_idx ON webhook_events (tenant_id, id DESC);
CREATE INDEX webhook_events_unprocessed_idx ON webhook_events (received_at) WHERE processed_at IS NULL;

-- contacts: a Telegram chat that talked to one of the tenant's bots.
CREATE TABLE contacts (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id             uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    telegram_chat_id   bigint NOT NULL,
    telegram_user_id   bigint NOT NULL DEFAULT 0,
    telegram_username  text NOT NULL DEFAULT '',
    first_name         text NOT NULL DEFAULT '',
    last_name          text NOT NULL DEFAULT '',
    language_code      text NOT NULL DEFAULT '',
    blocked            boolean NOT NULL DEFAULT false,
    blocked_at         timestamptz,
    last_seen_at       timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bot_id, telegram_chat_id)
);
CREATE INDEX contacts_tenant_idx ON contacts (tenant_id, created_at DESC, id DESC);

-- messages: inbound messages and outbound sends (replies, single messages).
CREATE TABLE messages (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id               uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    contact_id           uuid REFERENCES contacts (id) ON DELETE SET NULL,
    chat_id              bigint NOT NULL,
    direction            text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    kind                 text NOT NULL DEFAULT 'message',
    text                 text NOT NULL DEFAULT '',
    parse_mode           text NOT NULL DEFAULT '',
    status               text NOT NULL,
    error                text NOT NULL DEFAULT '',
    attempts             integer NOT NULL DEFAULT 0,
    telegram_message_id  bigint,
    update_id            bigint,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    sent_at              timestamptz
);
CREATE INDEX messages_tenant_idx ON messages (tenant_id, created_at DESC);
CREATE INDEX messages_contact_idx ON messages (contact_id, created_at DESC);
CREATE INDEX messages_queued_idx ON messages (created_at) WHERE status = 'queued';

CREATE TABLE broadcasts (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id        uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    name          text NOT NULL,
    platform      text NOT NULL DEFAULT 'TELEGRAM',
    message_text  text NOT NULL,
    parse_mode    text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT 'queued',
    error         text NOT NULL DEFAULT '',
    total         integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz
);
CREATE INDEX broadcasts_tenant_idx ON broadcasts (tenant_id, created_at DESC);

-- broadcast_recipients: one row per (broadcast, contact); status queued | sending | sent | failed | deferred.
CREATE TABLE broadcast_recipients (
    id                   bigserial PRIMARY KEY,
    broadcast_id         uuid NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    contact_id           uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    chat_id              bigint NOT NULL,
    status               text NOT NULL DEFAULT 'queued',
    attempts             integer NOT NULL DEFAULT 0,
    due_at               timestamptz NOT NULL DEFAULT now(),
    claimed_at           timestamptz,
    error                text NOT NULL DEFAULT '',
    telegram_message_id  bigint,
    sent_at              timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (broadcast_id, contact_id)
);
CREATE INDEX broadcast_recipients_due_idx ON broadcast_recipients (broadcast_id, due_at, id)
    WHERE status IN ('queued', 'deferred');
CREATE INDEX broadcast_recipients_status_idx ON broadcast_recipients (broadcast_id, status);

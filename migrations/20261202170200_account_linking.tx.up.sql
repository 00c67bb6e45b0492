-- Account linking (issue 9): link tokens (deep link /start <token>, /link <token>) and
-- verification codes (POST /contacts/verification-codes/, POST /contacts/verify/).
-- Forward-only: never edit this file once applied.

-- link_tokens: single-use tokens that give the contact who presents them to the bot an
-- external_id.
CREATE TABLE link_tokens (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- tenant_id: the tenant that created the token.
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- bot_id: the bot (bot_app_id) the token must be presented to.
    bot_id             uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    -- external_id: the tenant's id of the person the contact gets on success.
    external_id        text NOT NULL,
    -- token_hash: SHA-256 of the token (the token itself is never stored).
    token_hash         bytea NOT NULL,
    -- expires_at: after this the token is refused (link_failed).
    expires_at         timestamptz NOT NULL,
    -- used_at: when the token was consumed (NULL while unused; single use).
    used_at            timestamptz,
    -- used_by_contact_id: the contact that consumed it (NULL while unused).
    used_by_contact_id uuid,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX link_tokens_token_hash_uq ON link_tokens (token_hash);

-- verification_codes: one pending 6-digit code per (tenant, external_id); a new request
-- replaces the previous one (and its attempt count).
CREATE TABLE verification_codes (
    -- tenant_id, external_id: the account being linked (one attempt at a time).
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id text NOT NULL,
    -- bot_id: the bot that sent the code; contact_id: the contact it was sent to (who gets
    -- external_id on success).
    bot_id      uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    contact_id  uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    -- code_hash: HMAC-SHA256 of the code (keyed from ENCRYPTION_KEY; the code is never stored here).
    code_hash   bytea NOT NULL,
    -- attempts: wrong codes tried so far; at 5 the attempt is locked.
    attempts    int NOT NULL DEFAULT 0,
    -- expires_at: 10 minutes after the request.
    expires_at  timestamptz NOT NULL,
    -- used_at: when the right code was presented (NULL while pending).
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, external_id)
);

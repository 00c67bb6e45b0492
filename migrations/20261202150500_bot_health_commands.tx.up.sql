-- bot_health: the last health check of each bot (GET /telegram/v1/bots/{id}/health/, POST
-- .../sync/, the periodic telegram:health-check task). reasons is a JSON array of
-- {code, severity, message}. webhook_repaired_at is when the webhook was last registered
-- again by a sync or by the periodic job.
CREATE TABLE bot_health (
    bot_id               uuid PRIMARY KEY REFERENCES bots (id) ON DELETE CASCADE,
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    verdict              text NOT NULL CHECK (verdict IN ('healthy', 'degraded', 'failing')),
    reasons              jsonb NOT NULL DEFAULT '[]',
    checked_at           timestamptz NOT NULL,
    webhook_repaired_at  timestamptz
);

-- bot_commands: the command list a tenant set with PUT /telegram/v1/bots/{id}/commands/,
-- per language ('' = the default list for users whose language has no list of its own),
-- applied with setMyCommands and applied again by sync.
CREATE TABLE bot_commands (
    bot_id         uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    language_code  text NOT NULL DEFAULT '',
    commands       jsonb NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, language_code)
);

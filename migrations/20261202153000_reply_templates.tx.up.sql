-- Reply templates per bot (issue 8, "Commands and reply templates"). reply_templates holds
-- the current version of each key that was ever edited: the built-in keys welcome, help, stop
-- and unknown_command (command NULL: bound to /start, /help, /stop and to any unknown
-- command), and tenant-defined keys bound to a command (command NOT NULL, unique per bot).
-- version 0 is a placeholder row of a built-in key not yet edited (its text is ignored: the
-- built-in default applies). Every edit inserts a row into reply_template_versions
-- (change_type update, rollback or reset) with the editing API key's name.
CREATE TABLE reply_templates (
    bot_id      uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key         text NOT NULL,
    command     text,
    version     integer NOT NULL DEFAULT 0 CHECK (version >= 0),
    text        text NOT NULL DEFAULT '',
    parse_mode  text NOT NULL DEFAULT '',
    variables   jsonb NOT NULL DEFAULT '{}',
    editor      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, key)
);
CREATE UNIQUE INDEX reply_templates_bot_command_uq ON reply_templates (bot_id, command) WHERE command IS NOT NULL;

CREATE TABLE reply_template_versions (
    bot_id      uuid NOT NULL,
    key         text NOT NULL,
    version     integer NOT NULL CHECK (version > 0),
    command     text,
    text        text NOT NULL,
    parse_mode  text NOT NULL,
    variables   jsonb NOT NULL DEFAULT '{}',
    editor      text NOT NULL,
    change_type text NOT NULL CHECK (change_type IN ('update', 'rollback', 'reset')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, key, version),
    FOREIGN KEY (bot_id, key) REFERENCES reply_templates (bot_id, key) ON DELETE CASCADE
);

-- Edit locks: one per (bot, key), held by one API key until expires_at.
CREATE TABLE reply_template_locks (
    bot_id        uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    key           text NOT NULL,
    holder_key_id uuid NOT NULL,
    holder        text NOT NULL,
    acquired_at   timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (bot_id, key)
);

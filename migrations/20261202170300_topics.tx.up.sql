-- Notification preferences of issue 9: topics a tenant's messages and broadcasts may name,
-- and the contacts that opted out of them. A contact is subscribed to every topic of its
-- tenant by default, so only opt-outs are stored.
--
-- topics.id: the topic's id (the bot's /settings keyboard sends it back as "topic:<id>").
-- topics.tenant_id: the owning tenant; a tenant's topics go with it.
-- topics.name: 1-64 of [a-z0-9_-], unique per tenant; what the API and broadcasts name.
-- topics.description: free text for people ('' when unset).
-- topics.created_at: when the topic was created.
CREATE TABLE topics (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT topics_tenant_name_uq UNIQUE (tenant_id, name)
);

-- contact_topic_unsubscriptions: one row per (contact, topic) the contact opted out of
-- (by PUT /contacts/{id}/topics/ or a /settings button); deleting either side deletes it.
-- contact_topic_unsubscriptions.created_at: when the contact opted out.
CREATE TABLE contact_topic_unsubscriptions (
    contact_id uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    topic_id   uuid NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, topic_id)
);
CREATE INDEX contact_topic_unsubscriptions_topic_idx ON contact_topic_unsubscriptions (topic_id);

-- broadcasts.topic: the name of the topic the broadcast is about (NULL: none). Recipients
-- unsubscribed from it are stored as skipped with reason 'unsubscribed' when the recipient
-- rows are written. A name, not a key: deleting the topic leaves the broadcast as it is.
-- Nullable without a default: metadata-only.
ALTER TABLE broadcasts ADD COLUMN topic text;

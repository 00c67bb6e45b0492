-- Contact fields of issue 9 ("Contacts a tenant can work with"): the tenant's own identity
-- of the person and how to reach them outside Telegram.
--
-- contacts.external_id: the tenant's id of the person (an app account, a CRM id), set by
--   PATCH /contacts/{id}/, by account linking (link tokens, verification codes) or by CSV
--   import; NULL when unset, unique per tenant when set.
-- contacts.email, contacts.phone: free contact details ('' when unset).
--
-- ADD COLUMN with a constant default is metadata-only on PostgreSQL 11+ (no rewrite).
-- Forward-only: never edit this file once applied.
ALTER TABLE contacts
    ADD COLUMN external_id text,
    ADD COLUMN email text NOT NULL DEFAULT '',
    ADD COLUMN phone text NOT NULL DEFAULT '';
CREATE UNIQUE INDEX contacts_tenant_external_id_uq ON contacts (tenant_id, external_id) WHERE external_id IS NOT NULL;

-- Named API keys with scopes (issue 8, "Who is acting"). A tenant may hold several keys;
-- each has a name (unique among the tenant's live keys), scopes (a subset of read, write,
-- admin, stored expanded: admin implies write, write implies read) and last_used_at
-- (written at most once a minute per key).
ALTER TABLE api_keys
    ADD COLUMN name         text,
    ADD COLUMN scopes       text[] NOT NULL DEFAULT ARRAY['read', 'write', 'admin']::text[],
    ADD COLUMN last_used_at timestamptz;

-- Existing keys were the one key created with their tenant: name "default", every scope.
-- Should a tenant have several live keys, the later ones are "default-2", "default-3", ...
UPDATE api_keys AS k
SET name = CASE WHEN r.n = 1 THEN 'default' ELSE 'default-' || r.n END
FROM (
    SELECT id, row_number() OVER (PARTITION BY tenant_id, revoked_at IS NULL ORDER BY created_at, id) AS n
    FROM api_keys
) AS r
WHERE r.id = k.id;

ALTER TABLE api_keys
    ALTER COLUMN name SET NOT NULL,
    ALTER COLUMN scopes DROP DEFAULT,
    ADD CONSTRAINT api_keys_scopes_check
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write', 'admin']::text[]);

CREATE UNIQUE INDEX api_keys_tenant_name_live_idx ON api_keys (tenant_id, name) WHERE revoked_at IS NULL;

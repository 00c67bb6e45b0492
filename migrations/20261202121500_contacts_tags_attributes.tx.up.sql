-- Contacts get tags (a set of strings, at most 50, sorted, contacts.ValidateTags) and
-- attributes (a JSON object of at most 50 string/number/bool values,
-- contacts.ValidateAttributes). ADD COLUMN with a constant default is metadata-only on
-- PostgreSQL 11+: no table rewrite, however many contacts there are. The GIN indexes serve
-- tag filters (tags @> ARRAY[...], tags && ARRAY[...]) and attribute containment
-- (attributes @> '{"plan":"pro"}'); built while every row holds the empty default, they are
-- small, but the build still reads the table once under a SHARE lock (writes wait).
ALTER TABLE contacts ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
ALTER TABLE contacts ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';
CREATE INDEX contacts_tags_idx ON contacts USING gin (tags);
CREATE INDEX contacts_attributes_idx ON contacts USING gin (attributes jsonb_path_ops);

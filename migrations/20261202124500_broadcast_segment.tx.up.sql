-- A broadcast created from a segment (issue 7, "Audience") records it: the JSON object of
-- broadcast.Segment, NULL for a broadcast to a list of recipients. Metadata-only ADD COLUMN.
ALTER TABLE broadcasts ADD COLUMN segment jsonb;

-- A large broadcast answers 202 before its recipients exist: Create stores the validated
-- contact ids in audience and the worker's first run turns them into broadcast_recipients
-- rows (materialized becomes true, audience NULL).
ALTER TABLE broadcasts ADD COLUMN materialized boolean NOT NULL DEFAULT true;
ALTER TABLE broadcasts ADD COLUMN audience uuid[];

-- Optimistic concurrency for office edits of reference records: every
-- update bumps `version`; the API sends it as the ETag and refuses a write
-- whose If-Match names an older one (412).
ALTER TABLE customers ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE sites ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE assets ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE parts ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

ALTER TABLE users DROP COLUMN version;
ALTER TABLE parts DROP COLUMN version;
ALTER TABLE assets DROP COLUMN version;
ALTER TABLE sites DROP COLUMN version;
ALTER TABLE customers DROP COLUMN version;

-- Issue 10 items 5-7 and 13.

-- Access tokens carry the generation they were issued under; a password
-- change bumps it (old tokens stop working) and records when, so live sync
-- sessions opened before it are closed.
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN tokens_revoked_at BIGINT;

-- Failed logins per (username, client address): counted before the password
-- is checked (atomic), with a lockout that doubles on each repeat.
CREATE TABLE login_throttle (
    username TEXT NOT NULL,
    client TEXT NOT NULL,
    failures BIGINT NOT NULL,
    lockouts BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (username, client)
);
CREATE INDEX login_throttle_updated_at ON login_throttle (updated_at);

-- Device ids are chosen by the app and scoped per user: the row key becomes
-- `<user id>:<client id>`, so one user's registrations never block another's.
ALTER TABLE devices ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
UPDATE quarantined_edits SET device_id = user_id || ':' || device_id
    WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = quarantined_edits.device_id
                  AND d.user_id = quarantined_edits.user_id);
UPDATE devices SET client_id = id, id = user_id || ':' || id;
CREATE UNIQUE INDEX devices_user_client ON devices (user_id, client_id);
CREATE INDEX devices_client_id ON devices (client_id);

-- Ticket numbers given out through the API, unique (there is one tenant).
-- Kept apart from the projection so a device's duplicate can never make a
-- sync commit fail.
CREATE TABLE ticket_numbers (
    ticket_no TEXT PRIMARY KEY NOT NULL,
    doc_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO ticket_numbers (ticket_no, doc_id, created_at)
    SELECT ticket_no, MIN(doc_id), 0 FROM tickets WHERE ticket_no <> '' GROUP BY ticket_no;

DROP TABLE ticket_numbers;
DROP INDEX devices_client_id;
DROP INDEX devices_user_client;
UPDATE quarantined_edits SET device_id = substr(device_id, length(user_id) + 2)
    WHERE device_id LIKE user_id || ':%';
UPDATE devices SET id = client_id;
ALTER TABLE devices DROP COLUMN client_id;
DROP TABLE login_throttle;
ALTER TABLE users DROP COLUMN tokens_revoked_at;
ALTER TABLE users DROP COLUMN token_generation;

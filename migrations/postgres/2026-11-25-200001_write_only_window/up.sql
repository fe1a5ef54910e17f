-- Devices whose write-only access to a ticket they were reassigned from has
-- ended (they synced it once after the reassignment); see sharing.rs.
CREATE TABLE write_only_closed (
    doc_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    closed_at BIGINT NOT NULL,
    PRIMARY KEY (doc_id, device_id)
);

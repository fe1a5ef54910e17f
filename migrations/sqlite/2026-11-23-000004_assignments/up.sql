-- Which technician a ticket (document) is assigned to, with history: the
-- current row has unassigned_at NULL. The share policy reads it.
CREATE TABLE ticket_assignments (
    id TEXT PRIMARY KEY NOT NULL,
    doc_id TEXT NOT NULL,
    technician_id TEXT NOT NULL REFERENCES users (id),
    assigned_by TEXT NOT NULL REFERENCES users (id),
    assigned_at BIGINT NOT NULL,
    unassigned_at BIGINT
);
CREATE INDEX ticket_assignments_doc_id ON ticket_assignments (doc_id);
CREATE INDEX ticket_assignments_technician_id ON ticket_assignments (technician_id);

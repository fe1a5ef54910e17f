-- Edits the server undid because the author's role may not make them. The
-- edit itself stays in the document history; a compensating server change
-- (compensation_hash) restored the previous value.
CREATE TABLE quarantined_edits (
    id TEXT PRIMARY KEY NOT NULL,
    doc_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    path TEXT NOT NULL,
    attempted TEXT NOT NULL,
    restored TEXT NOT NULL,
    compensation_hash BYTEA NOT NULL
);
CREATE INDEX quarantined_edits_doc_id ON quarantined_edits (doc_id);
CREATE INDEX quarantined_edits_at ON quarantined_edits (at);

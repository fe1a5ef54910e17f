-- Automerge changes, append-only. (doc_id, hash) is unique so a replayed or
-- concurrently written change is simply ignored (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE doc_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL,
    hash BLOB NOT NULL,
    bytes BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (doc_id, hash)
);

-- Compacted document state. A document may have several snapshots (written by
-- different server instances); loading merges all of them plus doc_changes.
CREATE TABLE doc_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL,
    heads BLOB NOT NULL,
    bytes BLOB NOT NULL,
    change_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX doc_snapshots_doc_id ON doc_snapshots (doc_id);

CREATE TABLE server_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

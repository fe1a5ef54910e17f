-- Issue 10 items 12 and 13: who may read a blob through which ticket, and
-- how much each user uploads.

-- Who proved they hold a blob's bytes by uploading them (user_id '' marks
-- blobs stored before uploads were recorded). `bytes` counts against the
-- uploader's daily quota: the size when this upload stored the file, 0 when
-- it was already there.
CREATE TABLE blob_uploads (
    sha256 TEXT NOT NULL,
    user_id TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, user_id)
);
CREATE INDEX blob_uploads_user_at ON blob_uploads (user_id, uploaded_at);

-- A ticket's reference to a blob, recorded when a user's edit first made the
-- ticket reference it. Confirmed when that user may see the blob (they
-- uploaded it, then or later, or could already read it through another
-- ticket); only confirmed links serve the blob through the ticket.
CREATE TABLE blob_links (
    doc_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    linked_by TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    confirmed BOOLEAN NOT NULL,
    PRIMARY KEY (doc_id, sha256, linked_by)
);
CREATE INDEX blob_links_sha256 ON blob_links (sha256, linked_by);

-- Blob files already on disk are recorded as legacy uploads by the first
-- server start after this migration (it cannot list files itself).
INSERT INTO server_meta (key, value) VALUES ('blob_legacy_scan', 'pending');

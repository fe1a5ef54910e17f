-- Issue 11 §1: back-office reconciliation.

-- The catalogue says which parts carry a serial number that must be recorded
-- when fitted (reconciliation flags a part line without one).
ALTER TABLE parts ADD COLUMN serial_required BOOLEAN NOT NULL DEFAULT FALSE;

-- Every decision of the back office on a ticket (approve or dispute), with
-- the checks as they were when it was made. Append-only: a ticket disputed,
-- reworked and approved has two rows. The ticket document carries the latest
-- one (`reconciliation` map) for devices and the dispatcher.
CREATE TABLE reconciliation_decisions (
    id TEXT PRIMARY KEY NOT NULL,
    doc_id TEXT NOT NULL,
    ticket_no TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    override_problems BOOLEAN NOT NULL,
    checks TEXT NOT NULL,
    by_user TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX reconciliation_decisions_doc_id ON reconciliation_decisions (doc_id);
CREATE INDEX reconciliation_decisions_at ON reconciliation_decisions (at);

-- Exports of reconciled jobs for billing/ERP. The content is kept as it was
-- sent, so a re-download is byte-for-byte the same (content_sha256).
CREATE TABLE reconciliation_exports (
    id TEXT PRIMARY KEY NOT NULL,
    period_from TEXT NOT NULL,
    period_to TEXT NOT NULL,
    format TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    job_count BIGINT NOT NULL,
    line_count BIGINT NOT NULL,
    jobs TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX reconciliation_exports_created_at ON reconciliation_exports (created_at);

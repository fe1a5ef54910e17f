-- Reference records the dispatcher API maintains (customer archive, seed 003).
CREATE TABLE customers (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    phone TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE INDEX customers_name ON customers (name);
CREATE TABLE sites (
    id TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    name TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX sites_customer_id ON sites (customer_id);
CREATE TABLE assets (
    id TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    site_id TEXT REFERENCES sites (id),
    product TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    serial TEXT NOT NULL DEFAULT '',
    purchased_at TEXT NOT NULL DEFAULT '',
    warranty_until TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX assets_customer_id ON assets (customer_id);
CREATE INDEX assets_serial ON assets (serial);
CREATE TABLE parts (
    part_no TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    unit_cost_cents BIGINT NOT NULL DEFAULT 0,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL
);

-- The service history: a projection of the ticket documents, replaced for a
-- document in the same transaction that stores its changes, and recomputed
-- by `fieldsync projection rebuild`. Times are the documents' RFC 3339 text.
-- Rows are keyed by list position, not by device-chosen ids, so a buggy
-- device (duplicate ids) can never make a commit fail.
CREATE TABLE tickets (
    doc_id TEXT PRIMARY KEY NOT NULL,
    ticket_no TEXT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    customer_phone TEXT NOT NULL,
    customer_address TEXT NOT NULL,
    site TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    product TEXT NOT NULL,
    model TEXT NOT NULL,
    serial TEXT NOT NULL,
    fault_description TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    reported_via TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    appointment_start TEXT NOT NULL,
    appointment_end TEXT NOT NULL,
    created_at TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    result TEXT NOT NULL,
    visit_count BIGINT NOT NULL,
    survey_scale BIGINT,
    survey_efficiency BIGINT,
    survey_attitude BIGINT,
    survey_reasonableness BIGINT,
    feedback_comment TEXT NOT NULL
);
CREATE INDEX tickets_status ON tickets (status);
CREATE INDEX tickets_technician_id ON tickets (technician_id);
CREATE INDEX tickets_customer_id ON tickets (customer_id);
CREATE INDEX tickets_asset_id ON tickets (asset_id);
CREATE INDEX tickets_serial ON tickets (serial);
CREATE INDEX tickets_created_at ON tickets (created_at);
CREATE TABLE visits (
    doc_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    visit_id TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    arrived_at TEXT NOT NULL,
    departed_at TEXT NOT NULL,
    work_done TEXT NOT NULL,
    result TEXT NOT NULL,
    fixed BOOLEAN,
    PRIMARY KEY (doc_id, position)
);
CREATE INDEX visits_technician_id ON visits (technician_id);
CREATE TABLE parts_used (
    doc_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    part_entry_id TEXT NOT NULL,
    part_no TEXT NOT NULL,
    qty BIGINT NOT NULL,
    serial TEXT NOT NULL,
    source TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    PRIMARY KEY (doc_id, position)
);
CREATE INDEX parts_used_part_no ON parts_used (part_no);
-- Van stock: parts fitted from a van (doc_id set, projected) and manual
-- restocks/corrections (doc_id NULL, entered through the API).
CREATE TABLE stock_movements (
    id TEXT PRIMARY KEY NOT NULL,
    technician_id TEXT NOT NULL,
    part_no TEXT NOT NULL,
    qty_delta BIGINT NOT NULL,
    reason TEXT NOT NULL,
    doc_id TEXT,
    at TEXT NOT NULL
);
CREATE INDEX stock_movements_technician_id ON stock_movements (technician_id);
CREATE INDEX stock_movements_doc_id ON stock_movements (doc_id);
CREATE TABLE signoffs (
    doc_id TEXT PRIMARY KEY NOT NULL,
    signer_name TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    signature_sha256 TEXT NOT NULL,
    doc_heads TEXT NOT NULL,
    heads_valid BOOLEAN NOT NULL,
    signed_content_sha256 TEXT NOT NULL,
    current_content_sha256 TEXT NOT NULL,
    modified_after_signoff BOOLEAN NOT NULL
);
CREATE TABLE status_events (
    doc_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    by_user TEXT NOT NULL,
    by_role TEXT NOT NULL,
    at TEXT NOT NULL,
    device_at TEXT NOT NULL,
    PRIMARY KEY (doc_id, seq)
);
CREATE INDEX status_events_at ON status_events (at);

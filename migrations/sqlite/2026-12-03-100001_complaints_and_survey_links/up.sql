-- Issue 11 §3: complaints and the customer's survey link.

-- A complaint (seed 000 §5.3, 004): linked to a customer and, if it is about
-- one, a ticket; its own response and resolution limits (policy
-- `complaints`), states as last computed by the SLA watch (list filters,
-- on-time flags once met). Never deleted.
CREATE TABLE complaints (
    id TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    ticket_no TEXT NOT NULL,
    category TEXT NOT NULL,
    description TEXT NOT NULL,
    received_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    responded_at TEXT,
    responded_by TEXT,
    response_note TEXT NOT NULL,
    started_at TEXT,
    started_by TEXT,
    resolved_at TEXT,
    resolved_by TEXT,
    resolution TEXT NOT NULL,
    customer_satisfied BOOLEAN,
    respond_state TEXT NOT NULL,
    respond_due_at TEXT NOT NULL,
    resolve_state TEXT NOT NULL,
    resolve_due_at TEXT NOT NULL,
    start_state TEXT NOT NULL,
    start_due_at TEXT NOT NULL,
    -- The repair job a product-quality complaint opened ('' if none).
    repair_doc_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX complaints_customer ON complaints (customer_id);
CREATE INDEX complaints_received_at ON complaints (received_at);
-- The timer looks at open complaints only.
CREATE INDEX complaints_open ON complaints (received_at) WHERE resolved_at IS NULL;

-- Survey links sent to customers: single use, expiring. The token itself is
-- never stored; it is signed (HMAC over id and expiry) and names its row.
-- The customer's answer is kept here the moment the link is used (`answer`,
-- JSON), then written into the ticket document (`applied_at`); answers not
-- yet applied (storage failed, a crash) are applied by a repair pass.
CREATE TABLE survey_links (
    id TEXT PRIMARY KEY NOT NULL,
    doc_id TEXT NOT NULL,
    ticket_no TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    answer TEXT,
    applied_at TEXT
);
CREATE INDEX survey_links_doc_id ON survey_links (doc_id);
CREATE INDEX survey_links_unapplied ON survey_links (used_at) WHERE applied_at IS NULL;

-- Contacts with the customer about a ticket (a call, a message): the first
-- one is the response when the policy says so (`sla.respond_on:
-- "first_contact"`, seed 000 §4.2).
CREATE TABLE ticket_contacts (
    id TEXT PRIMARY KEY NOT NULL,
    doc_id TEXT NOT NULL,
    at TEXT NOT NULL,
    by_user TEXT NOT NULL,
    channel TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX ticket_contacts_doc_id ON ticket_contacts (doc_id, at);

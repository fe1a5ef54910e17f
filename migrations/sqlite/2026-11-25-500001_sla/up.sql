-- Service rules (issue 11): the policy document, each ticket's SLA state as
-- last computed (for list filters; the on-time flags once met), and the
-- escalations sent (one per ticket, target and tier).
CREATE TABLE service_policy (
    id BIGINT PRIMARY KEY NOT NULL,
    policy TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE ticket_sla (
    doc_id TEXT PRIMARY KEY NOT NULL,
    priority TEXT NOT NULL,
    worst TEXT NOT NULL,
    respond_state TEXT NOT NULL,
    respond_due_at TEXT NOT NULL,
    respond_met_at TEXT NOT NULL,
    resolve_state TEXT NOT NULL,
    resolve_due_at TEXT NOT NULL,
    resolve_met_at TEXT NOT NULL,
    evaluated_at TEXT NOT NULL
);
CREATE INDEX ticket_sla_worst ON ticket_sla (worst);
CREATE TABLE escalations (
    id TEXT PRIMARY KEY NOT NULL,
    doc_id TEXT NOT NULL,
    ticket_no TEXT NOT NULL,
    milestone TEXT NOT NULL,
    tier TEXT NOT NULL,
    sla_state TEXT NOT NULL,
    notified TEXT NOT NULL,
    created_at TEXT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    UNIQUE (doc_id, milestone, tier)
);
CREATE INDEX escalations_created_at ON escalations (created_at);
-- Outgoing webhook deliveries (escalations → the company's SMS/e-mail
-- gateway): written with the escalation, sent and retried from here; the
-- delivery log.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    event TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_status BIGINT,
    last_error TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX webhook_deliveries_next ON webhook_deliveries (delivered_at, next_attempt_at);
-- After the job: callback tasks (48 h after completion; at once after a low
-- survey score) and customers flagged after unsatisfied services in a row.
CREATE TABLE callbacks (
    id TEXT PRIMARY KEY NOT NULL,
    doc_id TEXT NOT NULL,
    ticket_no TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    due_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    reached BOOLEAN,
    solved BOOLEAN,
    note TEXT NOT NULL,
    done_by TEXT,
    done_at TEXT,
    UNIQUE (doc_id, reason)
);
CREATE INDEX callbacks_due_at ON callbacks (due_at);
CREATE TABLE customer_flags (
    id TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL,
    trigger_doc_id TEXT NOT NULL UNIQUE,
    streak BIGINT NOT NULL,
    flagged_at TEXT NOT NULL,
    cleared_by TEXT,
    cleared_at TEXT,
    cleared_note TEXT NOT NULL
);
CREATE INDEX customer_flags_customer ON customer_flags (customer_id);

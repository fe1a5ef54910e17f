DROP TABLE customer_flags;
DROP TABLE callbacks;
DROP TABLE webhook_deliveries;
DROP TABLE escalations;
DROP TABLE ticket_sla;
DROP TABLE service_policy;

DROP TABLE reconciliation_exports;
DROP TABLE reconciliation_decisions;
ALTER TABLE parts DROP COLUMN serial_required;

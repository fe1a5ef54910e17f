DROP TABLE server_meta;
DROP TABLE doc_snapshots;
DROP TABLE doc_changes;

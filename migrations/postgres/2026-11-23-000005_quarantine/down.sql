DROP TABLE quarantined_edits;

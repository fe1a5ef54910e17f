DELETE FROM server_meta WHERE key = 'blob_legacy_scan';
DROP TABLE blob_links;
DROP TABLE blob_uploads;

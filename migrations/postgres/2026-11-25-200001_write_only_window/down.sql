DROP TABLE write_only_closed;

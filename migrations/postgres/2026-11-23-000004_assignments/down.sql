DROP TABLE ticket_assignments;

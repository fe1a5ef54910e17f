DROP TABLE ticket_contacts;
DROP TABLE survey_links;
DROP TABLE complaints;

DROP TABLE survey_links;
DROP TABLE complaints;

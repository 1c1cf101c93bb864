DROP TABLE credit_records;
DROP TABLE application_datasets;
DROP TABLE applications;
DROP TABLE call_datasets;
DROP TABLE calls;
DROP TABLE calendar_days;

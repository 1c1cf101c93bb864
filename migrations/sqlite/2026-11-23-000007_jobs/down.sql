DROP TABLE usage_reports;
DROP TABLE budget_debits;
DROP TABLE job_meters;
DROP TABLE job_releases;
DROP TABLE jobs;
DROP TABLE computations;
DROP TABLE job_modules;
DROP TABLE trainings;

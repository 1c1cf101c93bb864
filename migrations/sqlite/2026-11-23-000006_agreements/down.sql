DROP TABLE termination_requests;
DROP TABLE rectifications;
DROP TABLE agreement_datasets;
DROP TABLE agreement_exits;
DROP TABLE agreement_signatures;
DROP TABLE agreements;

CREATE INDEX jobs_computation ON jobs(computation_id);
DROP INDEX jobs_computation_created;
DROP INDEX computations_agreement;

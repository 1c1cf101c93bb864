-- The run budget counts an agreement's runs since the start of its period: find the
-- agreement's computations, then their runs from a date, without reading older history.
CREATE INDEX computations_agreement ON computations(agreement_id);
CREATE INDEX jobs_computation_created ON jobs(computation_id, created_at);
DROP INDEX jobs_computation;

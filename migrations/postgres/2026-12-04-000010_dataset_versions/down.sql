DROP TABLE agreement_schemas;
DROP INDEX dataset_versions_state;
ALTER TABLE dataset_versions DROP COLUMN decided_at;
ALTER TABLE dataset_versions DROP COLUMN decided_by;
ALTER TABLE dataset_versions DROP COLUMN summary;
ALTER TABLE dataset_versions DROP COLUMN schema_no;
ALTER TABLE dataset_versions DROP COLUMN state;

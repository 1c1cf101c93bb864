-- Dataset versions are drafts until their provider publishes them (issue 15): only published
-- versions are read by jobs. A version is `incomplete` from the moment its row reserves its
-- number until its files are in place, so a process killed in between leaves a row the start
-- of the next server reconciles, never a folder without a row. Versions whose schema (column
-- names, types, roles, category codes) differs from the published one before them open a new
-- schema version (`schema_no`); an agreement in force reads the last published version of the
-- schema its operator accepted (`agreement_schemas`; no row: schema 1). Existing versions were
-- all read by jobs: they migrate as published, schema 1.
ALTER TABLE dataset_versions ADD COLUMN state TEXT NOT NULL DEFAULT 'published';
ALTER TABLE dataset_versions ADD COLUMN schema_no INTEGER NOT NULL DEFAULT 1;
ALTER TABLE dataset_versions ADD COLUMN summary TEXT NOT NULL DEFAULT '';
ALTER TABLE dataset_versions ADD COLUMN decided_by BIGINT;
ALTER TABLE dataset_versions ADD COLUMN decided_at TIMESTAMP;
CREATE INDEX dataset_versions_state ON dataset_versions(dataset_id, state, schema_no, version_no);

-- The schema version of a dataset that an agreement's operator accepted.
CREATE TABLE agreement_schemas (
    agreement_id BIGINT NOT NULL REFERENCES agreements(id),
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    schema_no INTEGER NOT NULL,
    accepted_by BIGINT REFERENCES users(id),
    accepted_at TIMESTAMP NOT NULL,
    PRIMARY KEY (agreement_id, dataset_id)
);

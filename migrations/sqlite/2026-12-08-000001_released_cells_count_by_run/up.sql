-- Kept cells count once their run is released (the job's state says so; no flag to update in
-- the release's transaction), and a cell's datasets go with it when it is deleted (a run that
-- ends unreleased, or a cell whose persons were released already from the same datasets).
DROP INDEX released_cells_window;
ALTER TABLE released_cells DROP COLUMN released;
CREATE INDEX released_cells_window ON released_cells(org_id, persons);

CREATE TABLE released_cell_datasets_new (
    cell_id BIGINT NOT NULL REFERENCES released_cells(id) ON DELETE CASCADE,
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    PRIMARY KEY (dataset_id, cell_id)
);
INSERT INTO released_cell_datasets_new (cell_id, dataset_id)
    SELECT cell_id, dataset_id FROM released_cell_datasets;
DROP TABLE released_cell_datasets;
ALTER TABLE released_cell_datasets_new RENAME TO released_cell_datasets;
CREATE INDEX released_cell_datasets_cell ON released_cell_datasets(cell_id);

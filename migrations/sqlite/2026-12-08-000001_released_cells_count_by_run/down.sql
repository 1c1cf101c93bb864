CREATE TABLE released_cell_datasets_old (
    cell_id BIGINT NOT NULL REFERENCES released_cells(id),
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    PRIMARY KEY (dataset_id, cell_id)
);
INSERT INTO released_cell_datasets_old (cell_id, dataset_id)
    SELECT cell_id, dataset_id FROM released_cell_datasets;
DROP TABLE released_cell_datasets;
ALTER TABLE released_cell_datasets_old RENAME TO released_cell_datasets;
CREATE INDEX released_cell_datasets_cell ON released_cell_datasets(cell_id);

DROP INDEX released_cells_window;
ALTER TABLE released_cells ADD COLUMN released BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE released_cells SET released = TRUE
    WHERE job_id IN (SELECT id FROM jobs WHERE state = 'released');
CREATE INDEX released_cells_window ON released_cells(org_id, released, persons);

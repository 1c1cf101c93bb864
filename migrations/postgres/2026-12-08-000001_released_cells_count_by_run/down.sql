ALTER TABLE released_cell_datasets
    DROP CONSTRAINT released_cell_datasets_cell_id_fkey,
    ADD CONSTRAINT released_cell_datasets_cell_id_fkey
        FOREIGN KEY (cell_id) REFERENCES released_cells(id);

DROP INDEX released_cells_window;
ALTER TABLE released_cells ADD COLUMN released BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE released_cells SET released = TRUE
    WHERE job_id IN (SELECT id FROM jobs WHERE state = 'released');
CREATE INDEX released_cells_window ON released_cells(org_id, released, persons);

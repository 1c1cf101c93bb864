-- Kept cells count once their run is released (the job's state says so; no flag to update in
-- the release's transaction), and a cell's datasets go with it when it is deleted (a run that
-- ends unreleased, or a cell whose persons were released already from the same datasets).
DROP INDEX released_cells_window;
ALTER TABLE released_cells DROP COLUMN released;
CREATE INDEX released_cells_window ON released_cells(org_id, persons);

ALTER TABLE released_cell_datasets
    DROP CONSTRAINT released_cell_datasets_cell_id_fkey,
    ADD CONSTRAINT released_cell_datasets_cell_id_fkey
        FOREIGN KEY (cell_id) REFERENCES released_cells(id) ON DELETE CASCADE;

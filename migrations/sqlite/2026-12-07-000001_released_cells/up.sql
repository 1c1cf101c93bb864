-- The differencing guard (issue 13; sandbox/ABI.md §6, guarantee 7): without noise, a release
-- is withheld when one of its cells and a cell released earlier to the same operator from the
-- same dataset, or another cell of the same release, differ by 1 to k - 1 persons. Platform
-- only: nothing here is shown to an operator or leaves the platform.

-- The persons of each cell a run released without noise (suppressed cells are not kept),
-- written when the run finishes; they count once their run is `released`. The rows of a run
-- that ends otherwise are deleted in the transaction that ends it, and so are, at release, the
-- rows whose persons the operator was released already from the same datasets (they would add
-- nothing to the check). `members` holds the cell's person keys (a bijection of the
-- pseudonyms), sorted, 8 bytes each little-endian; `digest` is their sha256 (equal digests:
-- the same persons); `sketch` their count in each of 64 ranges of keys, 4 bytes each (two
-- cells differ by at least the sum of the differences); `cell_key` the JSON array of the key's
-- labels; `k` the aggregate's threshold. The guard reads the cells of an operator within
-- k - 1 persons of a size (`released_cells_window`), and the persons only of those their
-- digest and sketch leave open.
CREATE TABLE released_cells (
    id INTEGER PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    org_id BIGINT NOT NULL REFERENCES organisations(id),
    aggregate TEXT NOT NULL,
    cell_key TEXT NOT NULL,
    k BIGINT NOT NULL,
    persons BIGINT NOT NULL,
    digest TEXT NOT NULL,
    sketch BLOB NOT NULL,
    members BLOB NOT NULL
);
CREATE INDEX released_cells_window ON released_cells(org_id, persons);
CREATE INDEX released_cells_job ON released_cells(job_id);

-- The catalog datasets a kept cell depends on (its aggregate's dataset, or the per-person
-- stage's inputs): cells are compared when they share one.
CREATE TABLE released_cell_datasets (
    cell_id BIGINT NOT NULL REFERENCES released_cells(id) ON DELETE CASCADE,
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    PRIMARY KEY (dataset_id, cell_id)
);
CREATE INDEX released_cell_datasets_cell ON released_cell_datasets(cell_id);

-- Why the guard withheld a run, for platform staff: each pair of cells it found 1 to k - 1
-- persons apart (`other_job_id` = `job_id` for two cells of the same release).
CREATE TABLE differencing_findings (
    id INTEGER PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    aggregate TEXT NOT NULL,
    cell_key TEXT NOT NULL,
    other_job_id BIGINT NOT NULL REFERENCES jobs(id),
    other_aggregate TEXT NOT NULL,
    other_cell_key TEXT NOT NULL,
    difference BIGINT NOT NULL,
    k BIGINT NOT NULL
);
CREATE INDEX differencing_findings_job ON differencing_findings(job_id);

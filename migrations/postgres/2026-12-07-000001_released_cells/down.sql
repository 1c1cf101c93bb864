DROP TABLE differencing_findings;
DROP TABLE released_cell_datasets;
DROP TABLE released_cells;

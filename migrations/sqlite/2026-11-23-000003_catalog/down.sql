DROP TABLE dataset_versions;
DROP TABLE dataset_columns;
DROP TABLE datasets;
